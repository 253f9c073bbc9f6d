"""sagepilot: a hands-off, event-driven control plane for SageMaker.

The package is shipped to every Lambda function in one layer. Its parts depend in one direction:
functions -> services -> domain, and services -> adapters -> boto3. The domain imports nothing of ours
but itself, so the decisions it makes can be tested without AWS.
"""

__version__ = "0.1.0"
