"""Decode speed on the default model (Gemma 3 270M, llama.cpp): llama.cpp's own sampler
against MuseGPT's decoder on llama.cpp's logits (what every studio task uses).

    python benchmarks/llama_backend.py                      # as the machine is, then loaded
    python benchmarks/llama_backend.py --load 0             # as the machine is, only
    python benchmarks/llama_backend.py --tokens 128 --rounds 5 --load 4

Each phase decodes the same prompt to the same length (`--tokens`) greedily and with the
studio's sampling (temperature 0.8, top-k 64, top-p 0.95, presence 0.1 and frequency 0.3
penalties), llama.cpp's sampler and MuseGPT's decoder alternating run by run for
`--rounds` rounds; the table gives the median tokens/s of each and their ratio. Both run
llama.cpp with the thread count MuseGPT chooses from the machine's load at that moment
(`ThreadBudget`); `--all-cores` adds one run of llama.cpp's sampler on every core, as
llama-cpp-python does by default, to show what that costs under load.

The first phase runs on the machine as it is; the second (unless `--load 0`) starts
`--load` busy-loop processes (default: one per core; each ends by itself after 15 minutes
at most, and all are stopped when the phase ends). The physical limit is the weights read
once per token at this machine's memory bandwidth, measured by copying a 256 MiB array.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from musegpt.engines.llama import LlamaCppEngine, usable_cores
from musegpt.engines.registry import open_engine
from musegpt.generation.params import SamplingParams

PROMPT = "The lighthouse keeper climbed the stairs one last time, and"
BUSY_LOOP = "import time\nend = time.time() + 900\nwhile time.time() < end:\n    pass\n"


def copy_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Bytes per second moved by copying a large array (read + write), the best of a few."""
    source = np.ones(mib * 2**20 // 8)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best


@contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes spinning on a core each, for as long as the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        time.sleep(2)  # let them start
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=30)


@dataclass
class Row:
    decoding: str
    native: list[float]
    ours: list[float]
    threads: list[int]

    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.native)


def rate(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    tokens = run()
    return tokens / (time.perf_counter() - start)


def set_threads(engine: LlamaCppEngine, threads: int) -> None:
    llama_cpp.llama_set_n_threads(engine.llama._ctx.ctx, threads, threads)


def budget_threads(engine: LlamaCppEngine) -> int:
    """The thread count MuseGPT would choose now (what a decode starting now uses)."""
    current = int(llama_cpp.llama_n_threads(engine.llama._ctx.ctx))
    budget = engine.thread_budget
    return budget.threads(current) if budget is not None else current


def phase(engine: LlamaCppEngine, tokens: int, rounds: int, all_cores: bool) -> list[Row]:
    def native(temperature: float) -> Callable[[], int]:
        def run() -> int:
            engine.llama.reset()
            out = engine.llama.create_completion(
                PROMPT, max_tokens=tokens, temperature=temperature, top_k=64, top_p=0.95,
                min_p=0.0, presence_penalty=0.1 if temperature else 0.0,
                frequency_penalty=0.3 if temperature else 0.0, seed=1,
            )  # fmt: skip
            return int(out["usage"]["completion_tokens"])

        return run

    def ours(params: SamplingParams) -> Callable[[], int]:
        def run() -> int:
            engine.llama.reset()
            return len(engine.complete(PROMPT, params)[0].token_ids)

        return run

    # min_new_tokens keeps ours at full length (no early end-of-text).
    greedy = SamplingParams(temperature=0, max_new_tokens=tokens, min_new_tokens=tokens)
    studio = SamplingParams(
        temperature=0.8, top_k=64, top_p=0.95, frequency_penalty=0.3, presence_penalty=0.1,
        max_new_tokens=tokens, min_new_tokens=tokens, seed=1,
    )  # fmt: skip
    rows = []
    for name, run_native, run_ours in [
        ("greedy", native(0.0), ours(greedy)),
        ("studio sampling", native(0.8), ours(studio)),
    ]:
        row = Row(name, [], [], [])
        run_ours()  # warm-up (first-use tables, caches)
        for _ in range(rounds):
            threads = budget_threads(engine)
            set_threads(engine, threads)  # llama.cpp's sampler gets the same threads
            row.native.append(rate(run_native))
            row.ours.append(rate(run_ours))
            row.threads.append(threads)
        rows.append(row)
    if all_cores:
        set_threads(engine, usable_cores())
        rows.append(Row("studio sampling, llama.cpp on all cores", [rate(native(0.8))], [], []))
    return rows


def print_table(label: str, rows: list[Row], limit: float, loads: tuple[float, float]) -> None:
    print(f"\n{label} (load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end)")
    print("| decoding | llama.cpp tok/s | MuseGPT tok/s | MuseGPT / llama.cpp "
          "| llama.cpp threads | MuseGPT % of limit |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|")
    for row in rows:
        native = statistics.median(row.native)
        if not row.ours:
            print(f"| {row.decoding} | {native:.1f} | | | {usable_cores()} | |")
            continue
        ours = statistics.median(row.ours)
        threads = ",".join(str(t) for t in row.threads)
        print(
            f"| {row.decoding} | {native:.1f} | {ours:.1f} | {row.ratio():.2f}x "
            f"| {threads} | {100 * ours / limit:.0f}% |"
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=96, help="tokens per decode")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per row")
    parser.add_argument(
        "--load", type=int, default=None,
        help="busy processes for the loaded phase (default: one per core; 0: no such phase)",
    )  # fmt: skip
    parser.add_argument("--all-cores", action="store_true", help="also llama.cpp on all cores")
    args = parser.parse_args()
    engine = open_engine(None)
    assert isinstance(engine, LlamaCppEngine)
    weights = Path(engine.path).stat().st_size
    bandwidth = copy_bandwidth()
    limit = bandwidth / weights
    load = usable_cores() if args.load is None else args.load
    print(
        f"machine: {platform.processor() or platform.machine()}, {usable_cores()} cores, "
        f"{os.cpu_count()} CPUs; llama-cpp-python {llama_cpp.__version__}\n"
        f"model: {engine.name}, {weights / 2**20:.0f} MiB of weights; memory bandwidth "
        f"(numpy copy, read + write) {bandwidth / 1e9:.1f} GB/s; physical limit "
        f"(weights read once a token) {limit:.0f} tokens/s\n"
        f"{args.tokens} tokens a decode, {args.rounds} alternating rounds, medians"
    )
    phases = [("as the machine is", 0)] + ([(f"with {load} busy processes", load)] if load else [])
    for label, busy in phases:
        with busy_processes(busy):
            start = os.getloadavg()[0]
            rows = phase(engine, args.tokens, args.rounds, args.all_cores)
            print_table(label, rows, limit, (start, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
