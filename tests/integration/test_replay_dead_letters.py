"""Replaying dead letters (issue 3, item 4) on the real broker: the original bytes and headers go
back to the source topic, filtered by reason, once; a second run sends nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.codecs import AvroSerde
from streams.ingest import DeadLetter, SourceRecord, dead_letter_value, ingest
from streams.replay import replay_dead_letters
from streams.topics import OVERLOAD_DETECTIONS_TOPIC
from tests.conftest import KafkaService
from tests.integration.kafka_helpers import create_topics, produce, read_committed

pytestmark = pytest.mark.integration


async def test_replay_sends_the_original_records_of_one_reason_back_once(
    kafka: KafkaService, unique_name: str, tmp_path: Path
) -> None:
    """Letters of the chosen reason return to the source with their bytes; a rerun sends none."""
    bootstrap = kafka.bootstrap_servers
    source = f"{unique_name}.{OVERLOAD_DETECTIONS_TOPIC.name}"
    dead_letter_topic = f"{source}.dead-letter"
    await create_topics(bootstrap, [source, dead_letter_topic])
    serde = AvroSerde.with_local_ids()
    originals = [b"\x07bad-%d" % i for i in range(6)] + [b"", b""]
    now = datetime.now(UTC)
    letters = []
    for offset, value in enumerate(originals):
        record = SourceRecord(source, 0, offset, b"k%d" % offset, value, (("event_id", b"e"),))
        letter = ingest(serde, record, "OverloadDetection", now)
        assert isinstance(letter, DeadLetter)
        letters.append(
            (record.key, serde.encode("DeadLetter", dead_letter_value(record, letter, now)))
        )
    await produce(bootstrap, dead_letter_topic, letters)

    group = f"{unique_name}-replay"
    first = await replay_dead_letters(
        bootstrap, dead_letter_topic, reason="UNKNOWN_MAGIC_BYTE", group_id=group, idle_ms=1500
    )
    again = await replay_dead_letters(
        bootstrap, dead_letter_topic, reason="UNKNOWN_MAGIC_BYTE", group_id=group, idle_ms=1500
    )
    replayed = await read_committed(bootstrap, source, expect=6, idle=1.0, timeout=30)
    print(f"\n[replay] first={first} again={again} on_source={len(replayed)}")
    assert (first.read, first.replayed, first.skipped_other_reason) == (8, 6, 2)
    assert again.replayed == 0
    assert sorted(r.value for r in replayed) == sorted(originals[:6])
    assert all(
        dict(r.headers)["replayed-from"].startswith(dead_letter_topic.encode()) for r in replayed
    )
    assert all(dict(r.headers)["event_id"] == b"e" for r in replayed)
