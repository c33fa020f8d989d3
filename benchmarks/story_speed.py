"""Wall time of the README's main job, `musegpt write story PREMISE`, against issue 14's
target (a three-chapter story under 60 s on the 2-core machine).

Each run is the command itself, as a user types it, in a fresh folder (without `--seed`
each run is a new story); the table gives its wall and CPU seconds, the phases
`story.json` records and the size of each chapter (words, or Han characters in Chinese).

    python benchmarks/story_speed.py "一个发现爱情的机器人" --runs 5
    python benchmarks/story_speed.py "a robot who discovers love" --runs 2 --seed 1
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HAN = re.compile(r"[\u4e00-\u9fff]")
TARGET_S = 60.0
PHASES = ("plan", "outline", "summaries", "chapters")


def size(text: str, lang: str) -> int:
    return len(HAN.findall(text)) if lang == "zh" else len(text.split())


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds of the command and its threads
    phases: dict[str, float]  # story.json's meta.seconds
    chapters: list[int]  # words, or Han characters in Chinese


def one_run(premise: str, seed: int | None) -> Run:
    """One `musegpt write story` in a fresh folder: its seconds and what it wrote."""
    command = ["musegpt", "write", "story", premise, *(["--seed", str(seed)] if seed else [])]
    with tempfile.TemporaryDirectory() as folder:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        story = json.loads(next(Path(folder).glob("stories/*/story.json")).read_text("utf-8"))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sizes = [size(scene["text"], story["lang"]) for scene in story["scenes"]]
    return Run(wall, cpu, story["meta"]["seconds"], sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("premise")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None, help="the same story each run")
    args = parser.parse_args()
    print(f"`musegpt write story {args.premise!r}`" + (f" --seed {args.seed}" if args.seed else ""))
    print("\n| run | wall s | CPU s | plan / outline / summaries / chapters s | chapter sizes |")
    print("|---|---|---|---|---|")
    walls = []
    for number in range(1, args.runs + 1):
        run = one_run(args.premise, args.seed)
        walls.append(run.wall)
        phases = " / ".join(f"{run.phases.get(k, 0):.1f}" for k in PHASES)
        sizes = " / ".join(str(n) for n in run.chapters)
        print(f"| {number} | {run.wall:.1f} | {run.cpu:.1f} | {phases} | {sizes} |", flush=True)
    over = sum(w >= TARGET_S for w in walls)
    print(f"\nmean {sum(walls) / len(walls):.1f} s, max {max(walls):.1f} s, "
          f"{over} of {len(walls)} at or over {TARGET_S:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
