"""Evaluating reward models on benchmarks (imported as ``grm.eval``): RewardBench, RewardBench 2, RM-Bench,
JudgeBench, PPE, RMB, ReaLMistake.

``evaluate`` scores a benchmark with a GRM or a scalar reward function, caching every judgement so an interrupted
run resumes, and optionally diagnoses length, position and prompt-injection bias; ``write_report`` writes JSON,
markdown and voting@k curves.
"""

from grm.eval.base import Benchmark, EvalItem
from grm.eval.benchmarks import BENCHMARKS, get_benchmark
from grm.eval.diagnostics import CHECKS, PAYLOADS, Diagnosis
from grm.eval.report import write_report
from grm.eval.runner import EvalResult, evaluate
from grm.sources import DatasetUnavailable

__all__ = [
    "BENCHMARKS",
    "CHECKS",
    "PAYLOADS",
    "Benchmark",
    "DatasetUnavailable",
    "Diagnosis",
    "EvalItem",
    "EvalResult",
    "evaluate",
    "get_benchmark",
    "write_report",
]
