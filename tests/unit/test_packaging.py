"""What `pip install .` installs: the product package and the operator's command, their runtime
dependencies declared, under the repository's license; never the sandbox nor the example model server."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
OWN = {"sagepilot", "sagepilot_cli"}


def shipped_packages() -> dict[str, Path]:
    """Top-level package -> its folder, as setuptools' `packages.find` (pyproject.toml) finds them: a folder
    with an `__init__.py` right under one of its `where`, whose name one of its `include` patterns matches."""
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    return {
        init.parent.name: init.parent
        for where in find["where"]
        for init in sorted((ROOT / where).glob("*/__init__.py"))
        if any(fnmatch(init.parent.name, pattern) for pattern in find["include"])
        and not any(fnmatch(init.parent.name, pattern) for pattern in find.get("exclude", ()))
    }


def _is_type_checking(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "TYPE_CHECKING") or (
        isinstance(node, ast.Attribute) and node.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> set[str]:
    """Top-level modules a module imports when it runs (not those under `if TYPE_CHECKING:`)."""
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            found |= {m for child in node.orelse for m in runtime_imports(ast.Module([child], []))}
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        found |= runtime_imports(node)
    return found


def declared() -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, PROJECT["dependencies"])}


def test_the_distribution_ships_the_product_and_its_command_only() -> None:
    assert set(shipped_packages()) == OWN
    assert PROJECT["scripts"] == {"sagepilot": "sagepilot_cli.app:run"}


def test_every_third_party_module_the_shipped_packages_import_is_a_declared_dependency() -> None:
    third_party: dict[str, list[str]] = {}
    for folder in shipped_packages().values():
        for module in sorted(folder.rglob("*.py")):
            for name in runtime_imports(ast.parse(module.read_text(), str(module))):
                if name not in sys.stdlib_module_names and name not in OWN and name != "__future__":
                    third_party.setdefault(name, []).append(str(module.relative_to(ROOT)))
    distributions = importlib.metadata.packages_distributions()
    assert {"boto3", "botocore", "aws_lambda_powertools"} <= set(third_party)  # the scan sees the imports
    undeclared = {
        name: modules
        for name, modules in third_party.items()
        if not any(canonicalize_name(d) in declared() for d in distributions.get(name, [name]))
    }
    assert undeclared == {}


def test_the_layers_pinned_dependencies_are_within_the_declared_ones() -> None:
    pins = [
        Requirement(line.split("#")[0].strip())
        for line in (ROOT / "layers/sagepilot/requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert pins
    for pin in pins:
        [version] = [s.version for s in pin.specifier if s.operator == "=="]
        assert canonicalize_name(pin.name) in declared(), pin
        assert declared()[canonicalize_name(pin.name)].specifier.contains(version), (pin, PROJECT["dependencies"])


def test_the_license_is_an_spdx_expression_with_its_text_beside_it() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert re.search(r"Apache License\s+Version 2\.0, January 2004", text)
    assert "END OF TERMS AND CONDITIONS" in text
