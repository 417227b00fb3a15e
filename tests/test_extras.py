"""Optional extras: a grm module that needs one, imported without it, fails with one line naming the extra to
install (grm.extras, the mechanism the ``grm`` command shares); the modules that need none import with every extra
missing. A missing module is simulated as the CLI's missing-extra test does: ``sys.modules[name] = None``."""

import importlib
import os
import subprocess
import sys

import pytest

from grm import GRM
from grm.extras import EXTRAS, missing_extra
from helpers import ScriptedBackend, judge_by


def reimport(monkeypatch, module: str, missing: str):
    """Import ``module`` afresh with ``missing`` uninstalled (the originals are restored after the test)."""
    for loaded in [m for m in sys.modules if m.startswith((module + ".", missing + "."))]:
        monkeypatch.delitem(sys.modules, loaded)  # the modules and any submodule of the missing one loaded before
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, missing, None)
    return importlib.import_module(module)


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("grm.server", "fastapi", "serve"),
        ("grm.server", "starlette", "serve"),
        ("grm.distributed", "ray", "ray"),
    ],
)
def test_a_module_imported_without_its_extra_names_the_extra_in_one_line(monkeypatch, module, missing, extra):
    with pytest.raises(ModuleNotFoundError) as e:
        reimport(monkeypatch, module, missing)
    message = str(e.value)
    assert message == f'{module} needs {missing}, from the "{extra}" extra: pip install "grm[{extra}]"'
    assert e.value.name.split(".")[0] == missing  # the grm command still knows the module, and prints its own line
    assert missing_extra(e.value) == f'this needs {missing}, from the "{extra}" extra: pip install "grm[{extra}]"'


def test_serving_without_uvicorn_names_the_serve_extra(monkeypatch):
    from grm.server import serve

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ModuleNotFoundError, match=r'^grm.server.serve needs uvicorn, .*pip install "grm\[serve\]"$'):
        serve(GRM(ScriptedBackend(judge_by(len))))


def test_an_unknown_missing_module_is_raised_as_it_is(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # datasets installs it: no extra to name
    for loaded in [m for m in sys.modules if m.startswith("grm.distributed")]:
        monkeypatch.delitem(sys.modules, loaded)
    with pytest.raises(ModuleNotFoundError) as e:
        importlib.import_module("grm.distributed")
    assert e.value.name == "pyarrow" and "grm[" not in str(e.value)


def test_the_integrations_need_no_extra():
    """The TRL reward function is a plain callable (TRL calls it; grm imports nothing of TRL), and the verl,
    slime and client modules speak HTTP through httpx, a core dependency: a fresh interpreter with every extra's
    modules missing imports them all."""
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in EXTRAS)
    code = (
        f"import sys; {block}; "
        "import grm.integrations.trl, grm.integrations.verl, grm.integrations.slime, grm.integrations.client; "
        "from grm.integrations.trl import GRMReward, AsyncGRMReward; print('ok')"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
