"""Training a LoRA adapter on a GGUF model's dequantised weights (`peft`).

Documents are read whole (truncated to `seq_len` tokens, beginning-of-sequence first and
end-of-sequence last, as llama.cpp sees a prompt) and batched with padding. The order of
documents is fixed by the seed, so a run resumed from its checkpoint (the adapter, AdamW's
state and the step, written atomically every `save_every` steps) continues exactly where it
stopped. Held-out loss is measured every `eval_every` steps on a few held-out documents;
the best adapter is kept, and `patience` stops a run whose held-out loss has stopped
improving (the guard for small personal corpora), and a `deadline` ends training when its
time is up (a writer waits for it). A caller may watch each step (`progress`) and stop a run
between steps (`should_stop`: the checkpoint is written, then `TrainingCancelled` raised).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from musegpt.fileio import atomic_write_text

GEMMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKPOINT = "checkpoint"
BEST = "best"
STATE = "state.pt"
SETTINGS_KEYS_FIXED = ("rank", "alpha", "targets", "layers", "seq_len", "batch_size", "seed",
                       "output_vocab", "eos")  # fmt: skip


@dataclass(frozen=True)
class AdapterSettings:
    rank: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = GEMMA_TARGETS
    layers: int | None = None  # adapt only the last N layers: no backward pass below them
    steps: int = 300
    learning_rate: float = 1e-3
    warmup_steps: int = 10
    batch_size: int = 8
    seq_len: int = 128
    eval_every: int = 50
    eval_documents: int = 32  # held-out documents scored at each evaluation
    save_every: int = 10
    patience: int | None = None  # evaluations without a better held-out loss before stopping
    # The whole run's time, measurements included: training stops early enough to leave
    # them their time (the pipeline's `training_deadline`), and the best adapter is kept.
    max_minutes: float | None = None
    # "data": the softmax runs over the tokens the documents use, not all 262,144 of Gemma's
    # (the output layer is most of the compute); "all": the full vocabulary.
    output_vocab: str = "data"
    # Each document ends with end-of-sequence; False when the documents are cuts of one
    # continuous text (a works project's sentence runs): an adapter that learned to end every
    # cut stopped writing after a few words (2 of 8 continuations empty).
    eos: bool = True
    seed: int = 1337

    def __post_init__(self) -> None:
        positive = ("rank", "alpha", "steps", "batch_size", "seq_len", "eval_every", "save_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")
        if not 0 < self.learning_rate < 1:
            raise ValueError("the learning rate must be between 0 and 1")
        if self.layers is not None and self.layers < 1:
            raise ValueError("--lora-layers must be at least 1")
        if not self.targets:
            raise ValueError("--lora-targets names no layer")
        if self.output_vocab not in ("data", "all"):
            raise ValueError("--output-vocab must be data or all")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("--max-minutes must be more than 0")


class TrainingCancelled(Exception):
    """The caller stopped the run; its checkpoint (`step`) is kept for --resume."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training cancelled after step {step}; the checkpoint is kept")
        self.step = step


@dataclass(frozen=True)
class TrainingProgress:
    """One step's news for a watcher (the web studio's job view)."""

    step: int
    steps: int
    loss: float
    tokens_per_second: float  # over the steps this process ran
    heldout_perplexity: float | None  # at the latest evaluation
    eta_seconds: float  # training time left at the mean step time so far (or the time limit)


@dataclass
class AdapterRun:
    """What a training run did: its losses, speed and where the adapter is."""

    out: Path
    steps_done: int
    tokens_seen: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    best_heldout_loss: float | None = None
    stopped_early: bool = False
    out_of_time: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / self.seconds if self.seconds > 0 else 0.0


def tokenize_documents(
    tokenizer: Any, documents: Sequence[str], seq_len: int, eos: bool = True
) -> list[list[int]]:
    """Each document as ids: BOS (the tokenizer adds it) ... EOS (with `eos`), cut to
    `seq_len`."""
    end = [int(tokenizer.eos_token_id)] if eos else []
    out = []
    for text in documents:
        ids = [int(i) for i in tokenizer(text)["input_ids"]] + end
        if len(ids) > 2:
            out.append(ids[:seq_len])
    return out


