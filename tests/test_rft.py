"""Rejective fine-tuning: rejection statistics and SFT rows on a scripted backend, hinted sampling, resuming,
assistant-only SFT loss on a tiny model, and the `grm train rft` command end to end."""

import json
import re
from pathlib import Path

import pytest
import torch

from grm import GRM, Example, Item, Principle, ScoringOptions
from grm.parsing import format_judgement
from grm.training.rft import RFTConfig, build_sft_set, make_sft_trainer, run_rft, summarize
from helpers import ScriptedBackend, shown_responses

HINT = re.compile(r"Hint: the best response is Response (\d+)|Hint: the response deserves a score of (\d+)")
CPU = dict(use_cpu=True, bf16=False, report_to="none", logging_steps=1, dataloader_num_workers=0)


def box(scores):
    return format_judgement([Principle("Truth", 1.0, "right.")], "Checked.", scores)


def script(messages, _):
    """Follow a hint if there is one; else "pos ..." responses: the first shown wins; "BROKEN": no scores;
    otherwise each response's leading number is its score."""
    shown = shown_responses(messages)
    hint = HINT.search(messages[-1]["content"])
    if hint and hint.group(1):
        return box([9 if p == int(hint.group(1)) - 1 else 1 for p in range(len(shown))])
    if hint:
        return box([int(hint.group(2))])
    if any(r == "BROKEN" for r in shown):
        return "I cannot judge this."
    if shown[0].startswith("pos"):
        return box([9] + [2] * (len(shown) - 1))
    return box([int(r.split()[0]) for r in shown])


FIXED = [  # (example, status when sampled without hints)
    (Example("easy", ["8 good", "3 bad"], [1, 0]), "too_easy"),
    (Example("judge is wrong", ["3 good", "8 bad"], [1, 0]), "all_incorrect"),
    (Example("judge ties", ["5 a", "5 b"], [0, 1]), "all_incorrect"),
    (Example("judge cannot parse", ["BROKEN", "1 x"], [0, 1]), "all_incorrect"),
    (Example("one right", ["7 fine"], [7]), "too_easy"),
    (Example("one wrong", ["7 fine"], [6]), "all_incorrect"),
]
MIXED = [Example(f"mixed {i}", ["pos good", "pos bad", "pos worse"], [1, 0, 0.5]) for i in range(4)]


def examples():
    out = [e for e, _ in FIXED] + MIXED
    for i, e in enumerate(out):
        e.id = f"ex{i}"
    return out


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def sent_prompts(backend):
    return [r.messages for call in backend.calls for r in call]


def test_rejection_statistics_and_sft_rows_on_a_scripted_backend(tmp_path):
    backend = ScriptedBackend(script)
    rm = GRM(backend)
    stats = build_sft_set(rm, examples(), tmp_path, k=3, seed=5, chunk_size=4)
    records = rows(tmp_path / "records.jsonl")
    assert [r["index"] for r in records] == list(range(10)) and [r["id"] for r in records] == [
        f"ex{i}" for i in range(10)
    ]
    assert [r["status"] for r in records[:6]] == [status for _, status in FIXED]
    # mixed examples: a judgement is correct exactly when the best response (index 0) was shown first
    mixed_correct = []
    for r in records[6:]:
        correct = [s["order"][0] == 0 for s in r["samples"]]
        assert [s["correct"] for s in r["samples"]] == correct
        mixed_correct.append(sum(correct))
        assert r["status"] == ("too_easy" if all(correct) else "kept" if any(correct) else "all_incorrect")
    assert any(0 < c < 3 for c in mixed_correct), "the seed should give at least one kept mixed example"
    kept_rows = sum(c for c in mixed_correct if c < 3)
    assert stats.to_dict() == {
        "examples": 10,
        "kept": sum(0 < c < 3 for c in mixed_correct),
        "too_easy": 2 + sum(c == 3 for c in mixed_correct),
        "all_incorrect": 4 + sum(c == 0 for c in mixed_correct),
        "judgements": 30,
        "correct": 3 + 3 + sum(mixed_correct),
        "unparseable": 3,
        "hinted": 0,
        "hinted_correct": 0,
        "rule_rejected": 0,
        "sft_rows": kept_rows,
        "load": {},
    }
    assert json.loads((tmp_path / "stats.json").read_text()) == stats.to_dict()
    assert len(backend.calls) == 3  # one backend call per chunk of 4 examples

    # each SFT row: the prompt exactly as sent (that judgement's order), the judgement as the assistant turn
    sft = rows(tmp_path / "sft.jsonl")
    assert len(sft) == kept_rows
    sent = sent_prompts(backend)
    for row in sft:
        record = records[row["index"]]
        sample = record["samples"][row["sample"]]
        assert sample["kept"] and sample["correct"] and not row["hinted"]
        assert row["prompt"] in sent and row["prompt"][-1]["role"] == "user"
        assert shown_responses(row["prompt"])[0] == "pos good"
        assert row["completion"] == [{"role": "assistant", "content": sample["text"]}]
        e = examples()[row["index"]]
        assert row["prompt"] == rm.build_prompt(e.query, [e.responses[p] for p in sample["order"]])


