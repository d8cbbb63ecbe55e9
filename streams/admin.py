"""Create every topic of the product on a broker, idempotently: the one-shot ``create-topics`` step.

    credit-transport create-topics [--bootstrap-servers HOST:PORT] [--replication-factor N]

The topics are exactly :func:`streams.topics.all_topics`, each with its partition count and
``cleanup.policy``. The broker runs with ``auto.create.topics.enable=false``, so nothing else
creates them. The script

1. waits for the broker (it retries until ``--timeout``, so it can start together with Kafka);
2. creates the topics that are missing and accepts the ones that exist, including those that
   another process creates at the same moment;
3. warns when an existing topic has a different partition count or cleanup policy than the
   registry (it never alters a topic: see docs/deployment.md on adding partitions);
4. exits 0 when every topic exists, else 1 with the reason on stderr.

The bootstrap servers default to ``CREDIT_KAFKA_BOOTSTRAP_SERVERS`` (the product's settings).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code

from streams.topics import TopicSpec, all_topics

log = logging.getLogger("create-topics")

CLEANUP_POLICY = "cleanup.policy"
RETRY_SECONDS = 1.0
"""Pause between attempts while the broker starts or its controller settles."""
METADATA_SETTLE_SECONDS = 0.1
"""Pause before listing topics again after creating some."""
CREATE_TIMEOUT_MS = 30_000
"""How long the controller may take to create a batch of topics."""


class TopicCreationError(RuntimeError):
    """The topics could not be created; the message says which and why."""


@dataclass(frozen=True, slots=True)
class TopicFailure:
    """A topic the broker refused to create."""

    topic: str
    """Topic name."""
    error: str
    """Kafka error name and message."""
    retriable: bool
    """Whether asking again may succeed (e.g. the controller was moving)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one run did."""

    created: tuple[str, ...]
    """Topics this run created."""
    existing: tuple[str, ...]
    """Topics that were already there (or were created concurrently by another process)."""
    drift: tuple[str, ...]
    """Differences between existing topics and the registry, in words."""


def plan_topics(
    specs: Iterable[TopicSpec] | None = None, *, replication_factor: int = 1
) -> list[NewTopic]:
    """The topics to create: one per spec, with its partitions and cleanup policy.

    :param specs: the topics; every topic of the product (``all_topics()``) when None.
    :param replication_factor: copies of each partition; 1 on a single broker.
    """
    if replication_factor < 1:
        raise ValueError(f"replication factor must be at least 1, not {replication_factor}")
    return [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=replication_factor,
            topic_configs={CLEANUP_POLICY: str(spec.cleanup)},
        )
        for spec in (all_topics() if specs is None else specs)
    ]


def topic_failures(topic_errors: Iterable[Sequence[Any]]) -> list[TopicFailure]:
    """The refusals in a CreateTopics response; "already exists" is not one (idempotence).

    :param topic_errors: the response's ``topic_errors`` rows: ``(topic, error_code[, message])``.
    """
    failures = []
    for row in topic_errors:
        topic, code = row[0], row[1]
        message = row[2] if len(row) > 2 else None
        if code == 0 or code == TopicAlreadyExistsError.errno:
            continue
        error = for_code(code)
        text = error.__name__ + (f": {message}" if message else "")
        failures.append(TopicFailure(topic, text, retriable=bool(error.retriable)))
    return failures


def describe_drift(
    spec: TopicSpec, *, partitions: int | None, cleanup_policy: str | None
) -> list[str]:
    """How an existing topic differs from its spec, in words (empty when it matches)."""
    drift = []
    if partitions is not None and partitions != spec.partitions:
        drift.append(
            f"{spec.name}: {partitions} partitions on the broker, {spec.partitions} in the registry"
        )
    if cleanup_policy is not None and cleanup_policy != str(spec.cleanup):
        drift.append(
            f"{spec.name}: cleanup.policy={cleanup_policy} on the broker, "
            f"{spec.cleanup} in the registry"
        )
    return drift


async def connect(bootstrap_servers: str, *, deadline: float) -> AIOKafkaAdminClient:
    """An admin client on a broker that answers; retries until ``deadline`` (loop time)."""
    loop = asyncio.get_running_loop()
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="create-topics")
        try:
            await admin.start()
        except KafkaConnectionError as exc:
            await admin.close()
            if loop.time() + RETRY_SECONDS > deadline:
                raise TopicCreationError(
                    f"no Kafka broker answered at {bootstrap_servers}: {exc}"
                ) from exc
            log.info("waiting for the broker at %s", bootstrap_servers)
            await asyncio.sleep(RETRY_SECONDS)
        else:
            return admin


async def _existing_drift(
    admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]
) -> tuple[str, ...]:
    if not specs:
        return ()
    described = await admin.describe_topics([spec.name for spec in specs])
    partitions = {
        entry["topic"]: len(entry["partitions"])
        for entry in described
        if entry.get("error_code", 0) == 0
    }
    responses = await admin.describe_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, spec.name, {CLEANUP_POLICY: None})
            for spec in specs
        ]
    )
    policies: dict[str, str] = {}
    for response in responses:
        for error_code, _message, _type, name, entries in response.resources:
            for entry in entries if error_code == 0 else ():
                if entry[0] == CLEANUP_POLICY:
                    policies[name] = entry[1]
    drift: list[str] = []
    for spec in specs:
        drift += describe_drift(
            spec, partitions=partitions.get(spec.name), cleanup_policy=policies.get(spec.name)
        )
    return tuple(drift)


async def ensure_topics(
    bootstrap_servers: str,
    *,
    replication_factor: int = 1,
    wait_seconds: float = 120.0,
    specs: Sequence[TopicSpec] | None = None,
    prefix: str = "",
) -> Outcome:
    """Create every missing topic and check the existing ones; waits for the broker.

    :param bootstrap_servers: brokers, comma separated.
    :param replication_factor: copies of each partition of a new topic.
    :param wait_seconds: how long to wait for the broker and for retriable errors to clear.
    :param specs: the topics; ``all_topics(prefix)`` when None.
    :param prefix: topic name prefix of an isolated pipeline (see ``Settings.topic_prefix``).
    :raises TopicCreationError: when a topic cannot be created, or no broker answers in time.
    """
    specs = tuple(all_topics(prefix) if specs is None else specs)
    plan = plan_topics(specs, replication_factor=replication_factor)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    admin = await connect(bootstrap_servers, deadline=deadline)
    created: list[str] = []
    try:
        # Until the broker lists every topic: a topic created a moment ago may still be missing
        # from the metadata, and "already exists" answers a second request for it.
        while True:
            try:
                present = set(await admin.list_topics())
                missing = [topic for topic in plan if topic.name not in present]
                if not missing:
                    break
                response = await admin.create_topics(missing, timeout_ms=CREATE_TIMEOUT_MS)
            except KafkaError as exc:
                if not exc.retriable or loop.time() + RETRY_SECONDS > deadline:
                    raise TopicCreationError(f"the broker failed a request: {exc!r}") from exc
                log.info("retrying after a retriable error: %r", exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            created += [row[0] for row in response.topic_errors if row[1] == 0]
            failures = topic_failures(response.topic_errors)
            if failures and not all(failure.retriable for failure in failures):
                lines = "\n".join(f"  {f.topic}: {f.error}" for f in failures)
                raise TopicCreationError(f"the broker refused to create topics:\n{lines}")
            if loop.time() + RETRY_SECONDS > deadline:
                names = ", ".join(topic.name for topic in missing)
                raise TopicCreationError(f"topics still absent after {wait_seconds} s: {names}")
            await asyncio.sleep(RETRY_SECONDS if failures else METADATA_SETTLE_SECONDS)
        existing = [spec for spec in specs if spec.name not in created]
        drift = await _existing_drift(admin, existing)
        await _wait_for_leaders(admin, created, deadline)
    finally:
        await admin.close()
    return Outcome(tuple(created), tuple(spec.name for spec in existing), drift)


async def topic_partitions(bootstrap_servers: str, topic: str) -> list[int]:
    """The partition numbers of ``topic``, ascending; empty when it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if not described or described[0].get("error_code") or not described[0].get("partitions"):
        return []
    return sorted(int(p["partition"]) for p in described[0]["partitions"])


