"""How long drawing takes: 1 and 4 pictures at 512x512 from the packaged image model, by
`ImageModel.draw` and end to end through the server (`POST /v1/images/generations`: PNG
encoding, the files and the provenance in a works library included).

    python benchmarks/draw_speed.py                       # icons, 512x512, n = 1 and 4
    python benchmarks/draw_speed.py --model runs/icons/best --repeats 5 --json out.json
    python benchmarks/draw_speed.py --rerank 1,2,4 --no-http   # k candidates a picture
    python benchmarks/draw_speed.py --parts --no-http   # also without expansion and guard,
                                                        # and each part timed alone

Each case is drawn once untimed (warm-up), then `--repeats` times with seeds 1, 2, ...;
the median and the fastest are reported. Targets (issue 16): one picture under 3 s, four
under 6 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from musegpt.images import DEFAULT_IMAGE_MODEL, ImageModel, load_image_model

TARGETS_S = {1: 3.0, 4: 6.0}  # pictures -> seconds


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, "
        f"load average {load}"
    )


def timed(run: Callable[[int], Any], repeats: int) -> list[float]:
    run(0)  # warm-up: first-call allocations and caches are not counted
    seconds = []
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        run(seed)
        seconds.append(time.perf_counter() - start)
    return seconds


def draw_case(
    model: ImageModel,
    n: int,
    size: int,
    prompt: str,
    rerank: int | None = None,
    bare: bool = False,
) -> Callable[[int], Any]:
    """`bare`: without caption expansion and the originality guard (the model's defaults
    otherwise)."""
    extra: dict[str, Any] = {"expand": False, "guard": False} if bare else {}
    return lambda seed: model.draw(prompt, n=n, size=size, seed=seed, rerank=rerank, **extra)


def parts(model: ImageModel, prompt: str, repeats: int) -> None:
    """Caption expansion and the near-copy check alone, and the expansion index's first
    build (the first drawing after loading pays it once)."""
    print("\n| part | median ms | fastest ms |\n|---|---|---|")
    vocabulary, grids = model.vocabulary, model.training_grids
    if vocabulary is None or grids is None:
        print("| (the model file keeps no training split: no expansion, no guard) | - | - |")
        return
    vocabulary.__dict__.pop("_index", None)  # a cached_property: forget it to time the build
    start = time.perf_counter()
    vocabulary.match(prompt)
    print(f"| expansion index, first build ({len(vocabulary)} concepts) "
          f"| {(time.perf_counter() - start) * 1e3:.0f} | - |")  # fmt: skip
    codes = grids.codes[:4]
    for label, run in (
        ("expansion of one caption", lambda _: model.expansion(prompt, True)),
        (f"near-copy check of 4 pictures against {len(grids)}", lambda _: grids.near_copies(codes)),
    ):
        seconds = timed(run, max(repeats, 20))
        print(f"| {label} | {statistics.median(seconds) * 1e3:.2f} | {min(seconds) * 1e3:.2f} |")


def http_case(model: ImageModel, n: int, size: int, prompt: str) -> Callable[[int], Any]:
    from fastapi.testclient import TestClient

    from musegpt.engines.registry import open_engine
    from musegpt.server import ServerSettings, create_app
    from musegpt.server.images_api import serve_image_models
    from musegpt.store import WorksStore

    folder = Path(tempfile.mkdtemp(prefix="draw-speed-"))
    # A server needs a text model; this one is only loaded if the app's lifespan runs,
    # which the test client below (used without `with`) never starts.
    text = {"poetry": lambda: open_engine("poetry")}
    app = create_app(text, ServerSettings(data_dir=folder), WorksStore(folder / "works.db"))
    serve_image_models(app, {model.name: model})
    client = TestClient(app)
    body = {"prompt": prompt, "n": n, "size": f"{size}x{size}", "response_format": "url"}

    def run(seed: int) -> Any:
        answer = client.post("/v1/images/generations", json={**body, "seed": seed})
        answer.raise_for_status()
        return answer.json()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_IMAGE_MODEL)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--counts", default="1,4", help="pictures per call, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt", default="a red apple")
    parser.add_argument("--no-http", action="store_true", help="only ImageModel.draw")
    parser.add_argument(
        "--rerank", default="", help="also draw with k candidates a picture: k,k,... (draw only)"
    )
    parser.add_argument(
        "--parts", action="store_true", help="also draw bare, and time expansion and guard alone"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    start = time.perf_counter()
    model = load_image_model(args.model)
    load_s = time.perf_counter() - start
    parameters = sum(p.numel() for p in model.gpt.parameters())
    print(f"machine: {machine()}")
    print(
        f"model: {model.name} ({parameters / 1e6:.1f}M parameters, "
        f"{model.tokenizer.image_length} image tokens a picture), loaded in {load_s:.2f} s"
    )
    print()
    print("| path | pictures | size | median s | fastest s | s per picture | target |")
    print("|---|---|---|---|---|---|---|")
    results = []
    cases = [("draw", draw_case)] + ([] if args.no_http else [("HTTP", http_case)])
    if args.parts:
        cases.append(("draw, no expansion, no guard", partial(draw_case, bare=True)))
    for k in (int(c) for c in args.rerank.split(",") if c):
        cases.append((f"draw, rerank {k}", partial(draw_case, rerank=k)))
    for path, case in cases:
        for n in (int(c) for c in args.counts.split(",")):
            seconds = timed(case(model, n, args.size, args.prompt), args.repeats)
            median = statistics.median(seconds)
            target = TARGETS_S.get(n)
            verdict = (
                ""
                if target is None
                else f"< {target:g} s: {'met' if median < target else 'missed'}"
            )
            print(
                f"| {path} | {n} | {args.size}x{args.size} | {median:.2f} | {min(seconds):.2f} "
                f"| {median / n:.2f} | {verdict} |",
                flush=True,
            )
            results.append(
                {"path": path, "n": n, "size": args.size, "seconds": seconds, "target_s": target}
            )
    if args.parts:
        parts(model, args.prompt, args.repeats)
    print(f"\nload average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine(), "model": model.name, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
