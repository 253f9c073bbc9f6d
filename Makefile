# Everyday commands. `make demo` and `make test` set everything up on a fresh machine first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0
# sam build needs the functions' runtime (python3.13) on PATH; pyenv machines carry it.
SAM_ENV := PYENV_VERSION=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13' | head -1):$$(pyenv version-name 2>/dev/null)

.PHONY: setup demo sandbox test test-fast lint typecheck validate build ci clean

# Defined before the rules that name it (make expands prerequisites as it reads them).
# The SageMaker Python SDK 2.x, for tests/e2e/test_sagemaker_sdk.py: a virtualenv of its own (its pins are not ours).
SDK_VENV := .tools/sagemaker-sdk
SDK_STAMP := $(SDK_VENV)/.installed-$(shell sed -n 's/^sagemaker==//p' requirements-sdk.txt)

# The product (the layer's package and the operator's command), and the development-only sandbox and
# model server, each its own distribution.
$(STAMP): requirements-dev.txt layers/sagepilot/requirements.txt pyproject.toml sandbox/pyproject.toml container/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -e . -e sandbox -e container
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with everything the tests and the sandbox need

demo: $(STAMP)  ## run the main scenario on the embedded sandbox
	$(PY) -m sagepilot_sandbox demo

sandbox: $(STAMP)  ## start the sandbox and keep it running (drive it with the aws CLI)
	$(PY) -m sagepilot_sandbox serve

test: $(STAMP) $(SDK_STAMP)  ## the whole test suite (unit, functional, end-to-end, the SageMaker SDK as a client)
	$(PY) -m pytest

test-fast: $(STAMP)  ## unit, functional and sandbox tests only
	$(PY) -m pytest tests/unit tests/functional tests/sandbox

.PHONY: bench
bench: $(STAMP)  ## figures beside same-run baselines (not a test; see bench/README.md); BENCH_ARGS=--quick
	$(PY) -m bench $(BENCH_ARGS)

.PHONY: limits
limits: $(STAMP)  ## docs/limits.md: a simulated day and week on the bench's measured calls; LIMITS_ARGS=--no-sweeps
	$(PY) -m bench.limits $(LIMITS_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check layers cli functions sandbox container

typecheck: $(STAMP)
	$(VENV)/bin/mypy layers/sagepilot/sagepilot cli/sagepilot_cli sandbox/sagepilot_sandbox functions container

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_VERSION)

validate: $(SAM) $(STAMP)  ## sam validate --lint and cfn-lint (with the serverless rules) on the template
	$(SAM) validate --lint --template template.yaml
	$(VENV)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules

# checkov pins an old boto3: it gets a virtualenv of its own, like the SAM CLI.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .tools/checkov
# .checkov.yaml: the checks skipped, each with its reason and the resources it concerns.
CHECKOV := CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
RENDERED := .aws-sam/rendered.json

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

.PHONY: security
security: $(CHECKOV_STAMP) $(STAMP)  ## checkov, offline, on template.yaml and on it rendered to CloudFormation
	$(PY) scripts/render_template.py --output $(RENDERED)
	$(CHECKOV) --file template.yaml --framework cloudformation --skip-download --compact --quiet
	$(CHECKOV) --file $(RENDERED) --framework cloudformation --skip-download --compact --quiet

$(SDK_STAMP): requirements-sdk.txt
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install --quiet -r requirements-sdk.txt
	touch $@

.PHONY: sdk
sdk: $(SDK_STAMP)  ## the SageMaker SDK's virtualenv (make test creates it too)

build: $(SAM)  ## sam build, no container
	$(SAM_ENV) $(SAM) build --template template.yaml

ci:  ## what CI runs
	bash .ci/run

clean:
	rm -rf $(VENV) .tools .aws-sam .pytest_cache .mypy_cache .ruff_cache
