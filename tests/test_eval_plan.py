"""``grm.eval.plan``: an evaluation's settings checked before any data is read or any scorer called."""

import pytest
from eval_helpers import marker_grm, marker_scalar

from grm import GRM, ScoringOptions
from grm.eval.plan import plan_evaluation


class Untouchable:
    """A backend that fails the test if anything calls it: planning scores nothing."""

    def generate(self, requests):
        raise AssertionError("planning called the backend")


def test_a_plan_resolves_the_options_and_calls_nothing():
    plan = plan_evaluation("rewardbench", GRM(Untouchable()), ScoringOptions(k=4), {"temperature": 0.7}, draws=3)
    assert (plan.bench.name, plan.k, plan.options.temperature) == ("rewardbench", 4, 0.7)
    assert plan.grm and not plan.rated
    assert plan.options.shuffle and not plan.adaptive and plan.draws == 3 and plan.checks == ()
    assert plan_evaluation("rewardbench", GRM(Untouchable()), None, {"budget": 0.5}).adaptive


def test_the_seed_is_set_once_and_read_only_after():
    plan = plan_evaluation("rmb", marker_grm(), ScoringOptions(k=2, seed=None))
    with pytest.raises(ValueError, match="no seed yet"):
        _ = plan.seed
    seeded = plan.seeded(7)
    assert seeded.seed == 7 and seeded.options.k == 2 and plan.options.seed is None, "seeded() is a copy"


def test_a_fixed_order_benchmark_turns_shuffling_off_and_refuses_it_asked_for():
    assert not plan_evaluation("judgebench", marker_grm(), ScoringOptions(k=2)).options.shuffle
    with pytest.raises(ValueError, match="judgebench shows the responses in a fixed order: shuffle must be off"):
        plan_evaluation("judgebench", marker_grm(), None, {"shuffle": True})
    assert plan_evaluation("judgebench", marker_scalar).options.shuffle, "a scalar function shuffles nothing"


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"overrides": {"k": 2}, "scorer": marker_scalar}, "k must be >= 1 for a GRM and 1 for a scalar"),
        ({"overrides": {"max_retries": 1}, "scorer": marker_scalar}, r"options \['max_retries'\] apply to a GRM only"),
        ({"rated": True, "scorer": marker_scalar}, "meta_rm needs a GRM scorer"),
        ({"draws": 0}, "draws and chunk_size must be >= 1, got 0 and 32"),
        ({"chunk_size": 0}, "draws and chunk_size must be >= 1, got 8 and 0"),
        ({"diagnose": "position", "diagnose_sample": 0}, "diagnose_sample must be >= 1, got 0"),
        ({"diagnose": "lenght"}, r"unknown diagnostics \['lenght'\]"),
        ({"overrides": {"risk": 0.1}}, "risk applies to adaptive scoring"),
    ],
)
def test_bad_settings_are_refused_naming_them(kw, message):
    kw = {"scorer": marker_grm(), **kw}
    scorer, overrides = kw.pop("scorer"), kw.pop("overrides", {})
    with pytest.raises(ValueError, match=message):
        plan_evaluation("rewardbench", scorer, None, overrides, **kw)


def test_a_length_only_diagnosis_samples_nothing_and_its_sample_size_may_be_anything():
    plan = plan_evaluation("rewardbench", marker_grm(), diagnose="length", diagnose_sample=0)
    assert plan.checks == ("length",) and plan.sample_size == 0
    assert plan_evaluation("rewardbench", marker_grm(), diagnose="injection,length").sample_size == 100


def test_the_config_records_every_option_and_the_diagnostics_asked_for():
    plan = plan_evaluation("rmb", marker_grm(), ScoringOptions(k=2, seed=5), diagnose="position", diagnose_sample=9)
    config = plan.config("data.jsonl", split="test", name=None, limit=3)
    assert config["benchmark"] == "rmb" and config["scorer"] == "grm" and config["data"] == "data.jsonl"
    assert {key: config[key] for key in ("k", "seed", "shuffle", "budget", "split", "limit")} == {
        "k": 2,
        "seed": 5,
        "shuffle": True,
        "budget": None,
        "split": "test",
        "limit": 3,
    }
    assert config["diagnose"] == ["position"] and config["diagnose_sample"] == 9
    assert "diagnose" not in plan_evaluation("rmb", marker_grm()).config("d", split=None, name=None, limit=None)
