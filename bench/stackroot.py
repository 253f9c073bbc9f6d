"""Which project root the sandbox provisions from: this checkout, or another template beside its code."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.common import ROOT


def project_root(template: Path | None) -> Path:
    """ROOT itself, or a temporary root holding `template` as template.yaml and links to ROOT's code
    (to bench a variant of the template, e.g. the last committed one while the working copy is moving)."""
    if template is None:
        return ROOT
    root = Path(tempfile.mkdtemp(prefix="sagepilot-bench-root-"))
    shutil.copyfile(template, root / "template.yaml")
    for entry in ("functions", "layers", "events"):
        if (ROOT / entry).exists():
            (root / entry).symlink_to(ROOT / entry)
    return root
