"""Adaptive compute: the exact rule (same best as fixed k, fewer samples), the risk rule, batch budgets, meta RMs."""

import math
import random
import re
from collections import Counter

import pytest

from grm import GRM, ScoringOptions
from grm.integrations.trl import GRMReward
from grm.types import Judgement
from grm.voting import decision_risk, kept_leader_is_safe, kept_so_far, leader_is_safe, t_tail
from helpers import ScriptedBackend, shown_responses

QUERY = re.compile(r"\[The Start of Query\]\n(.*?)\n\[The End of Query\]", re.S)


def boxed(scores):
    return "Scores: \\boxed{" + ", ".join(map(str, scores)) + "}"


def streamed(streams):
    """A backend that gives each query's samples the next scores of its stream (responses in input order)."""
    seen = Counter()

    def script(messages, _):
        q = QUERY.search(messages[-1]["content"]).group(1)
        scores = streams[q][seen[q] % len(streams[q])]
        seen[q] += 1
        return boxed(scores)

    return ScriptedBackend(script), seen


class SlotJudge(ScriptedBackend):
    """Scores each shown response by its quality (from its text: "r<quality>...") plus noise seeded by the query,
    the order shown and how many samples of that order came before: a sample slot gets the same scores whether
    drawn at once or in rounds. ``bad`` is the share of unreadable samples."""

    def __init__(self, noise=1.5, bad=0.0):
        self.counts = Counter()
        super().__init__(self.judge)
        self.noise, self.bad = noise, bad

    def judge(self, messages, _):
        text = messages[-1]["content"]
        shown = shown_responses(messages)
        key = (QUERY.search(text).group(1), *shown)
        rng = random.Random(f"{key}:{self.counts[key]}")
        self.counts[key] += 1
        if rng.random() < self.bad:
            return "no scores today"
        return boxed([min(10, max(1, round(float(r[1:].split()[0]) + rng.gauss(0, self.noise)))) for r in shown])


class SeededJudge(ScriptedBackend):
    """Samples depend only on their engine seed (sample i of a request seeded s uses s + i), as a seeded engine's."""

    def generate(self, requests):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            shown = [float(x[1:].split()[0]) for x in shown_responses(r.messages)]
            rngs = [random.Random(r.sampling.seed + i) for i in range(r.n)]
            out.append([self.completion([min(10, max(1, round(q + g.gauss(0, 2)))) for q in shown]) for g in rngs])
        return out

    @staticmethod
    def completion(scores):
        from grm import Completion

        return Completion(boxed(scores), 5, "stop")


class Rater:
    """A scripted meta RM: a judgement's rating is a seeded function of its text and order; counts its calls."""

    def __init__(self):
        self.calls = []

    def score_batch(self, entries):
        self.calls.append(entries)
        return [[random.Random(f"{j.text}:{j.order}").random() for j in js] for _, _, js in entries]


