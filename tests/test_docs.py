"""Every ```python and ```bash block of README.md and docs/*.md runs as written, offline, in a temporary directory
laid out like the repository root (``examples/`` and ``training/configs/`` copied in), so the docs stay true.

- The python blocks of one page run in order in one namespace, as a reader runs them top to bottom: a block may use
  what an earlier block of its page defined, nothing else.
- In a bash block each ``grm ...`` and ``python ...`` command runs (continued lines joined, ``&&`` chains split) and
  must exit 0, and the file or folder it names with ``--output`` must exist afterwards. Other commands (pip, ray,
  curl, accelerate) are not run, nor ``python -m pytest`` (the test suite itself).
- A block that cannot run offline on a CPU is skipped with its reason: marked in its page by
  ``<!-- doc-test: skip: REASON -->`` on the line above its fence, or listed in ``SKIP`` here.
- A block that is wrong today is listed in ``XFAIL`` (strict: when it is fixed the test fails until the entry
  goes). An entry of either table that matches no block is an error, so the tables stay small and true.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
COPIED = ["examples", "training/configs"]
"""Inputs the docs name relative to the repository root, copied into each page's directory."""
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
"""The snippets' tiny models run on one torch thread: on a shared 2-core machine two threads mostly wait on each
other (docs/performance.md#the-main-job), which made some blocks ten times slower."""
COMMAND_TIMEOUT_S = 1200

HUB = "needs the Hugging Face hub (a hub dataset or model)"
PLACEHOLDER = "names a model or data path placeholder (path/to/..., PATH, my-org/...)"
GPU = "needs GPUs or a vLLM engine"
SERVER = "needs a running OpenAI-compatible server"
CONFIGS = (
    "trains from the shipped configs as they are: rft.yaml names a hub model (Qwen/Qwen2.5-7B-Instruct) and "
    "data/preferences.jsonl, grpo.yaml the runs/rft that RFT writes"
)
PIPELINE = "trains the shipped GRM from scratch: about an hour on 2 cores"

# (page, text the block or command holds) -> why it is not run. Keep it small: only what cannot run offline on a CPU.
SKIP: dict[tuple[str, str], str] = {
    ("README.md", "--input trl-lib/ultrafeedback_binarized"): HUB,
    ("README.md", "grm train rft  --config training/configs/rft.yaml  [--learning_rate"): CONFIGS,
    ("README.md", "grm train grpo --config training/configs/grpo.yaml [--beta"): CONFIGS,
    ("README.md", "grm train meta-rm-data --model path/to/grm"): PLACEHOLDER,
    ("README.md", "grm train meta-rm --config"): PLACEHOLDER,
    ("README.md", "grm train default-grm --config"): PIPELINE,
    ("README.md", "--data allenai/reward-bench"): HUB,
    ("README.md", 'evaluate("rewardbench", "allenai/reward-bench"'): HUB,
    ("docs/cli.md", "--input trl-lib/ultrafeedback_binarized"): HUB,
    ("docs/cli.md", "grm score --model PATH"): PLACEHOLDER,
    ("docs/engines.md", 'device="cuda"'): GPU + "; " + SERVER,
    ("docs/evaluation.md", "--data allenai/reward-bench"): HUB,
    ("docs/evaluation.md", '"path/to/RMB-Reward-Model-Benchmark"'): PLACEHOLDER,
    ("docs/evaluation.md", '"allenai/reward-bench-2"'): HUB,
    ("docs/evaluation.md", "--data seed=1000,n=300 --output runs/diagnose --diagnose"): (
        "scores 300 items and re-scores 200 of them for the diagnostics: over 20 minutes on 2 loaded cores "
        "(tests/test_eval_diagnostics.py runs --diagnose on a few items)"
    ),
    ("docs/judges.md", '"BBQGOD/DeepSeek-GRM-27B", backend="vllm"'): GPU + "; " + HUB,
    ("docs/judges.md", 'GRM.from_openai("http://127.0.0.1:8000/v1", "Qwen/Qwen3-8B"'): SERVER,
    ("docs/meta-rm.md", "--model path/to/grm"): PLACEHOLDER,
    ("docs/meta-rm.md", "--model_name_or_path path/to/base"): PLACEHOLDER,
    ("docs/rl.md", "grm serve --model PATH"): PLACEHOLDER + "; a server that runs until stopped",
    ("docs/scaling-out.md", "--model my-org/my-grm"): GPU + "; " + PLACEHOLDER,
    ("docs/training.md", "grm train rft  --config training/configs/rft.yaml  [--learning_rate"): CONFIGS,
    ("docs/training.md", "grm train grpo --config training/configs/grpo.yaml [--beta"): CONFIGS,
    ("docs/training.md", "--rule mydomain.rules:cites_the_reference"): CONFIGS,
    ("docs/training.md", "grm train default-grm --config"): PIPELINE,
}

# (page, text the block or command holds) -> what is wrong with it today. Strict: a fixed block fails until removed.
XFAIL: dict[tuple[str, str], str] = {}

FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*doc-test:\s*skip:\s*(.+?)\s*-->\s*$")
NOT_RUN = re.compile(r"^(pip|pip3|ray|curl|accelerate|python -m pytest)\b")


