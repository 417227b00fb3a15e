"""Rule-based online RL: GRPO prompts, the paper's defaults, and real GRPOTrainer runs on a tiny GRM in which
the reward function gets whole groups with the right ground truth; LoRA, the CLI and resuming."""

import json
from pathlib import Path

import pytest
import torch

from grm.training import spct_reward
from grm.training.grpo import SPCTGRPOConfig, make_trainer, reward_functions, write_prompts
from helpers import shown_responses

CPU = dict(use_cpu=True, bf16=False, report_to="none", logging_steps=1, dataloader_num_workers=0)


@pytest.fixture(scope="module")
def first_wins(tmp_path_factory):
    from spct_helpers import build_first_wins_grm

    return build_first_wins_grm(tmp_path_factory.mktemp("first-wins"))


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_defaults_follow_the_paper_and_the_example_config_parses(tmp_path):
    from grm.training.common import parse_config

    config = SPCTGRPOConfig(output_dir=str(tmp_path), use_cpu=True)
    assert config.num_generations == 4 and config.beta == 0.08 and config.max_completion_length is None
    path = Path(__file__).parents[1] / "training" / "configs" / "grpo.yaml"
    config = parse_config(SPCTGRPOConfig, ["--config", str(path), "--output_dir", str(tmp_path), "--beta", "0.04"])
    assert config.beta == 0.04 and config.num_generations == 4 and config.use_peft is True
    assert config.vllm_mode == "colocate"  # TRL's vLLM options pass through
    # the config asks for bf16 and vLLM generation; they are kept only where a GPU can do them
    gpu = torch.cuda.is_available()
    assert config.use_vllm is gpu and config.bf16 is (gpu and torch.cuda.is_bf16_supported())


def test_prompts_hold_the_truth_in_the_shown_order(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                *({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)),
                {"prompt": "tie", "responses": ["a", "b"], "ratings": [2, 2]},
                {"prompt": "one", "responses": ["x"], "ratings": [8]},
            ]
        )
    )
    config = SPCTGRPOConfig(output_dir=str(tmp_path / "out"), model_name_or_path="m", data_path=str(data), use_cpu=True)
    path, stats = write_prompts(config)
    assert stats.to_dict() == {"read": 8, "kept": 7, "rejected": {"no_unique_best": 1}}
    prompts = rows(path)
    assert len(prompts) == 7 and all(p["score_range"] == [1, 10] for p in prompts)
    for p in prompts[:6]:
        shown = shown_responses(p["prompt"])
        assert shown[p["truth"].index(1.0)].startswith("good") and p["truth"] in ([1.0, 0.0], [0.0, 1.0])
    assert {tuple(p["truth"]) for p in prompts[:6]} == {(1.0, 0.0), (0.0, 1.0)}  # shuffled
    assert prompts[6]["truth"] == [8.0] and prompts[6]["id"] == "7"
    for p in prompts:  # the example a user rule sees: responses and truth in the order the prompt shows them
        example = json.loads(p["example"])
        assert example["responses"] == shown_responses(p["prompt"]) and example["truth"] == p["truth"]
    assert json.loads((tmp_path / "out" / "grpo_data" / "load_stats.json").read_text()) == stats.to_dict()


def test_a_rule_adds_a_reward_function_and_curves_need_held_out_data(tmp_path):
    config = SPCTGRPOConfig(output_dir=str(tmp_path), use_cpu=True)
    assert reward_functions(config) == [spct_reward]
    config = SPCTGRPOConfig(output_dir=str(tmp_path), use_cpu=True, rule="grm.training.synthetic:consistent")
    funcs = reward_functions(config)
    assert funcs[0] is spct_reward and funcs[1].__name__ == "rule_reward" and funcs[1].weight == 1.0
    with pytest.raises(ValueError, match="curve_every needs curve_data"):
        SPCTGRPOConfig(output_dir=str(tmp_path), use_cpu=True, curve_every=5)


