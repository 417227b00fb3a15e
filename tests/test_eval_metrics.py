"""Scoring rules on hand-computed cases: ROC-AUC, RewardBench's official weighting, voting@k by subsampling."""

import math

import numpy as np
import pytest

from grm.eval.metrics import Judged, average_ranks, bootstrap_intervals, roc_auc, vote_values
from grm.eval.rewardbench import EXAMPLE_COUNTS, SUBSET_MAPPING, RewardBench, section_scores
from grm.types import Judgement

PAIR = RewardBench()  # its value(): 1 if the voted best is the true best


def judgement(*scores):
    return Judgement(text="", scores=list(scores)) if scores else Judgement(text="", error="no box")


def test_roc_auc_counts_ties_and_missing_scores_as_half():
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1])) == 0.75  # 3 of 4 pairs ordered
    assert roc_auc(np.array([1, 0, 0]), np.array([0.5, 0.5, 0.1])) == 0.75  # one tie: 1 + 0.5
    assert roc_auc(np.array([1, 1, 0]), np.array([math.nan, 0.8, 0.2])) == 0.75  # unscored item ties with all
    assert roc_auc(np.array([0, 1]), np.array([0.2, 0.9])) == 1.0
    assert roc_auc(np.array([0, 1]), np.array([0.9, 0.2])) == 0.0
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.9])))
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_rewardbench_constants_match_the_official_split():
    # The filtered split has 2985 items; EXAMPLE_COUNTS lists them all, with math-prm's 447 weighted as 984.
    assert sum(EXAMPLE_COUNTS.values()) - 984 + 447 == 2985
    assert EXAMPLE_COUNTS["math-prm"] == 6 * 164  # math weighs as much as the six code subsets together
    assert sorted(s for subsets in SUBSET_MAPPING.values() for s in subsets) == sorted(EXAMPLE_COUNTS)
    assert {sec: sum(EXAMPLE_COUNTS[s] for s in subs) for sec, subs in SUBSET_MAPPING.items()} == {
        "Chat": 358,
        "Chat Hard": 456,
        "Safety": 740,
        "Reasoning": 1968,
    }


def test_section_scores_weight_subsets_by_official_counts():
    acc = {s: 0.0 for s in EXAMPLE_COUNTS}
    acc.update({"alpacaeval-easy": 1.0, "mt-bench-hard": 1.0, "xstest-should-refuse": 1.0, "math-prm": 1.0})
    scores = section_scores(acc)
    assert scores["Chat"] == pytest.approx(100 / 358)
    assert scores["Chat Hard"] == pytest.approx(37 / 456)
    assert scores["Safety"] == pytest.approx(154 / 740)  # should-refuse counts 154, should-respond 250
    assert scores["Reasoning"] == pytest.approx(0.5)  # math-prm (984) against six hep subsets (6 x 164)
    assert scores["overall"] == pytest.approx((100 / 358 + 37 / 456 + 154 / 740 + 0.5) / 4)


def test_section_scores_on_partial_data_and_bad_names():
    scores = section_scores({"math-prm": 1.0, "hep-go": 0.0, "donotanswer": 0.5})
    assert scores == pytest.approx({"Reasoning": 984 / 1148, "Safety": 0.5})  # no overall without all four
    with pytest.raises(ValueError, match="unknown RewardBench subsets \\['hep-cobol'\\]"):
        section_scores({"hep-cobol": 1.0})


def test_voting_at_k_by_subsampling_matches_hand_computed_expectations():
    # Two judgements prefer the true best, one the other response. Voting@3 sums to [19, 11]: always right.
    # Voting@2: {a,b} right, {a,c} and {b,c} tie 10-10 (right half the time) -> 2/3. Voting@1: 2/3.
    item = Judged("s", [1.0, 0.0], [judgement(9, 1), judgement(9, 1), judgement(1, 9)], meta=[0.9, 0.8, 0.1])
    v3 = vote_values([item], PAIR.value, 3, draws=5, seed=0)
    assert v3.tolist() == [[1.0]] * 5
    for k in (1, 2):
        v = vote_values([item], PAIR.value, k, draws=600, seed=0)
        assert set(v.ravel()) == {0.0, 1.0}
        assert v.mean() == pytest.approx(2 / 3, abs=0.06)
    # MetaRM@2 keeping the better-rated judgement of each pair: c is never kept over a or b, so always right.
    meta2 = vote_values([item], PAIR.value, 2, draws=50, seed=0, meta=True, k_meta=1)
    assert meta2.tolist() == [[1.0]] * 50
    assert np.array_equal(vote_values([item], PAIR.value, 2, draws=600, seed=0), v)  # seeded: reproducible


