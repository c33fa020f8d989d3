"""The default model's output table in other quantisations: accuracy and decoding speed.

    python benchmarks/default_model_quant.py                       # Q8_0 (the package), Q5_0, Q4_0
    python benchmarks/default_model_quant.py --types Q5_0,Q5_1,Q4_1,Q4_0 --windows 4

Gemma 3 270M ties its output projection to its token embedding table (262,144 x 640), which
the package's GGUF keeps as Q8_0: 178 MB of 253, read in full for every decoded token. Each
type in `--types` re-quantises only that table (`requantise_table`, every other tensor
copied) and is compared with the package's file on the same text:

- perplexity on each text set (tokens 65-512 of windows of 512 tokens, so every scored token
  has at least 64 before it), and its change from Q8_0;
- the mean KL divergence of the next-token distribution from Q8_0's (nats per token), and
  how often the likeliest next token is the same as Q8_0's (what greedy decoding follows);
- decoding speed through MuseGPT's engine and decoder (what every studio task uses): greedy
  tokens/s and CPU seconds per token with llama.cpp on one thread, and on the threads
  MuseGPT chooses (`--rounds` runs, models alternating, the median kept).

Text sets (each cut into `--windows` windows): English verse (`poetry-en`) and Shakespeare's
plays, Tang poems (classical Chinese), modern Chinese from Debian's `fortunes-zh` (its
`chinese` file, when installed), and the story evaluation's own kept chapters in both
languages (docs/stories-eval-s10.jsonl: written by the Q8_0 model itself, so this set
favours Q8_0 and any drift shows as a loss there).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from musegpt.data.builtin import get_builtin
from musegpt.engines.default_model import assembled_model_path, requantise_table
from musegpt.engines.llama import LlamaCppEngine
from musegpt.generation.params import SamplingParams

WINDOW = 512
CONTEXT = 64  # tokens of each window not scored: they are the first ones' context
STORIES = Path(__file__).resolve().parent.parent / "docs" / "stories-eval-s10.jsonl"
FORTUNES_ZH = Path("/usr/share/games/fortunes/chinese")
PROMPTS = {
    "en": "The lighthouse keeper climbed the stairs one last time, and",
    "zh": "从前有一个机器人，它住在海边的小镇上。每天早上，",
}


def corpus_text(name: str, stride: int, limit: int) -> str:
    """Every `stride`-th document of a built-in corpus, up to `limit` characters."""
    corpus = get_builtin(name)
    kept: list[str] = []
    size = 0
    for document in itertools.islice(corpus.documents(corpus.locate()), 0, None, stride):
        kept.append(document)
        size += len(document)
        if size >= limit:
            break
    return "\n\n".join(kept)


def story_chapters(lang: str) -> str:
    chapters: list[str] = []
    for line in STORIES.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["lang"] == lang:
            chapters += [scene.get("text", "") for scene in row["project"].get("scenes", [])]
    return "\n\n".join(c for c in chapters if c)


def fortunes_zh() -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", FORTUNES_ZH.read_text(encoding="utf-8"))
    return "\n\n".join(part.strip() for part in text.split("\n%\n") if part.strip())


def text_sets(limit: int) -> dict[str, str]:
    sets = {
        "en verse (poetry-en)": corpus_text("poetry-en", 101, limit),
        "en plays (shakespeare)": corpus_text("shakespeare", 37, limit),
        "zh classical (tang-poems)": corpus_text("tang-poems", 499, limit),
        "en model chapters": story_chapters("en"),
        "zh model chapters": story_chapters("zh"),
    }
    if FORTUNES_ZH.is_file():
        sets["zh modern (fortunes-zh)"] = fortunes_zh()
    return sets


def windows(llama: Any, text: str, count: int) -> list[list[int]]:
    """`count` windows of WINDOW tokens (the first one BOS) from the start of `text`."""
    ids: list[int] = llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    size = WINDOW - 1
    found = [[int(llama.token_bos()), *ids[i : i + size]] for i in range(0, len(ids), size)]
    return [w for w in found if len(w) == WINDOW][:count]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """In place, in float32 (a window's logits are 470 MB)."""
    logits -= logits.max(axis=-1, keepdims=True)
    logits -= np.log(np.exp(logits).sum(axis=-1, keepdims=True, dtype=np.float64)).astype(
        np.float32
    )
    return logits


def accuracy(paths: dict[str, Path], sets: dict[str, str], count: int) -> list[dict[str, Any]]:
    """Per text set and type: perplexity, KL from the first type's, top-1 agreement."""
    from llama_cpp import Llama

    models = {
        name: Llama(
            str(path), n_ctx=WINDOW, n_batch=WINDOW, n_threads=2, logits_all=True, verbose=False
        )
        for name, path in paths.items()
    }
    reference = next(iter(models))
    rows = []
    for set_name, text in sets.items():
        nll: dict[str, list[float]] = {name: [] for name in models}
        kl: dict[str, list[float]] = {name: [] for name in models}
        same: dict[str, list[bool]] = {name: [] for name in models}
        chosen = windows(models[reference], text, count)
        for window in chosen:
            targets = np.array(window[CONTEXT + 1 :])
            ref_logp = None
            for name, llama in models.items():
                llama.reset()
                llama.eval(window)
                logp = log_softmax(np.array(llama.scores[CONTEXT : WINDOW - 1]))
                nll[name] += (-logp[np.arange(len(targets)), targets]).tolist()
                if ref_logp is None:
                    ref_logp = logp
                kl[name] += np.einsum("ij,ij->i", np.exp(ref_logp), ref_logp - logp).tolist()
                same[name] += (logp.argmax(-1) == ref_logp.argmax(-1)).tolist()
        base = float(np.exp(np.mean(nll[reference])))
        for name in models:
            ppl = float(np.exp(np.mean(nll[name])))
            rows.append(
                {
                    "set": set_name,
                    "type": name,
                    "tokens": len(nll[name]),
                    "perplexity": round(ppl, 3),
                    "change_pct": round(100 * (ppl / base - 1), 2),
                    "kl_mean": round(float(np.mean(kl[name])), 5),
                    "top1_same": round(float(np.mean(same[name])), 4),
                }
            )
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    return rows


def decode_once(engine: LlamaCppEngine, prompt: str, tokens: int) -> tuple[int, float, float]:
    """(tokens decoded, wall seconds, CPU seconds) of one greedy decode (its prompt, a dozen
    tokens, is evaluated too: under 2% of the time)."""
    params = SamplingParams(temperature=0.0, max_new_tokens=tokens, min_new_tokens=tokens, seed=1)
    wall, cpu = time.perf_counter(), time.process_time()
    engine.generate(prompt, params)  # exactly `tokens`: none may end it sooner
    return tokens, time.perf_counter() - wall, time.process_time() - cpu


def speed(paths: dict[str, Path], tokens: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for threads in (1, None):
        engines = {n: LlamaCppEngine.load(p, name=n, threads=threads) for n, p in paths.items()}
        for lang, prompt in PROMPTS.items():
            runs: dict[str, list[tuple[int, float, float]]] = {n: [] for n in engines}
            for _ in range(rounds):
                for name, engine in engines.items():
                    runs[name].append(decode_once(engine, prompt, tokens))
            for name, measured in runs.items():
                rows.append(
                    {
                        "threads": threads or "chosen",
                        "lang": lang,
                        "type": name,
                        "tokens_per_s": round(statistics.median(n / w for n, w, _ in measured), 1),
                        "cpu_ms_per_token": round(
                            statistics.median(1000 * c / n for n, _, c in measured), 2
                        ),
                        "load": round(os.getloadavg()[0], 2),
                    }
                )
                print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
        del engines
    return rows


def variants(types: list[str], folder: Path) -> Iterator[tuple[str, Path]]:
    source = assembled_model_path()
    yield "Q8_0", source
    for table_type in types:
        target = folder / f"table-{table_type.lower()}.gguf"
        start = time.perf_counter()
        requantise_table(source, target, table_type)
        print(f"{table_type}: derived in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        yield table_type, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", default="Q5_0,Q4_0", help="table types besides Q8_0")
    parser.add_argument("--windows", type=int, default=4, help="windows of 512 tokens per set")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per timed decode")
    parser.add_argument("--rounds", type=int, default=3, help="timed decodes per model")
    parser.add_argument("--sets", default="", help="only the text sets whose names contain these")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        paths = dict(variants([t for t in args.types.split(",") if t], Path(folder)))
        result: dict[str, Any] = {}
        if not args.skip_accuracy:
            chars = 5 * WINDOW * args.windows  # enough for English's ~4 characters a token
            wanted = [s for s in args.sets.split(",") if s]
            sets = {
                k: v
                for k, v in text_sets(chars).items()
                if not wanted or any(w in k for w in wanted)
            }
            result["accuracy"] = accuracy(paths, sets, args.windows)
        if not args.skip_speed:
            result["speed"] = speed(paths, args.tokens, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
