"""The sandbox's own tests: that the embedded AWS behaves as AWS does (sagepilot_sandbox), apart from the
product's tests. They use the functional fixtures (a fresh `mock_aws()` with the sandbox's patches, a
stack provisioned from template.yaml) where they need a stack."""

from functional.conftest import *  # noqa: F403 - the functional fixtures, for the suites of this folder
