"""The import graph runs one way: the core (``grm``) <- training (``grm.training``), the core <- evaluation
(``grm.eval``); neither of those two imports the other, and the core imports neither.

Each check imports every module of one layer in a fresh interpreter, then lists the modules of the layers it must
not reach that came along. What training and evaluation share (the SPCT rule, ROC-AUC, the synthetic task) lives in
the core: ``grm.rule``, ``grm.metrics``, ``grm.synthetic``.
"""

import subprocess
import sys

import pytest

WALK = """
import importlib, pkgutil, sys

layer, skip, forbidden = sys.argv[1], sys.argv[2].split(","), tuple(sys.argv[3].split(","))


def walk(name):
    module = importlib.import_module(name)
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        child = f"{name}.{info.name}"
        if child not in skip:
            walk(child)


walk(layer)
print(" ".join(sorted(m for m in sys.modules if m in forbidden or m.startswith(tuple(f + "." for f in forbidden)))))
"""

CORE_SKIPS = "grm.training,grm.eval,grm.templates"


def reached(layer: str, skip: str, forbidden: str) -> list[str]:
    """The modules of ``forbidden`` layers (comma-separated) that importing all of ``layer`` (but ``skip``) loads."""
    out = subprocess.run(
        [sys.executable, "-c", WALK, layer, skip, forbidden], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_evaluation_does_not_import_training():
    assert reached("grm.eval", "", "grm.training") == []


@pytest.mark.slow
def test_training_does_not_import_evaluation():
    assert reached("grm.training", "", "grm.eval") == []


@pytest.mark.slow
def test_the_core_imports_neither_training_nor_evaluation():
    assert reached("grm", CORE_SKIPS, "grm.training,grm.eval") == []


def test_the_check_sees_a_forbidden_import():
    """The walk reports a layer reached through any module (here the core, reached from evaluation)."""
    assert "grm.scoring" in reached("grm.eval", "", "grm.scoring")
