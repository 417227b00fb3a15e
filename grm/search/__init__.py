"""GRM as a verifier inside search: a policy proposes, a verifier picks or steers.

Verifiers (any ``(problem, candidates) -> list[float]``; adapters for a GRM, a PRM and answer checkers), search
strategies over a policy served by any grm backend (Best-of-N, beam search, DVTS), what they share
(:class:`SearchOptions`: seed, answer extraction and equality, progress) and compute-optimal selection of strategy
and budget by difficulty. The building blocks (answer voting, PRM step aggregation, difficulty
levels...) are in the submodules: ``answers``, ``options``, ``prm``, ``strategies``, ``optimal``, ``verifiers``.
"""

from grm.search.answers import extract_answer, math_equal
from grm.search.optimal import Calibration, ComputeOptimal, calibrate, check_results
from grm.search.options import SearchOptions
from grm.search.policy import Policy
from grm.search.prm import PRMVerifier
from grm.search.strategies import SearchResult, Strategy, beam_search, best_of_n, dvts
from grm.search.verifiers import AnswerChecker, GRMVerifier, Verification, Verifier

__all__ = [
    "AnswerChecker",
    "Calibration",
    "ComputeOptimal",
    "GRMVerifier",
    "PRMVerifier",
    "Policy",
    "SearchOptions",
    "SearchResult",
    "Strategy",
    "Verification",
    "Verifier",
    "beam_search",
    "best_of_n",
    "calibrate",
    "check_results",
    "dvts",
    "extract_answer",
    "math_equal",
]
