"""Decisions as plain functions and value objects: no I/O, no boto3, no clock unless passed in."""