def test_hinted_sampling_fallback_and_only(tmp_path):
    backend = ScriptedBackend(script)
    rm = GRM(backend)
    options = ScoringOptions(k=3, seed=1)
    stats = build_sft_set(rm, examples()[:6], tmp_path / "fallback", options, hinted_sampling="fallback")
    records = rows(tmp_path / "fallback" / "records.jsonl")
    # the four all-incorrect examples got one hinted sample each, which the hint-following judge gets right
    assert [sum(s["hinted"] for s in r["samples"]) for r in records] == [0, 1, 1, 1, 0, 1]
    assert [r["status"] for r in records] == ["too_easy", "kept", "kept", "kept", "too_easy", "kept"]
    assert stats.hinted == 4 and stats.hinted_correct == 4 and stats.sft_rows == 4 and stats.judgements == 18
    hinted_requests = [m for m in sent_prompts(backend) if HINT.search(m[-1]["content"])]
    assert len(hinted_requests) == 4
    for row in rows(tmp_path / "fallback" / "sft.jsonl"):
        e = examples()[row["index"]]
        sample = records[row["index"]]["samples"][row["sample"]]
        assert row["hinted"] and sample["hinted"]
        # trained on the prompt without the hint, in the order the hinted sample saw
        assert row["prompt"] == rm.build_prompt(e.query, [e.responses[p] for p in sample["order"]])
        assert "Hint" not in row["prompt"][-1]["content"]
        hinted = [m for m in hinted_requests if shown_responses(m) == shown_responses(row["prompt"])]
        assert hinted and any(m[-1]["content"].startswith(row["prompt"][-1]["content"]) for m in hinted)
        # the kept hinted judgement's scores, mapped back to the example's order, favour the true best
        assert sample["scores"].index(max(sample["scores"])) == e.truth.index(max(e.truth)) or len(e.truth) == 1

    backend.calls.clear()
    stats = build_sft_set(rm, examples()[:6], tmp_path / "only", hinted_sampling="only", seed=1)
    assert stats.hinted == 6 and stats.hinted_correct == 6 and stats.judgements == 0 and stats.kept == 6
    assert [sum(r.n for r in call) for call in backend.calls] == [6]
    with pytest.raises(ValueError, match="hinted_sampling"):
        build_sft_set(rm, [], tmp_path / "x", hinted_sampling="always")
    with pytest.raises(ValueError, match="n_rft must be >= 2"):
        build_sft_set(rm, [], tmp_path / "x", k=1)
    with pytest.raises(ValueError, match="adaptive or a budget draws fewer"):
        build_sft_set(rm, [], tmp_path / "x", k=4, adaptive=True)


def test_hinted_samples_come_from_the_scoring_plan(tmp_path):
    backend = ScriptedBackend(script)
    options = ScoringOptions(k=3, seed=4, max_new_tokens=50)
    build_sft_set(GRM(backend), examples()[:6], tmp_path, options, hinted_sampling="fallback", chunk_size=2)
    sent = [(r.messages, r.sampling) for call in backend.calls for r in call]
    hinted = [(m, s) for m, s in sent if HINT.search(m[-1]["content"])]
    # the same items with their hint, scored by the plan with the options (k=1, grm's temperature) and keyed hint:<row>
    direct = ScriptedBackend(script)
    items, keys = [], []
    for index in (1, 2, 3, 5):  # the examples with no correct sample
        e = examples()[index]
        items.append(Item(e.query, e.responses, hint=e.truth.index(max(e.truth)) if len(e.truth) > 1 else 6))
        keys.append(f"hint:{index}")
    GRM(direct).score_batch(items, options, keys=keys, k=1, temperature=0.5)
    expected = [(r.messages, r.sampling) for call in direct.calls for r in call]
    assert hinted == expected and all(s.seed is not None and s.max_new_tokens == 50 for _, s in hinted)


