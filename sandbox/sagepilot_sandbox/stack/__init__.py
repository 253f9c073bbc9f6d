"""The stack of template.yaml in the embedded AWS, as CloudFormation and IAM would have it: the template read with
its intrinsic functions (`template`), its resources created (`provision`), and IAM policies evaluated as IAM
decides (`iam_check`: a function's calls against its role, and SageMaker's against the execution role).
"""
