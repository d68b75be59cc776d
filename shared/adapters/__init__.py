"""Every AWS call of jobq lives in this package; nothing outside it imports boto3 or botocore.

    aws_errors       ClientError / BotoCoreError -> jobq's errors (shared/errors.py), by one table every adapter uses
    clients          the boto3 clients, one per service and container
    jobs             the jobs repository on DynamoDB: key formats and index names are spelled here alone
    queues           the queue directory (SSM) and SQS: job messages, dead letters, depths
    sqs              the lifecycle's message gateway (wake-ups, kept endings, visibility, DLQ copies)
    scheduler        EventBridge Scheduler: delayed jobs' one-time schedules, recurring schedules
    schedules        the schedule store (records, run markers, firing counts)
    policies         the policy store (a queue's runtime policy, cached per container)
    counters         queue counters and metric buckets
    reports          the report store (health and cleanup runs, the sweep's state)
    consumer_switch  a queue's consumer (its event source mapping), on or off

The use cases type against the Protocols they need (shared/transitions.py: JobWriter,
JobMessages, DelayedSchedules; shared/catalog.py: TargetSource) or call these modules.
"""
