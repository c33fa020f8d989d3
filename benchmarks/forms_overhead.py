"""What the form constraints cost: constrained against unconstrained decoding of the same
length, on the same model, prompts, seeds and sampling settings.

For each form and prompt, the poem is first written under the form's constraints (its
length, in tokens, is whatever the form took); then the same prompt is decoded without
constraints, forced to exactly that many tokens (`min_new_tokens = max_new_tokens`). The two
runs alternate prompt by prompt so that a busy machine slows both alike. Reported per form:
tokens, seconds of each, ms per token and the ratio constrained / unconstrained (the
issue's budget: at most 2x). With `--batch B`, B prompts are decoded together and every
unconstrained row is forced to the length of the batch's longest constrained poem, so the
unconstrained side does at least as much work (the ratio is then an upper bound).
The constraint's one-off set-up per tokenizer (vocabulary
tables, lexicon) is timed apart, on a warm-up poem that is not counted; it reads the tables
kept in the user cache when they are there. `--cold` first times building them afresh
(what a first use costs), without touching the cache.

    python benchmarks/forms_overhead.py --model poetry --forms haiku,shakespearean-sonnet,wujue,qilu
    python benchmarks/forms_overhead.py --forms haiku,shakespearean-sonnet --prompts 3 --cold
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from musegpt.engines.registry import open_engine
from musegpt.forms import english, form_constraints, get_form, suggested_max_new_tokens
from musegpt.forms.constraints import GAP_LETTERS, LETTERS, EnglishTable
from musegpt.forms.evaluate import load_topics, poem_prompt
from musegpt.generation.params import SamplingParams
from musegpt.tokenizer.base import Tokenizer


def cold_build_seconds(tokenizer: Tokenizer) -> str:
    """Seconds to build each English table from nothing (what the cache saves later)."""
    times = {}
    start = time.perf_counter()
    english._parse_cmu()
    times["CMU dictionary"] = time.perf_counter() - start
    start = time.perf_counter()
    english._cmu_lexicon_arrays()
    english._cmu_rhyme_arrays()
    times["lexicon and rhymes"] = time.perf_counter() - start
    start = time.perf_counter()
    table = EnglishTable.build(tokenizer)  # reads every token's bytes
    times["vocabulary"] = time.perf_counter() - start
    start = time.perf_counter()
    for kind in (LETTERS, GAP_LETTERS):
        table._nodes_in(english.cmu_lexicon(), "", kind)
    times["word starts"] = time.perf_counter() - start
    parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in times.items())
    return f"{sum(times.values()):.1f} s ({parts})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name or path (default: Gemma)")
    parser.add_argument("--forms", default="haiku,shakespearean-sonnet,wujue,qilu")
    parser.add_argument("--prompts", type=int, default=5, help="topics per form")
    parser.add_argument("--batch", type=int, default=1, help="prompts decoded together")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--cold", action="store_true", help="time a first use's table builds")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = open_engine(args.model)
    base = SamplingParams(temperature=0.8, top_p=0.95, top_k=64)
    print(
        f"model {engine.name} ({engine.backend}), {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, batch {args.batch}"
    )
    if args.cold:
        print(f"first use, tables built afresh: {cold_build_seconds(engine.tokenizer)}")
    print(
        "| form | poems | tokens | constrained s | unconstrained s | ms/token constrained "
        "| ms/token unconstrained | ratio |\n|---|---|---|---|---|---|---|---|"
    )
    results = []
    for name in args.forms.split(","):
        form = get_form(name)
        topics = load_topics(form.language, args.prompts + 1)
        params = base.model_copy(update={"max_new_tokens": suggested_max_new_tokens(form)})
        start = time.perf_counter()
        constraints = form_constraints(form, engine.tokenizer)
        engine.complete(poem_prompt(form, topics[0]), params, constraints, seed=0)  # warm-up
        setup = time.perf_counter() - start
        tokens = 0
        seconds = [0.0, 0.0]
        rest = topics[1:]
        for first in range(0, len(rest), args.batch):
            prompts = [poem_prompt(form, topic) for topic in rest[first : first + args.batch]]
            start = time.perf_counter()
            done = engine.complete(prompts, params, constraints, seed=first + 1)
            seconds[0] += time.perf_counter() - start
            # Every unconstrained row is as long as the longest constrained one: at batch 1
            # exactly the same length, in a batch at least as long (a conservative ratio).
            n = max(len(c.token_ids) for c in done)
            forced = params.model_copy(update={"max_new_tokens": n, "min_new_tokens": n})
            start = time.perf_counter()
            free = engine.complete(prompts, forced, [], seed=first + 1)
            seconds[1] += time.perf_counter() - start
            assert all(len(f.token_ids) == n for f in free), n
            tokens += sum(len(c.token_ids) for c in done)
        per_token = [1000 * s / max(tokens, 1) for s in seconds]
        ratio = seconds[0] / seconds[1] if seconds[1] else float("nan")
        results.append(
            {"form": name, "poems": args.prompts, "tokens": tokens, "setup_s": setup,
             "constrained_s": seconds[0], "unconstrained_s": seconds[1], "ratio": ratio}
        )  # fmt: skip
        print(
            f"| {name} | {args.prompts} | {tokens} | {seconds[0]:.2f} | {seconds[1]:.2f} "
            f"| {per_token[0]:.1f} | {per_token[1]:.1f} | {ratio:.2f}x |",
            flush=True,
        )
    print("set-up per form (warm-up poem, not counted): "
          + ", ".join(f"{r['form']} {r['setup_s']:.1f} s" for r in results))  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
