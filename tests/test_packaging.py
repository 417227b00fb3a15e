"""`pip install .` (not editable) gives a grm whose templates and sub-packages work from another directory."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_wheel_install_has_templates_and_subpackages(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    code = (
        "import grm, grm.training, grm.eval, grm.cli, grm.integrations.trl; from grm import PromptTemplate;"
        "from grm.eval.rewardbench import section_scores; import grm.eval.cli;"
        "print(grm.__file__);"
        "print(PromptTemplate.load('default').score_range, PromptTemplate.load('correctness').score_range);"
        "from grm import GRM, MetaRM; rm = GRM.from_pretrained(progress=False); print(rm.backend.name);"
        "r = rm.score('Which is the largest: 42, 17, 35, 29?', ['35', '42'], seed=0); print(r.best, r.n_valid);"
        "print(MetaRM.from_pretrained(progress=False).model.name_or_path)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert out[0].startswith(str(target)), out
    assert out[1] == "(1, 10) (0, 1)"
    assert out[2] == str(target / "grm" / "assets" / "default_grm") and out[3] == "1 1"  # the shipped GRM judges
    assert out[4] == str(target / "grm" / "assets" / "default_meta_rm")
    assert (target / "grm" / "templates" / "default.j2").is_file()
    assert (target / "bin" / "grm").is_file()
