"""faust apps for unit tests: never connected to a broker, and tidied after."""

from __future__ import annotations

from pathlib import Path

from streams.eos import ExactlyOnceApp


def unconnected_app(name: str, datadir: Path, processing_guarantee: str) -> ExactlyOnceApp:
    """The worker's app class with an unreachable broker and the memory store."""
    return ExactlyOnceApp(
        name,
        broker="kafka://127.0.0.1:1",  # never connected
        store="memory://",
        processing_guarantee=processing_guarantee,
        datadir=str(datadir),
    )


def close_consumer_loop(app: ExactlyOnceApp) -> None:
    """faust made a consumer (never started) whose thread owns an event loop: close it."""
    thread = getattr(getattr(app, "_consumer", None), "_thread", None)
    loop = getattr(thread, "thread_loop", None)
    if loop is not None and not loop.is_closed():
        loop.close()
