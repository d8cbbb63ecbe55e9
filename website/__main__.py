"""``python -m website``: serve the credit website with settings from ``CREDIT_*`` variables.

The same as ``credit-transport website``; handy where the console script is not installed.
"""

from __future__ import annotations

from streams.logs import configure_logging
from streams.settings import Settings
from website.app import run_website


def main() -> None:
    """Read the settings once and serve until SIGINT/SIGTERM."""
    configure_logging("website")
    run_website(Settings())


if __name__ == "__main__":
    main()
