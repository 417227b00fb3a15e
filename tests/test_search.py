"""Search with a verifier, on scripted policies and verifiers whose every pick can be computed by hand."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from grm import GRM, Completion, GenerationRequest, ScoringOptions
from grm.scoring import chunks
from grm.search import (
    AnswerChecker,
    ComputeOptimal,
    GRMVerifier,
    Policy,
    SearchOptions,
    Strategy,
    Verification,
    beam_search,
    best_of_n,
    calibrate,
    dvts,
    extract_answer,
    math_equal,
)
from grm.search.answers import select, tally
from grm.search.optimal import level_edges
from grm.search.prm import aggregate
from grm.seeding import SEED_SPACE, request_seed
from helpers import ScriptedBackend, judge_by, shown_responses

D = "\n\n"


class ScriptedPolicy:
    """A Backend that continues a partial solution with the scripted solutions of its problem.

    ``solutions[problem]`` lists solutions as lists of steps (None: a failed completion). Sample ``j`` of a
    request follows the ``j % count``-th solution (in listed order) whose first steps equal the prefix. With a
    stop string it writes one step (and reports the stop) unless that step is the last; otherwise the rest of
    the solution. ``n_tokens`` is the number of characters written.
    """

    def __init__(self, solutions: dict[str, list[list[str] | None]]) -> None:
        self.solutions = solutions
        self.calls: list[list[GenerationRequest]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        self.calls.append(list(requests))
        return [[self._one(r, j) for j in range(r.n)] for r in requests]

    def _one(self, req: GenerationRequest, j: int) -> Completion:
        done = req.prefix.count(D)
        matching = [
            s
            for s in self.solutions[req.messages[-1]["content"]]
            if s is None or "".join(x + D for x in s[:done]) == req.prefix
        ]
        sol = matching[j % len(matching)]
        if sol is None:
            return Completion("", 0, "error", "scripted failure")
        if D in req.sampling.stop and done < len(sol) - 1:
            return Completion(sol[done], len(sol[done]), "stop", stop_string=D)
        text = D.join(sol[done:])
        return Completion(text, len(text), "stop")


class LastStepVerifier:
    """Scores a candidate by its last step's entry in ``table``; reports one token per candidate rated."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.seen: list[list[str]] = []

    def __call__(self, problem: str, candidates: Sequence[str]) -> list[float]:
        return self.verify_batch([(problem, candidates)])[0].scores

    def verify_batch(self, entries):
        out = []
        for _, cands in entries:
            self.seen.append(list(cands))
            out.append(Verification([self.table[c.rstrip(D).split(D)[-1]] for c in cands], len(cands)))
        return out


# ---- answers and votes -------------------------------------------------------------------------------------------


def test_extract_answer_reads_the_last_box():
    assert extract_answer("first \\boxed{1} then \\boxed{ 2 +  3 }") == "2 + 3"
    assert extract_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("no box") is None and extract_answer("\\boxed{ }") is None


def test_weighted_vote_sums_rewards_per_answer():
    answers = ["4", "5", "4", None, "5", "5"]
    scores = [0.9, 0.2, 0.8, 0.99, 0.3, 0.1]
    weighted = tally(answers, scores)
    assert [(a, round(t, 6), ix) for a, t, ix in weighted] == [("4", 1.7, [0, 2]), ("5", 0.6, [1, 4, 5])]
    assert tally(answers) == [("4", 2.0, [0, 2]), ("5", 3.0, [1, 4, 5])]
    # answers compared by an equivalence join the first group they match
    assert tally(["1/2", "0.5", "2"], [1.0, 2.0, 4.0], equal=math_equal) == [("1/2", 3.0, [0, 1]), ("2", 4.0, [2])]


