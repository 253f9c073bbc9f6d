"""Render the SAM template to plain CloudFormation, offline, with aws-sam-translator.

The rendered template is what CloudFormation deploys (the functions' roles, event source mappings,
EventBridge rules and event invoke configs SAM generates), so security checks that do not understand
SAM (checkov's IAM checks, the IAM test in tests/unit/test_template_security.py) read it instead.

    python scripts/render_template.py [--template template.yaml] [--output .aws-sam/rendered.json]
        [--parameter Name=Value ...]

Local CodeUri/ContentUri paths are replaced by placeholder S3 locations (SAM would upload them on
deploy); nothing is uploaded and no AWS call is made.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import boto3
import yaml
from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = ROOT / "template.yaml"
DEFAULT_OUTPUT = ROOT / ".aws-sam" / "rendered.json"
RENDER_REGION = "us-east-1"
PLACEHOLDER_BUCKET = "sagepilot-rendered-artifacts"

# Local paths SAM uploads on deploy, per SAM resource type.
_LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class _CfnYamlLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader reading CloudFormation short-form intrinsics (!Ref, !Sub, !GetAtt...) as their long form."""


def _construct_intrinsic(loader: _CfnYamlLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":  # `!GetAtt Resource.Attribute` is the short form of [Resource, Attribute]
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnYamlLoader.add_multi_constructor("!", _construct_intrinsic)


def load_sam_template(path: Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """template.yaml as data, intrinsics in their long (JSON) form."""
    with path.open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=_CfnYamlLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a template")
    return loaded


def _with_placeholder_artifacts(template: dict[str, Any]) -> dict[str, Any]:
    rendered = copy.deepcopy(template)
    for logical_id, resource in rendered.get("Resources", {}).items():
        prop = _LOCAL_URI_PROPERTIES.get(resource.get("Type", ""))
        properties = resource.get("Properties", {})
        if prop and isinstance(properties.get(prop), str) and not properties[prop].startswith("s3://"):
            properties[prop] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}.zip"
    return rendered


def render(template: dict[str, Any], parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation template SAM would deploy for `template` (parameters default as in the template)."""
    metrics = Metrics("ServerlessTransform", DummyMetricsPublisher())  # recorded nowhere
    translator = Translator(
        managed_policy_map={},  # the template names no managed policy; SAM's own are ARNs
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name=RENDER_REGION),
        metrics=metrics,
    )
    try:
        rendered: dict[str, Any] = translator.translate(
            sam_template=_with_placeholder_artifacts(template),
            parameter_values=dict(parameters or {}),
            passthrough_metadata=True,  # keeps functions' Metadata (checkov skips) on the Lambda functions
        )
    finally:
        metrics.publish()
    return rendered


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--parameter", type=_parameter, action="append", default=[], metavar="Name=Value")
    args = parser.parse_args(argv)

    rendered = render(load_sam_template(args.template), dict(args.parameter))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rendered, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"rendered {args.template} -> {args.output} ({len(rendered.get('Resources', {}))} resources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
