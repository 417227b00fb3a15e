"""Build tiny local models with no hub access: for tests, demos and benchmarks.

The models load through the same ``from_pretrained`` code a user hits. Their output is meaningless unless
trained (see :func:`teach`), which makes them emit a fixed text for any prompt in a few seconds on a CPU. This is
scaffolding in the apps layer: it builds on the library (templates, parsing, the PRM reader of ``grm.search``), and
nothing in the library depends on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from grm.seeding import seed_torch

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1000):
    """A Qwen2 byte-level BPE tokenizer trained on ``texts``, with a ChatML chat template; EOS is ``<|im_end|>``.

    It is a real ``Qwen2Tokenizer``, so ``AutoTokenizer`` reloads it with the same pre-tokenization.
    """
    import json

    from tokenizers import pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    blank = Qwen2Tokenizer()._tokenizer  # Qwen2's normalizer and pre-tokenizer, empty vocabulary
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    blank.train_from_iterator(list(texts), trainer)
    bpe = json.loads(blank.to_str())["model"]
    return Qwen2Tokenizer(
        vocab=bpe["vocab"],
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in bpe["merges"]],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
        model_max_length=4096,
    )


def qwen2_config(vocab_size: int, *, hidden: int = 128, layers: int = 2, heads: int = 2, max_positions: int = 4096):
    """A small Qwen2 config (head dim = hidden / heads; keep it >= 64 for vLLM's CPU attention)."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
    )


def build_causal_lm(path: str | Path, texts: Iterable[str], *, seed: int = 0, **config_kwargs):
    """Build, save and return ``(model, tokenizer)`` for a random tiny Qwen2 causal LM at ``path``."""
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer(texts)
    seed_torch(seed)
    config = qwen2_config(len(tokenizer), **config_kwargs)
    config.eos_token_id, config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save(model, tokenizer, path)
    return model, tokenizer


def build_sequence_classifier(path: str | Path, texts: Iterable[str], *, seed: int = 0, **config_kwargs):
    """Build, save and return ``(model, tokenizer)`` for a random tiny Qwen2 classifier with one logit (a meta RM)."""
    from transformers import AutoModelForSequenceClassification

    tokenizer = build_tokenizer(texts)
    seed_torch(seed)
    config = qwen2_config(len(tokenizer), **config_kwargs)
    config.num_labels, config.pad_token_id = 1, tokenizer.pad_token_id
    model = AutoModelForSequenceClassification.from_config(config)
    save(model, tokenizer, path)
    return model, tokenizer


def save(model, tokenizer, path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def teach(
    model,
    tokenizer,
    prompts: Sequence[list[dict[str, str]]],
    targets: Sequence[str],
    *,
    steps: int = 60,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` to answer each chat prompt with its target (loss on the target and EOS only).

    Returns the loss per step. Enough steps make a random tiny model emit the targets almost surely.
    """
    if len(prompts) != len(targets) or not prompts:
        raise ValueError(f"need as many targets as prompts (>0), got {len(prompts)} and {len(targets)}")
    seed_torch(seed)
    rows = []
    for messages, target in zip(prompts, targets):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        p = tokenizer(text, add_special_tokens=False)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((p + t, [-100] * len(p) + t))
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [tokenizer.pad_token_id] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(r[0]) for r in rows])[:, None]).long()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def sharpen(model, factor: float) -> None:
    """Multiply a tiny Qwen2 model's logits by ``factor`` (through its final norm's weight), in place.

    Greedy decoding is unchanged; sampling at temperature ``T`` then draws as the unsharpened model would at
    ``T / factor``, so a taught model stays on its targets when sampled.
    """
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    with torch.no_grad():
        model.model.norm.weight.mul_(factor)


def build_memorized_grm(
    path: str | Path,
    items: Sequence[tuple[str, Sequence[str], Sequence[int]]],
    *,
    steps: int = 200,
    lr: float = 3e-3,
    template: str = "default",
    seed: int = 0,
    sharpness: float = 2.0,
) -> Path:
    """Build a tiny GRM at ``path`` that has memorized how to judge ``items`` = (query, responses, scores).

    It is taught every response order of every item, so it gives each response its given score wherever the
    shuffle puts it. It knows nothing else: on any other input its output is meaningless. Its logits are then
    multiplied by ``sharpness`` (:func:`sharpen`) so that samples repeat the memorized judgements too: at
    temperature 0.5 one leaves them with probability below 1e-10 (about 4e-5 unsharpened; measured).
    """
    from grm.parsing import format_judgement
    from grm.prompts import PromptTemplate
    from grm.types import Principle

    tmpl = PromptTemplate.load(template)
    principles = [Principle("Accuracy", 1.0, "the answer is right.")]
    prompts, targets = [], []
    for query, responses, scores in items:
        for order in itertools.permutations(range(len(responses))):
            prompts.append(tmpl.render(query, [responses[i] for i in order]))
            best = max(range(len(order)), key=lambda p: scores[order[p]])
            analysis = f"Response {best + 1} is best."
            targets.append(format_judgement(principles, analysis, [scores[i] for i in order]))
    texts = [m["content"] for p in prompts for m in p] + targets
    model, tokenizer = build_causal_lm(path, texts, seed=seed)
    teach(model, tokenizer, prompts, targets, steps=steps, seed=seed, lr=lr)
    sharpen(model, sharpness)
    return save(model, tokenizer, path)


def build_tiny_prm(
    path: str | Path,
    examples: Sequence[tuple[str, Sequence[str], Sequence[bool]]],
    *,
    head: str = "causal",
    step_tag: str = "<step>",
    steps: int = 60,
    lr: float = 3e-3,
    seed: int = 0,
) -> Path:
    """Build a tiny PRM at ``path`` taught to rate the steps of ``examples`` = (problem, steps, good per step).

    The step tag is added to the tokenizer as a special token. ``head`` is ``causal`` (read ``+``/``-`` after
    each tag) or ``token_classification`` (two labels, 1 = good): load it back with
    ``PRMVerifier.from_pretrained(path, head=head, step_tag=step_tag)``, the convention it was trained in.
    """
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    from grm.search.prm import HEADS, PRMVerifier

    if head not in HEADS:
        raise ValueError(f"unknown PRM head {head!r}; expected one of {', '.join(HEADS)}")
    for problem, ss, goods in examples:
        if len(ss) != len(goods) or not ss:
            raise ValueError(
                f"need one label per step (>0) for {problem!r:.60}, got {len(ss)} steps, {len(goods)} labels"
            )
    texts = [p for p, _, _ in examples] + [s for _, ss, _ in examples for s in ss] + ["+", "-"]
    tokenizer = build_tokenizer(texts)
    tokenizer.add_tokens([step_tag], special_tokens=True)
    seed_torch(seed)
    config = qwen2_config(len(tokenizer))
    config.pad_token_id = tokenizer.pad_token_id
    if head == "causal":
        model = AutoModelForCausalLM.from_config(config)
    else:
        config.num_labels = 2
        model = AutoModelForTokenClassification.from_config(config)
    prm = PRMVerifier(model, tokenizer, head=head, step_tag=step_tag)
    encoded = [prm.encode(problem, ss) for problem, ss, _ in examples]
    labels = torch.tensor([0 if good else 1 for _, _, goods in examples for good in goods])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.nll_loss(prm.step_log_probs(encoded), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return save(model, tokenizer, path)
