"""A model package version as each side of the stack reads it from the registry: the rollout's `Release` (what an
endpoint variant runs) and the batch's `ModelVersion` (what a transform job runs). In a module of their own so
that the registry adapter, which both sides share, loads neither side's rules."""

from __future__ import annotations

from dataclasses import dataclass

from sagepilot.domain.names import variant_name


@dataclass(frozen=True, order=True)
class Release:
    """A model package version as it is (or will be) deployed: one production variant."""

    version: int
    package_arn: str

    @property
    def variant(self) -> str:
        return variant_name(self.version)


@dataclass(frozen=True)
class ModelVersion:
    """The newest Approved model package of a group."""

    group: str
    package_arn: str
    version: int
    supported_content_types: tuple[str, ...] = ()
    # Its inference image(s) (InferenceSpecification.Containers[].Image) as read from the registry; checked
    # against the stack's ImageRepositoriesAllowed before any job runs it (not kept in stored plans: a job that
    # starts late reads them again).
    images: tuple[str, ...] = ()

    def accepts(self, content_type: str) -> bool:
        """A package that declares no content types is trusted to accept any."""
        return not self.supported_content_types or content_type in self.supported_content_types
