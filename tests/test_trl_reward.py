"""GRMReward: TRL reward-function glue (grouping, normalisation, failures) and a real GRPOTrainer run."""

import pytest

from grm import GRM
from grm.integrations.trl import GRMReward, completion_text
from helpers import MEMORIZED, ScriptedBackend, judge_by, shown_responses


def by_length_rm():
    backend = ScriptedBackend(judge_by(lambda r: min(10, 1 + len(r))))
    return GRM(backend), backend


def test_group_mode_judges_each_prompts_completions_together_in_chunks():
    rm, backend = by_length_rm()
    reward = GRMReward(rm, n_max=3, seed=0)
    prompts = ["p1"] * 4 + ["p2"] * 2
    completions = ["a", "aaaa", "", "aaaaaaaaaaaa", "bb", "b"]
    out = reward(prompts, completions)
    # score = min(10, 1 + len) on 1..10 -> (score - 1) / 9
    assert out == pytest.approx([1 / 9, 4 / 9, 0.0, 1.0, 2 / 9, 1 / 9])
    reqs = backend.calls[0]
    assert len(backend.calls) == 1  # one backend call for the whole TRL batch
    groups = sorted(sorted(shown_responses(r.messages)) for r in reqs)
    assert groups == [["", "a", "aaaa"], ["aaaaaaaaaaaa"], ["b", "bb"]]
    assert reward.__name__ == "grm_group"


def test_pointwise_mode_with_reference_column_and_conversational_inputs():
    rm, backend = by_length_rm()
    reward = GRMReward(rm, mode="pointwise", reference_column="answer")
    prompts = [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q1"}]]
    completions = [[{"role": "assistant", "content": "xyz"}], [{"role": "assistant", "content": "x"}]]
    out = reward(prompts, completions, answer=["ref-1", "ref-2"])
    assert out == pytest.approx([3 / 9, 1 / 9])
    assert [len(shown_responses(r.messages)) for r in backend.calls[0]] == [1, 1]
    assert "ref-2" in backend.calls[0][1].messages[-1]["content"]
    with pytest.raises(KeyError, match="answer"):
        reward(prompts, completions)
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "ab"


def test_unparseable_completions_get_none_and_are_logged():
    rm = GRM(ScriptedBackend(lambda m, j: "I cannot decide."))
    logged = {}
    out = GRMReward(rm, k=2)(["p", "p"], ["a", "b"], log_metric=lambda name, v: logged.__setitem__(name, v))
    assert out == [None, None]
    assert logged == {"grm/unscored": 2.0, "grm/invalid_judgements": 1.0, "grm/judgements_per_item": 2.0}


def test_bad_options():
    rm, _ = by_length_rm()
    with pytest.raises(ValueError, match="mode"):
        GRMReward(rm, mode="pairwise")
    with pytest.raises(ValueError, match="n_max"):
        GRMReward(rm, n_max=0)
    with pytest.raises(ValueError, match="reference_column"):
        GRMReward(rm, reference_column="answer")
    with pytest.raises(ValueError, match="2 prompts but 1"):
        GRMReward(rm)(["a", "b"], ["x"])


@pytest.mark.slow
def test_real_tiny_grm_rewards(memorized_grm_path):
    rm = GRM.from_pretrained(memorized_grm_path, max_new_tokens=80, progress=False)
    q, responses, truth = MEMORIZED[0]
    out = GRMReward(rm, seed=0)([q] * len(responses), responses)
    assert out == pytest.approx([(t - 1) / 9 for t in truth])


@pytest.mark.slow
def test_grpo_trainer_runs_with_grm_reward(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from grm.tiny import build_causal_lm

    questions = [f"Say something about {w}." for w in ("cats", "rain", "tea", "maps")]
    build_causal_lm(tmp_path / "policy", questions + ["a b c d e f g h"])
    rm, backend = by_length_rm()
    reward = GRMReward(rm, seed=0)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in questions])
    config = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        beta=0.04,
        log_completions=True,
    )
    trainer = GRPOTrainer(model=str(tmp_path / "policy"), reward_funcs=reward, args=config, train_dataset=data)
    trainer.train()
    assert reward.calls == 2
    for call in backend.calls:  # each request holds one prompt's group of num_generations completions
        assert [len(shown_responses(r.messages)) for r in call] == [4]
    logged = [h for h in trainer.state.log_history if "rewards/grm_group/mean" in h]
    assert logged and all(0.0 <= h["rewards/grm_group/mean"] <= 1.0 for h in logged)
    import pandas as pd

    tables = sorted((tmp_path / "out" / "completions").glob("*.parquet"))
    table = pd.read_parquet(tables[-1])  # the completions table TRL writes, one row per completion
    assert list(table["grm_critique"]) == ["By length."] * len(table)


