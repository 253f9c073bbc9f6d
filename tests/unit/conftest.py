"""Shared fixtures of the unit tests: the sample events and template.yaml read as data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = ROOT / "events"
TEMPLATE = ROOT / "template.yaml"


class CfnTag:
    """A CloudFormation short-form intrinsic (`!Ref X`, `!Sub "..."`), kept as its long form's data."""

    def __init__(self, tag: str, value: Any) -> None:
        self.tag = tag  # e.g. "Ref", "Fn::Sub", "Fn::GetAtt"
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CfnTag) and (self.tag, self.value) == (other.tag, other.value)

    def __hash__(self) -> int:
        return hash((self.tag, repr(self.value)))

    def __repr__(self) -> str:
        return f"CfnTag({self.tag!r}, {self.value!r})"


_SHORT_TAGS = (
    "Ref",
    "Condition",
    "Sub",
    "GetAtt",
    "If",
    "Equals",
    "And",
    "Or",
    "Not",
    "Join",
    "Select",
    "Split",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Base64",
    "Cidr",
    "Transform",
    "ToJsonString",
    "Length",
)


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation's short tags."""


def _make_constructor(short: str):
    long_name = short if short in ("Ref", "Condition") else f"Fn::{short}"

    def construct(loader: CfnLoader, node: yaml.Node) -> CfnTag:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if short == "GetAtt":  # !GetAtt Res.Attr is the scalar form of [Res, Attr]
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return CfnTag(long_name, value)

    return construct


for _short in _SHORT_TAGS:
    CfnLoader.add_constructor(f"!{_short}", _make_constructor(_short))


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=CfnLoader)


def resolve(value: Any, refs: dict[str, str], conditions: dict[str, bool] | None = None) -> Any:
    """Replace `!Ref X` and `!Sub "...${X}..."` by values from `refs`, `!If [Cond, a, b]` by the branch
    `conditions` picks; fail on anything it cannot resolve."""
    conditions = conditions or {}
    if isinstance(value, CfnTag):
        if value.tag == "Fn::If":
            name, when_true, when_false = value.value
            if name not in conditions:
                raise KeyError(f"no value given for condition {name}")
            return resolve(when_true if conditions[name] else when_false, refs, conditions)
        if value.tag == "Ref":
            if value.value not in refs:
                raise KeyError(f"no value given for !Ref {value.value}")
            return refs[value.value]
        if value.tag == "Fn::Sub" and isinstance(value.value, str):
            text = value.value
            for name, replacement in refs.items():
                text = text.replace("${" + name + "}", replacement)
            if "${" in text:
                raise KeyError(f"unresolved variable in !Sub {value.value!r}")
            return text
        raise ValueError(f"cannot resolve {value!r} in an event pattern")
    if isinstance(value, dict):
        return {k: resolve(v, refs, conditions) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs, conditions) for v in value]
    return value


def read_event(name: str) -> dict[str, Any]:
    """A fresh copy of a sample from events/, safe to modify."""
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()
