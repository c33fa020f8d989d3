"""Load on `musegpt serve`: 1, 4 and 16 concurrent streaming clients on loopback.

Starts the server in a subprocess on a MuseGPT model (a ~10M-parameter GPT with random
weights: speed does not depend on their values) or on any model given with --model, and
runs each concurrency level in turn. Every level sends the same --requests streamed
completions of exactly --tokens tokens (min_new_tokens = max_tokens), shared evenly among
its clients (1 client: all of them in turn; 16 clients: 2 each), so every level does the
same work and lasts long enough to measure. Reports aggregate tokens/s, time to
first token (p50/p99) and errors, as a Markdown table.

    python benchmarks/serve_load.py [--tokens 64] [--requests 32] [--model PATH_OR_NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import torch

from musegpt.model import GPT, GPTConfig, save_model
from musegpt.tokenizer import CharTokenizer

LEVELS = (1, 4, 16)
PROMPT = "The lighthouse keeper opened the letter and read it twice before"


@dataclass
class Level:
    clients: int
    seconds: float = 0.0
    tokens: int = 0
    first_token: list[float] = field(default_factory=list)
    errors: int = 0


def tiny_model(folder: Path) -> Path:
    tokenizer = CharTokenizer.train([PROMPT * 4])
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=512, n_layer=6, n_head=5, n_embd=320
    )
    return save_model(folder / "serve-load", GPT(config).eval(), tokenizer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str, port: int, works: Path, threads: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "musegpt.cli.app",
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--works",
        str(works),
        "--max-queue",
        "256",
        "--no-music",  # the packaged ABC model is not under test
    ]
    # The thread count is fixed, so runs on different machines compare.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
            if all(state == "ready" for state in health["models"].values()):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not become ready")


async def one_client(
    http: httpx.AsyncClient, level: Level, seed: int, args: argparse.Namespace
) -> None:
    for r in range(max(args.requests // level.clients, 1)):
        body = {
            "prompt": PROMPT,
            "max_tokens": args.tokens,
            "min_new_tokens": args.tokens,
            "temperature": 0.8,
            "seed": seed * 1000 + r,
            "stream": True,
        }
        begun = time.perf_counter()
        first = None
        try:
            async with http.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code != 200:
                    level.errors += 1
                    continue
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        level.errors += 1
                        break
                    if first is None and event["choices"] and event["choices"][0]["text"]:
                        first = time.perf_counter() - begun
        except httpx.HTTPError:
            level.errors += 1
            continue
        if first is not None:
            level.first_token.append(first)
        level.tokens += args.tokens


async def run_level(url: str, clients: int, args: argparse.Namespace) -> Level:
    level = Level(clients)
    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        begun = time.perf_counter()
        await asyncio.gather(*(one_client(http, level, c, args) for c in range(clients)))
        level.seconds = time.perf_counter() - begun
    return level


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(levels: list[Level]) -> str:
    one = max(levels[0].tokens, 1) / levels[0].seconds
    rows = [
        "| clients | requests | tokens | seconds | tokens/s | × one client | TTFT p50 (s) "
        "| TTFT p99 (s) | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        rate = lv.tokens / lv.seconds
        rows.append(
            f"| {lv.clients} | {len(lv.first_token) + lv.errors} | {lv.tokens} | "
            f"{lv.seconds:.1f} | {rate:.0f} | {rate / one:.1f} | "
            f"{percentile(lv.first_token, 0.5):.2f} | {percentile(lv.first_token, 0.99):.2f} | "
            f"{lv.errors} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--requests", type=int, default=32, help="per level, shared among its clients"
    )
    parser.add_argument("--model", default=None, help="default: a ~10M random MuseGPT model")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="the server's torch threads (default: one per core; use 1 on a shared, "
        "oversubscribed machine, where spinning OpenMP threads slow each other down)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(tiny_model(Path(tmp)))
        port = free_port()
        server = start_server(model, port, Path(tmp) / "works.db", args.threads)
        try:
            url = f"http://127.0.0.1:{port}"
            levels = [asyncio.run(run_level(url, n, args)) for n in LEVELS]
        finally:
            server.terminate()
            server.wait(30)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
    print(
        f"model: {args.model or '~10M random MuseGPT (6 layers, 320 wide, char tokenizer)'}; "
        f"{args.tokens} tokens per request, {args.requests} requests per level\n"
    )
    print(table(levels))


if __name__ == "__main__":
    main()
