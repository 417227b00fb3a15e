"""Meta RM: its input, scoring, the labelled-judgement builder, BCE training, and meta-guided voting end to end."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
import yaml

from grm import GRM, Example, Judgement, MetaRM
from grm.cli import main
from grm.meta_rm import META_RM_TEMPLATE_FILE as TEMPLATE_FILE
from grm.meta_rm import build_messages, encode
from grm.training.meta_rm import (
    MetaRMConfig,
    bce_loss,
    build_dataset,
    classification_metrics,
    load_model,
    meta_rm_loss,
    pairwise_loss,
    train,
)
from grm.voting import top_k_meta
from helpers import ScriptedBackend, judge_by

QUERY, RESPONSES = "What is 2+2?", ["4", "5"]
TEXT = (
    "Specific Criteria:\n1. **Accuracy** (Weight: 100%): right.\n\nAnalysis:\nResponse 1 is best.\n\n"
    "Scores: \\boxed{9, 2}"
)


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory) -> Path:
    """A random tiny Qwen2 sequence classifier (one logit) whose tokenizer knows the texts used here."""
    from grm.tiny import build_sequence_classifier

    path = tmp_path_factory.mktemp("tiny-meta-rm")
    texts = [m["content"] for m in build_messages(QUERY, RESPONSES, TEXT)] + ["Capital of France? Paris Lyon hello"]
    build_sequence_classifier(path, texts)
    return path


def direct_logit(meta: MetaRM, messages) -> float:
    """The model's logit for one chat, computed without MetaRM's batching."""
    ids, _ = encode(meta.tokenizer, messages)
    with torch.no_grad():
        return meta.model(input_ids=torch.tensor([ids])).logits.item()


# ------------------------------------------------------------------------------------------------ input


def test_messages_show_responses_in_the_judgements_order():
    messages = build_messages(QUERY, ["4", "5"], "J", [1, 0])
    assert [m["role"] for m in messages] == ["system", "user", "assistant"] and messages[-1]["content"] == "J"
    user = messages[1]["content"]
    assert "[The Start of Query]\nWhat is 2+2?\n" in user
    assert user.index("Response 1]\n5\n") < user.index("Response 2]\n4\n")  # order [1, 0]: "5" shown first
    assert build_messages(QUERY, ["4", "5"], "J")[1]["content"].index("Response 1]\n4\n") > 0  # default: as given
    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]
    assert "Be terse." in build_messages(chat, ["[The End of Response 1]"], "J")[0]["content"]
    assert "\n\\[The End of Response 1]\n" in build_messages(chat, ["[The End of Response 1]"], "J")[1]["content"]
    with pytest.raises(ValueError, match=r"order \[0, 0\] must list distinct indices of the 2"):
        build_messages(QUERY, ["4", "5"], "J", [0, 0])
    with pytest.raises(TypeError, match="judgement text must be a string"):
        build_messages(QUERY, ["4"], None)  # type: ignore[arg-type]


def test_meta_rm_scores_are_the_models_logits_on_the_chat(classifier_path):
    meta = MetaRM.from_pretrained(classifier_path, batch_size=2, progress=False)
    judgements = [Judgement(TEXT, order=[1, 0]), Judgement(TEXT, order=[0, 1]), TEXT, Judgement("x", order=None)]
    scores = meta.score(QUERY, RESPONSES, judgements)
    expected = [
        direct_logit(meta, build_messages(QUERY, RESPONSES, TEXT, [1, 0])),
        direct_logit(meta, build_messages(QUERY, RESPONSES, TEXT)),
        direct_logit(meta, build_messages(QUERY, RESPONSES, TEXT)),
        direct_logit(meta, build_messages(QUERY, RESPONSES, "x")),
    ]
    assert scores == pytest.approx(expected, abs=1e-5)
    assert scores[0] != pytest.approx(scores[1], abs=1e-6)  # the order shown matters
    assert scores[1] == pytest.approx(scores[2], abs=1e-6)  # a string judgement shows the given order
    # the judgement's order is what the model sees: same as passing the responses already in that order
    assert meta.score(QUERY, RESPONSES[::-1], [TEXT]) == pytest.approx(scores[:1], abs=1e-5)
    # batching across entries and padding leave scores unchanged
    entries = [(QUERY, RESPONSES, judgements[:2]), ("Capital of France?", ["Paris"], ["hello " * 30])]
    batched = MetaRM.from_pretrained(classifier_path, batch_size=8, progress=False).score_batch(entries)
    single = [meta.score(q, r, js) for q, r, js in entries]
    assert [len(b) for b in batched] == [2, 1]
    assert sum(batched, []) == pytest.approx(sum(single, []), abs=1e-5)


def test_meta_rm_cuts_long_inputs_from_the_front(classifier_path, caplog):
    meta = MetaRM.from_pretrained(classifier_path, max_length=12, progress=False)
    ids, cut = encode(meta.tokenizer, build_messages(QUERY, RESPONSES, TEXT))
    with caplog.at_level(logging.WARNING, "grm.meta_rm"):
        (score,) = meta.score(QUERY, RESPONSES, [TEXT])
    assert cut == 0 and len(ids) > 12 and "1 meta RM inputs were longer than 12 tokens" in caplog.text
    with torch.no_grad():
        assert score == pytest.approx(meta.model(input_ids=torch.tensor([ids[-12:]])).logits.item(), abs=1e-5)


def test_meta_rm_checks_its_model_and_uses_a_saved_template(classifier_path, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(classifier_path)
    two = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(classifier_path, num_labels=2))
    with pytest.raises(ValueError, match="num_labels=1, got 2"):
        MetaRM(two, tokenizer)
    assert MetaRM.from_pretrained(classifier_path, progress=False).template.name == "meta_rm"
    saved = tmp_path / "model"
    AutoModelForSequenceClassification.from_pretrained(classifier_path).save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    (saved / TEMPLATE_FILE).write_text("{% block user %}Q: {{ query }}{% endblock %}")
    meta = MetaRM.from_pretrained(saved, progress=False)
    assert build_messages(QUERY, RESPONSES, "J", template=meta.template)[0] == {
        "role": "user",
        "content": "Q: " + QUERY,
    }
    assert meta.score(QUERY, RESPONSES, ["J"]) == pytest.approx(
        [direct_logit(meta, [{"role": "user", "content": "Q: " + QUERY}, {"role": "assistant", "content": "J"}])],
        abs=1e-5,
    )


# ------------------------------------------------------------------------------------------------ dataset


def scripted_grm(fail_after: int | None = None) -> GRM:
    """A GRM that scores each response by its length and writes garbage for queries containing 'q6'."""
    by_length = judge_by(len)
    calls = {"n": 0}

    def script(messages, j):
        return "garbage" if "q6" in messages[-1]["content"] else by_length(messages, j)

    backend = ScriptedBackend(script)
    generate = backend.generate

    def counted(requests):
        calls["n"] += 1
        if fail_after is not None and calls["n"] > fail_after:
            raise RuntimeError("backend died")
        return generate(requests)

    backend.generate = counted  # type: ignore[method-assign]
    return GRM(backend)


EXAMPLES = [
    Example("q0", ["aaa", "b"], [1, 0], id="e0"),  # longest is best: correct
    Example("q1", ["a", "bb", "ccc"], [0, 5, 1]),  # "bb" is best but "ccc" scores higher: incorrect
    Example("q2", ["xxxx"], [4]),  # one response scored 4, truth 4: correct
    Example("q3", ["xx"], [3]),  # scored 2, truth 3: incorrect
    Example("q4", ["a", "b"], [1, 1]),  # no unique best: skipped
    Example("q5", ["a"], [1, 0]),  # truth of the wrong length: skipped
    Example([{"role": "user", "content": "q6"}], ["a", "b"], [0, 1]),  # unparseable judgements: incorrect
]
LABELS = {0: 1, 1: 0, 2: 1, 3: 0, 6: 0}


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_build_dataset_labels_each_judgement_by_the_rule(tmp_path, caplog):
    out = tmp_path / "data.jsonl"
    with caplog.at_level(logging.WARNING, "grm.training.meta_rm"):
        stats = build_dataset(scripted_grm(), EXAMPLES, out, k=3, seed=0, chunk_size=2)
    assert (stats.sampled, stats.skipped, stats.rows, stats.correct) == (5, 2, 15, 6)
    assert "example 4 (id None) skipped" in caplog.text and "no unique best" in caplog.text
    assert "truth has 2 values for 1 responses" in caplog.text
    rows = read(out)
    assert [(r["example"], r["sample"]) for r in rows] == [(e, s) for e in LABELS for s in range(3)]
    for r in rows:
        assert r["key"] == f"{r['example']}:{r['sample']}" and r["label"] == LABELS[r["example"]]
        assert sorted(r["order"]) == list(range(len(r["responses"])))
        if r["example"] == 6:
            assert r["scores"] is None and r["error"] and r["judgement"] == "garbage"
            continue
        assert r["scores"] == [len(x) for x in r["responses"]] and r["error"] is None
        shown = [len(r["responses"][p]) for p in r["order"]]  # the text's box is in the order shown
        assert r["judgement"].endswith("\\boxed{" + ", ".join(map(str, shown)) + "}")
    assert rows[0]["id"] == "e0" and rows[0]["query"] == [{"role": "user", "content": "q0"}]
    assert rows[0]["truth"] == [1.0, 0.0] and rows[3]["responses"] == ["a", "bb", "ccc"]
    assert {tuple(r["order"]) for r in rows if r["example"] == 1} != {(0, 1, 2)}  # shuffled before sampling

    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 15 and ds["label"] == [r["label"] for r in rows] and ds[0]["judgement"] == rows[0]["judgement"]


def test_build_dataset_resumes_without_redoing_work(tmp_path):
    out = tmp_path / "data.jsonl"
    with pytest.raises(RuntimeError, match="backend died"):
        build_dataset(scripted_grm(fail_after=1), EXAMPLES, out, k=2, chunk_size=2)
    assert [r["example"] for r in read(out)] == [0, 0, 1, 1]  # the first chunk was kept

    grm = scripted_grm()
    stats = build_dataset(grm, EXAMPLES, out, k=2, chunk_size=2)
    assert (stats.resumed, stats.sampled, stats.rows) == (2, 3, 6)
    asked = {r.messages[-1]["content"].split("[The Start of Query]\n")[1][:2] for c in grm.backend.calls for r in c}
    assert asked == {"q2", "q3", "q6"}

    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:10])  # a crash: the last row half written
    stats = build_dataset(scripted_grm(), EXAMPLES, out, k=2, chunk_size=2)
    assert (stats.resumed, stats.sampled, stats.rows) == (4, 1, 1)
    rows = read(out)
    assert sorted(r["key"] for r in rows) == sorted(f"{e}:{s}" for e in LABELS for s in range(2))

    stats = build_dataset(scripted_grm(), EXAMPLES, out, k=2)
    assert (stats.resumed, stats.sampled, stats.rows) == (5, 0, 0)
    stats = build_dataset(scripted_grm(), EXAMPLES, out, k=3)  # a larger k adds the missing samples
    assert (stats.resumed, stats.sampled, stats.rows) == (0, 5, 5)
    assert sorted(r["key"] for r in read(out)) == sorted(f"{e}:{s}" for e in LABELS for s in range(3))


def test_build_dataset_records_its_settings_draws_one_seed_and_refuses_a_mismatched_resume(tmp_path, caplog):
    from grm.settings import SettingsMismatch, read_settings

    def seeds(grm):
        return sorted(r.sampling.seed for call in grm.backend.calls for r in call)

    out = tmp_path / "data.jsonl"
    with pytest.raises(RuntimeError, match="backend died"):
        build_dataset(scripted_grm(fail_after=1), EXAMPLES, out, k=2, chunk_size=2)  # unseeded: a seed is drawn
    seed = read_settings(out)["seed"]
    assert isinstance(seed, int) and "temperature" in read_settings(out) and "k" not in read_settings(out)
    resumed = scripted_grm()
    with caplog.at_level(logging.INFO, logger="grm.training.meta_rm"):
        build_dataset(resumed, EXAMPLES, out, k=2, chunk_size=2)
    assert f"seed {seed} (of the run resumed" in caplog.text and read_settings(out)["seed"] == seed
    fresh = scripted_grm()  # the same examples, seeded by hand with the recorded seed: the same requests
    build_dataset(fresh, EXAMPLES, tmp_path / "seeded.jsonl", k=2, chunk_size=2, seed=seed)
    assert set(seeds(resumed)) <= set(seeds(fresh)) and seeds(resumed)

    with pytest.raises(SettingsMismatch, match=r"temperature: .* then, 0.9 now"):
        build_dataset(scripted_grm(), EXAMPLES, out, k=2, temperature=0.9)
    with pytest.raises(SettingsMismatch, match=r"seed: .* then, .* now"):
        build_dataset(scripted_grm(), EXAMPLES, out, k=2, seed=seed + 1)
    assert build_dataset(scripted_grm(), EXAMPLES, out, k=3, seed=seed).rows == 5  # a larger k: more samples


# ------------------------------------------------------------------------------------------------ training


def test_held_out_metrics_by_hand():
    # positives 2.0 and 0.5 against negatives -1.0 and 0.5: 3 pairs won, one tie (half) -> AUC 3.5 / 4;
    # logit > 0 predicts "correct": right on 2.0 and -1.0, wrong on the negative 0.5 -> accuracy 3 / 4
    m = classification_metrics([1, 0, 1, 0], [2.0, -1.0, 0.5, 0.5])
    assert m == {"auc": 0.875, "accuracy": 0.75, "positive_rate": 0.5}
    assert math.isnan(classification_metrics([1, 1], [0.1, 0.2])["auc"])  # one class: no AUC


def test_within_example_auc_by_hand():
    # example 0: its correct judgement outranks its incorrect one (AUC 1); example 1: the reverse (AUC 0);
    # example 2 has only correct judgements (no within AUC). Pooled, the ranking is better than within.
    labels, logits, examples = [1, 0, 1, 0, 1, 1], [3.0, 2.0, 0.0, 1.0, 5.0, 4.0], [0, 0, 1, 1, 2, 2]
    m = classification_metrics(labels, logits, examples=examples)
    assert m["within_auc"] == 0.5 and m["auc"] == 0.75
    assert math.isnan(classification_metrics([1, 1], [0.0, 1.0], examples=[0, 1])["within_auc"])
    with pytest.raises(ValueError, match="3 examples for 2 labels"):
        classification_metrics([1, 0], [0.0, 1.0], examples=[0, 0, 1])


def test_an_auc_that_cannot_be_measured_says_why():
    from grm.training.meta_rm import describe_auc

    assert describe_auc(0.75, 0.5) == "0.7500"
    assert describe_auc(math.nan, 1.0) == "n/a (every held-out judgement is correct)"
    assert describe_auc(math.nan, 0.0) == "n/a (every held-out judgement is incorrect)"
    within = describe_auc(math.nan, 0.5, within=True)
    assert within == "n/a (no held-out example has both correct and incorrect judgements)"
    assert "nan" not in within


def test_pairwise_loss_by_hand():
    class Out:
        logits = torch.tensor([[2.0], [0.0], [1.0], [5.0], [0.0]])

    # (label, example): example 0 has a correct (2.0) and an incorrect (0.0) judgement, example 1 two correct
    # (1.0, 5.0) and one incorrect (0.0); example-crossing pairs (2.0 vs 0.0 of example 1) do not count
    labels = torch.tensor([[1, 0], [0, 0], [1, 1], [1, 1], [0, 1]], dtype=torch.float32)
    nll = [-math.log(1 / (1 + math.exp(-d))) for d in (2.0, 1.0, 5.0)]
    assert pairwise_loss(Out(), labels).item() == pytest.approx(sum(nll) / 3)
    assert pairwise_loss(Out(), labels, torch.tensor(20)).item() == pytest.approx(sum(nll) / 3 / 2)  # accumulation
    same = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1], [1, 2]], dtype=torch.float32)  # no example is mixed
    assert pairwise_loss(Out(), same).item() == 0.0
    both = meta_rm_loss(Out(), labels, objective="both")
    assert both.item() == pytest.approx(pairwise_loss(Out(), labels).item() + bce_loss(Out(), labels).item())
    with pytest.raises(ValueError, match="needs \\(label, example\\) labels"):
        pairwise_loss(Out(), torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]))


def test_bce_loss_by_hand():
    class Out:
        logits = torch.tensor([[0.0], [2.0]])

    labels = torch.tensor([1.0, 0.0])
    a, b = math.log(2), math.log(1 + math.exp(2))  # -log sigmoid(0), -log(1 - sigmoid(2))
    assert bce_loss(Out(), labels).item() == pytest.approx((a + b) / 2)
    assert bce_loss(Out(), labels, pos_weight=3.0).item() == pytest.approx((3 * a + b) / 2)
    assert bce_loss(Out(), labels, torch.tensor(4)).item() == pytest.approx((a + b) / 4)  # gradient accumulation
    with_examples = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # (label, example): the Trainer counts both columns
    assert bce_loss(Out(), with_examples).item() == pytest.approx((a + b) / 2)
    assert bce_loss(Out(), with_examples, torch.tensor(8)).item() == pytest.approx((a + b) / 4)


def test_config_checks_and_yaml_example(tmp_path):
    with pytest.raises(ValueError, match="model_name_or_path is required"):
        MetaRMConfig(output_dir=str(tmp_path), train_file="x.jsonl")
    with pytest.raises(ValueError, match="objective must be one of"):
        MetaRMConfig(output_dir=str(tmp_path), model_name_or_path="m", train_file="x.jsonl", objective="listwise")
    with pytest.raises(ValueError, match=r"eval_fraction must be in \(0, 1\)"):
        MetaRMConfig(output_dir=str(tmp_path), model_name_or_path="m", train_file="x.jsonl", eval_fraction=1.0)
    from trl import TrlParser

    example = Path(__file__).resolve().parents[1] / "training" / "configs" / "meta_rm.yaml"
    (config,) = TrlParser(MetaRMConfig).parse_args_and_config(["--config", str(example), "--learning_rate", "3e-6"])
    assert config.learning_rate == 3e-6 and config.train_file == "meta_rm_data.jsonl" and config.eval_file is None


def hand_rows(n_examples: int) -> list[dict]:
    """Labelled judgement rows like build_dataset's: odd examples' judgements are correct."""
    rows = []
    for e in range(n_examples):
        for s in range(2):
            order = [s, 1 - s]
            rows.append(
                {
                    "key": f"{e}:{s}",
                    "example": e,
                    "sample": s,
                    "query": [{"role": "user", "content": QUERY}],
                    "responses": RESPONSES,
                    "order": order,
                    "judgement": TEXT if e % 2 else "Analysis:\nhello hello.\n\nScores: \\boxed{1, 1}",
                    "label": e % 2,
                }
            )
    return rows


def test_mixed_only_trains_on_the_examples_a_meta_rm_chooses_within(classifier_path, tmp_path, caplog):
    from transformers import AutoTokenizer

    from grm.training.meta_rm import load_splits

    def write(path, rows):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)

    tokenizer = AutoTokenizer.from_pretrained(classifier_path)
    rows = hand_rows(4)
    rows[0]["label"] = 1  # example 0: one correct and one incorrect judgement; the others are all one or the other
    paths = {"train_file": write(tmp_path / "t.jsonl", rows), "eval_file": write(tmp_path / "e.jsonl", hand_rows(2))}
    config = MetaRMConfig(output_dir=str(tmp_path), model_name_or_path=str(classifier_path), **paths)
    assert [len(ds) for ds in load_splits(config, tokenizer)] == [8, 4]
    config.mixed_only = True
    with caplog.at_level(logging.INFO, "grm.training"):
        train, held = load_splits(config, tokenizer)
    assert len(train) == 2 and sorted(label for label, _ in train["labels"]) == [0, 1] and len(held) == 4
    assert "mixed_only: 2 of 8 training judgements kept" in caplog.text
    config.train_file = write(tmp_path / "t.jsonl", hand_rows(4))
    with pytest.raises(ValueError, match="mixed_only: no example of .*t.jsonl has both correct and incorrect"):
        load_splits(config, tokenizer)


def test_pairwise_rows_hold_whole_examples(classifier_path, tmp_path):
    from transformers import AutoTokenizer

    from grm.training.meta_rm import _Collator, load_splits

    rows = hand_rows(3)
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = MetaRMConfig(
        output_dir=str(tmp_path), model_name_or_path=str(classifier_path), train_file=str(tmp_path / "t.jsonl")
    )
    config.objective, config.eval_fraction = "pairwise", 0.34
    train_ds, held = load_splits(config, AutoTokenizer.from_pretrained(classifier_path))
    assert len(train_ds) == 2 and len(held) == 2  # two examples of two judgements each; one example held out whole
    batch = _Collator(0)([train_ds[0], train_ds[1]])
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].shape == (4, 2)
    examples = batch["labels"][:, 1].tolist()
    assert examples[0] == examples[1] and examples[2] == examples[3] and examples[0] != examples[2]


@pytest.mark.slow
def test_pairwise_objective_learns_the_within_example_choice(classifier_path, tmp_path):
    """Every example has one correct and one incorrect judgement: pointwise labels carry no example difficulty,
    and the pairwise loss must learn which of an example's judgements is right."""
    rows = []
    for e in range(8):
        for s, label in enumerate((1, 0)):
            bad = "Analysis:\nhello hello.\n\nScores: \\boxed{1, 1}"
            rows.append(
                {
                    "example": e,
                    "sample": s,
                    "query": [{"role": "user", "content": QUERY}],
                    "responses": RESPONSES,
                    "order": [0, 1],
                    "judgement": TEXT if label else bad,
                    "label": label,
                }
            )
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:12]))
    (tmp_path / "e.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[12:]))
    config = MetaRMConfig(
        output_dir=str(tmp_path / "out"),
        model_name_or_path=str(classifier_path),
        train_file=str(tmp_path / "t.jsonl"),
        eval_file=str(tmp_path / "e.jsonl"),
        objective="pairwise",
        max_steps=15,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_pin_memory=False,
    )
    metrics = train(config)
    assert metrics["eval_within_auc"] == 1.0 and metrics["eval_auc"] == 1.0


@pytest.mark.slow
def test_cli_trains_reports_auc_and_resumes(classifier_path, tmp_path, caplog):
    train_file, eval_file, out = tmp_path / "train.jsonl", tmp_path / "eval.jsonl", tmp_path / "out"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in hand_rows(4)))
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in hand_rows(2)))
    config = tmp_path / "meta_rm.yaml"
    fields = {
        "model_name_or_path": str(classifier_path),
        "train_file": str(train_file),
        "eval_file": str(eval_file),
        "output_dir": str(out),
        "max_steps": 50,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "save_steps": 2,
        "resume_from_checkpoint": "auto",
        "disable_tqdm": True,
        "use_cpu": True,
        "dataloader_pin_memory": False,
    }
    config.write_text(yaml.safe_dump(fields))
    assert main(["train", "meta-rm", "--config", str(config), "--max_steps", "2"]) == 0  # flags override YAML
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    with caplog.at_level(logging.INFO, "grm.training"):
        assert main(["train", "meta-rm", "--config", str(config), "--max_steps", "3"]) == 0
    assert "resuming from" in caplog.text and "checkpoint-2" in caplog.text
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3
    metrics = json.loads((out / "eval_results.json").read_text())
    assert 0 <= metrics["eval_auc"] <= 1 and 0 <= metrics["eval_accuracy"] <= 1 and metrics["eval_positive_rate"] == 0.5
    assert "held-out: AUC" in caplog.text and f"meta RM saved to {out}" in caplog.text
    meta = MetaRM.from_pretrained(out, progress=False)
    assert (out / TEMPLATE_FILE).is_file() and meta.template.name.endswith(TEMPLATE_FILE)
    assert len(meta.score(QUERY, RESPONSES, [TEXT, "x"])) == 2


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_build_train_and_guide_voting_with_a_tiny_grm(memorized_grm_path, tmp_path):
    """Labelled examples -> judgements sampled by a real tiny GRM -> a trained meta RM -> meta-guided voting."""
    labelled = tmp_path / "labelled.jsonl"
    rows = [
        {"query": "What is 2+2?", "responses": ["4", "5"], "truth": [1, 0]},  # the GRM gets these right
        {"prompt": "Say hi.", "response": "hello", "label": 1},  # the GRM scores 8 (template range 1..10): wrong
        {"prompt": "Capital of France?", "responses": ["Lyon", "Paris"], "best": 0},  # the GRM prefers Paris: wrong
    ]
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = tmp_path / "train.jsonl"
    args = ["train", "meta-rm-data", "--model", memorized_grm_path, "--input", str(labelled), "--output", str(data)]
    assert main([*args, "-k", "4", "--seed", "0", "--max-new-tokens", "80"]) == 0
    train_rows = read(data)
    assert [r["label"] for r in train_rows] == [1] * 4 + [0] * 8

    grm = GRM.from_pretrained(memorized_grm_path, max_new_tokens=80, progress=False)
    held_out = [Example("Capital of France?", ["Paris", "Lyon"], [1, 0]), Example("Say hi.", ["hello"], [3])]
    build_dataset(grm, held_out, tmp_path / "eval.jsonl", k=2, seed=1)
    assert [r["label"] for r in read(tmp_path / "eval.jsonl")] == [1, 1, 0, 0]

    config = MetaRMConfig(
        output_dir=str(tmp_path / "meta"),
        model_name_or_path=memorized_grm_path,  # a causal LM: the trainer adds a one-logit head
        train_file=str(data),
        eval_file=str(tmp_path / "eval.jsonl"),
        max_steps=12,
        per_device_train_batch_size=4,
        learning_rate=2e-3,
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_pin_memory=False,
    )
    fixed = [(r["query"], r["responses"], [Judgement(r["judgement"], order=r["order"])]) for r in train_rows]
    labels = torch.tensor([float(r["label"]) for r in train_rows])

    def loss(meta: MetaRM) -> float:
        logits = torch.tensor([s for (s,) in meta.score_batch(fixed)])
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).item()

    from transformers import set_seed

    set_seed(config.seed)  # train() starts from this same initial head
    before = loss(MetaRM(*load_model(config), progress=False))
    metrics = train(config)
    trained = MetaRM.from_pretrained(config.output_dir, progress=False)
    after = loss(trained)
    assert after < before - 0.1, (before, after)
    assert set(metrics) >= {"eval_auc", "eval_accuracy", "eval_loss"}

    for k_meta in (None, 3):
        r = grm.score("What is 2+2?", ["4", "5"], k=4, seed=0, meta_rm=trained, k_meta=k_meta)
        assert r.meta_scores == pytest.approx(trained.score("What is 2+2?", ["4", "5"], r.judgements), abs=1e-5)
        top = top_k_meta(r.meta_scores, k_meta or 2)
        assert r.kept == [i for i in top if r.judgements[i].valid] and r.kept
        assert r.rewards == [sum(r.judgements[i].scores[p] for i in r.kept) for p in range(2)] and r.best == 0
