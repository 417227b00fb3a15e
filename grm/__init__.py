"""grm: generative reward models in the style of SPCT (principles, critiques, k-sample voting)."""

from grm.backends import Backend, Completion, GenerationRequest, Sampling
from grm.meta_rm import MetaRM
from grm.model import GRM
from grm.parsing import parse_judgement
from grm.prompts import PromptTemplate, TemplateError
from grm.scoring import ScoringOptions
from grm.types import Example, Item, Judgement, Principle, Reward
from grm.voting import vote

__version__ = "0.1.0"
__all__ = [
    "GRM",
    "Item",
    "ScoringOptions",
    "MetaRM",
    "Backend",
    "Completion",
    "GenerationRequest",
    "Sampling",
    "parse_judgement",
    "PromptTemplate",
    "TemplateError",
    "Example",
    "Judgement",
    "Principle",
    "Reward",
    "vote",
]
