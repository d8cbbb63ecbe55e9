"""A small faust app that proves the platform's exactly-once processing, run as a child process.

It counts events per key in a changelogged table and, for each event, sends one output record
re-keyed by the event's sequence number, so outputs land in other partitions than their source:
the case where faust's own transaction routing breaks (see streams/eos.py). The crash test kills
it with SIGKILL mid-stream and checks the committed output and changelog.

Configuration comes from the environment: EOS_BROKER, EOS_APP_ID, EOS_SOURCE, EOS_OUTPUT,
EOS_DATA_DIR.
"""

from __future__ import annotations

import json
import os

import faust

from streams.eos import (
    ExactlyOnceApp,
    exactly_once_batch,
    sending_for,
    source_partitions,
    write_table,
)

SOURCE = os.environ.get("EOS_SOURCE", "eos-source")
OUTPUT = os.environ.get("EOS_OUTPUT", "eos-output")

app = ExactlyOnceApp(
    os.environ.get("EOS_APP_ID", "eos-probe"),
    broker=f"kafka://{os.environ.get('EOS_BROKER', '127.0.0.1:9092')}",
    store="memory://",
    processing_guarantee="exactly_once",
    datadir=os.environ.get("EOS_DATA_DIR", ".run/eos-probe"),
    topic_partitions=4,
    topic_replication_factor=1,
    table_standby_replicas=0,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    # Commit often, so that a SIGKILL lands between many commits.
    broker_commit_interval=0.2,
    # Commit from the timer only: faust's fetcher also commits every N acks, from inside its
    # fetch loop, which then waits on the batch lock (streams/eos.py) while it feeds no events.
    broker_commit_every=1_000_000_000,
    # Static membership: a restarted worker takes its old place in the group at once instead of
    # waiting for the dead member's session to expire.
    consumer_group_instance_id="eos-probe-worker-1",
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
)

source_topic = app.topic(SOURCE, key_type=str, value_type=str, partitions=4, internal=False)
output_topic = app.topic(OUTPUT, key_type=str, value_type=str, partitions=4, internal=False)
key_to_count = app.Table("key_to_count", default=int, partitions=4)


@app.agent(source_topic)
async def count_and_forward(stream: faust.StreamT) -> None:
    async for events in stream.take_events(200, within=0.05):
        async with exactly_once_batch(app, events) as output:
            for tp, partition_events in source_partitions(events).items():
                with sending_for(tp):
                    changed: dict[str, int] = {}
                    for event in partition_events:
                        key = event.key
                        count = changed.get(key, key_to_count.get(key, 0)) + 1
                        changed[key] = count
                        output.record(
                            OUTPUT,
                            json.dumps(str(event.value)).encode(),
                            json.dumps(f"{key}:{count}:{event.value}").encode(),
                        )
                    for key, count in changed.items():
                        write_table(key_to_count, tp.partition, key, count, output)


if __name__ == "__main__":
    # mode's worker writes every task's stack to the log on SIGUSR1 (its "cry").
    worker = faust.Worker(app, loglevel="info", quiet=True)
    worker.execute_from_commandline()
