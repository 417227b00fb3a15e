"""Accuracy against generated tokens for each search strategy, on synthetic arithmetic with exact answers.

Problems chain k = 2..7 operations ("Start with 7, then + 3, * 2, - 4. What is the result?"). The policy is
scripted and noisy: each step is a slip with a per-problem probability, and some problems carry a systematic
misconception (a "-" done as "+") that makes wrong samples agree with each other. The verifier is either a
scripted PRM-like scorer (checks each step against the previous one, with noise, and is half fooled by the
misconception; generates no tokens) or a GRM (:class:`grm.search.GRMVerifier` over a scripted judge backend
whose 1..10 scores follow the same noisy check, so its judgement tokens are counted). Everything is seeded:
same arguments, same numbers. Then a compute-optimal table is fitted on separate calibration problems and run
on the test problems. Usage:

    python benchmarks/search.py [--problems 200] [--verifier prm|grm] [--budgets 4 16 64]
"""

from __future__ import annotations

import argparse
import math
import re
import time
import zlib
from collections.abc import Sequence

from grm import GRM, Completion, GenerationRequest
from grm.search import AnswerChecker, GRMVerifier, Policy, Strategy, calibrate, check_results
from grm.search.prm import aggregate
from grm.seeding import rng_for, seeded_rng

D = "\n\n"
_PROBLEM = re.compile(r"Start with (-?\d+), then (.+)\. What is the result\?")
_STEP = re.compile(r"Step (\d+): (-?\d+) ([-+*]) (\d+) = (-?\d+)")
_ANSWER = re.compile(r"The answer is \\boxed\{(-?\d+)\}")
_SHOWN = re.compile(r"^\[The Start of Response (\d+)\]\n(.*?)\n\[The End of Response \1\]$", re.S | re.M)


def _apply(v: int, op: str, x: int) -> int:
    return v + x if op == "+" else v - x if op == "-" else v * x


