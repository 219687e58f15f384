"""The studio's worker process: huey's consumer, one job at a time (``python -m mobiclass.studio.worker``).

The studio starts it and stops it; it can also run on its own beside a studio sharing the same home.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .jobs import JobQueue


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mobiclass.studio.worker")
    parser.add_argument("--home", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(levelname)s %(message)s")
    queue = JobQueue(Path(args.home), args.database)
    consumer = queue.huey.create_consumer(workers=1, worker_type="thread", periodic=False, initial_delay=0.2,
                                          max_delay=0.5, check_worker_health=True)
    consumer.run()


if __name__ == "__main__":
    main()
