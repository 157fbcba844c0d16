"""Start the server's app on a data directory (its lifespan: replay and start-up, no HTTP), stop
it, and print the generation of every garbage collection that ran while it started, in order,
as a JSON list.

    python tests/startup_collections_child.py DATA_DIR

A child process: start-up freezes what it built (`keep_for_good`), which must not happen to the
test process's own objects. `tests/test_collector.py` runs it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any

from api.app import Settings, create_app


def main(data_dir: Path) -> None:
    app = create_app(Settings(data_dir=data_dir, quiet=True, fsync=False))
    generations: list[int] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    async def start_and_stop() -> None:
        gc.collect()  # what importing and building the app left: not start-up's
        gc.callbacks.append(watch)
        try:
            async with app.router.lifespan_context(app):
                gc.callbacks.remove(watch)  # started: what follows is not start-up
        finally:
            if watch in gc.callbacks:
                gc.callbacks.remove(watch)

    asyncio.run(start_and_stop())
    print(json.dumps(generations))


if __name__ == "__main__":  # the ledger's process is spawned: it imports this module again
    main(Path(sys.argv[1]))
