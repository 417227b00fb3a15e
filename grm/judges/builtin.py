"""The built-in judge formats, each following its public source (see docs/judges.md)."""

from __future__ import annotations

from grm.judges.format import JudgeFormat
from grm.parsing import parse_judgement

SPCT = JudgeFormat(
    "spct",
    "default",
    parse_judgement,
    verdict="pointwise",
    shows="all",
    score_range=(1, 10),
    source="DeepSeek SPCT, arXiv 2504.02495 (output format); prompt in grm's own words",
    description="principles with weights, an analysis, then Scores: \\boxed{s1, ..., sn} (the last box)",
)

BUILTINS: tuple[JudgeFormat, ...] = (SPCT,)