async def _wait_for_leaders(admin: Any, names: Sequence[str], deadline: float) -> None:
    """Until every partition of the new topics has a leader: a client that starts at once would
    otherwise log NotLeaderForPartition errors while the controller elects them."""
    loop = asyncio.get_running_loop()
    waiting = list(names)
    while waiting and loop.time() < deadline:
        try:
            described = await admin.describe_topics(waiting)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            described = []
        led = {
            topic["topic"]
            for topic in described
            if topic.get("error_code", 0) == 0
            and topic.get("partitions")
            and all(partition.get("leader", -1) >= 0 for partition in topic["partitions"])
        }
        waiting = [name for name in waiting if name not in led]
        if waiting:
            await asyncio.sleep(METADATA_SETTLE_SECONDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credit-transport create-topics", description="Create every topic of credit-transport."
    )
    parser.add_argument(
        "--bootstrap-servers",
        help="brokers, comma separated (default: CREDIT_KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=1,
        help="copies of each partition of a new topic (default: %(default)s, one broker)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the broker (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: create the topics, print what happened, and return the exit status."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    from streams.settings import Settings

    settings = Settings()
    bootstrap_servers = args.bootstrap_servers or settings.kafka_bootstrap_servers
    try:
        outcome = asyncio.run(
            ensure_topics(
                bootstrap_servers,
                replication_factor=args.replication_factor,
                wait_seconds=args.timeout,
                prefix=settings.topic_prefix,
            )
        )
    except (TopicCreationError, KafkaError, ValueError) as exc:
        print(f"create-topics FAILED on {bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    for line in outcome.drift:
        log.warning("existing topic differs from streams/topics.py: %s", line)
    print(
        f"create-topics: {len(outcome.created)} created, {len(outcome.existing)} already present "
        f"on {bootstrap_servers}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
