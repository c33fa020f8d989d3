"""Chinese poems in form on the default model, with and without an adapter (docs/adapters.md).

    python benchmarks/adapter_poems.py --adapter none --topics 10 --out base.json
    python benchmarks/adapter_poems.py --adapter tang --topics 10 --out tang.json
    python benchmarks/adapter_poems.py --table base.json tang.json

For each topic: the poem, the attempt that passed the checker (1 = the first), whether a line
holds Latin letters or digits, the share of its character bigrams found in the held-out Tang
poems (唐诗三百首: the register of the corpus), and repeated lines.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

TOPICS = [
    "月夜", "春雨", "秋风", "江上", "登高", "送别", "思乡", "山居", "雪夜", "边塞",
    "梅花", "柳", "渔父", "夜泊", "归雁", "古寺", "清明", "重阳", "落花", "春晓",
    "长江", "黄河", "西湖", "晚钟", "孤舟", "夜雨", "秋思", "怀古", "田园", "竹",
    "松", "菊", "荷", "燕子", "晨钟", "寒食", "中秋", "元日", "牧童", "樵夫",
    "客舍", "旅夜", "山行", "溪边", "春望", "闺怨", "从军", "赠友", "别离", "故园",
]  # fmt: skip
HAN_BIGRAM = re.compile(r"(?=([\u4e00-\u9fff]{2}))")


def tang_bigrams(heldout: Path) -> set[str]:
    bigrams: set[str] = set()
    for line in heldout.read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"].split("\n", 1)[-1]  # the poem, not its title line
        bigrams.update(HAN_BIGRAM.findall(text))
    return bigrams


def measure(poem: str, bigrams: set[str]) -> dict[str, object]:
    lines = [line.strip() for line in poem.splitlines() if line.strip()]
    found = [b for line in lines for b in HAN_BIGRAM.findall(line)]
    return {
        "latin_or_digits": bool(re.search(r"[A-Za-z0-9]", poem)),
        "tang_bigram_share": sum(b in bigrams for b in found) / max(len(found), 1),
        "repeated_lines": len(lines) - len(set(lines)),
    }


def run(adapter: str, topics: int, form: str, seed: int, heldout: Path) -> dict[str, object]:
    from musegpt.studio import Studio
    from musegpt.studio.tasks import StudioError

    bigrams = tang_bigrams(heldout)
    studio = Studio()
    rows = []
    started = time.monotonic()
    for topic in TOPICS[:topics]:
        tick = time.monotonic()
        try:
            work = studio.poem(topic, form, attempts=5, adapter=adapter, seed=seed)
        except StudioError as err:
            rows.append({"topic": topic, "poem": None, "error": str(err)[:200]})
            continue
        row = {"topic": topic, "poem": work.text, "attempt": work.meta["attempt"],
               "seconds": time.monotonic() - tick, **measure(work.text, bigrams)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    return {"adapter": adapter, "form": form, "seed": seed, "rows": rows,
            "seconds": time.monotonic() - started}  # fmt: skip


def table(files: list[Path]) -> str:
    out = ["| adapter | poems | passed at 1st attempt | Latin/digits | Tang bigram share "
           "| repeated lines |", "|---|---|---|---|---|---|"]  # fmt: skip
    for file in files:
        data = json.loads(file.read_text(encoding="utf-8"))
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


def side_by_side(files: list[Path], count: int) -> str:
    """The first `count` topics' poems, one column per file (Markdown table)."""
    runs = [json.loads(file.read_text(encoding="utf-8")) for file in files]
    head = "| topic | " + " | ".join(str(run["adapter"]) for run in runs) + " |"
    out = [head, "|---" * (len(runs) + 1) + "|"]
    for index in range(count):
        cells = [runs[0]["rows"][index]["topic"]]
        for run in runs:
            poem = run["rows"][index].get("poem") or "(failed)"
            cells.append("<br>".join(poem.splitlines()))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapter", default="none")
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--form", default="wujue")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--heldout", type=Path, default=Path("data/tang/heldout.jsonl"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="*")
    parser.add_argument("--side-by-side", type=int, default=0, help="with --table: N poems")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        if args.side_by_side:
            print("\n" + side_by_side(args.table, args.side_by_side))
        return
    result = run(args.adapter, args.topics, args.form, args.seed, args.heldout)
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