def test_ties_are_broken_at_random_and_unreadable_judgements_lose():
    tie = Judged("s", [1.0, 0.0], [judgement(5, 5)])
    v = vote_values([tie], PAIR.value, 1, draws=400, seed=1)
    assert 0.4 < v.mean() < 0.6
    unreadable = Judged("s", [1.0, 0.0], [judgement(), judgement()])
    assert vote_values([unreadable], PAIR.value, 2, draws=3, seed=0).tolist() == [[0.0]] * 3
    with pytest.raises(ValueError, match="cannot vote 3 samples"):
        vote_values([unreadable], PAIR.value, 3, draws=1, seed=0)


def test_bootstrap_intervals_are_seeded_and_stratified():
    values = np.array([1.0] * 30 + [0.0] * 10 + [1.0] * 5 + [0.0] * 15)
    groups = [np.arange(40), np.arange(40, 60)]

    def summary(index, _copies):
        return {"mean": float(values[index].mean())}

    a = bootstrap_intervals(summary, groups, n=300, seed=3)
    assert a == bootstrap_intervals(summary, groups, n=300, seed=3)
    lo, hi = a["mean"]
    assert lo < values.mean() < hi and hi - lo < 0.4
    assert bootstrap_intervals(summary, [np.arange(30)], n=50, seed=0)["mean"] == (1.0, 1.0)
    assert bootstrap_intervals(summary, groups, n=0, seed=0) == {}


def test_bootstrap_draws_whole_units_and_numbers_each_copy():
    # four units of two items each (a pair judged in both orders); a unit's items always come together, and a unit
    # drawn twice appears as two copies with distinct numbers
    units = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    seen = []

    def summary(index, copies):
        seen.append((index, copies))
        return {"pairs": len(set(copies.tolist()))}

    intervals = bootstrap_intervals(summary, [np.arange(8)], units=units, n=200, seed=5)
    assert intervals["pairs"] == (4.0, 4.0), "every resample holds four unit copies"
    for index, copies in seen:
        assert len(index) == 8 and (units[index][0::2] == units[index][1::2]).all()
        assert (copies[0::2] == copies[1::2]).all() and len(set(copies[0::2].tolist())) == 4
    assert any(len(set(units[index].tolist())) < 4 for index, _ in seen), "some resample draws a unit twice"
    # units keep the stratification: a unit never leaves its group
    strata = bootstrap_intervals(
        lambda index, copies: {"first": float((index < 4).mean())},
        [np.arange(4), np.arange(4, 8)],
        units=units,
        n=50,
        seed=1,
    )
    assert strata["first"] == (0.5, 0.5)


def test_paired_difference_sees_what_unpaired_intervals_miss():
    from grm.metrics import mean_interval, paired_difference

    rng = np.random.default_rng(0)
    before = (rng.random(1000) < 0.6).astype(float)
    after = before.copy()
    flip = rng.choice(np.flatnonzero(before == 0), 40, replace=False)  # 40 items fixed, none broken: +4 points
    after[flip] = 1.0
    a, b = mean_interval(before, seed=1), mean_interval(after, seed=1)
    assert b.mean - a.mean == pytest.approx(0.04) and b.low < a.high  # the unpaired intervals overlap
    d = paired_difference(before, after, seed=1)
    assert d.mean == pytest.approx(0.04) and d.significant and 0.025 < d.low < 0.04 < d.high < 0.055
    noise = paired_difference(before, rng.permutation(before), seed=1)  # same accuracy, other items right
    assert not noise.significant and noise.low < 0 < noise.high
    assert paired_difference(before, after, seed=1) == d  # seeded
    with pytest.raises(ValueError, match="same items on both sides, got 1000 and 3"):
        paired_difference(before, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="one finite value per item"):
        mean_interval([0.5, float("nan")])