@dataclass(frozen=True)
class Snippet:
    """A python block, or one command of a bash block, with the page line it starts on."""

    page: str
    line: int
    kind: str  # "python" or "bash"
    code: str
    marker: str | None  # the reason of a doc-test: skip marker above its block

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def commands(block: str, first_line: int) -> list[tuple[int, str]]:
    """The ``grm`` and ``python`` commands of a bash block, each with its line: comments dropped, continued lines
    joined, ``&&`` chains split, commands that are not run left out."""
    found, pending, start = [], "", 0
    for offset, raw in enumerate(block.splitlines()):
        text = "" if raw.lstrip().startswith("#") else raw.split(" #")[0].strip()
        if not pending:
            start = first_line + offset
        if text.endswith("\\"):
            pending += text.removesuffix("\\").strip() + " "
            continue
        pending += text
        for part in (p.strip() for p in pending.split("&&")):
            if re.match(r"^(grm|python)\b", part) and not NOT_RUN.match(part):
                found.append((start, part))
        pending = ""
    return found


def snippets(page: str) -> list[Snippet]:
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        kind, body, first = fence.group(1), "\n".join(lines[i + 1 : end]), i + 2
        marked = MARKER.match(lines[i - 1]) if i else None
        marker = marked.group(1) if marked else None
        if kind == "python":
            found.append(Snippet(page, first, kind, body, marker))
        elif kind == "bash":
            found += [Snippet(page, line, kind, command, marker) for line, command in commands(body, first)]
        i = end + 1
    return found


ALL = [s for page in PAGES for s in snippets(page)]


def matches(table: dict[tuple[str, str], str], snippet: Snippet) -> list[str]:
    return [reason for (page, text), reason in table.items() if page == snippet.page and text in snippet.code]


def params() -> list:
    out = []
    for s in ALL:
        skip, xfail = s.marker or next(iter(matches(SKIP, s)), None), next(iter(matches(XFAIL, s)), None)
        marks = [pytest.mark.slow]
        if skip:
            marks.append(pytest.mark.skip(reason=skip))
        elif xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=xfail))
        out.append(pytest.param(s, id=s.id, marks=marks))
    return out


def test_every_table_entry_matches_one_snippet_kind_and_no_snippet_is_in_both():
    for table in (SKIP, XFAIL):
        for (page, text), reason in table.items():
            assert page in PAGES, f"{page}: no such page (entry for {text!r})"
            assert any(s.page == page and text in s.code for s in ALL), f"{page}: no block holds {text!r} ({reason})"
    both = [s.id for s in ALL if matches(SKIP, s) and matches(XFAIL, s)]
    assert not both, f"in both SKIP and XFAIL: {both}"
    assert len(ALL) >= 20, "the pages' blocks were not found"


def test_bash_commands_are_split_joined_and_filtered():
    block = "# a comment\npip install . && grm score --input a \\\n    --output b  # note\npython -m pytest -q\nray x"
    assert commands(block, 10) == [(11, "grm score --input a --output b")]
    assert commands("python -c 'print(1)' && curl x", 3) == [(3, "python -c 'print(1)'")]


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    """One directory per page, laid out like the repository root, and one python namespace per page."""
    made: dict[str, tuple[Path, dict, list[int]]] = {}

    def get(page: str) -> tuple[Path, dict, list[int]]:
        if page not in made:
            root = tmp_path_factory.mktemp(page.replace("/", "_").removesuffix(".md"))
            for name in COPIED:
                shutil.copytree(ROOT / name, root / name)
            made[page] = (root, {"__name__": "__main__"}, [])
        return made[page]

    return get


def run_python(snippet: Snippet, namespace: dict, done: list[int]) -> None:
    """Run the page's earlier runnable blocks not run yet (so one block can be run alone), then this one."""
    for earlier in (s for s in ALL if s.page == snippet.page and s.kind == "python" and s.line < snippet.line):
        if earlier.line not in done and not (earlier.marker or matches(SKIP, earlier) or matches(XFAIL, earlier)):
            run_block(earlier, namespace, done)
    run_block(snippet, namespace, done)


def run_block(snippet: Snippet, namespace: dict, done: list[int]) -> None:
    code = compile("\n" * (snippet.line - 1) + snippet.code, str(ROOT / snippet.page), "exec")
    exec(code, namespace)  # noqa: S102 - the docs' own code, the point of this test
    done.append(snippet.line)


def run_command(snippet: Snippet, cwd: Path) -> None:
    argv = shlex.split(snippet.code)
    program = Path(sys.executable).with_name(argv[0])
    argv[0] = sys.executable if argv[0] == "python" else str(program if program.exists() else argv[0])
    env = {**os.environ, **OFFLINE, **ONE_THREAD}
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, f"{snippet.id}: exit {result.returncode}\n{result.stderr[-3000:]}"
    if "--output" in argv:
        output = cwd / argv[argv.index("--output") + 1]
        assert output.exists(), f"{snippet.id}: {output.name} was not written"


@pytest.mark.parametrize("snippet", params())
def test_doc_snippet_runs(snippet: Snippet, workdirs, monkeypatch):
    cwd, namespace, done = workdirs(snippet.page)
    if snippet.kind == "bash":
        run_command(snippet, cwd)
        return
    from huggingface_hub import constants

    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(cwd)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see ONE_THREAD
    try:
        run_python(snippet, namespace, done)
    finally:
        torch.set_num_threads(threads)
