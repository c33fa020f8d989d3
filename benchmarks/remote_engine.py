"""What a remote engine costs: the same greedy completion through another server (the
remote engine) and through the local engine of the same model, alternating so that a busy
machine slows both alike; and how soon a server that is down is reported.

Start the server first, e.g. llama-cpp-python's with the default model, or another MuseGPT:

    python -m llama_cpp.server --model ~/.cache/musegpt/models/gemma-3-270m-q4_k_m.gguf \
        --model_alias gemma --port 8001 --n_threads 1
    python benchmarks/remote_engine.py --url http://127.0.0.1:8001/v1 --remote-model gemma

    musegpt serve --model poetry --no-music --port 8002
    python benchmarks/remote_engine.py --url http://127.0.0.1:8002/v1 --remote-model poetry \
        --local poetry
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import socket
import statistics
import time
from collections.abc import Callable

from musegpt.engines.registry import open_engine
from musegpt.engines.remote import RemoteEngine, RemoteError, RemoteSpec


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the remote's API base (…/v1)")
    parser.add_argument("--remote-model", required=True, help="the model's id there")
    parser.add_argument("--local", default=None, help="the same model here (default: Gemma)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--prompt", default="Once upon a time")
    args = parser.parse_args()

    remote = RemoteEngine.load("remote", RemoteSpec(args.url, args.remote_model))
    local = open_engine(args.local)
    settings = {"max_new_tokens": args.tokens, "temperature": 0.0}
    remote.generate(args.prompt, **settings)  # warm both: caches, first-call set-up
    local.generate(args.prompt, **settings)
    times: dict[str, list[float]] = {"local": [], "remote": []}
    for _ in range(args.reps):
        times["local"].append(timed(lambda: local.generate(args.prompt, **settings)))
        times["remote"].append(timed(lambda: remote.generate(args.prompt, **settings)))
        times.setdefault("remote, streamed", []).append(
            timed(lambda: list(remote.stream(args.prompt, **settings)))
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    with contextlib.suppress(RemoteError):
        RemoteEngine.load("down", RemoteSpec(f"http://127.0.0.1:{port}/v1", "m"))
    down = time.perf_counter() - start

    print(f"machine: {platform.processor() or platform.machine()}, {args.tokens} greedy tokens")
    print("| engine | median s | ms/token |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {1000 * median / args.tokens:.1f} |")
    print(f"server down: reported after {down:.2f} s")


if __name__ == "__main__":
    main()