def test_select_rules_by_hand():
    cands = ["a \\boxed{4}", "b \\boxed{5}", "c \\boxed{4}", "d: no answer", "e \\boxed{5}", "f \\boxed{5}"]
    scores = [0.9, 0.2, 0.8, 0.99, 0.3, 0.1]
    rng = random.Random(0)
    assert select(cands, scores, "max", rng=rng) == 3
    assert select(cands, scores, "weighted", rng=rng) == 0  # 4: 0.9 + 0.8 = 1.7 > 5: 0.6
    assert select(cands, scores, "majority", rng=rng) == 4  # three 5s; their best-scored candidate
    assert select(cands, None, "majority", rng=rng) == 1  # without scores: the first 5
    assert select(["x", "y"], [0.1, 0.7], "weighted", rng=rng) == 1  # no answers: falls back to max
    assert select([], [], "max", rng=rng) is None
    with pytest.raises(ValueError, match="needs verifier scores"):
        select(cands, None, "weighted", rng=rng)
    with pytest.raises(ValueError, match="unknown selection 'best'"):
        select(cands, scores, "best", rng=rng)
    # ties are broken at random, seeded
    picks = {select(["\\boxed{1}", "\\boxed{2}"], [0.5, 0.5], "weighted", rng=random.Random(s)) for s in range(20)}
    assert picks == {0, 1}


def test_answer_checker_uses_math_equivalence():
    check = AnswerChecker({"half?": "1/2"})
    cands = ["so \\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{2}", "no box"]
    assert check("half?", cands) == [1.0, 1.0, 0.0, 0.0]
    assert AnswerChecker({"half?": "1/2"}, equal=lambda a, b: a == b)("half?", cands) == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(KeyError, match="no reference answer for problem 'other'"):
        check("other", cands)


def test_prm_aggregates():
    steps = [0.9, 0.5, 0.8]
    assert aggregate(steps, "last") == 0.8 and aggregate(steps, "min") == 0.5
    assert aggregate(steps, "mean") == pytest.approx(2.2 / 3) and aggregate(steps, "prod") == pytest.approx(0.36)
    with pytest.raises(ValueError, match="unknown aggregate 'max'"):
        aggregate(steps, "max")


# ---- Best-of-N -----------------------------------------------------------------------------------------------------

BON = {
    "Q": [
        ["a \\boxed{4}"],
        ["b \\boxed{5}"],
        None,
        ["c \\boxed{4}"],
        ["d: no answer"],
        ["e \\boxed{5}"],
        ["f \\boxed{5}"],
    ],
    "R": [["only \\boxed{7}"]],
}
BON_SCORES = {
    "a \\boxed{4}": 0.9,
    "b \\boxed{5}": 0.2,
    "c \\boxed{4}": 0.8,
    "d: no answer": 0.99,
    "e \\boxed{5}": 0.3,
    "f \\boxed{5}": 0.1,
    "only \\boxed{7}": 0.5,
}


@pytest.mark.parametrize(
    ("how", "text", "answer"),
    [("max", "d: no answer", None), ("weighted", "a \\boxed{4}", "4"), ("majority", "b \\boxed{5}", "5")],
)
def test_best_of_n_picks_by_hand(how, text, answer):
    backend = ScriptedPolicy(BON)
    verifier = LastStepVerifier(BON_SCORES)
    results = best_of_n(Policy(backend), ["Q", "R"], None if how == "majority" else verifier, n=7, select=how)
    q, r = results
    assert (q.text, q.answer) == (text, answer) and r.answer == "7"
    assert q.strategy == f"best_of_n(n=7,{how})"
    assert len(backend.calls) == 1 and [req.n for req in backend.calls[0]] == [7, 7]
    assert all(req.sampling.stop == () and req.prefix == "" for req in backend.calls[0])
    assert q.n_failed == 1 and len(q.candidates) == 6
    assert q.policy_tokens == sum(len(c) for c in q.candidates)
    if how == "majority":
        assert verifier.seen == [] and q.scores is None and q.verifier_tokens == 0
    else:
        assert q.scores == [BON_SCORES[c] for c in q.candidates] and q.verifier_tokens == 6 and r.verifier_tokens == 7


