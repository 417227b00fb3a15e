"""User rules: checks of a judgement beyond its final scores, for RFT's rejection and GRPO's reward.

SPCT's rule (:func:`grm.rule.is_correct`) checks only the scores, so a judgement that reaches the right scores
through a wrong analysis passes it. Where more can be checked (a domain with verifiable steps: a computation in the
principles, a verdict per response, a cited fact), a **rule** says whether a judgement passes that check:

    def rule(judgement: grm.Judgement, example: grm.Example) -> bool

``judgement.text`` is what the GRM wrote, ``judgement.scores`` the scores read from it (None if unreadable) in
the example's response order; ``example`` holds the query, the responses and the ground truth. RFT
(``RFTConfig.rule``) keeps a judgement only when it is correct by SPCT's rule **and** passes the user's; GRPO
(``SPCTGRPOConfig.rule``) adds ``rule_weight`` to the reward of a judgement that passes and subtracts it from one
that fails (:class:`RuleReward`, logged as ``rewards/rule_reward/mean``). In a config a rule is named as
``module:function`` (e.g. ``grm.training.synthetic:consistent``, the synthetic task's: no self-contradiction).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from grm.parsing import parse_judgement
from grm.types import Example, Judgement, completion_text

Rule = Callable[[Judgement, Example], bool]
"""A user rule: True when a judgement passes the check."""


def load_rule(spec: str | Rule | None) -> Rule | None:
    """The rule named ``module:function`` (a callable or None is returned as is)."""
    if spec is None or callable(spec):
        return spec
    module, sep, name = str(spec).partition(":")
    if not sep or not module or not name:
        raise ValueError(f"a rule is named 'module:function' (e.g. grm.training.synthetic:consistent), got {spec!r}")
    try:
        rule = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load the rule {spec!r}: {e}") from e
    if not callable(rule):
        raise ValueError(f"the rule {spec!r} is a {type(rule).__name__}, not a function of (judgement, example)")
    return rule


def passes(rule: Rule, judgement: Judgement, example: Example) -> bool:
    """Whether ``judgement`` passes ``rule`` (its answer read as a bool; a rule that raises is an error naming it)."""
    try:
        return bool(rule(judgement, example))
    except Exception as e:
        name = getattr(rule, "__name__", type(rule).__name__)
        raise RuntimeError(f"the rule {name} failed on example {example.id!r}: {type(e).__name__}: {e}") from e


class RuleReward:
    """A user rule as a TRL GRPO reward function: ``+weight`` for a completion that passes it, ``-weight`` for one
    that fails. Reads the ``example`` column (the example as JSON, responses in the order the prompt shows them,
    as :func:`grm.training.grpo.write_prompts` writes it) and the optional ``score_range`` column."""

    __name__ = "rule_reward"  # TRL logs rewards under a reward function's name

    def __init__(self, rule: Rule, weight: float = 1.0) -> None:
        if not weight > 0:
            raise ValueError(f"rule_weight must be > 0, got {weight}")
        self.rule, self.weight = rule, float(weight)

    def __call__(
        self,
        completions: Sequence[Any],
        example: Sequence[str],
        score_range: Sequence[Sequence[int] | None] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float]:
        if len(example) != len(completions):
            raise ValueError(f"got {len(completions)} completions but {len(example)} examples (one per completion)")
        ranges = score_range if score_range is not None else [None] * len(completions)
        rewards = []
        for completion, row, r in zip(completions, example, ranges):
            e = Example.from_dict(json.loads(row))
            kwargs = {"score_range": (int(r[0]), int(r[1]))} if r is not None else {}
            judgement = parse_judgement(completion_text(completion), len(e.responses), **kwargs)
            judgement.order = list(range(len(e.responses)))
            rewards.append(self.weight if passes(self.rule, judgement, e) else -self.weight)
        if log_metric is not None and completions:
            log_metric("rule/pass", sum(r > 0 for r in rewards) / len(rewards))
        return rewards
