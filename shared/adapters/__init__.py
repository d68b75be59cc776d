"""Every AWS call of jobq, behind the Protocols of ``shared.ports``.

    aws_errors   ClientError / BotoCoreError -> jobq's errors, by one table
    clients      the boto3 clients, one per service and container
    jobs         JobsRepository on DynamoDB (key formats and index names live here alone)
    sqs          QueueGateway (job messages, visibility, dead letters, depths)

Nothing outside this package imports boto3 or botocore.
"""