@pytest.mark.slow
def test_grpo_trainer_runs_and_the_reward_sees_whole_groups(tmp_path, first_wins):
    from spct_helpers import PAIRS

    model, template, data = first_wins
    config = SPCTGRPOConfig(
        output_dir=str(tmp_path),
        model_name_or_path=str(model),
        data_path=str(data),
        template=str(template),
        per_device_train_batch_size=8,  # two prompts' groups of 4 per step
        max_completion_length=24,
        max_steps=2,
        save_strategy="no",
        seed=0,
        **CPU,
    )
    calls = []

    def recorded(prompts, completions, truth, **kwargs):
        rewards = spct_reward(completions, truth, **kwargs)
        calls.append((prompts, completions, truth, kwargs["id"], rewards))
        return rewards

    recorded.__name__ = "spct_reward"
    trainer = make_trainer(config, reward_funcs=recorded)
    trainer.train()
    assert trainer.state.global_step == 2 and len(calls) == 2
    chosen = {p["prompt"]: p["chosen"] for p in PAIRS}
    seen = []
    for prompts, completions, truth, ids, rewards in calls:
        assert len(completions) == 8
        for g in (slice(0, 4), slice(4, 8)):  # consecutive groups of num_generations share prompt and truth
            assert len({json.dumps(p) for p in prompts[g]}) == 1 and len({tuple(t) for t in truth[g]}) == 1
            assert len(set(ids[g])) == 1
            prompt, t = prompts[g][0], truth[g][0]
            query = prompt[-1]["content"].splitlines()[0].removeprefix("Judge: ")
            assert shown_responses(prompt)[t.index(1.0)] == chosen[query]  # truth in the order shown
            seen.append(query)
            for c, r in zip(completions[g], rewards[g]):
                if "\\boxed{9, 2}" in c[0]["content"]:  # the model's usual judgement: the first shown wins
                    assert r == (1.0 if t[0] == 1.0 else -1.0)
    assert sorted(seen) == sorted(chosen)  # one epoch: each prompt once
    logged = [h for h in trainer.state.log_history if "rewards/spct_reward/mean" in h]
    assert len(logged) == 2 and all(-1.0 <= h["rewards/spct_reward/mean"] <= 1.0 for h in logged)
    assert all("spct/unparseable" in h for h in logged) and all("kl" in h for h in logged)


@pytest.mark.slow
def test_grm_train_grpo_with_lora_and_resume(tmp_path, first_wins):
    from grm import GRM
    from grm.cli import main

    model, template, data = first_wins
    out = tmp_path / "out"
    config = tmp_path / "grpo.yaml"
    config.write_text(
        f"model_name_or_path: {model}\ndata_path: {data}\ntemplate: {template}\noutput_dir: {out}\n"
        "use_peft: true\nlora_r: 4\nlora_alpha: 8\nlearning_rate: 1.0e-3\nper_device_train_batch_size: 4\n"
        "max_completion_length: 24\nmax_steps: 1\nsave_steps: 1\nseed: 0\n"
        + "".join(f"{k}: {str(v).lower()}\n" for k, v in CPU.items())
    )
    assert main(["train", "grpo", "--config", str(config)]) == 0
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    assert (out / "checkpoint-1").is_dir()
    assert main(["train", "grpo", "--config", str(config), "--max_steps", "2", "--resume_from_checkpoint", "auto"]) == 0
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2]
    # the adapters load as a GRM (transformers reads the base model from adapter_config.json), with the prompt
    # and budget they were trained with (grm_config.json)
    rm = GRM.from_pretrained(out, progress=False)
    assert rm.template.source == Path(template).read_text() and rm.max_new_tokens == 24
    assert rm.score("Largest planet?", ["Jupiter", "Mars"], shuffle=False).judgements[0].scores == [9, 2]


@pytest.mark.slow
def test_grpo_starts_from_an_rft_adapter_and_records_curves(tmp_path, first_wins, caplog):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grm import GRM
    from grm.assets import write_grm_config
    from grm.training.grpo import run_grpo

    model, template, data = first_wins
    adapter = tmp_path / "rft"  # what `grm train rft` with use_peft saves: an adapter, its tokenizer, its prompt
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(model), lora).save_pretrained(adapter)
    AutoTokenizer.from_pretrained(model).save_pretrained(adapter)
    write_grm_config(adapter, Path(template).read_text(), score_range=(1, 10), max_new_tokens=24)
    for use_peft in (False, True):  # merged into its base and every weight trained, or the adapter trained on
        out = tmp_path / f"grpo-peft-{use_peft}"
        config = SPCTGRPOConfig(
            output_dir=str(out),
            model_name_or_path=str(adapter),
            data_path=str(data),
            use_peft=use_peft,
            per_device_train_batch_size=4,
            max_completion_length=24,
            max_steps=2,
            learning_rate=1e-6,
            save_strategy="no",
            seed=0,
            curve_every=1,
            curve_data=str(data),
            curve_examples=2,
            curve_train_examples=1,
            curve_k=2,
            rule="grm.training.synthetic:consistent",
            **CPU,
        )
        with caplog.at_level("INFO", logger="grm.training.common"):
            trainer = run_grpo(config)
        assert f"GRPO-trained GRM saved to {out}" in caplog.text
        assert (out / "adapter_config.json").exists() is use_peft
        assert (out / "model.safetensors").exists() is not use_peft
        assert any("rewards/rule_reward/mean" in h for h in trainer.state.log_history)
        rm = GRM.from_pretrained(out, progress=False)  # the prompt and budget came along from the adapter
        assert rm.template.source == Path(template).read_text() and rm.max_new_tokens == 24
        assert rm.score("Largest planet?", ["Jupiter", "Mars"], shuffle=False).judgements[0].scores == [9, 2]
        curves = rows(out / "curves.jsonl")
        assert [c["step"] for c in curves] == [0, 1, 2]
        for c in curves:  # the model judges "first shown wins": right on about half the shuffled samples
            assert -1 <= c["heldout_reward"] <= 1 and -1 <= c["train_reward"] <= 1 and 0 <= c["greedy"] <= 1
            assert set(c) >= {"voting@1", "voting@2", "heldout_rule_pass", "seconds"}