def _hash(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


def make_problems(count: int, seed: int) -> dict[str, str]:
    """``count`` problems with 2..7 operations -> their exact answers."""
    rng = rng_for(seed)
    out = {}
    while len(out) < count:
        v = rng.randint(1, 9)
        ops = [(rng.choice("+-*"), rng.randint(2, 3)) if rng.random() < 0.25 else (rng.choice("+-"), rng.randint(1, 9))]
        ops += [(rng.choice("+-"), rng.randint(1, 9)) for _ in range(rng.randint(1, 6))]
        rng.shuffle(ops)
        text = f"Start with {v}, then {', '.join(f'{op} {x}' for op, x in ops)}. What is the result?"
        for op, x in ops:
            v = _apply(v, op, x)
        out[text] = str(v)
    return out


def parse(problem: str) -> tuple[int, list[tuple[str, int]]]:
    m = _PROBLEM.fullmatch(problem)
    start, ops = int(m.group(1)), m.group(2).split(", ")
    return start, [(o[0], int(o[2:])) for o in ops]


class NoisyPolicy:
    """A scripted Backend solving the problems step by step, with slips and per-problem misconceptions."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        return [[self._one(r, j) for j in range(r.n)] for r in requests]

    def _one(self, req: GenerationRequest, j: int) -> Completion:
        problem = req.messages[-1]["content"]
        start, ops = parse(problem)
        h = _hash(problem)
        slip = 0.04 + 0.3 * (h % 100) / 100 * len(ops) / 7  # harder for longer chains
        misconception = 0.55 if h % 7 < 2 else 0.0
        rng = seeded_rng(req.sampling.seed, j, req.prefix)
        done = [s for s in req.prefix.split(D) if s]
        v = int(_STEP.match(done[-1]).group(5)) if done else start
        steps = []
        for i in range(len(done), len(ops) + 1):
            if i == len(ops):
                steps.append(f"The answer is \\boxed{{{v}}}")
                break
            op, x = ops[i]
            w = _apply(v, "+" if op == "-" and rng.random() < misconception else op, x)
            if rng.random() < slip:
                w += rng.choice([-3, -2, -1, 1, 2, 3])
            steps.append(f"Step {i + 1}: {v} {op} {x} = {w}")
            v = w
            if req.sampling.stop:
                break
        text = D.join(steps)
        n_tokens = len(text.split()) + 1
        stop = D if req.sampling.stop and not steps[-1].startswith("The answer") else None
        return Completion(text, n_tokens, "stop", stop_string=stop)


class NoisyPRM:
    """A PRM-like scorer: each step is checked against the problem and the previous step, with noise fixed per
    step (the same step always gets the same score); a misconception step fools it half the time. The
    candidate's score is the minimum step probability. It generates no tokens."""

    def __init__(self, sigma: float = 1.5) -> None:
        self.sigma = sigma

    def step_ok(self, problem: str, steps: list[str]) -> list[float]:
        start, ops = parse(problem)
        v, probs = start, []
        for i, step in enumerate(steps):
            rng = rng_for(_hash(problem, steps[: i + 1]))
            m, a = _STEP.fullmatch(step), _ANSWER.fullmatch(step)
            if a:
                logit = 2.5 if int(a.group(1)) == v else -2.5
            elif m and i < len(ops) and int(m.group(2)) == v and (m.group(3), int(m.group(4))) == ops[i]:
                w = int(m.group(5))
                right = _apply(v, *ops[i])
                fooled = ops[i][0] == "-" and w == v + ops[i][1] and rng.random() < 0.5
                logit = 2.5 if w == right or fooled else -2.5
                v = w
            else:
                logit = -4.0
            probs.append(1 / (1 + math.exp(-(logit + rng.gauss(0, self.sigma)))))
        return probs

    def __call__(self, problem: str, candidates: Sequence[str]) -> list[float]:
        return [aggregate(self.step_ok(problem, [s for s in c.split(D) if s]) or [0.0], "min") for c in candidates]


class ScriptedJudge:
    """A GRM backend: scores each shown response 1..10 from the noisy step check plus per-sample noise, and
    writes a short judgement (so the GRM verifier's tokens grow with the number of responses)."""

    def __init__(self, prm: NoisyPRM) -> None:
        self.prm = prm

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        out = []
        for r in requests:
            text = r.messages[-1]["content"]
            problem = text.split("[The Start of Query]\n", 1)[1].split("\n[The End of Query]", 1)[0]
            shown = [m.group(2) for m in _SHOWN.finditer(text)]
            base = self.prm(problem, shown)
            row = []
            for j in range(r.n):
                rng = seeded_rng(r.sampling.seed, j)
                scores = [min(10, max(1, round(1 + 9 * b + rng.gauss(0, 1.0)))) for b in base]
                lines = [
                    f"Response {i + 1} {'holds up' if s > 5 else 'has a faulty step'}." for i, s in enumerate(scores)
                ]
                judgement = (
                    "Specific Criteria:\n1. **Correctness** (Weight: 100%): every step follows from the last.\n\n"
                    f"Analysis:\n{' '.join(lines)}\n\nScores: \\boxed{{{', '.join(map(str, scores))}}}"
                )
                row.append(Completion(judgement, len(judgement.split()), "stop"))
            out.append(row)
        return out


def components(verifier: str, seed: int) -> tuple[Policy, object]:
    """A fresh policy and verifier, seeded alike, so that every strategy meets the same random numbers (the
    searches break ties with the same seed too)."""
    prm = NoisyPRM()
    judge = prm if verifier == "prm" else GRMVerifier(GRM(ScriptedJudge(prm)), k=2, n_max=8, seed=seed)
    return Policy(NoisyPolicy(), temperature=0.8, seed=seed), judge


def measure(runner, problems: list[str], verifier: str, seed: int, check) -> tuple[float, float, float]:
    """Accuracy, mean policy tokens and mean verifier tokens of a Strategy or a ComputeOptimal table."""
    policy, judge = components(verifier, seed)
    results = runner.run(policy, problems, judge, seed=seed, progress=False)
    n = len(results)
    acc = sum(check_results(check, results)) / n
    return acc, sum(r.policy_tokens for r in results) / n, sum(r.verifier_tokens for r in results) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=200, help="test problems (as many again for calibration)")
    ap.add_argument("--verifier", choices=["prm", "grm"], default="prm")
    ap.add_argument("--budgets", type=int, nargs="+", default=[4, 16, 64], help="N; multiples of 4")
    ap.add_argument("--n-probe", type=int, default=4, help="samples per problem to estimate its difficulty")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    test, calib = make_problems(args.problems, args.seed), make_problems(args.problems, args.seed + 1)
    check = AnswerChecker(test | calib, equal=lambda a, b: a == b)
    strategies = [Strategy("best_of_n", 1, "majority")]
    for n in args.budgets:
        strategies += [Strategy("best_of_n", n, s) for s in ("majority", "max", "weighted")]
        strategies += [Strategy("beam_search", n, m=4), Strategy("dvts", n, m=4)]
    print(f"{args.problems} test problems, verifier {args.verifier}")
    print("| strategy | accuracy | policy tokens | verifier tokens |\n|---|---|---|---|")
    t = time.perf_counter()
    rows = {}
    for s in strategies:
        rows[s] = measure(s, list(test), args.verifier, args.seed, check)
        print(f"| {s.label} | {rows[s][0]:.3f} | {rows[s][1]:.0f} | {rows[s][2]:.0f} |")
    reference = Strategy("best_of_n", sorted(args.budgets)[len(args.budgets) // 2], "weighted")
    budget = rows[reference][1] + rows[reference][2]  # fit within the mean tokens of a mid-budget Best-of-N
    policy, verifier = components(args.verifier, args.seed + 1)
    cal = calibrate(
        policy, list(calib), check, verifier, strategies, n_probe=args.n_probe, seed=args.seed, progress=False
    )
    for allocate in ("level", "mean"):
        co = cal.fit(n_levels=3, max_tokens=budget, allocate=allocate)
        acc, pol, ver = measure(co, list(test), args.verifier, args.seed, check)
        print(f"| compute-optimal ({allocate} budget {budget:.0f}, incl. probes) | {acc:.3f} | {pol:.0f} | {ver:.0f} |")
        edges = ", ".join(f"{e:.2f}" for e in co.edges)
        print(f"  levels split at difficulty {edges}: {'; '.join(s.label for s in co.table)}")
    print("Pareto front of the fixed strategies:")
    top = -1.0
    for s, (acc, pol, ver) in sorted(rows.items(), key=lambda kv: (kv[1][1] + kv[1][2], -kv[1][0])):
        if acc > top:
            print(f"  {s.label}: {acc:.3f} at {pol + ver:.0f} tokens")
            top = acc
    print(f"({time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
