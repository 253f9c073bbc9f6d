"""Logger set up once per process (powertools: JSON logs with the Lambda context)."""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="sagepilot")
