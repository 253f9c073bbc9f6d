"""The Lambda layer ships what the functions run, not the operator's command (package `sagepilot_cli`, cli/)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER_SOURCE = ROOT / "layers" / "sagepilot"
BUILT_LAYER = ROOT / ".aws-sam" / "build" / "SharedLayer" / "python"
# What only the operator's command uses: its package, and the command-line modules it is made of.
OPERATOR_ONLY = {"sagepilot_cli", "argparse", "getpass"}


def imported(source: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_layer_source_holds_no_operator_command() -> None:
    modules = sorted(LAYER_SOURCE.rglob("*.py"))
    assert any(m.name == "wiring.py" for m in modules)  # the layer's package is where this test looks
    assert [m for m in modules if m.stem == "cli" or "sagepilot_cli" in m.parts] == []
    using = {str(m.relative_to(ROOT)): sorted(imported(m) & OPERATOR_ONLY) for m in modules}
    assert {path: names for path, names in using.items() if names} == {}


def test_the_operator_command_lives_outside_the_layer() -> None:
    import sagepilot_cli

    assert Path(sagepilot_cli.__file__).resolve().is_relative_to(ROOT / "cli")
    assert not Path(sagepilot_cli.__file__).resolve().is_relative_to(LAYER_SOURCE)


def test_the_built_layer_holds_no_operator_command() -> None:
    """`sam build`'s SharedLayer, when it was built from these sources (CI builds before it tests)."""
    if not BUILT_LAYER.is_dir():
        pytest.skip("no SAM build: `make build` first")
    sources = [p for p in LAYER_SOURCE.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    shipped = sorted(p.relative_to(BUILT_LAYER).as_posix() for p in BUILT_LAYER.rglob("*") if p.is_file())
    modules = sorted(p.relative_to(LAYER_SOURCE).as_posix() for p in sources if p.suffix == ".py")
    built_from_these = [m for m in modules if m.startswith("sagepilot/")] == [
        p for p in shipped if p.startswith("sagepilot/") and p.endswith(".py")
    ]
    if BUILT_LAYER.stat().st_mtime < max(p.stat().st_mtime for p in sources) or not built_from_these:
        pytest.skip("the SAM build is not of the layer's current sources: `make build` first")
    assert "sagepilot/wiring.py" in shipped
    assert [p for p in shipped if p.startswith("sagepilot_cli/") or p.startswith("sagepilot/cli.")] == []
    assert [p for p in shipped if p.startswith("sagepilot/__pycache__/cli.")] == []


# The typed boto3 stubs (requirements-dev.txt) are for mypy alone.
STUBS = ("mypy_boto3_", "boto3-stubs", "botocore-stubs", "boto3_stubs", "botocore_stubs", "s3transfer-stubs")


def test_the_layer_imports_no_type_stubs_when_it_runs() -> None:
    """Every module of the layer imports with the stubs unimportable, and loads none of them."""
    modules = sorted(
        ".".join(p.relative_to(LAYER_SOURCE).with_suffix("").parts)
        for p in (LAYER_SOURCE / "sagepilot").rglob("*.py")
        if p.stem != "__init__"
    )
    script = f"""
import importlib, sys
class NoStubs:
    def find_spec(self, name, path=None, target=None):
        if name.startswith({STUBS!r}):
            raise ImportError("type stub imported at run time: " + name)
sys.meta_path.insert(0, NoStubs())
for module in {modules!r}:
    importlib.import_module(module)
print(sorted(m for m in sys.modules if m.startswith({STUBS!r})))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=LAYER_SOURCE, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert "sagepilot.adapters.clients" in modules


def test_the_built_layer_holds_no_type_stubs() -> None:
    if not BUILT_LAYER.is_dir():
        pytest.skip("no SAM build: `make build` first")
    top = sorted(p.name for p in BUILT_LAYER.iterdir())
    assert "sagepilot" in top
    assert [name for name in top if name.startswith(STUBS) or "stubs" in name] == []


def test_every_service_the_layer_calls_has_its_stub_pinned_for_the_type_checker() -> None:
    """mypy ignores missing imports: a service without its stub would be typed Any without a word."""
    from typing import get_args

    from sagepilot.adapters.clients import Service

    pinned = {
        line.split("==")[0].strip()
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    }
    assert {"boto3-stubs", "botocore-stubs"} <= pinned
    assert sorted(f"mypy-boto3-{s}" for s in get_args(Service) if f"mypy-boto3-{s}" not in pinned) == []
