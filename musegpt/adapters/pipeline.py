"""`musegpt finetune --from gemma3-270m --lora`: the whole path from text to a GGUF LoRA.

data -> held-out split -> dequantised base -> LoRA training (resumable) -> llama.cpp's
converter -> the adapter's held-out perplexity beside the base model's, both measured by
llama.cpp on the quantised model -> report.json in the run folder.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from musegpt.adapters.corpus import HELDOUT_FILE, TRAIN_FILE, read_documents
from musegpt.adapters.train import AdapterRun, AdapterSettings, TrainingProgress
from musegpt.fileio import atomic_write_text

ADAPTER_FILE = "adapter.gguf"
REPORT_FILE = "report.json"
HELDOUT_SHARE = 0.1  # of a corpus that comes without a held-out part
STYLE_DOCUMENTS = 8  # held-out documents whose openings both models continue
FINAL_EVAL_DOCUMENTS = 120  # held-out documents scored before and after (llama.cpp, ~3 s each)


@dataclass(frozen=True)
class AdapterReport:
    adapter: Path
    base: Path
    steps: int
    tokens_per_second: float
    train_seconds: float
    base_perplexity: float
    adapted_perplexity: float
    heldout_documents: int
    base_style_distance: float
    adapted_style_distance: float

    @property
    def improvement(self) -> float:
        """How much lower the adapted perplexity is, as a share of the base's."""
        return 1 - self.adapted_perplexity / self.base_perplexity


def gguf_base_path(base: str | Path) -> Path | None:
    """The GGUF file `base` names (a built-in model's name, a registered GGUF, or a .gguf
    path), or None when it is not a GGUF model."""
    from musegpt.engines.default_model import BUILT_IN, DEFAULT_MODEL, default_model_path

    if str(base) in (*BUILT_IN, "default"):
        return default_model_path(name=DEFAULT_MODEL if str(base) == "default" else str(base))
    path = Path(base).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF model at {path}")
        return path
    if not path.exists():
        from musegpt.engines.base import EngineError
        from musegpt.engines.registry import find_model

        try:
            entry = find_model(str(base))
        except EngineError:
            return None  # not a model name either: the caller's own checks say what is wrong
        if entry.backend == "llama.cpp" and entry.path.endswith(".gguf"):
            return Path(entry.path)
    return None


def training_deadline(
    started: float, max_minutes: float | None, scoring_seconds: float
) -> float | None:
    """When training must stop for a run started at `started` (`time.monotonic()`) to end
    within `max_minutes`: what follows training takes about 1.5 times the base model's
    scoring (scoring again with the adapter, then both models' writing for the style
    distance; measured on a 23,000-word project) and two minutes for the step under way, the
    last held-out evaluation and the converter (a 25-minute run took 26:18 with one)."""
    if max_minutes is None:
        return None
    return started + max_minutes * 60 - 1.5 * scoring_seconds - 120


def split_documents(data: Path, seed: int) -> tuple[list[str], list[str]]:
    """(training, held-out) documents: a folder's train.jsonl and heldout.jsonl, or one
    file's documents with a seeded share held out."""
    if data.is_dir():
        train_file, heldout_file = data / TRAIN_FILE, data / HELDOUT_FILE
        if not train_file.is_file():
            raise FileNotFoundError(
                f"{data} has no {TRAIN_FILE}: give a .txt/.jsonl file or a folder made by "
                "`musegpt prepare tang --out FOLDER`"
            )
        heldout = read_documents(heldout_file) if heldout_file.is_file() else []
        return read_documents(train_file), heldout
    if not data.is_file():
        raise FileNotFoundError(f"no training data at {data}")
    documents = read_documents(data)
    if len(documents) < 2:
        raise ValueError(
            f"{data} holds {len(documents)} document(s); at least two are needed, one held "
            "out to measure the adapter (documents are separated by blank lines)"
        )
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    held = max(1, round(len(documents) * HELDOUT_SHARE))
    held_rows = sorted(order[:held])
    train_rows = sorted(order[held:])
    return [documents[i] for i in train_rows], [documents[i] for i in held_rows]


def finetune_gguf(
    base: str | Path,
    data: Path,
    out: Path,
    settings: AdapterSettings,
    resume: bool = False,
    report: Callable[[str], None] | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AdapterReport:
    """Train, convert and measure an adapter of `base` on `data` in `out`. `report` gets
    each line of news; `progress` and `should_stop` go to the trainer (`train_adapter`)."""
    from musegpt.adapters.base import dequantised_base, load_base
    from musegpt.adapters.convert import convert_lora, converter_folder
    from musegpt.adapters.evaluate import continuations, gguf_perplexity, style_distance
    from musegpt.adapters.train import BEST, train_adapter

    say = report or (lambda line: print(line, flush=True))
    started = time.monotonic()
    gguf_file = gguf_base_path(base)
    if gguf_file is None:
        raise ValueError(f"{base} is not a GGUF model")
    train_docs, heldout_docs = split_documents(data, settings.seed)
    converter_folder()  # fail before training, not after, if the converter is unavailable
    out.mkdir(parents=True, exist_ok=True)
    scored = heldout_docs[:FINAL_EVAL_DOCUMENTS]
    before_file = out / "base-perplexity.json"
    if before_file.is_file():
        before = json.loads(before_file.read_text())
        before_value, scoring_seconds = float(before["perplexity"]), before.get("seconds", 0.0)
    else:
        say(f"scoring the base model on {len(scored)} held-out documents…")
        tick = time.monotonic()
        before_value = gguf_perplexity(gguf_file, scored).perplexity
        scoring_seconds = time.monotonic() - tick
        scores = {"perplexity": before_value, "seconds": scoring_seconds}
        atomic_write_text(before_file, json.dumps(scores) + "\n")
    say(f"base model: held-out perplexity {before_value:.2f}")
    model, tokenizer = load_base(gguf_file)
    run: AdapterRun = train_adapter(
        model, tokenizer, train_docs, heldout_docs, out, settings, resume=resume, report=say,
        progress=progress, should_stop=should_stop,
        deadline=training_deadline(started, settings.max_minutes, scoring_seconds),
    )  # fmt: skip
    adapter = convert_lora(out / BEST, dequantised_base(gguf_file), out / ADAPTER_FILE)
    after = gguf_perplexity(gguf_file, scored, lora=adapter)
    say(f"adapted: held-out perplexity {after.perplexity:.2f} (base {before_value:.2f})")
    # How close each model's own writing comes to the held-out text (character trigrams).
    starts = heldout_docs[:STYLE_DOCUMENTS]
    distances = {
        name: style_distance(continuations(gguf_file, starts, lora), heldout_docs)
        for name, lora in (("base", None), ("adapted", adapter))
    }
    say(f"style distance to the held-out text: base {distances['base']:.3f}, "
        f"adapted {distances['adapted']:.3f} (0 = the same character trigram profile)")  # fmt: skip
    result = AdapterReport(
        adapter=adapter,
        base=gguf_file,
        steps=run.steps_done,
        tokens_per_second=run.tokens_per_second,
        train_seconds=run.seconds,
        base_perplexity=before_value,
        adapted_perplexity=after.perplexity,
        heldout_documents=after.documents,
        base_style_distance=distances["base"],
        adapted_style_distance=distances["adapted"],
    )
    record: dict[str, Any] = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()},
        "settings": {**asdict(settings), "targets": list(settings.targets)},
        "train_documents": len(train_docs),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    atomic_write_text(out / REPORT_FILE, json.dumps(record, indent=2) + "\n")
    return result
