"""Compile a built layer's python/ folder for its runtime, then prove the bytecode is there and usable.

Run by the layer's Makefile (during `sam build`) with the runtime's interpreter (python3.13). Every .py
gets `__pycache__/<module>.cpython-313.pyc`, where CPython 3.13 looks for it, as an unchecked-hash .pyc
(PEP 552): valid whatever the file timestamps (SAM's zips date every file 1980-01-01, which defeats the
default timestamp-based .pyc). Code objects record paths under /opt/python, where Lambda mounts layers, so
the artifact does not depend on the folder it was built in. Bytecode the build copied in (a developer's
own __pycache__) is removed first. Exits non-zero, failing the build, if any module is left without a
.pyc that this interpreter would load.
"""

from __future__ import annotations

import compileall
import importlib.util
import py_compile
import shutil
import sys
from pathlib import Path

LAMBDA_LAYER_PATH = "/opt/python"
UNCHECKED_HASH_FLAGS = 0b01  # PEP 552: bit 0 hash-based, bit 1 check_source (off: never read the source)


def clean(root: Path) -> None:
    for cache in sorted(root.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    for stray in root.rglob("*.pyc"):
        stray.unlink()


def compile_tree(root: Path) -> bool:
    return bool(
        compileall.compile_dir(
            root,
            quiet=1,
            workers=0,
            stripdir=str(root),
            prependdir=LAMBDA_LAYER_PATH,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    )


def problems(root: Path) -> list[str]:
    """Every source whose .pyc is missing, or not one this interpreter loads without its source."""
    found = []
    for source in sorted(root.rglob("*.py")):
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.is_file():
            found.append(f"{source.relative_to(root)}: no {cached.name}")
            continue
        header = cached.read_bytes()[:8]
        if header[:4] != importlib.util.MAGIC_NUMBER:
            found.append(f"{cached.relative_to(root)}: magic number of another Python")
        elif int.from_bytes(header[4:8], "little") != UNCHECKED_HASH_FLAGS:
            found.append(f"{cached.relative_to(root)}: not an unchecked-hash .pyc")
    return found


def main(argv: list[str]) -> int:
    (folder,) = argv
    root = Path(folder).resolve()
    clean(root)
    if not compile_tree(root):
        print(f"compile_layer: compileall failed under {root}", file=sys.stderr)
        return 1
    wrong = problems(root)
    for line in wrong[:20]:
        print(f"compile_layer: {line}", file=sys.stderr)
    if wrong:
        return 1
    count = sum(1 for _ in root.rglob("*.py"))
    print(f"compile_layer: {count} modules compiled for Python {sys.version.split()[0]} (unchecked-hash .pyc)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
