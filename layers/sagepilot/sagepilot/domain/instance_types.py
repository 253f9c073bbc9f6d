"""Instance-type allow-lists (`ml.m5.*,ml.c5.xlarge`), as the stack's ceilings for training, transform jobs and
endpoints write them: one pattern and one match for all three, in a module of its own so that a function that
checks an allow-list loads nothing of the others' rules."""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

# An entry of an allow-list: one instance type (`ml.c5.2xlarge`) or a family (`ml.m5.*`).
INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+\.([a-z0-9]+|\*)$")


def instance_type_allowed(instance_type: str, allowed: Iterable[str]) -> bool:
    """`ml.m5.xlarge` against entries like `ml.m5.*` (a family) or `ml.c5.2xlarge` (one type)."""
    return any(fnmatchcase(instance_type, pattern) for pattern in allowed)
