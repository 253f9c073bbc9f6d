"""The project's Lambda functions, discovered: every `functions/*/app.py`, matched to its template resource.

New functions are picked up without touching the bench. For each one: its code folder, handler, the
layer folders the template gives it and the environment the template gives it, with placeholder
physical ids for the stack's resources (a cold start must not depend on a deployed stack).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REGION, ROOT
from sagepilot_sandbox.stack.template import ACCOUNT_ID, Resolver, TemplateError, load_template, parameter_values

STACK = "sagepilot-bench"


@dataclass
class FunctionInfo:
    name: str  # the folder under functions/
    logical_id: str | None  # its template resource, if the template has one yet
    code_dir: Path
    handler: str  # "module.function"
    layer_dirs: list[Path]
    environment: dict[str, str]
    runtime: str = "python3.13"  # the Lambda runtime the template gives the function
    warnings: list[str] = field(default_factory=list)

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0]


def _service_of(resource_type: str) -> str:
    parts = resource_type.split("::")
    return parts[1].lower() if len(parts) > 1 else "unknown"


class PlaceholderResolver(Resolver):
    """Resolves Ref / GetAtt of any resource to a plausible physical id, without creating anything."""

    def _resource_type(self, logical_id: str) -> str | None:
        resource = self.template.get("Resources", {}).get(logical_id)
        return str(resource.get("Type")) if isinstance(resource, dict) else None

    def ref(self, name: str) -> Any:
        try:
            return super().ref(name)
        except TemplateError:
            kind = self._resource_type(name)
            if kind is None:
                raise
        physical = f"{STACK}-{name}"
        if kind == "AWS::S3::Bucket":
            return physical.lower()
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{physical}"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{physical}"
        if kind.endswith("LayerVersion"):
            return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{physical}:1"
        return physical

    def get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return super().get_att(logical_id, attribute)
        except TemplateError:
            kind = self._resource_type(logical_id)
            if kind is None:
                raise
        physical = f"{STACK}-{logical_id}"
        if attribute != "Arn":
            return physical
        arns = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{physical.lower()}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{physical}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{physical}",
            "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{physical}",
        }
        return arns.get(kind, f"arn:aws:{_service_of(kind)}:{REGION}:{ACCOUNT_ID}:{physical}")


def _merged_environment(template: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    variables = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    variables.update(props.get("Environment", {}).get("Variables", {}))
    return variables


def discover(root: Path = ROOT) -> list[FunctionInfo]:
    template = load_template(root / "template.yaml")
    resolver = PlaceholderResolver(template, STACK, parameter_values(template, {}))
    resources: dict[str, Any] = template["Resources"]
    layer_dirs = {
        layer_id: root / str(r["Properties"]["ContentUri"])
        for layer_id, r in resources.items()
        if r.get("Type") == "AWS::Serverless::LayerVersion"
    }
    by_code_dir: dict[Path, tuple[str, dict[str, Any]]] = {}
    for resource_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::Function":
            properties = resource.get("Properties", {})
            code_uri = properties.get("CodeUri")
            if isinstance(code_uri, str):
                by_code_dir[(root / code_uri).resolve()] = (resource_id, properties)
    global_props = template.get("Globals", {}).get("Function", {})

    found: list[FunctionInfo] = []
    for app in sorted(root.glob("functions/*/app.py")):
        code_dir = app.parent.resolve()
        entry = by_code_dir.get(code_dir)
        logical_id: str | None = entry[0] if entry else None
        props: dict[str, Any] = entry[1] if entry else {}
        warnings = [] if logical_id else [f"{code_dir.name}: no template resource yet; using Globals only"]
        layers = props.get("Layers", global_props.get("Layers", []))
        dirs = [layer_dirs[ref["Ref"]] for ref in layers if isinstance(ref, dict) and ref.get("Ref") in layer_dirs]
        environment = {
            k: str(v) for k, v in resolver.resolve(_merged_environment(template, props)).items() if v is not None
        }
        found.append(
            FunctionInfo(
                name=code_dir.name,
                logical_id=logical_id,
                code_dir=code_dir,
                handler=str(props.get("Handler", "app.handler")),
                layer_dirs=dirs,
                environment=environment,
                runtime=str(props.get("Runtime", global_props.get("Runtime", "python3.13"))),
                warnings=warnings,
            )
        )
    return found
