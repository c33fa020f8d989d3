"""Two processes making the same cache entry at once (a server and a command started
together on a fresh machine, or two test workers): one makes it, the other waits for it."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from musegpt.paths import cache_lock


def make_entry(entry: str, log: str) -> None:
    target = Path(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(target):
        if target.exists():
            return
        with open(log, "a") as f:
            f.write("made\n")
        time.sleep(0.3)  # a slow build: the other process arrives while it runs
        target.write_text("done")


def test_one_of_two_processes_makes_an_entry_the_other_waits_for(tmp_path: Path) -> None:
    entry, log = tmp_path / "cache" / "entry", tmp_path / "log"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=make_entry, args=(str(entry), str(log))) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert entry.read_text() == "done"
    assert log.read_text() == "made\n"  # made once, not once a process