def collate(rows: Sequence[list[int]], pad_id: int) -> dict[str, Any]:
    """Padded ids, attention mask, and labels that ignore padding (-100)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_rows(step: int, count: int, batch_size: int, seed: int) -> list[int]:
    """The documents of step `step` (0-based): epochs of a seeded shuffle, so any step's
    batch is known without replaying the ones before it."""
    rows = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, index = divmod(position, count)
        order = list(range(count))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        rows.append(order[index])
    return rows


class OutputLayer:
    """The loss over a chosen vocabulary: the model's hidden states times the rows of its
    (tied) output matrix for those tokens only. Over the few thousand tokens a corpus uses
    this costs a small part of the full 262,144-way softmax, and the adapter learns which of
    the corpus's tokens come next; the perplexity reported at the end is llama.cpp's, over
    the whole vocabulary."""

    def __init__(self, model: Any, vocabulary: Sequence[int] | None) -> None:
        import torch

        self.model = model
        weight = model.get_output_embeddings().weight.detach()
        self.vocabulary = vocabulary
        if vocabulary is None:
            self.weight, self.index = weight, None
        else:
            ids = torch.tensor(sorted(set(vocabulary)), dtype=torch.long)
            self.weight = weight[ids].clone()
            self.index = torch.full((weight.shape[0],), -100, dtype=torch.long)
            self.index[ids] = torch.arange(len(ids))
        self.softcap = getattr(model.config, "final_logit_softcapping", None)

    def loss(self, batch: dict[str, Any], reduction: str = "mean") -> Any:
        """Cross-entropy of each next token (padding ignored)."""
        import torch

        body = self.model.get_decoder()
        hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        states = hidden.last_hidden_state[:, :-1]
        logits = states @ self.weight.T
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        targets = batch["labels"][:, 1:]
        if self.index is not None:
            targets = torch.where(targets >= 0, self.index[targets.clamp(min=0)], targets)
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
            ignore_index=-100, reduction=reduction,
        )  # fmt: skip


def heldout_loss(
    output: OutputLayer, rows: Sequence[list[int]], pad_id: int, batch_size: int
) -> float:
    """Mean loss per predicted token over `rows` (with the adapter as it is now)."""
    import torch

    total, count = 0.0, 0
    output.model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = collate(rows[start : start + batch_size], pad_id)
            total += float(output.loss(batch, reduction="sum"))
            count += int((batch["labels"][:, 1:] != -100).sum())
    output.model.train()
    return total / max(count, 1)


def _replace_folder(make: Callable[[Path], None], target: Path) -> None:
    """Write a folder with `make` beside `target`, then swap it in (never half-written)."""
    fresh = target.with_name(f".{target.name}.new")
    old = target.with_name(f".{target.name}.old")
    for leftover in (fresh, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    fresh.mkdir(parents=True)
    make(fresh)
    if target.exists():
        os.replace(target, old)
    os.replace(fresh, target)
    if old.exists():
        shutil.rmtree(old)


def train_adapter(
    model: Any,
    tokenizer: Any,
    train_documents: Sequence[str],
    heldout_documents: Sequence[str],
    out: Path,
    settings: AdapterSettings,
    resume: bool = False,
    report: Callable[[str], None] | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    deadline: float | None = None,
) -> AdapterRun:
    """Train a LoRA on `model` (a transformers causal LM) and keep its checkpoints and best
    adapter (peft's format) in `out`. `report` receives one progress line per step,
    `progress` the same as numbers; `should_stop`, asked before each step, cancels the run;
    no step starts after `deadline` (a `time.monotonic()` time)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    say = report or (lambda line: print(line, file=sys.stderr, flush=True))
    train_rows = tokenize_documents(tokenizer, train_documents, settings.seq_len, settings.eos)
    eval_rows = tokenize_documents(tokenizer, heldout_documents, settings.seq_len, settings.eos)[
        : settings.eval_documents
    ]
    if not train_rows:
        raise ValueError("the training data holds no document")
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    checkpoint = out / CHECKPOINT
    state: dict[str, Any] = {"step": 0, "history": [], "best": None, "tokens": 0, "bad_evals": 0}
    torch.manual_seed(settings.seed)
    if resume:
        if not (checkpoint / STATE).is_file():
            raise FileNotFoundError(f"no checkpoint to resume in {checkpoint}")
        state = torch.load(checkpoint / STATE, weights_only=False)
        saved = state["settings"]
        defaults = _plain(AdapterSettings())  # for keys a run from before them lacks
        changed = [
            k for k in SETTINGS_KEYS_FIXED if saved.get(k, defaults[k]) != _plain(settings)[k]
        ]
        if changed:
            raise ValueError(
                f"--resume with other {', '.join(changed)} than the run in {out} "
                f"({', '.join(f'{k}={saved.get(k)}' for k in changed)})"
            )
        peft_model = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
    else:
        if checkpoint.exists():
            raise FileExistsError(f"{out} already holds a run: --resume it or pick another --out")
        lora = LoraConfig(
            r=settings.rank,
            lora_alpha=settings.alpha,
            lora_dropout=0.0,
            target_modules=list(settings.targets),
            layers_to_transform=_last_layers(model, settings.layers),
            task_type="CAUSAL_LM",
        )
        try:
            peft_model = get_peft_model(model, lora)
        except ValueError as err:
            raise ValueError(f"--lora-targets: {err}") from None
    vocabulary = (
        None
        if settings.output_vocab == "all"
        else [t for rows in (train_rows, eval_rows) for row in rows for t in row]
    )
    output = OutputLayer(model, vocabulary)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])

    def lr_at(step: int) -> float:
        if step < settings.warmup_steps:
            return settings.learning_rate * (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(settings.steps - settings.warmup_steps, 1)
        return settings.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def save_checkpoint() -> None:
        def make(folder: Path) -> None:
            peft_model.save_pretrained(str(folder))
            payload = {**state, "optimizer": optimizer.state_dict(), "settings": _plain(settings)}
            torch.save(payload, folder / STATE)

        _replace_folder(make, checkpoint)

    def evaluate(step: int) -> None:
        if not eval_rows:
            return
        loss = heldout_loss(output, eval_rows, pad_id, settings.batch_size)
        state["history"].append({"step": step, "heldout_loss": loss})
        say(f"step {step}: held-out loss {loss:.4f} (perplexity {math.exp(loss):.2f})")
        if state["best"] is None or loss < state["best"]:
            state["best"], state["bad_evals"] = loss, 0
            _replace_folder(lambda folder: peft_model.save_pretrained(str(folder)), out / BEST)
        else:
            state["bad_evals"] += 1

    peft_model.train()
    started, tokens_now, stopped_early, out_of_time = time.monotonic(), 0, False, False
    steps_now = 0
    stop_at = math.inf if deadline is None else deadline
    if state["step"] == 0:
        evaluate(0)
    while state["step"] < settings.steps:
        step = state["step"]
        if should_stop is not None and should_stop():
            save_checkpoint()
            say(f"cancelled after step {step}: the checkpoint is in {checkpoint}")
            raise TrainingCancelled(step)
        if time.monotonic() >= stop_at:
            out_of_time = True
            save_checkpoint()
            say(f"the training time is up after step {step} (--max-minutes)")
            break
        rows = [train_rows[i] for i in batch_rows(step, len(train_rows), settings.batch_size,
                                                   settings.seed)]  # fmt: skip
        batch = collate(rows, pad_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        tick = time.monotonic()
        loss = output.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens = int(batch["attention_mask"].sum())
        state["tokens"] += tokens
        tokens_now += tokens
        state["step"] = step + 1
        state["history"].append({"step": step + 1, "loss": loss.item()})
        rate = tokens / max(time.monotonic() - tick, 1e-9)
        say(f"step {step + 1}/{settings.steps} loss {loss.item():.4f} lr {lr_at(step):.2e} "
            f"{rate:.0f} tokens/s")  # fmt: skip
        if state["step"] % settings.eval_every == 0 or state["step"] == settings.steps:
            evaluate(state["step"])
            if settings.patience is not None and state["bad_evals"] >= settings.patience:
                stopped_early = True
        steps_now += 1
        if progress is not None:
            elapsed = time.monotonic() - started
            left = elapsed / steps_now * (settings.steps - state["step"])
            evals = [h["heldout_loss"] for h in state["history"] if "heldout_loss" in h]
            progress(
                TrainingProgress(
                    step=state["step"],
                    steps=settings.steps,
                    loss=loss.item(),
                    tokens_per_second=tokens_now / max(elapsed, 1e-9),
                    heldout_perplexity=math.exp(evals[-1]) if evals else None,
                    eta_seconds=min(left, max(stop_at - time.monotonic(), 0.0)),
                )
            )
        if state["step"] % settings.save_every == 0 or state["step"] == settings.steps:
            save_checkpoint()
        if stopped_early:
            save_checkpoint()
            say(f"held-out loss has not improved for {settings.patience} evaluations: stopping")
            break
    evaluated = [h["step"] for h in state["history"] if "heldout_loss" in h]
    if not stopped_early and (not evaluated or evaluated[-1] != state["step"]):
        evaluate(state["step"])  # a run cut short (--steps lowered on resume): its last step
    if not (out / BEST).exists():  # no held-out documents: the last adapter is the one
        _replace_folder(lambda folder: peft_model.save_pretrained(str(folder)), out / BEST)
    run = AdapterRun(
        out=out,
        steps_done=int(state["step"]),
        tokens_seen=tokens_now,
        seconds=time.monotonic() - started,
        history=list(state["history"]),
        best_heldout_loss=state["best"],
        stopped_early=stopped_early,
        out_of_time=out_of_time,
    )
    atomic_write_text(out / "history.json", json.dumps(run.history, indent=1) + "\n")
    return run


def _plain(settings: AdapterSettings) -> dict[str, Any]:
    values = asdict(settings)
    values["targets"] = list(settings.targets)
    return values


def _last_layers(model: Any, layers: int | None) -> list[int] | None:
    if layers is None:
        return None
    total = int(model.config.num_hidden_layers)
    return list(range(max(total - layers, 0), total))