def test_a_user_rule_rejects_judgements_whose_scores_pass(tmp_path):
    def rule(judgement, example):
        assert judgement.order is not None and example.truth  # a judgement and its labelled example
        return example.query != "easy"

    rm = GRM(ScriptedBackend(script))
    stats = build_sft_set(rm, examples()[:6], tmp_path, k=3, seed=1, hinted_sampling="fallback", rule=rule)
    records = rows(tmp_path / "records.jsonl")
    easy = records[0]  # too easy by its scores; the rule rejects all three and the hinted fourth
    assert easy["status"] == "all_incorrect" and [s["rule"] for s in easy["samples"]] == [False] * 4
    assert all(s["correct"] and not s["kept"] for s in easy["samples"])
    assert [r["status"] for r in records[1:]] == ["kept", "kept", "kept", "too_easy", "kept"]  # as without a rule
    assert all(s["rule"] is True for r in records[1:] for s in r["samples"])
    assert stats.rule_rejected == 4 and stats.sft_rows == 4
    assert not [r for r in rows(tmp_path / "sft.jsonl") if r["index"] == 0]


def test_resume_samples_only_what_is_missing(tmp_path):
    backend = ScriptedBackend(script)
    rm = GRM(backend)
    build_sft_set(rm, examples()[:7], tmp_path, k=3, seed=2, chunk_size=3)
    first = rows(tmp_path / "sft.jsonl")
    # an interruption can leave SFT rows of an unrecorded example and a half-written line behind
    with open(tmp_path / "sft.jsonl", "a") as f:
        f.write(json.dumps({"index": 8, "prompt": [], "completion": []}) + "\n" + '{"index": 9, "pro')
    backend.calls.clear()
    stats = build_sft_set(rm, examples(), tmp_path, k=3, seed=2, chunk_size=3)
    assert sum(r.n for call in backend.calls for r in call) == 3 * 3  # only examples 7, 8, 9
    records = rows(tmp_path / "records.jsonl")
    assert [r["index"] for r in records] == list(range(10))
    sft = rows(tmp_path / "sft.jsonl")
    assert sft[: len(first)] == first and all(r["prompt"] for r in sft)
    assert stats.examples == 10 and stats.sft_rows == len(sft) == summarize(tmp_path / "records.jsonl").sft_rows
    changed = examples()
    changed[3].id = "other"
    with pytest.raises(ValueError, match="row 3 was sampled for example id 'ex3'"):
        build_sft_set(rm, changed, tmp_path, k=3)


@pytest.mark.slow
def test_sft_trains_on_the_judgement_only_and_the_loss_falls(tmp_path):
    from grm.tiny import build_causal_lm

    rm = GRM(ScriptedBackend(script))
    build_sft_set(rm, MIXED * 2, tmp_path / "data", k=3, seed=0)
    sft = rows(tmp_path / "data" / "sft.jsonl")
    texts = [m["content"] for r in sft for m in r["prompt"] + r["completion"]]
    _, tokenizer = build_causal_lm(tmp_path / "model", texts)
    config = RFTConfig(
        output_dir=str(tmp_path / "out"),
        model_name_or_path=str(tmp_path / "model"),
        data_path="unused",
        per_device_train_batch_size=4,
        max_steps=12,
        learning_rate=3e-3,
        save_strategy="no",
        **CPU,
    )
    trainer = make_sft_trainer(config, tmp_path / "data" / "sft.jsonl")
    row = trainer.train_dataset[0]
    trained = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    judgement = sft[0]["completion"][0]["content"]
    assert tokenizer.decode(trained) == judgement + "<|im_end|>\n"
    assert row["labels"][0] == -100  # the prompt is masked
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    assert tokenizer.decode(ids[labels != -100]) == judgement + "<|im_end|>\n"
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 12 and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
def test_grm_train_rft_end_to_end_and_resume(tmp_path, caplog):
    from spct_helpers import build_first_wins_grm

    from grm.cli import main

    model, template, data = build_first_wins_grm(tmp_path)
    out = tmp_path / "out"
    config = tmp_path / "rft.yaml"
    config.write_text(
        f"model_name_or_path: {model}\ndata_path: {data}\ntemplate: {template}\noutput_dir: {out}\n"
        "n_rft: 3\nseed: 0\nsample_max_new_tokens: 30\nsample_backend_kwargs: {progress: false}\n"
        "per_device_train_batch_size: 2\nmax_steps: 2\nsave_steps: 1\nlearning_rate: 1.0e-3\n"
        + "".join(f"{k}: {str(v).lower()}\n" for k, v in CPU.items())
    )
    assert main(["train", "rft", "--config", str(config)]) == 0
    stats = json.loads((out / "rft_data" / "stats.json").read_text())
    records = rows(out / "rft_data" / "records.jsonl")
    for r in records:  # the real model judges "first shown wins": correct iff the best was shown first
        best = r["truth"].index(1.0)
        assert [s["correct"] for s in r["samples"]] == [s["order"][0] == best for s in r["samples"]]
    assert stats["examples"] == 4 and stats["load"] == {"read": 4, "kept": 4, "rejected": {}}
    assert stats["kept"] >= 1 and stats["sft_rows"] == len(rows(out / "rft_data" / "sft.jsonl"))
    assert (out / "model.safetensors").exists() and (out / "checkpoint-2").is_dir()

    # again with more steps: sampling is complete (stats.json), training resumes from checkpoint-2
    assert main(["train", "rft", "--config", str(config), "--max_steps", "3", "--resume_from_checkpoint", "auto"]) == 0
    assert rows(out / "rft_data" / "records.jsonl") == records
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and [h["step"] for h in state["log_history"] if "loss" in h][-1] == 3
    rm = GRM.from_pretrained(out, progress=False)  # the trained model carries its prompt (grm_config.json)
    assert rm.template.source == Path(template).read_text() and rm.max_new_tokens == 30
    assert rm.score("Largest planet?", ["Jupiter", "Mars"]).n_valid == 1

    # once more, unchanged: the latest checkpoint ended its run, and the log says resuming trains nothing new
    with caplog.at_level("WARNING", logger="grm.training.common"):
        assert (
            main(["train", "rft", "--config", str(config), "--max_steps", "3", "--resume_from_checkpoint", "auto"]) == 0
        )
    assert "checkpoint-3 is the end of a finished run (step 3 of 3)" in caplog.text


