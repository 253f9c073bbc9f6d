"""SageMaker as SageMaker runs it, where moto has no model of it: time passes (`simulator`), endpoints change
state and serve (`endpoints`, `invocations`, `metrics`), transform jobs read their inputs and write predictions
(`transform`, `data_processing`), training jobs train (`training`, `trainer`), the model registry emits its
events (`registry`), real model servers run each artifact (`modelservers`, `model_worker`, `containers`), and
what SageMaker does on a user's behalf is authorized as its execution role (`roles`).
"""
