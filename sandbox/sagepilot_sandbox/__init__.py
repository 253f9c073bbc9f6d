"""The sandbox: an embedded AWS (moto) that runs the stack from template.yaml on one machine.

Development only: the product (layers/sagepilot, functions/) never imports it. It drives the product
from outside, exactly as AWS would: S3 sends events to EventBridge, the template's own rules route
them, queues and event source mappings invoke the handlers, and SageMaker moves jobs along and emits
its state-change events. Where moto is not faithful to AWS, `faithful` makes it so (with `endpoints`,
`registry`, `alarms`, `autoscaling` and `bus` for real-time endpoints, the model registry, CloudWatch
alarms, Application Auto Scaling and event delivery). Models really run: transform jobs predict
(`transform`), training jobs train (`trainer`), endpoints answer InvokeEndpoint (`invocations`) and
publish their CloudWatch metrics (`metrics`), each model in a `sagepilot_model_server` process
(`modelservers`). Time is compressed: see `faithful` and `simulator`.
"""