def test_plain_callable_verifier_and_bad_verifiers():
    policy = Policy(ScriptedPolicy(BON))
    [q] = best_of_n(policy, ["Q"], lambda p, cs: [float(len(c)) for c in cs], n=7, select="max")
    assert q.text == "d: no answer" and q.verifier_tokens == 0  # the longest candidate
    with pytest.raises(ValueError, match="returned 1 scores for 6 candidates"):
        best_of_n(policy, ["Q"], lambda p, cs: [1.0], n=7, select="max")
    with pytest.raises(ValueError, match="non-finite"):
        best_of_n(policy, ["Q"], lambda p, cs: [float("nan")] * len(cs), n=7, select="max")
    with pytest.raises(ValueError, match="needs a verifier"):
        best_of_n(policy, ["Q"], n=2, select="weighted")
    with pytest.raises(TypeError, match="list of strings"):
        best_of_n(policy, "Q", n=2, select="majority")


# ---- beam search and DVTS ------------------------------------------------------------------------------------------

# Two solutions share the first step "x"; DVTS keeps the "y" subtree alive, beam search does not.
TREE = {
    "P": [
        ["x", "a", "\\boxed{1}"],
        ["y", "c", "\\boxed{5}"],
        ["x", "b", "\\boxed{2}"],
        ["z", "d", "\\boxed{3}"],
    ]
}
TREE_SCORES = {"x": 0.9, "y": 0.8, "z": 0.2, "a": 0.3, "b": 0.7, "c": 0.4, "d": 0.1}
TREE_SCORES |= {"\\boxed{1}": 0.5, "\\boxed{2}": 0.6, "\\boxed{5}": 0.95, "\\boxed{3}": 0.1}


def test_beam_search_by_hand():
    backend = ScriptedPolicy(TREE)
    verifier = LastStepVerifier(TREE_SCORES)
    [r] = beam_search(Policy(backend), ["P"], verifier, n=4, m=2, max_steps=5, progress=False)
    # step 1: x .9, y .8, x .9, z .2 -> keep the two x; step 2: x/a .3, x/b .7 twice -> keep both x/b;
    # step 3: every x/b ends in \boxed{2}: the two finished solutions fill the beam.
    assert r.candidates == ["x" + D + "b" + D + "\\boxed{2}"] * 2 and r.answer == "2"
    assert r.scores == [0.6, 0.6] and r.strategy == "beam_search(n=4,m=2,weighted)"
    assert [[(q.prefix, q.n) for q in call] for call in backend.calls] == [
        [("", 4)],
        [("x" + D, 2), ("x" + D, 2)],
        [("x" + D + "b" + D, 2), ("x" + D + "b" + D, 2)],
    ]
    assert all(q.sampling.stop == (D,) for call in backend.calls for q in call)
    assert r.policy_tokens == 4 + 4 + 4 * len("\\boxed{2}") and r.verifier_tokens == 12
    assert verifier.seen[1] == ["x" + D + "a" + D, "x" + D + "b" + D] * 2  # partial solutions are rated


def test_dvts_keeps_subtrees_apart_by_hand():
    backend = ScriptedPolicy(TREE)
    [r] = dvts(Policy(backend), ["P"], LastStepVerifier(TREE_SCORES), n=4, m=2, select="max", progress=False)
    # root samples x, y, x, z go round-robin to subtrees {x, x} and {y, z}; each keeps its best and extends it
    assert sorted(r.candidates) == ["x" + D + "b" + D + "\\boxed{2}", "y" + D + "c" + D + "\\boxed{5}"]
    assert r.answer == "5" and r.text == "y" + D + "c" + D + "\\boxed{5}"
    assert [[q.prefix for q in call] for call in backend.calls] == [
        [""],
        ["x" + D, "y" + D],
        ["x" + D + "b" + D, "y" + D + "c" + D],
    ]
    assert r.policy_tokens == 4 + 4 + 4 * len("\\boxed{2}")


