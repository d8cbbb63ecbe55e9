"""``credit-transport``: one console script with a subcommand for every process of the product.

credit-transport demo              # local broker + Redis + worker + traffic; Ctrl-C stops all
credit-transport kafka start|stop  # the local single-node Apache Kafka (KRaft)
credit-transport redis start|stop  # the local Redis
credit-transport create-topics     # every topic of streams/topics.py, idempotently
credit-transport worker            # the faust stream worker (exactly-once)
credit-transport tick [--at T]     # tick the lifecycle's clock (the leader worker does it too)
credit-transport history SUBJECT   # a subject's lifecycle history from the audit topic
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence

from streams.settings import REPO_ROOT, Settings

LOCAL_KAFKA_PORT = 19092
LOCAL_KAFKA_CONTROLLER_PORT = 19093
LOCAL_REDIS_PORT = 16379
LOCAL_RUN_DIR = REPO_ROOT / ".run"


def _kafka(args: argparse.Namespace) -> int:
    from ops.services import LocalKafka

    broker = LocalKafka(LOCAL_RUN_DIR / "kafka", LOCAL_KAFKA_PORT, LOCAL_KAFKA_CONTROLLER_PORT)
    if args.action == "start":
        broker.start()
        print(f"Kafka ready at {broker.bootstrap_servers} ({broker.startup_seconds:.1f} s)")
    else:
        broker.stop()
        print("Kafka stopped")
    return 0


def _redis(args: argparse.Namespace) -> int:
    from ops.services import LocalRedis

    server = LocalRedis(LOCAL_RUN_DIR / "redis", LOCAL_REDIS_PORT)
    if args.action == "start":
        server.start()
        print(f"Redis ready at {server.url}")
    else:
        server.stop()
        print("Redis stopped")
    return 0


def _create_topics(args: argparse.Namespace) -> int:
    from streams.admin import main as create_topics

    return create_topics(args.admin_args)


def _worker(args: argparse.Namespace) -> int:
    from streams.app import run_worker

    run_worker(Settings())
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from ops.demo import feed

    settings = Settings()
    asyncio.run(feed(settings.kafka_bootstrap_servers, args.rate, args.seconds, args.seed))
    return 0


def _publisher(args: argparse.Namespace) -> int:
    from sinks.publisher import run_publisher

    asyncio.run(run_publisher(Settings()))
    return 0


def _serving_store(args: argparse.Namespace) -> int:
    from sinks.serving_store import run_serving_store

    asyncio.run(run_serving_store(Settings()))
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from sinks.serving_store import rebuild

    report = asyncio.run(rebuild(Settings(), force=args.force))
    print(report)
    return 0


def _api(args: argparse.Namespace) -> int:
    from api.app import run_api

    run_api(Settings())
    return 0


def _replay_dead_letters(args: argparse.Namespace) -> int:
    from streams.replay import replay_dead_letters
    from streams.topics import INPUT_TOPICS, prefixed

    settings = Settings()
    specs = {spec.name: prefixed(spec, settings.topic_prefix) for spec in INPUT_TOPICS}
    if args.topic not in specs:
        print(f"unknown input topic {args.topic!r}; one of: {', '.join(specs)}", file=sys.stderr)
        return 2
    report = asyncio.run(
        replay_dead_letters(
            settings.kafka_bootstrap_servers,
            specs[args.topic].dead_letter.name,
            reason=args.reason,
            group_id=f"{settings.topic_prefix}{settings.app_id}-replay",
        )
    )
    print(report)
    return 0


def _tick(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from streams.clock import tick_once
    from streams.topics import CREDIT_FACTS_TOPIC, prefixed

    settings = Settings()
    try:
        at = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    except ValueError:
        print(f"--at {args.at!r} is not an ISO 8601 instant", file=sys.stderr)
        return 2
    if at.tzinfo is None:
        print("--at needs a time zone, e.g. 2027-01-04T09:00:00+08:00", file=sys.stderr)
        return 2
    topic = prefixed(CREDIT_FACTS_TOPIC, settings.topic_prefix).name
    count = asyncio.run(tick_once(settings.kafka_bootstrap_servers, topic, at))
    print(f"ticked {count} partitions of {topic} at {at.isoformat()}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from streams.history import subject_history
    from streams.topics import AUDIT_RECORDS_TOPIC, prefixed

    settings = Settings()
    topic = prefixed(AUDIT_RECORDS_TOPIC, settings.topic_prefix).name
    for record in asyncio.run(
        subject_history(settings.kafka_bootstrap_servers, topic, args.subject)
    ):
        record.pop("subject", None)  # the operator typed it; a driver's would be an ID number
        print(json.dumps(record, ensure_ascii=False))
    return 0


def _website(args: argparse.Namespace) -> int:
    from website.app import run_website

    run_website(Settings())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ops.demo import run_demo

    return run_demo(events_per_second=args.rate, seconds=args.seconds, seed=args.seed)


SUBCOMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "kafka": _kafka,
    "redis": _redis,
    "create-topics": _create_topics,
    "worker": _worker,
    "simulate": _simulate,
    "website": _website,
    "publisher": _publisher,
    "serving-store": _serving_store,
    "rebuild": _rebuild,
    "api": _api,
    "replay-dead-letters": _replay_dead_letters,
    "tick": _tick,
    "history": _history,
}


SERVICES = frozenset({"worker", "serving-store", "api", "publisher", "website"})
"""Long-running processes: their logs are JSON lines (streams/logs.py)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credit-transport", description="Real-time credit system of a transport bureau."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run everything locally with synthetic traffic")
    demo.add_argument("--rate", type=float, default=200.0, help="events per second")
    demo.add_argument("--seconds", type=float, default=0.0, help="0 runs until Ctrl-C")
    demo.add_argument("--seed", type=int, default=7)
    simulate = commands.add_parser("simulate", help="send synthetic traffic to the broker")
    simulate.add_argument("--rate", type=float, default=200.0, help="events per second")
    simulate.add_argument("--seconds", type=float, default=60.0, help="0 runs until Ctrl-C")
    simulate.add_argument("--seed", type=int, default=7)
    for name in ("kafka", "redis"):
        service = commands.add_parser(name, help=f"the local {name} for development and tests")
        service.add_argument("action", choices=("start", "stop"))
    create = commands.add_parser("create-topics", help="create every topic the product needs")
    create.add_argument("admin_args", nargs=argparse.REMAINDER, help="see --help of the step")
    commands.add_parser("worker", help="the faust stream worker")
    commands.add_parser("website", help="the reference credit website (双公示 portal and API)")
    commands.add_parser("publisher", help="deliver 双公示 publications to the credit website")
    commands.add_parser("serving-store", help="keep Redis in step with credit snapshots")
    rebuild = commands.add_parser("rebuild", help="fill an empty Redis from the compacted topic")
    rebuild.add_argument("--force", action="store_true", help="even when Redis is not empty")
    commands.add_parser("api", help="the law-enforcement query API")
    replay = commands.add_parser(
        "replay-dead-letters", help="send an input topic's dead letters back once fixed"
    )
    replay.add_argument("topic", help="the input topic, e.g. overload-detections")
    replay.add_argument("--reason", help="only letters with this reason code")
    tick = commands.add_parser(
        "tick", help="tick the lifecycle's clock now, or at --at (catch-up, tests)"
    )
    tick.add_argument("--at", help="ISO 8601 instant with a time zone; default: now")
    history = commands.add_parser(
        "history", help="a subject's lifecycle history from the audit topic (JSON lines)"
    )
    history.add_argument("subject", help="KIND:key, e.g. 'VEHICLE:鲁P12345|YELLOW'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from streams.logs import configure_logging

    args = build_parser().parse_args(argv)
    # Services log JSON lines for the log pipeline; commands people run log masked text.
    configure_logging(args.command, json=args.command in SERVICES)
    return SUBCOMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["SUBCOMMANDS", "build_parser", "main"]
