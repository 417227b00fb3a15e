"""A tiny GRM with a known, position-biased judgement, for RFT and GRPO tests on real trainers.

The model always gives the response shown first 9 and the other 2 (and a lone response 7), so a sampled judgement
is correct exactly when the shuffle showed the best response first: what the trainers do with it is predictable.
It is sharpened (``grm.tiny.sharpen``) so that this holds for samples too: at temperature 0.5 a judgement leaves the
taught text with probability below 1e-9 (about 1e-4 unsharpened; measured), on any machine.
A short template keeps prompts (and so teaching and generation) cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

TEMPLATE = """{#- grm: score_range=1,10 -#}
Judge: {{ query }}
{% for r in responses %}[The Start of Response {{ loop.index }}]
{{ r }}
[The End of Response {{ loop.index }}]
{% endfor %}{% if hint is not none %}Hint: {{ hint }}
{% endif %}"""

PAIRS = [
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"},
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Colour of the sky?", "chosen": "blue", "rejected": "green"},
    {"prompt": "Largest planet?", "chosen": "Jupiter", "rejected": "Mars"},
]


def judgement(scores: list[int]) -> str:
    return f"Analysis:\nThe first is best.\n\nScores: \\boxed{{{', '.join(map(str, scores))}}}"


def build_first_wins_grm(root: Path) -> tuple[Path, Path, Path]:
    """Build the model, its template and a pairs data file under ``root``; return (model, template, data)."""
    from grm.prompts import PromptTemplate
    from grm.tiny import build_causal_lm, save, sharpen, teach

    template = root / "short.j2"
    template.write_text(TEMPLATE, encoding="utf-8")
    tmpl = PromptTemplate.load(template)
    prompts, targets = [], []
    for row in PAIRS:
        for responses in ([row["chosen"], row["rejected"]], [row["rejected"], row["chosen"]]):
            prompts.append(tmpl.render(row["prompt"], responses))
            targets.append(judgement([9, 2]))
        prompts.append(tmpl.render(row["prompt"], [row["chosen"]]))
        targets.append(judgement([7]))
    model, tokenizer = build_causal_lm(root / "model", [m["content"] for p in prompts for m in p] + targets)
    teach(model, tokenizer, prompts, targets, steps=120, lr=3e-3)
    sharpen(model, 2.0)
    save(model, tokenizer, root / "model")
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in PAIRS), encoding="utf-8")
    return root / "model", template, data