def test_last_step_runs_to_the_end_and_many_problems_share_calls():
    backend = ScriptedPolicy(TREE | {"Q2": [["p", "q", "\\boxed{9}"]]})
    table = TREE_SCORES | {"p": 0.5, "q": 0.5, "\\boxed{9}": 0.5, "b" + D + "\\boxed{2}": 0.6}
    table |= {"q" + D + "\\boxed{9}": 0.5}
    r, r2 = beam_search(Policy(backend), ["P", "Q2"], LastStepVerifier(table), n=4, m=2, max_steps=2, progress=False)
    assert len(backend.calls) == 2  # one backend call per step for both problems
    assert [q.sampling.stop for q in backend.calls[1]] == [()] * 4  # the last step is not cut at a delimiter
    assert r.answer == "2" and r2.answer == "9"


def test_tree_search_arguments_are_checked():
    policy = Policy(ScriptedPolicy(TREE))
    with pytest.raises(ValueError, match="multiple of m"):
        beam_search(policy, ["P"], LastStepVerifier(TREE_SCORES), n=6, m=4)
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        dvts(policy, ["P"], LastStepVerifier(TREE_SCORES), n=4, m=2, max_steps=0)
    with pytest.raises(ValueError, match="unknown search method 'mcts'"):
        Strategy("mcts", 4)


# ---- options and seeds --------------------------------------------------------------------------------------------

FLAT = {k: 0.5 for k in TREE_SCORES}  # every candidate ties: the seed alone decides what is kept and picked
FLAT_BON = {k: 0.5 for k in BON_SCORES}


def picks(results):
    return [(r.text, r.candidates, r.scores) for r in results]


@pytest.mark.parametrize("search", [beam_search, dvts])
def test_an_unseeded_search_records_the_seed_that_repeats_it(search):
    def run(**seed):
        return search(Policy(ScriptedPolicy(TREE)), ["P"] * 8, LastStepVerifier(FLAT), n=4, m=2, progress=False, **seed)

    assert picks(run(seed=0)) != picks(run(seed=1))  # ties are broken by the seed
    first, second = run(), run()
    seed = first[0].seed
    assert isinstance(seed, int) and 0 <= seed < SEED_SPACE and {r.seed for r in first} == {seed}
    assert second[0].seed != seed  # each unseeded call draws afresh
    assert picks(run(seed=seed)) == picks(first) and picks(run(seed=second[0].seed)) == picks(second)
    assert {r.seed for r in run(seed=5)} == {5}


def test_best_of_n_records_its_seed_and_repeats_with_it():
    def run(**seed):
        return best_of_n(Policy(ScriptedPolicy(BON)), ["Q"] * 8, LastStepVerifier(FLAT_BON), n=7, select="max", **seed)

    assert picks(run(seed=0)) != picks(run(seed=1))
    first = run()
    assert picks(run(seed=first[0].seed)) == picks(first) and first[0].to_dict()["seed"] == first[0].seed


def test_search_options_whole_or_as_keywords():
    def first_letter(text):
        return text[0]

    def run(*options, **overrides):
        return dvts(Policy(ScriptedPolicy(TREE)), ["P"] * 4, LastStepVerifier(FLAT), *options, n=4, m=2, **overrides)

    whole = run(SearchOptions(seed=3, answer_of=first_letter, progress=False))
    assert [r.answer for r in whole] == [r.text[0] for r in whole] and {r.seed for r in whole} == {3}
    assert picks(run(seed=3, answer_of=first_letter, progress=False)) == picks(whole)
    overridden = run(SearchOptions(seed=99, progress=False), seed=3, answer_of=first_letter)  # keywords win
    assert picks(overridden) == picks(whole) and [r.answer for r in overridden] == [r.answer for r in whole]
    strategy = Strategy("dvts", 4, m=2)
    via_strategy = strategy.run(Policy(ScriptedPolicy(TREE)), ["P"] * 4, LastStepVerifier(FLAT), seed=3, progress=False)
    assert picks(via_strategy) == picks(whole)


