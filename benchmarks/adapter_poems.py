"""Poems in form on the default model, with and without an adapter, or on another model
(docs/adapters.md).

    python benchmarks/adapter_poems.py --adapter none --topics 50 --out base.json
    python benchmarks/adapter_poems.py --adapter tang --topics 50 --out tang.json
    python benchmarks/adapter_poems.py --form sonnet --adapter verse-en --out sonnet.json
    python benchmarks/adapter_poems.py --form limerick --model poetry --out poetry.json
    python benchmarks/adapter_poems.py --table base.json tang.json

For each topic: the poem, the attempt that passed the checker (1 = the first), and repeated
lines. Chinese: whether a line holds Latin letters or digits, and the share of its character
bigrams found in the held-out Tang poems (唐诗三百首: the register of the corpus). English:
the share of its words found in Debian's `wamerican` word list (/usr/share/dict/words; the
benchmark says so and leaves the share out where the list is missing), and those not found.
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

TOPICS = [
    "月夜", "春雨", "秋风", "江上", "登高", "送别", "思乡", "山居", "雪夜", "边塞",
    "梅花", "柳", "渔父", "夜泊", "归雁", "古寺", "清明", "重阳", "落花", "春晓",
    "长江", "黄河", "西湖", "晚钟", "孤舟", "夜雨", "秋思", "怀古", "田园", "竹",
    "松", "菊", "荷", "燕子", "晨钟", "寒食", "中秋", "元日", "牧童", "樵夫",
    "客舍", "旅夜", "山行", "溪边", "春望", "闺怨", "从军", "赠友", "别离", "故园",
]  # fmt: skip
EN_TOPICS = [
    "autumn leaves", "the first snow", "a lighthouse at night", "an old dog asleep",
    "the sea at dawn", "a letter never sent", "rain on the window", "the last train home",
    "my grandmother's hands", "a city in the fog", "the moon over the hills", "spring returns",
    "a broken clock", "the river in winter", "a garden after rain", "the sound of bells",
    "a ship leaving port", "summer night", "a candle burning low", "the empty house",
    "birds in the morning", "a walk in the woods", "the stars above the field", "love and time",
    "the mountain road", "a child's first word", "the harvest moon", "an old friend",
    "the kitchen at midnight", "a field of wheat", "the war is over", "a bridge in the rain",
    "the baker's morning", "a lost glove", "the long winter", "a wedding", "the sea",
    "my father's garden", "the storm", "a quiet library", "the orchard in May",
    "a fisherman at dusk", "the old piano", "a cat on the wall", "the north wind",
    "a schoolroom", "the last rose", "an empty boat", "the hour before dawn", "a green hill",
]  # fmt: skip
HAN_BIGRAM = re.compile(r"(?=([\u4e00-\u9fff]{2}))")


def tang_bigrams(heldout: Path) -> set[str]:
    bigrams: set[str] = set()
    for line in heldout.read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"].split("\n", 1)[-1]  # the poem, not its title line
        bigrams.update(HAN_BIGRAM.findall(text))
    return bigrams


def measure(poem: str, bigrams: set[str]) -> dict[str, object]:
    from musegpt.adapters.measures import repeated_lines

    lines = [line.strip() for line in poem.splitlines() if line.strip()]
    found = [b for line in lines for b in HAN_BIGRAM.findall(line)]
    return {
        "latin_or_digits": bool(re.search(r"[A-Za-z0-9]", poem)),
        "tang_bigram_share": sum(b in bigrams for b in found) / max(len(found), 1),
        "repeated_lines": repeated_lines(poem),
    }


def measure_english(poem: str, words: frozenset[str] | None) -> dict[str, object]:
    from musegpt.adapters.measures import real_word_share, repeated_lines, unknown_words

    return {
        "real_word_share": None if words is None else real_word_share(poem, words),
        "unknown_words": [] if words is None else unknown_words(poem, words),
        "repeated_lines": repeated_lines(poem),
    }


def _word_list() -> frozenset[str] | None:
    from musegpt.adapters.measures import WordListMissing, english_words

    try:
        return english_words()
    except WordListMissing as err:
        print(f"real-word share left out: {err}", file=sys.stderr)
        return None


def run(
    adapter: str,
    topics: int,
    form: str,
    seed: int,
    heldout: Path,
    model: str | None = None,
    start: int = 0,
) -> dict[str, object]:
    from musegpt.forms import get_form
    from musegpt.studio import Studio
    from musegpt.studio.tasks import StudioError

    english = get_form(form).language == "en"
    words = _word_list() if english else None
    bigrams = set() if english else tang_bigrams(heldout)
    studio = Studio(model)
    rows = []
    started, cpu = time.monotonic(), time.process_time()
    for topic in (EN_TOPICS if english else TOPICS)[start:topics]:
        tick = time.monotonic()
        try:
            work = studio.poem(topic, form, attempts=5, adapter=adapter, seed=seed)
        except StudioError as err:
            rows.append({"topic": topic, "poem": None, "error": str(err)[:200]})
            continue
        scores = measure_english(work.text, words) if english else measure(work.text, bigrams)
        row = {"topic": topic, "poem": work.text, "attempt": work.meta["attempt"],
               "seconds": time.monotonic() - tick, **scores}  # fmt: skip
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    label = adapter if model is None else model
    return {"adapter": label, "model": model or "default", "form": form, "seed": seed,
            "rows": rows, "seconds": time.monotonic() - started,
            "cpu_seconds": time.process_time() - cpu, "load": os.getloadavg()}  # fmt: skip


def table(files: list[Path]) -> str:
    runs = [json.loads(file.read_text(encoding="utf-8")) for file in files]
    if runs and "real_word_share" in next((r for r in runs[0]["rows"] if r.get("poem")), {}):
        return table_english(runs)
    out = ["| adapter | poems | passed at 1st attempt | Latin/digits | Tang bigram share "
           "| repeated lines |", "|---|---|---|---|---|---|"]  # fmt: skip
    for data in runs:
        rows = [r for r in data["rows"] if r.get("poem")]
        n = max(len(rows), 1)
        first = sum(r["attempt"] == 1 for r in rows)
        out.append(
            f"| {data['adapter']} | {len(rows)}/{len(data['rows'])} | {first / n:.0%} "
            f"| {sum(r['latin_or_digits'] for r in rows)} "
            f"| {sum(r['tang_bigram_share'] for r in rows) / n:.0%} "
            f"| {sum(r['repeated_lines'] for r in rows)} |"
        )
    return "\n".join(out)


def table_english(runs: list[dict[str, Any]]) -> str:
    out = ["| model (adapter) | form | poems | passed at 1st attempt | real words | poems with "
           "every word real | repeated lines |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for data in runs:
        rows = [r for r in data["rows"] if r.get("poem")]
        n = max(len(rows), 1)
        shares = [r["real_word_share"] for r in rows if r["real_word_share"] is not None]
        real = f"{sum(shares) / len(shares):.1%}" if shares else "(no word list)"
        whole = sum(not r["unknown_words"] for r in rows) if shares else "-"
        out.append(
            f"| {data['adapter']} | {data['form']} | {len(rows)}/{len(data['rows'])} "
            f"| {sum(r['attempt'] == 1 for r in rows) / n:.0%} | {real} | {whole} "
            f"| {sum(r['repeated_lines'] for r in rows)} |"
        )
    return "\n".join(out)


def side_by_side(files: list[Path], count: int) -> str:
    """The poems of the first `count` topics every file has, one column per file (Markdown
    table)."""
    runs = [json.loads(file.read_text(encoding="utf-8")) for file in files]
    by_topic = [{row["topic"]: row for row in run["rows"]} for run in runs]
    shared = [row["topic"] for row in runs[0]["rows"] if all(row["topic"] in t for t in by_topic)]
    head = "| topic | " + " | ".join(str(run["adapter"]) for run in runs) + " |"
    out = [head, "|---" * (len(runs) + 1) + "|"]
    for topic in shared[:count]:
        cells = [topic]
        for rows in by_topic:
            poem = rows[topic].get("poem") or "(failed)"
            cells.append("<br>".join(poem.splitlines()))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapter", default="none")
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--start", type=int, default=0, help="skip the first N topics")
    parser.add_argument("--form", default="wujue")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", help="another model than the default (e.g. poetry)")
    parser.add_argument("--heldout", type=Path, default=Path("data/tang/heldout.jsonl"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="*")
    parser.add_argument(
        "--rows", type=Path, nargs="*", help="with --out: gather the rows printed by runs"
    )
    parser.add_argument("--side-by-side", type=int, default=0, help="with --table: N poems")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        if args.side_by_side:
            print("\n" + side_by_side(args.table, args.side_by_side))
        return
    if args.rows:  # runs stopped or split (--start): their printed rows, as one result
        lines = [line for file in args.rows for line in file.read_text("utf-8").splitlines()]
        rows = [json.loads(line) for line in lines if line.startswith('{"topic"')]
        label = args.adapter if args.model is None else args.model
        result = {"adapter": label, "model": args.model or "default", "form": args.form,
                  "seed": args.seed, "rows": rows}  # fmt: skip
    else:
        result = run(
            args.adapter, args.topics, args.form, args.seed, args.heldout, args.model, args.start
        )
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