def noisy_items(n, seed=0, gap=(0, 4)):
    """Items with 2-4 responses ``r<quality> #<i>``: response 0 better than the rest by a random gap."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        base = rng.uniform(3, 7)
        qualities = [base + rng.uniform(*gap)] + [base + rng.uniform(-1, 1) for _ in range(rng.randint(1, 3))]
        items.append((f"item {i}", [f"r{q:.2f} #{r}" for r, q in enumerate(qualities)]))
    return items


def test_leader_is_safe_by_hand():
    js = [Judgement("", scores=[10, 1]), Judgement("", scores=[9, 2]), Judgement("x", error="bad")]
    assert leader_is_safe(js, 2, remaining=1, spread=9)  # margin 16 > 9
    assert not leader_is_safe(js, 2, remaining=2, spread=9)  # margin 16 > 18 fails
    assert not leader_is_safe([Judgement("", scores=[5, 5])], 2, remaining=0, spread=9)  # a tie is not safe
    assert leader_is_safe([], 1, remaining=10, spread=9)


def test_clear_leader_stops_early_with_the_same_best():
    backend, seen = streamed({"q": [[10, 1]]})
    r = GRM(backend).score("q", ["a", "b"], k=32, shuffle=False, seed=0, adaptive=True)
    # after m samples the margin is 9m; stop once 9m > 9(32 - m): m = 20 (rounds of 4)
    assert len(r.judgements) == 20 and seen["q"] == 20 and r.best == 0 and r.n_drawn == 20
    assert r.rewards == [200.0, 20.0] and r.mean == [10.0, 1.0]
    backend, _ = streamed({"q": [[10, 1]]})
    assert GRM(backend).score("q", ["a", "b"], k=32, shuffle=False, seed=0).best == 0


def test_close_race_draws_everything_and_matches_fixed_k():
    stream = [[6, 5], [5, 6], [7, 5], [5, 6]]
    full_backend, _ = streamed({"q": stream})
    full = GRM(full_backend).score("q", ["a", "b"], k=16, shuffle=False, seed=3)
    backend, seen = streamed({"q": stream})
    r = GRM(backend).score("q", ["a", "b"], k=16, shuffle=False, seed=3, adaptive=True)
    assert seen["q"] == 16 and r.best == full.best and r.rewards == full.rewards


def test_batch_rounds_only_carry_undecided_items():
    streams = {"easy": [[10, 1, 1]], "hard": [[5, 6, 5], [6, 5, 5]], "single": [[7]]}
    backend, seen = streamed(streams)
    items = [("easy", ["a", "b", "c"]), ("hard", ["a", "b", "c"]), ("single", ["a"])]
    rs = GRM(backend).score_batch(items, k=8, shuffle=False, seed=1, adaptive=True, adaptive_round=2)
    assert [len(r.judgements) for r in rs] == [6, 8, 2]  # easy: 9m > 9(8 - m) at m = 6; one response: 1 round
    assert seen == {"easy": 6, "hard": 8, "single": 2}
    assert len(backend.calls) == 4  # rounds of 2 until the hard item has all 8
    assert [sum(req.n for req in call) for call in backend.calls] == [6, 4, 4, 2]
    assert rs[0].best == 0


@pytest.mark.parametrize("noise,bad,round_size", [(1.5, 0.0, 4), (3.0, 0.2, 1), (0.5, 0.1, 3)])
def test_the_exact_rule_never_disagrees_with_fixed_k(noise, bad, round_size):
    items = noisy_items(60, seed=round_size, gap=(0, 6))
    fixed = GRM(SlotJudge(noise, bad)).score_batch(items, k=16, seed=5)
    backend = SlotJudge(noise, bad)
    exact = GRM(backend).score_batch(items, k=16, seed=5, adaptive=True, adaptive_round=round_size)
    assert [r.best for r in exact] == [r.best for r in fixed]
    for e, f in zip(exact, fixed):  # the judgements drawn are fixed k's first ones
        assert [j.scores for j in e.judgements] == [j.scores for j in f.judgements[: len(e.judgements)]]
    assert sum(backend.counts.values()) < 16 * len(items)


def test_decision_risk_by_hand():
    clear = [[9, 2]] * 4
    close = [[6, 5], [5, 6], [6, 5], [7, 5]]
    assert decision_risk(clear, 2, final=32, spread=9) < 1e-4
    assert 0.1 < decision_risk(close, 2, final=32, spread=9) < 0.5
    assert decision_risk([[5, 5]], 2, final=32, spread=9) == 1.0  # a tie for the lead
    assert decision_risk([None, None], 2, final=32, spread=9) == 1.0  # nothing readable yet
    assert decision_risk([], 2, final=32, spread=9) == 1.0
    assert decision_risk(close, 2, final=4, spread=9) == 0.0  # nothing left to draw
    assert decision_risk(close, 1, final=32, spread=9) == 0.0  # one response
    # more consistent evidence, less risk; an unreadable vote counts as a zero difference
    assert decision_risk([[7, 5]] * 8, 2, final=32, spread=9) < decision_risk([[7, 5]] * 2, 2, final=32, spread=9)
    assert decision_risk([[7, 5], None], 2, 32, 9) > decision_risk([[7, 5], [7, 5]], 2, 32, 9)
    # three responses: the risks against both rivals add up
    two = decision_risk([[7, 5], [6, 6]], 2, 32, 9)
    assert decision_risk([[7, 5, 5], [6, 6, 6]], 3, 32, 9) == pytest.approx(2 * two)


def test_t_tail_matches_known_quantiles():
    assert t_tail(1.0, 1) == pytest.approx(0.25)
    assert t_tail(2.015048, 5) == pytest.approx(0.05, rel=1e-5)
    assert t_tail(2.457262, 30) == pytest.approx(0.01, rel=1e-5)
    assert t_tail(-2.457262, 30) == pytest.approx(0.99, rel=1e-6)
    assert t_tail(0.0, 3) == 0.5 and 0 < t_tail(1e6, 2) < 1e-11
    assert t_tail(3.0, 1e6) == pytest.approx(0.5 * math.erfc(3 / math.sqrt(2)), rel=1e-4)  # -> normal


def test_the_risk_rule_stops_earlier_on_clear_items_than_on_close_ones():
    items = [("clear", ["r9 a", "r2 b"]), ("close", ["r5.6 a", "r5.4 b"]), ("apart", ["r8 a", "r4 b", "r3 c"])]
    backend = SlotJudge(noise=1.0)
    rs = GRM(backend).score_batch(items, k=32, seed=0, adaptive=True, risk=0.01)
    clear, close, apart = (len(r.judgements) for r in rs)
    assert clear == 4 and apart <= 8 and close == 32  # decided after one or two rounds / never decided
    exact = GRM(SlotJudge(noise=1.0)).score_batch(items, k=32, seed=0, adaptive=True)
    assert [len(r.judgements) for r in exact][0] > clear  # the exact rule needs far more for the same item
    fixed = GRM(SlotJudge(noise=1.0)).score_batch(items, k=32, seed=0)
    assert [r.best for r in rs] == [r.best for r in fixed]


@pytest.mark.slow
def test_the_risk_rule_agrees_with_fixed_k_about_as_often_as_promised():
    items = noisy_items(300, seed=7, gap=(0, 3))
    fixed = [r.best for r in GRM(SlotJudge(2.0)).score_batch(items, k=32, seed=1)]
    spent = {}
    for risk in (0.01, 0.05):
        backend = SlotJudge(2.0)
        rs = GRM(backend).score_batch(items, k=32, seed=1, adaptive=True, risk=risk)
        disagree = sum(r.best != f for r, f in zip(rs, fixed)) / len(items)
        assert disagree <= 2 * risk + 0.01, (risk, disagree)
        spent[risk] = sum(backend.counts.values())
    exact = SlotJudge(2.0)
    GRM(exact).score_batch(items, k=32, seed=1, adaptive=True)
    assert spent[0.05] <= spent[0.01] < 0.75 * sum(exact.counts.values())


def test_risk_and_adaptive_results_do_not_depend_on_the_batch():
    items = noisy_items(12, seed=3)
    options = ScoringOptions(k=16, seed=9, adaptive=True, risk=0.02, adaptive_round=3)
    together = GRM(SeededJudge(None)).score_batch(items, options)
    for i in (0, 5, 11):
        alone = GRM(SeededJudge(None)).score_batch([items[i]], options, keys=[i])[0]
        assert alone == together[i]
    again = GRM(SeededJudge(None)).score_batch(items, options)
    assert again == together  # seeded: reproducible
    assert len({len(r.judgements) for r in together}) > 1  # and some items did stop early


@pytest.mark.parametrize("budget", [6, 20, 37, 0.25, 0.5, 1.0])
def test_budgets_are_never_exceeded(budget):
    items = noisy_items(6, seed=2, gap=(0, 3))
    backend = SlotJudge(noise=2.0, bad=0.25)
    rs = GRM(backend, max_retries=2).score_batch(items, k=16, seed=0, budget=budget, adaptive_round=3)
    limit = budget if isinstance(budget, int) else math.floor(budget * 16 * len(items))
    drawn = sum(req.n for call in backend.calls for req in call)
    assert drawn == sum(r.n_drawn for r in rs) <= limit
    assert all(1 <= len(r.judgements) <= 16 for r in rs)
    assert all(r.n_drawn == len(r.judgements) + r.n_retries for r in rs)


def test_a_budget_goes_to_the_least_settled_items():
    items = [("clear", ["r9 a", "r2 b"]), ("close", ["r5.6 a", "r5.4 b"]), ("clear too", ["r2 a", "r8 b"])]
    rs = GRM(SlotJudge(noise=1.0)).score_batch(items, k=32, seed=0, budget=40)
    assert [len(r.judgements) for r in rs] == [4, 32, 4]
    assert sum(r.n_drawn for r in rs) == 40
    rs = GRM(SlotJudge(noise=1.0)).score_batch(items, k=32, seed=0, budget=24)
    assert [len(r.judgements) for r in rs] == [4, 16, 4]  # the spare goes to the close item only
    seeded = [GRM(SeededJudge(None)).score_batch(items * 3, k=16, seed=4, budget=0.4) for _ in range(2)]
    assert seeded[0] == seeded[1]  # a budgeted run is reproducible too


def test_a_budget_below_one_judgement_per_item_is_refused():
    rm = GRM(SlotJudge())
    with pytest.raises(ValueError, match="a budget of 2 gives 2 judgements, fewer than one per item \\(3\\)"):
        rm.score_batch(noisy_items(3), k=4, budget=2)
    rs = rm.score_batch(noisy_items(3), k=4, budget=3, seed=0)  # one each
    assert [len(r.judgements) for r in rs] == [1, 1, 1]


def test_kept_leader_is_safe_by_hand():
    js = [Judgement("", scores=[10, 1]) for _ in range(7)]
    meta = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    # k=8, k_meta=4: the one still to come may push out the 4th best-rated: 3 * 9 = 27 > 9 either way
    assert kept_leader_is_safe(js, meta, 2, k=8, k_meta=4, spread=9)
    # two to come may push out two: 2 * 9 = 18 is not > 2 * 9
    assert not kept_leader_is_safe(js[:6], meta[:6], 2, k=8, k_meta=4, spread=9)
    assert kept_so_far(meta[:6], 8, 4) == [0, 1, 2]  # round(6 * 4 / 8) = 3 rated highest
    mixed = js[:3] + [Judgement("", scores=[1, 10])] * 4
    assert kept_leader_is_safe(mixed, [0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.6], 2, k=8, k_meta=4, spread=9)
    # kept so far: the two [10, 1] and two [1, 10] rated highest: a tie, nothing decided
    assert not kept_leader_is_safe(mixed, [0.9, 0.8, 0.1, 0.2, 0.3, 0.4, 0.7], 2, k=8, k_meta=4, spread=9)


def test_the_exact_rule_with_a_meta_rm_agrees_with_fixed_k_and_draws_less():
    items = noisy_items(40, seed=4, gap=(3, 7))
    fixed = GRM(SlotJudge(1.0)).score_batch(items, k=16, seed=2, meta_rm=Rater(), k_meta=8)
    backend, rater = SlotJudge(1.0), Rater()
    options = dict(k=16, seed=2, meta_rm=rater, k_meta=8, adaptive=True, adaptive_round=2)
    exact = GRM(backend).score_batch(items, **options)
    assert [r.best for r in exact] == [r.best for r in fixed]
    assert sum(backend.counts.values()) < 16 * len(items)
    assert len(rater.calls) == len(backend.calls)  # one rating step per round, of that round's judgements
    assert all(len(r.meta_scores) == len(r.judgements) for r in exact)
    short = [r for r in exact if len(r.judgements) < 16]
    assert short and all(len(r.kept) == round(len(r.judgements) * 8 / 16) for r in short)


def test_the_risk_rule_with_a_meta_rm_stops_on_clear_items():
    items = [("clear", ["r9 a", "r2 b"]), ("close", ["r5.6 a", "r5.4 b"])]
    rs = GRM(SlotJudge(1.0)).score_batch(items, k=32, seed=0, meta_rm=Rater(), adaptive=True, risk=0.01)
    assert len(rs[0].judgements) < len(rs[1].judgements) and rs[0].best == 0
    assert rs[0].kept and all(rs[0].judgements[i].valid for i in rs[0].kept)


def test_grm_reward_spends_less_on_a_group_clearly_apart():
    reward = GRMReward(GRM(SlotJudge(1.0)), k=16, adaptive=True, risk=0.01, seed=0)
    logged = {}
    prompts = ["apart"] * 2 + ["close"] * 2
    out = reward(prompts, ["r9 a", "r2 b", "r5.6 a", "r5.4 b"], log_metric=lambda n, v: logged.__setitem__(n, v))
    assert out[0] > out[1] and all(x is not None for x in out)
    counts = reward.rm.backend.counts
    apart = sum(n for key, n in counts.items() if key[0] == "apart")
    close = sum(n for key, n in counts.items() if key[0] == "close")
    assert apart == 4 and close == 16 and logged["grm/judgements_per_item"] == 10.0


@pytest.mark.parametrize(
    "options,error,message",
    [
        ({"risk": -0.1, "adaptive": True}, ValueError, "risk must be a number in \\[0, 1\\)"),
        ({"risk": 1, "adaptive": True}, ValueError, "risk must be a number in \\[0, 1\\)"),
        ({"risk": float("nan"), "adaptive": True}, ValueError, "risk must be a number"),
        ({"risk": True, "adaptive": True}, ValueError, "got True"),
        ({"risk": "0.1", "adaptive": True}, ValueError, "got '0.1'"),
        ({"risk": 0.01}, ValueError, "risk applies to adaptive scoring: set adaptive=True"),
        ({"budget": 0}, ValueError, "budget must be >= 1, got 0"),
        ({"budget": -3}, ValueError, "budget must be >= 1"),
        ({"budget": 1.5}, ValueError, "budget must be a whole number of judgements >= 1 or a fraction in \\(0, 1\\]"),
        ({"budget": 0.0}, ValueError, "fraction in \\(0, 1\\]"),
        ({"budget": float("nan")}, ValueError, "got nan"),
        ({"budget": float("inf")}, ValueError, "got inf"),
        ({"budget": True}, ValueError, "got True"),
        ({"budget": "10"}, ValueError, "got '10'"),
        ({"adaptive_round": 0}, ValueError, "adaptive_round must be >= 1"),
    ],
)
def test_adversarial_option_values_get_clear_errors(options, error, message):
    with pytest.raises(error, match=message):
        ScoringOptions(k=8, **options)
    with pytest.raises(error, match=message):
        GRM(SlotJudge()).score("q", ["r1 a", "r2 b"], k=8, **options)


def test_risk_and_budget_accept_numbers_of_any_kind():
    import numpy as np

    o = ScoringOptions(k=8, adaptive=True, risk=np.float32(0.05), budget=np.int64(12))
    assert o.risk == pytest.approx(0.05) and type(o.risk) is float and o.budget == 12 and type(o.budget) is int
    assert ScoringOptions(k=8, budget=0.5, risk=0.1).in_rounds
    assert ScoringOptions(k=8, budget=0.5).budget_for(3) == 12


def test_the_server_takes_adaptive_and_risk_and_refuses_a_budget():
    import httpx
    from servers import AppServer

    from grm.server import create_app

    server = AppServer(create_app(GRM(SlotJudge(1.0))))
    try:
        clear = {"query": "clear", "responses": ["r9 a", "r2 b"], "k": 32, "seed": 0}
        r = httpx.post(f"{server.url}/score", json={**clear, "adaptive": True, "risk": 0.01}).json()
        assert r["best"] == 0 and r["n_drawn"] == len(r["judgements"]) == 4
        exact = httpx.post(f"{server.url}/score", json={**clear, "adaptive": True}).json()
        assert exact["best"] == 0 and 4 < exact["n_drawn"] < 32
        cases = [
            ({**clear, "adaptive": True, "risk": 1.5}, "risk must be a number in [0, 1)"),
            ({**clear, "risk": 0.01}, "risk applies to adaptive scoring"),
            ({**clear, "budget": 10}, "budget is not taken here"),
            ({**clear, "adaptive": True, "risk": "low"}, "risk must be a number"),
        ]
        for body, message in cases:
            response = httpx.post(f"{server.url}/score", json=body)
            assert response.status_code == 400 and message in response.json()["error"], response.text
    finally:
        server.stop()


def test_the_grm_verifier_passes_adaptive_compute_through():
    from grm.search.verifiers import GRMVerifier

    verifier = GRMVerifier(GRM(SlotJudge(1.0)), k=16, adaptive=True, risk=0.01)
    clear, close = verifier.verify_batch([("clear", ["r9 a", "r2 b"]), ("close", ["r5.6 a", "r5.4 b"])])
    assert clear.scores[0] > clear.scores[1] and clear.n_tokens == 4 * 7 < close.n_tokens == 16 * 7
    with pytest.raises(ValueError, match="risk applies to adaptive scoring"):
        GRMVerifier(GRM(SlotJudge()), k=4, risk=0.1)


def test_a_budget_left_over_when_every_item_is_decided_ends_the_call():
    backend, seen = streamed({"a": [[10, 1]], "b": [[1, 10]]})
    items = [("a", ["x", "y"]), ("b", ["x", "y"])]
    rs = GRM(backend).score_batch(items, k=8, shuffle=False, seed=0, budget=16, adaptive=True, risk=0.05)
    assert [r.best for r in rs] == [0, 1] and [len(r.judgements) for r in rs] == [4, 4] and sum(seen.values()) == 8


@pytest.mark.parametrize("budget", [0.5, 20])
def test_grm_reward_keeps_its_budget_and_spends_it_on_close_groups(budget):
    backend = SlotJudge(1.0)
    reward = GRMReward(GRM(backend), k=16, budget=budget, seed=0)
    prompts = ["apart"] * 2 + ["close"] * 2 + ["wide"] * 2
    completions = ["r9 a", "r2 b", "r5.6 a", "r5.4 b", "r8 a", "r3 b"]
    limit = budget if isinstance(budget, int) else math.floor(budget * 16 * 3)
    logged = {}
    for _ in range(3):  # every call keeps the budget
        before = Counter(backend.counts)
        out = reward(prompts, completions, log_metric=logged.__setitem__)
        spent = Counter({group: 0 for group in ("apart", "close", "wide")})
        for key, n in (backend.counts - before).items():
            spent[key[0]] += n
        assert sum(spent.values()) <= limit and logged["grm/judgements_per_item"] == sum(spent.values()) / 3
        assert spent["apart"] < spent["close"] and spent["wide"] < spent["close"], spent
        assert out[0] > out[1] and out[4] > out[5]
