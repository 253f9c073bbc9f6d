"""Generic fixes to moto: where moto answers differently from AWS, or slower than it should, for any user.

Each module is small, depends on nothing else of the sandbox, and is installed by `faithful.install()`; each
could be offered to moto as it is: `api_rules` (API shapes and refusals), `autoscaling` (Application Auto
Scaling's refusals and clean-up), `dynamodb_json` (DynamoDB's items answered as they are, not walked
against AttributeValue's shape), `dynamodb_query` (a Query reads its partition, not the whole table),
`job_listing` (ListTransformJobs filtered and sorted before it pages),
`s3_listing` (ListObjectVersions' markers, cheaply), `sqs_speed` (SQS without work proportional to queue
depth), `transactions` (atomic TransactWriteItems).
"""