def test_example_config_parses_with_overrides(tmp_path):
    from grm.training.common import parse_config

    path = Path(__file__).parents[1] / "training" / "configs" / "rft.yaml"
    config = parse_config(RFTConfig, ["--config", str(path), "--output_dir", str(tmp_path)])  # on a CPU as written
    assert config.n_rft == 3 and config.completion_only_loss is True and config.use_peft is True
    assert config.bf16 is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())  # asked for; GPU only
    assert config.scoring_options() == ScoringOptions(k=3, seed=0, max_new_tokens=None)
    assert config.hinted_sampling in ("off", "fallback", "only") and config.model_name_or_path
    with pytest.raises(ValueError, match="hinted_sampling must be one of"):
        RFTConfig(output_dir=str(tmp_path), hinted_sampling="sometimes", use_cpu=True)
    with pytest.raises(ValueError, match="RFTConfig.model_name_or_path is required"):
        run_rft(RFTConfig(output_dir=str(tmp_path), data_path="d.jsonl", use_cpu=True))
    with pytest.raises(ValueError, match="unknown data_format 'dpo'"):
        run_rft(
            RFTConfig(output_dir=str(tmp_path), model_name_or_path="m", data_path="d", data_format="dpo", use_cpu=True)
        )


@pytest.mark.parametrize(
    ("flags", "yaml_extra", "message"),
    [
        (["--n_rft", "٣"], "", r"--n_rft: expected a number in ASCII digits \(0-9\), got '٣'"),
        (["--learning_rate", "７e-5"], "", r"--learning_rate: expected a number in ASCII"),
        ([], "sample_chunk_size: '𝟕'\n", r"sample_chunk_size \(in .*\): expected a number in ASCII"),
        (["--sample_temperature", "-1"], "", r"RFT sampling .*temperature must be a finite number >= 0"),
        (["--sample_temperature", "nan"], "", r"RFT sampling .*temperature must be a finite number >= 0"),
        (["--sample_max_new_tokens", "0"], "", r"RFT sampling .*max_new_tokens must be >= 1"),
    ],
)
def test_bad_sampling_settings_are_refused_when_the_config_is_read(tmp_path, monkeypatch, flags, yaml_extra, message):
    """Before any model loads: the config names a model that does not exist, so nothing but the check can fail."""
    from grm.model import GRM
    from grm.training.common import parse_config

    monkeypatch.setattr(GRM, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    config = tmp_path / "rft.yaml"
    config.write_text(f"model_name_or_path: {tmp_path / 'none'}\ndata_path: d.jsonl\nuse_cpu: true\n{yaml_extra}")
    with pytest.raises(ValueError, match=message):
        parse_config(RFTConfig, ["--config", str(config), "--output_dir", str(tmp_path), *flags])
