"""Thin wrappers over boto3 that translate AWS errors into the package's own errors."""