def test_async_variant_gives_the_same_rewards_and_is_async_for_trl():
    import asyncio

    from trl.trainer.utils import is_async_callable

    from grm.integrations.trl import AsyncGRMReward

    rm, backend = by_length_rm()
    sync_out = GRMReward(rm, seed=0)(["p"] * 3, ["a", "aaa", ""])
    reward = AsyncGRMReward(rm, seed=0)
    assert is_async_callable(reward) and not is_async_callable(GRMReward(rm))
    assert asyncio.run(reward(["p"] * 3, ["a", "aaa", ""])) == sync_out
    assert reward.__name__ == "grm_group" and reward.calls == 1


def test_critiques_go_to_the_completions_table_through_log_extra():
    rm, _ = by_length_rm()
    extra, metrics = {}, {}
    reward = GRMReward(rm, n_max=2, seed=0, critique_chars=8)
    out = reward(["p"] * 3, ["a", "bb", "c"], log_metric=metrics.__setitem__, log_extra=extra.__setitem__)
    assert len(out) == 3 and extra == {"grm_critique": ["By leng…"] * 3} and "grm/unscored" in metrics
    assert GRMReward(rm)(["p"], ["a"]) == [1 / 9]  # no log_extra (other trainers): nothing logged, same rewards


def test_the_critique_is_the_best_rated_judgement():
    from grm.integrations.trl import critique
    from grm.types import Judgement, Reward

    judgements = [Judgement("t0", analysis="far", scores=[9, 1]), Judgement("t1", analysis="close", scores=[5, 5])]
    judgements.append(Judgement("unread", error="no scores"))
    voted = Reward(rewards=[14, 6], best=0, judgements=judgements, n_valid=2, mean=[7, 3], kept=[0, 1])
    assert critique(voted) == "far"  # closest to the vote (7, 3)
    rated = Reward(**{**voted.__dict__, "meta_scores": [0.1, 0.9, 0.5]})
    assert critique(rated) == "close"  # the meta RM's highest rated
    assert critique(Reward(rewards=None, best=None, judgements=judgements[2:], n_valid=0, mean=None)) == ""


def test_shaping_is_off_by_default_and_applies_within_each_prompts_group():
    rm = GRM(ScriptedBackend(lambda m, j: "unreadable" if "bad" in m[-1]["content"] else judge_by(lambda r: 5)(m, j)))
    prompts, completions = ["p", "p", "q", "bad"], ["a", "aaaa", "z", "x"]
    assert GRMReward(rm)(prompts, completions) == pytest.approx([4 / 9, 4 / 9, 4 / 9, None])
    shaped = GRMReward(rm, length_penalty=0.2, unscored="min")(prompts, completions)
    assert shaped[:3] == pytest.approx([4 / 9, 4 / 9 - 0.2, 4 / 9]) and shaped[3] == 0.0  # no reward in its group
    assert GRMReward(rm, unscored=-1.0)(prompts, completions)[3] == -1.0
    with pytest.raises(ValueError, match="unscored"):
        GRMReward(rm, unscored="max")
