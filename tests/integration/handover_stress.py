"""Clean handovers every few seconds while events flow, round after round (not run by pytest).

Each round: a fresh app on one local broker, two workers, the simulated history sent in chunks
with short pauses, and after most chunks one worker stopped cleanly and a new one started in its
place. Then the list outcome must equal the pure rules' reference, with no trigger repeated; a
round that differs prints the same report as the fault tests. It hunts rare handover races that a
single run of ``test_worker_faults.py`` seldom meets (README, "Handover loss in CI").

    python -m tests.integration.handover_stress --rounds 10 --folder .run/handover-stress
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from pathlib import Path

from ops.services import LocalKafka
from streams.topics import LIST_TRIGGERS_TOPIC, prefixed
from tests.integration.pipeline_support import (
    net_membership,
    outcome_report,
    produced_triggers,
    reference_triggers,
    repeated_actions,
    send_events,
    simulated_events,
    start_worker,
    stop_worker,
    until_converged,
)


async def _round(bootstrap: str, number: int, rng: random.Random, folder: Path) -> bool:
    name = f"stress-{number}-{uuid.uuid4().hex[:6]}"
    prefix = f"{name}."
    round_folder = folder / name
    round_folder.mkdir(parents=True)
    events = simulated_events(seed=100 + number, steps=6000, vehicles=200)
    expected = reference_triggers(events)
    topic = prefixed(LIST_TRIGGERS_TOPIC, prefix).name
    workers = [
        start_worker(bootstrap, name, prefix, round_folder, name="w0"),
        start_worker(bootstrap, name, prefix, round_folder, name="w1"),
    ]
    started = len(workers)
    try:
        for start in range(0, len(events), 400):
            await send_events(bootstrap, prefix, events[start : start + 400])
            await asyncio.sleep(rng.uniform(0.2, 2.5))
            if rng.random() < 0.6:
                leaving = rng.randrange(len(workers))
                stop_worker(workers[leaving])
                workers[leaving] = start_worker(
                    bootstrap, name, prefix, round_folder, name=f"w{started}"
                )
                started += 1
        records = await until_converged(bootstrap, topic, expected, 120)
    finally:
        for worker in workers:
            stop_worker(worker)
    produced = produced_triggers(records)
    repeated = repeated_actions(produced)
    same = net_membership(produced) == net_membership(expected) and not repeated
    line = (
        f"round {number} {name}: workers started {started}, expected {len(expected)} triggers, "
        f"produced {len(produced)}, repeated {len(repeated)}: {'same' if same else 'DIFFERENT'}"
    )
    if not same:
        line += " " + await outcome_report(
            bootstrap, name, prefix, produced, expected, 0, round_folder
        )
    print(line, flush=True)
    return same


async def _main(rounds: int, folder: Path, seed: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    broker = LocalKafka(folder / "kafka")
    broker.start()
    try:
        rng = random.Random(seed)
        outcomes = [await _round(broker.bootstrap_servers, n, rng, folder) for n in range(rounds)]
    finally:
        broker.stop()
    print(f"{outcomes.count(True)} of {rounds} rounds gave the reference outcome")
    return 0 if all(outcomes) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folder", type=Path, required=True, help="logs and broker data")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return asyncio.run(_main(args.rounds, args.folder, args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
