"""The small recipe of docs/training.md, at a smaller size: RFT on the shipped GRM -> GRPO from RFT's LoRA adapter
(with the synthetic task's rule) -> meta-RM data from the GRPO model -> a meta RM, each through `grm train` with
the shipped configs as written (on a CPU) plus the recipe's flags."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training" / "configs"


def recipe_commands() -> list[list[str]]:
    """The recipe's `grm train` commands as docs/training.md gives them (continued lines joined)."""
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    block = text.split("## A small recipe", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.split()[2:] for line in joined.splitlines() if line.startswith("grm train ")]


@pytest.mark.slow
def test_the_recipe_trains_every_stage_on_the_shipped_grm(tmp_path, monkeypatch, caplog):
    from grm import GRM, MetaRM
    from grm.assets import default_grm_path
    from grm.cli import main
    from grm.synthetic import make_examples, write_examples

    monkeypatch.chdir(tmp_path)
    (tmp_path / "training").symlink_to(ROOT / "training")
    write_examples("recipe/train.jsonl", make_examples(8, 7))
    smaller = {  # the recipe's sizes, smaller still
        "rft": ["--max_steps", "1", "--gradient_accumulation_steps", "1", "--per_device_train_batch_size", "2"],
        "grpo": ["--max_steps", "1", "--gradient_accumulation_steps", "1", "--per_device_train_batch_size", "4"],
        "meta-rm-data": ["-k", "2"],
        "meta-rm": ["--max_steps", "1", "--gradient_accumulation_steps", "1", "--per_device_train_batch_size", "2"],
    }
    commands = recipe_commands()
    assert [c[0] for c in commands] == ["rft", "grpo", "meta-rm-data", "meta-rm"]
    for argv in commands:
        argv = [str(default_grm_path()) if a == "$M" else a for a in argv]
        if argv[0] == "meta-rm-data":
            argv = [a for a in argv if a not in ("-k", "4")]
        with caplog.at_level("INFO"):
            assert main(["train", *argv, *smaller[argv[0]]]) == 0, argv
    for trained in ("fine-tuned GRM saved to recipe/rft", "GRPO-trained GRM saved to recipe/grpo"):
        assert trained in caplog.text
    assert "meta RM saved to recipe/meta_rm" in caplog.text
    assert (tmp_path / "recipe/rft/adapter_config.json").is_file()  # rft.yaml trains LoRA; GRPO trained it on
    assert (tmp_path / "recipe/grpo/adapter_config.json").is_file()
    rows = [json.loads(line) for line in (tmp_path / "recipe/meta_rm_data.jsonl").read_text().splitlines()]
    assert len(rows) == 8 * 2 and {r["label"] for r in rows} <= {0, 1}
    grm = GRM.from_pretrained("recipe/grpo", progress=False)
    meta = MetaRM.from_pretrained("recipe/meta_rm", progress=False)
    example = make_examples(1, 99, response_weights=(0, 1, 0, 0))[0]
    reward = grm.score(example.query, example.responses, k=2, seed=0, meta_rm=meta)
    assert reward.n_valid >= 1 and len(reward.meta_scores) == 2
