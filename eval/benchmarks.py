"""The benchmarks ``grm eval`` knows, by name."""

from __future__ import annotations

from grm.eval.base import Benchmark
from grm.eval.judgebench import JudgeBench
from grm.eval.ppe import PPECorrectness, PPEPreference
from grm.eval.realmistake import ReaLMistake
from grm.eval.rewardbench import RewardBench
from grm.eval.rewardbench2 import RewardBench2
from grm.eval.rmb import RMB
from grm.eval.rmbench import RMBench
from grm.eval.synthetic import Synthetic

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        RewardBench(),
        RewardBench2(),
        RMBench(),
        JudgeBench(),
        PPEPreference(),
        PPECorrectness(),
        RMB(),
        ReaLMistake(),
        Synthetic(),
    )
}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (see :data:`BENCHMARKS`)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]