def test_search_options_are_validated():
    policy = Policy(ScriptedPolicy(BON))
    with pytest.raises(TypeError, match=r"unknown search option\(s\) \['sed'\]; the options are seed, answer_of"):
        best_of_n(policy, ["Q"], n=2, select="majority", sed=1)
    with pytest.raises(TypeError, match="options must be a grm.search.SearchOptions, got ScoringOptions"):
        best_of_n(policy, ["Q"], None, ScoringOptions(), n=2, select="majority")
    for bad, match in [
        (dict(seed="1"), "seed must be an integer"),
        (dict(seed=True), "seed must be an integer"),
        (dict(answer_of="last box"), "answer_of must be a function"),
        (dict(equal=1), "equal must be a function"),
        (dict(progress=1), "progress must be True or False"),
    ]:
        with pytest.raises(TypeError, match=match):
            SearchOptions(**bad)
    assert SearchOptions(seed=2).replace(progress=False) == SearchOptions(seed=2, progress=False)
    with pytest.raises(ValueError, match="needs a verifier"):
        beam_search(policy, ["Q"], None, n=4, m=2)


def test_policy_draws_and_keeps_its_seed():
    def request_seeds(policy):
        policy.sample([("Q", "", 2), ("R", "", 1)], step=False)
        return [req.sampling.seed for req in policy.backend.calls[-1]]

    drawn = Policy(ScriptedPolicy(BON))
    assert isinstance(drawn.seed, int) and 0 <= drawn.seed < SEED_SPACE
    assert Policy(ScriptedPolicy(BON)).seed != drawn.seed
    assert request_seeds(Policy(ScriptedPolicy(BON), seed=drawn.seed)) == request_seeds(drawn)
    assert request_seeds(Policy(ScriptedPolicy(BON), seed=0)) == [request_seed(0, 0, 0), request_seed(0, 0, 1)]
    with pytest.raises(TypeError, match="seed must be an integer"):
        Policy(ScriptedPolicy(BON), seed="0")


# ---- GRM verifier --------------------------------------------------------------------------------------------------


def test_chunks_are_balanced_and_cover_everything():
    parts = chunks(7, 3, random.Random(0))
    assert sorted(map(len, parts)) == [2, 2, 3] and sorted(i for p in parts for i in p) == list(range(7))
    assert chunks(3, 8, random.Random(0)) and len(chunks(3, 8, random.Random(0))) == 1
    assert chunks(0, 4, random.Random(0)) == []


def test_grm_verifier_chunks_normalises_and_counts_tokens():
    backend = ScriptedBackend(judge_by(lambda r: int(r[1:])))
    verifier = GRMVerifier(GRM(backend), k=2, n_max=3, seed=1)
    cands = [f"r{s}" for s in range(1, 8)]
    [v] = verifier.verify_batch([("q", cands)])
    assert v.scores == pytest.approx([(s - 1) / 9 for s in range(1, 8)])
    assert v.n_tokens == 3 * 2 * 7 and v.n_failed == 0  # 3 chunks x k=2 judgements x 7 tokens each
    assert len(backend.calls) == 1
    shown = [shown_responses(req.messages) for req in backend.calls[0]]
    assert max(map(len, shown)) <= 3 and {r for s in shown for r in s} == set(cands)
    assert verifier("q", ["r9", "r10"]) == pytest.approx([8 / 9, 1.0])


def test_grm_verifier_draws_and_keeps_a_seed():
    cands = [f"r{s}" for s in range(1, 8)]

    def asked(verifier):
        for _ in range(2):
            verifier.verify_batch([("q", cands), ("q2", cands[:4])])
        calls = verifier.grm.backend.calls
        return [[(req.messages, req.n, req.sampling.seed) for req in call] for call in calls]

    def verifier(**seed):
        return GRMVerifier(GRM(ScriptedBackend(judge_by(lambda r: int(r[1:])))), k=2, n_max=3, **seed)

    drawn = verifier()
    seed = drawn.options.seed
    assert isinstance(seed, int) and 0 <= seed < SEED_SPACE and verifier().options.seed != seed
    assert asked(verifier(seed=seed)) == asked(drawn)  # the same chunks, orders and engine seeds
    assert asked(verifier(seed=0)) != asked(verifier(seed=1))
    assert verifier(seed=0).options.seed == 0


