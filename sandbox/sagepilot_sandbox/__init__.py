"""The sandbox: an embedded AWS (moto) that runs the stack from template.yaml on one machine.

Development only: the product (layers/sagepilot, functions/) never imports it. It drives the product
from outside, exactly as AWS would: S3 sends events to EventBridge, the template's own rules route
them, queues and event source mappings invoke the handlers, and SageMaker moves jobs along and emits
its state-change events. Its rooms:

- `moto_patches/`: generic fixes to moto, each small and on its own (could be offered upstream);
- `sagemaker/`: SageMaker where moto has no model of it (endpoints, transform and training jobs that
  really predict and train, the registry's events, the execution role); time is compressed (`simulator`);
- `cloudwatch/`: alarms and embedded-metric-format logs as CloudWatch handles them;
- `lambda_runtime/`: the functions in their own processes, event sources, schedules and concurrency;
- `stack/`: template.yaml read and provisioned as CloudFormation would, IAM evaluated as IAM decides;
- `demo/`: the main scenario (`make demo`).

At the top: `faithful` installs everything onto moto, `bus` delivers AWS-shaped events through the
template's EventBridge rules, `storage` is S3 as SageMaker's side reads it, and `server` starts it all.
"""
