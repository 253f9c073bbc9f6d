"""The Lambda service of the sandbox: each function in its own process (`lambda_worker`), event source mappings,
schedules, rule targets and concurrency as Lambda runs them (`runtime`), and a record of every AWS call a
function makes (`call_recording`), for the IAM sufficiency check.
"""
