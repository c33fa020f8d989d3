"""English script scenes on the default model, with and without the `stage` adapter
(docs/adapters.md, "The `stage` adapter").

    python benchmarks/adapter_scripts.py --adapter none --out none.json
    python benchmarks/adapter_scripts.py --adapter stage --out stage.json
    python benchmarks/adapter_scripts.py --table none.json stage.json

For each premise: the scene, the attempt that gave a valid Fountain scene (a heading and two
speeches, read by a Fountain parser; 1 = the first), the share of its dialogue's words found
in Debian's `wamerican` list (/usr/share/dict/words; left out, saying so, where the list is
missing), repeated dialogue lines, and whether the scene copies: the longest run of words
of its dialogue found verbatim in the `stage` training corpus (`musegpt prepare stage`) and
in the few-shot example scene the prompt carries.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

PREMISES = [
    "Two soldiers on night watch hear footsteps on the castle walls.",
    "A young queen learns that her general plans to betray her.",
    "A prince in disguise is recognised by his old nurse.",
    "A merchant's ship is lost and his creditors come to collect.",
    "A father disowns the daughter who married against his will.",
    "A lighthouse keeper refuses to leave when the relief boat comes.",
    "A chef confronts the critic who closed her first restaurant.",
    "A student asks her teacher for a second chance after failing an exam.",
    "An astronaut talks to mission control as her oxygen runs low.",
    "Two strangers share a bench at a bus stop until dawn.",
]  # the first five suit a Shakespearean register, the last five are modern
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def dialogue_lines(scene: str) -> list[str]:
    """The spoken lines of a Fountain scene (not cues, parentheticals or action)."""
    from musegpt.studio.script import PAREN

    lines = []
    for block in scene.split("\n\n"):
        rows = block.strip().split("\n")
        cue = rows[0]
        if len(rows) > 1 and (cue.startswith("@") or (cue.upper() == cue and cue[:1] != "!")):
            lines += [row.strip() for row in rows[1:] if not PAREN.match(row.strip())]
    return lines


def words_of(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("’", "'"))


def longest_common_run(words: list[str], corpus: str) -> list[str]:
    """The longest run of consecutive `words` found verbatim in `corpus` (a text of
    lower-case words joined by single spaces)."""
    best: list[str] = []
    start = 0
    for end in range(1, len(words) + 1):  # the window grows while it is found
        while start < end and f" {' '.join(words[start:end])} " not in corpus:
            start += 1
        if end - start > len(best):
            best = words[start:end]
    return best


def corpus_words(path: Path) -> str:
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    return " " + " ".join(" ".join(words_of(text)) for text in texts) + " "


def measure(scene: str, corpus: str, example: str, words: frozenset[str] | None) -> dict[str, Any]:
    from musegpt.adapters.measures import real_word_share, repeated_lines, unknown_words

    spoken = "\n".join(dialogue_lines(scene))
    tokens = words_of(spoken)
    from_corpus = longest_common_run(tokens, corpus)
    from_example = longest_common_run(tokens, example)
    return {
        "dialogue_lines": len(spoken.splitlines()),
        "real_word_share": None if words is None else real_word_share(spoken, words),
        "unknown_words": [] if words is None else unknown_words(spoken, words),
        "repeated_lines": repeated_lines(spoken),
        "longest_from_corpus": len(from_corpus),
        "corpus_run": " ".join(from_corpus),
        "longest_from_example": len(from_example),
        "example_run": " ".join(from_example),
    }


def run(adapter: str, premises: int, seed: int, corpus_file: Path) -> dict[str, Any]:
    from musegpt.adapters.measures import WordListMissing, english_words
    from musegpt.studio import Studio
    from musegpt.studio.script import example_scene
    from musegpt.studio.tasks import StudioError

    try:
        words: frozenset[str] | None = english_words()
    except WordListMissing as err:
        print(f"real-word share left out: {err}", file=sys.stderr)
        words = None
    if not corpus_file.is_file():
        sys.exit(f"{corpus_file} is missing: run `musegpt prepare stage --out data/stage` first")
    corpus = corpus_words(corpus_file)
    example = " " + " ".join(words_of(example_scene("en"))) + " "
    studio = Studio(lang="en")
    rows = []
    started, cpu = time.monotonic(), time.process_time()
    for premise in PREMISES[:premises]:
        tick = time.monotonic()
        try:
            work = studio.script(premise, adapter=adapter, seed=seed)
        except StudioError as err:
            rows.append({"premise": premise, "scene": None, "error": str(err)[:200]})
            continue
        row = {"premise": premise, "scene": work.text, "attempt": work.meta["attempt"],
               "seconds": time.monotonic() - tick,
               **measure(work.text, corpus, example, words)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"adapter": adapter, "seed": seed, "rows": rows,
            "seconds": time.monotonic() - started, "cpu_seconds": time.process_time() - cpu,
            "load": os.getloadavg()}  # fmt: skip


def table(files: list[Path]) -> str:
    out = ["| adapter | valid scenes | valid at 1st attempt | dialogue lines | real words "
           "| repeated lines | longest run from corpus (words) | from the example |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for file in files:
        data = json.loads(file.read_text(encoding="utf-8"))
        rows = [r for r in data["rows"] if r.get("scene")]
        n = max(len(rows), 1)
        shares = [r["real_word_share"] for r in rows if r["real_word_share"] is not None]
        real = f"{sum(shares) / len(shares):.1%}" if shares else "(no word list)"
        out.append(
            f"| {data['adapter']} | {len(rows)}/{len(data['rows'])} "
            f"| {sum(r['attempt'] == 1 for r in rows) / n:.0%} "
            f"| {sum(r['dialogue_lines'] for r in rows)} | {real} "
            f"| {sum(r['repeated_lines'] for r in rows)} "
            f"| {max((r['longest_from_corpus'] for r in rows), default=0)} (max), "
            f"{sum(r['longest_from_corpus'] for r in rows) / n:.1f} (mean) "
            f"| {max((r['longest_from_example'] for r in rows), default=0)} (max) |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapter", default="none", help="none, auto, stage or an adapter")
    parser.add_argument("--premises", type=int, default=len(PREMISES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", type=Path, default=Path("data/stage/train.jsonl"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="*")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    result = run(args.adapter, args.premises, args.seed, args.corpus)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