def test_grm_verifier_failed_judgements_and_meta_rm():
    def by_sample(messages, j):  # samples 0 and 1 score a: 8, b: 2; sample 2 scores a: 2, b: 8
        if "broken" in messages[-1]["content"]:
            return "no scores"
        return judge_by(lambda r: (8 if r == "a" else 2) if j < 2 else (2 if r == "a" else 8))(messages, j)

    rm = GRM(ScriptedBackend(by_sample))
    assert GRMVerifier(rm, k=3, shuffle=False)("q", ["a", "b"]) == pytest.approx([5 / 9, 3 / 9])  # means 6, 4

    class TrustsB:  # a meta RM rating highest the judgements that score "b" highest
        def score_batch(self, entries):
            return [[float(j.scores[responses.index("b")]) for j in js] for _, responses, js in entries]

    guided = GRMVerifier(rm, k=3, shuffle=False, meta_rm=TrustsB(), k_meta=1)
    assert guided("q", ["a", "b"]) == pytest.approx([1 / 9, 7 / 9])  # only sample 2 (a: 2, b: 8) is voted

    ok, bad = GRMVerifier(rm, failed_value=-1.0).verify_batch([("fine", ["a", "b"]), ("broken", ["a", "b"])])
    assert sorted(ok.scores) == pytest.approx([1 / 9, 7 / 9]) and ok.n_failed == 0
    assert bad.scores == [-1.0, -1.0] and bad.n_failed == 2 and bad.n_tokens == 7
    with pytest.raises(ValueError, match="n_max must be >= 1"):
        GRMVerifier(rm, n_max=0)


def test_best_of_n_with_a_grm_verifier_end_to_end():
    backend = ScriptedBackend(judge_by(lambda r: 9 if "\\boxed{4}" in r else 3))
    policy = Policy(
        ScriptedPolicy({"What is 2+2?": [["It is \\boxed{5}"], ["It is \\boxed{4}"], ["Maybe \\boxed{5}"]]})
    )
    [r] = best_of_n(policy, ["What is 2+2?"], GRMVerifier(GRM(backend), k=2, n_max=2), n=3, select="weighted")
    # 5: 2/9 + 2/9 = 0.44 < 4: 8/9
    assert r.answer == "4" and r.scores == pytest.approx([2 / 9, 8 / 9, 2 / 9])
    assert r.verifier_tokens == 2 * 2 * 7  # two chunks (2 + 1 candidates), k=2


# ---- compute-optimal -----------------------------------------------------------------------------------------------


def test_level_edges():
    assert level_edges([0.1, 0.2, 0.5, 0.6, 0.9, 0.95], 3) == pytest.approx([0.35, 0.75])
    assert level_edges([0.0, 0.0, 0.0, 1.0], 3) == [0.5]  # no split between equal values
    assert level_edges([0, 0, 0, 0, 0, 0.2, 0.5], 3) == pytest.approx([0.1, 0.35])  # the nearest free splits
    assert level_edges([0.3, 0.3], 4) == []


def test_compute_optimal_table_by_hand(tmp_path):
    cheap, wide, beam = Strategy("best_of_n", 2, "majority"), Strategy("best_of_n", 8), Strategy("beam_search", 8, m=2)
    diff = [0.1, 0.2, 0.5, 0.6, 0.9, 0.95]  # levels 0, 0, 1, 1, 2, 2
    correct = [[1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1]]
    tokens = [[10] * 6, [40] * 6, [50] * 6]
    co = ComputeOptimal.from_outcomes([cheap, wide, beam], diff, correct, tokens, n_levels=3)
    # level 0: all right, cheapest wins; level 1: wide and beam right, wide cheaper; level 2: only beam gets both
    assert co.table == [cheap, wide, beam] and co.edges == pytest.approx([0.35, 0.75])
    assert co.stats[2][wide.label] == {"accuracy": 0.5, "tokens": 40.0, "n": 2}
    assert [co.level(d) for d in (0.0, 0.35, 0.5, 0.8)] == [0, 1, 1, 2]
    budget = ComputeOptimal.from_outcomes([cheap, wide, beam], diff, correct, tokens, n_levels=3, max_tokens=45)
    assert budget.table == [cheap, wide, wide]
    broke = ComputeOptimal.from_outcomes([cheap, wide, beam], diff, correct, tokens, n_levels=3, max_tokens=5)
    assert broke.table == [cheap, cheap, cheap]
    # a mean budget of 30 tokens: (cheap, cheap, beam) costs 140 of 180 and gets 5 right; (cheap, wide, wide) also
    # 5 for 180; anything with beam and wide costs more than 180. Per level, 30 tokens only allow cheap (3 right).
    pooled = ComputeOptimal.from_outcomes(
        [cheap, wide, beam], diff, correct, tokens, n_levels=3, max_tokens=30, allocate="mean"
    )
    assert pooled.table == [cheap, cheap, beam] and pooled.allocate == "mean"
    assert ComputeOptimal.from_outcomes([cheap, wide, beam], diff, correct, tokens, max_tokens=30).table == [cheap] * 3
    assert ComputeOptimal.load(pooled.save(tmp_path / "pooled.json")) == pooled
    path = co.save(tmp_path / "co.json")
    again = ComputeOptimal.load(path)
    assert again == co
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a compute-optimal table"):
        ComputeOptimal.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="one outcome per calibration problem"):
        ComputeOptimal.from_outcomes([cheap], diff, [[1]], [[1]])


