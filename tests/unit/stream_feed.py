"""The jobs table's stream (moto, in process) fed to the EventsFunction as Lambda would feed it.

Records are read with the DynamoDB Streams API, filtered with the template's own
FilterCriteria and passed in Lambda's event shape (infra/local/streams.py builds it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from functions.events.handler import handler
from infra.local.cfn import load_template
from infra.local.streams import build_stream_event, matches_filters
from shared.adapters import clients
from tests.unit.conftest import FakeLambdaContext

ROOT = Path(__file__).resolve().parents[2]


def template_stream_event() -> dict[str, Any]:
    """The EventsFunction's stream mapping as template.yaml declares it (its own EventSourceMapping
    resource, so the function's role reads only this table's stream), less source and function."""
    template = load_template(ROOT / "template.yaml")
    (mapping,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping" and r["Properties"]["FunctionName"] == {"Ref": "EventsFunction"}
    ]
    parameters = template.get("Parameters") or {}

    def value(v: Any) -> Any:  # a stack parameter (StreamBatchingWindowSeconds) at its default
        return parameters[v["Ref"]]["Default"] if isinstance(v, dict) and set(v) == {"Ref"} and v["Ref"] in parameters else v

    return {k: value(v) for k, v in mapping.items() if k not in ("EventSourceArn", "FunctionName")}


class StreamFeed:
    def __init__(self, table_name: str) -> None:
        self.stream_arn = clients.client("dynamodb").describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        streams = clients.client("dynamodbstreams")
        shard = streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.shard = shard
        self.after: str | None = None
        props = template_stream_event()
        self.window_seconds = int(props.get("TumblingWindowInSeconds", 0))
        self.filters = tuple(json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"])

    def read(self) -> list[dict[str, Any]]:
        """Every record written since the last read."""
        streams = clients.client("dynamodbstreams")
        if self.after is None:
            iterator = streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=self.shard, ShardIteratorType="TRIM_HORIZON")
        else:
            iterator = streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=self.shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=self.after
            )
        records = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
        if records:
            self.after = records[-1]["dynamodb"]["SequenceNumber"]
        return records

    def next_event(self) -> dict[str, Any]:
        """Lambda's event for what was written since the last read, filtered as the template says."""
        event = build_stream_event(
            self.read(), stream_arn=self.stream_arn, region="us-east-1", shard_id=self.shard, window_seconds=self.window_seconds
        )
        event["Records"] = [r for r in event["Records"] if matches_filters(r, self.filters)]
        return event

    def deliver(self) -> dict[str, Any]:
        """Apply what was written since the last read through the real handler; the event it got."""
        event = self.next_event()
        if event["Records"]:
            handler(event, FakeLambdaContext())
        return event