COT = {
    "easy 1": [["\\boxed{1}"]],
    "easy 2": [["\\boxed{2}"]],
    "hard 1": [["\\boxed{0}"], ["\\boxed{9}"], ["\\boxed{3}"], ["\\boxed{8}"]],
    "hard 2": [["\\boxed{0}"], ["\\boxed{9}"], ["\\boxed{4}"], ["\\boxed{8}"]],
}
TRUTH = {"easy 1": "1", "easy 2": "2", "hard 1": "3", "hard 2": "4"}


def test_compute_optimal_fit_and_run(tmp_path):
    check = AnswerChecker(TRUTH)
    policy = Policy(ScriptedPolicy(COT))
    cheap, wide = Strategy("best_of_n", 1, "majority"), Strategy("best_of_n", 4, "weighted")
    # the verifier is the checker itself: probes give difficulty 0 (easy) and 0.75 (one right in four)
    co = ComputeOptimal.fit(policy, list(COT), check, check, [cheap, wide], n_levels=2, n_probe=4, progress=False)
    assert co.edges == pytest.approx([0.375]) and co.table == [cheap, wide]
    assert co.stats[1][cheap.label]["accuracy"] == 0.0 and co.stats[1][wide.label]["accuracy"] == 1.0
    co = ComputeOptimal.load(co.save(tmp_path / "table.json"))
    results = co.run(policy, ["hard 2", "easy 1"], check, progress=False)
    assert [r.strategy for r in results] == [wide.label, cheap.label]
    assert [r.answer for r in results] == ["4", "1"] and [r.level for r in results] == [1, 0]
    assert results[0].difficulty == 0.75
    # probe (4 samples of 9 characters) plus the search itself (4 or 1 samples)
    assert results[0].policy_tokens == 4 * 9 + 4 * 9 and results[1].policy_tokens == 4 * 9 + 9


def test_compute_optimal_records_the_calibration_seed(tmp_path):
    check = AnswerChecker(TRUTH)
    cheap, wide = Strategy("best_of_n", 1, "majority"), Strategy("best_of_n", 4, "weighted")
    cal = calibrate(Policy(ScriptedPolicy(COT)), list(COT), check, check, [cheap, wide], SearchOptions(seed=11))
    assert cal.seed == 11 and cal.fit(n_levels=2).seed == 11
    table = ComputeOptimal.fit(Policy(ScriptedPolicy(COT)), list(COT), check, check, [cheap, wide], n_levels=2)
    assert isinstance(table.seed, int) and ComputeOptimal.load(table.save(tmp_path / "t.json")).seed == table.seed
    results = table.run(Policy(ScriptedPolicy(COT)), list(COT), check, seed=4, progress=False)
    assert {r.seed for r in results} == {4}
    assert {r.seed for r in table.run(Policy(ScriptedPolicy(COT)), list(COT), check)} != {4}
