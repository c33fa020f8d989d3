"""Fine-tuning: continue training an existing model on a new corpus, fully or with LoRA.

The model's shape and tokenizer come from the base model; the corpus must have been
prepared with that same tokenizer. `lora=LoraSettings(...)` trains low-rank adapters only
and saves the merged weights as an ordinary model (see `musegpt.train.lora`); any other
`ModelAdapter` can narrow what is trained too, passed through to the `Trainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from musegpt.data.dataset import PreparedCorpus
from musegpt.model.io import load_model
from musegpt.tokenizer.base import Tokenizer
from musegpt.train.checkpoint import checkpoint_step, load_checkpoint_state, saved_config
from musegpt.train.config import MODEL_KEYS, TrainConfig, coerce_settings, load_config
from musegpt.train.lora import ADAPTER_DIR, LoraAdapter, LoraSettings, write_adapter
from musegpt.train.trainer import BEST, LAST, ModelAdapter, Trainer, TrainResult

# Gentler than pretraining: a lower peak rate with a short warm-up, so a few hundred steps
# move the model to the new style without wrecking what it knew.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "max_iters": 300,
    "learning_rate": 1e-4,
    "min_lr": 1e-5,
    "warmup_iters": 20,
    "weight_decay": 0.0,
    "beta2": 0.99,
    "eval_interval": 50,
    "eval_iters": 20,
    "log_interval": 10,
}
# Adapters start from zero and are small: they need a higher rate than full fine-tuning to
# move the model as far in as many steps.
LORA_DEFAULTS: dict[str, Any] = {**FINETUNE_DEFAULTS, "learning_rate": 1e-3, "min_lr": 1e-4}


def check_same_tokenizer(model_tokenizer: Tokenizer, corpus: PreparedCorpus, model: str) -> None:
    if model_tokenizer.to_dict() != corpus.tokenizer.to_dict():
        raise ValueError(
            f"the corpus {corpus.path} was prepared with a different tokenizer "
            f"({corpus.tokenizer.kind}, {corpus.tokenizer.vocab_size} tokens) than the model "
            f"{model} ({model_tokenizer.kind}, {model_tokenizer.vocab_size} tokens); prepare it "
            f"again with `musegpt prepare ... --tokenizer-from {model}`"
        )


def finetune_config(
    base: TrainConfig,
    config_file: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> TrainConfig:
    """`base` (shaped like the base model), then the file's and the command line's settings;
    settings that would change the model's shape are refused."""
    config = load_config(config_file, overrides, base=base)
    changed = [k for k in MODEL_KEYS if getattr(config, k) != getattr(base, k)]
    if changed:
        detail = ", ".join(f"{k} (base model: {getattr(base, k)})" for k in changed)
        raise ValueError(f"fine-tuning keeps the base model's shape; cannot change {detail}")
    return config


def finetune(
    base_model: str | Path,
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    config_file: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    adapter: ModelAdapter | None = None,
    lora: LoraSettings | None = None,
    save_adapter: bool = False,
    resume: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> TrainResult:
    """Fine-tune `base_model` on `corpus_dir` into the run folder `out_dir`.

    With `lora`, only low-rank adapters are trained and checkpoints hold the merged model;
    `save_adapter` also writes the adapter alone into each checkpoint's `adapter/` folder. A
    LoRA run resumes with its own LoRA settings."""
    out = Path(out_dir).expanduser()
    lora = _lora_for_run(out, lora, resume)
    if lora is not None and adapter is not None:
        raise ValueError("give either lora or adapter, not both")
    if save_adapter and lora is None:
        raise ValueError("saving the adapter alone needs LoRA (--lora)")
    model, tokenizer = load_model(base_model)
    corpus = PreparedCorpus.open(corpus_dir)
    check_same_tokenizer(tokenizer, corpus, str(base_model))
    start = TrainConfig.for_model(
        model.config, **(LORA_DEFAULTS if lora is not None else FINETUNE_DEFAULTS)
    )
    last = out / LAST
    if resume and last.is_dir():
        start = TrainConfig(**coerce_settings(saved_config(last), f"checkpoint {last}"))
    config = finetune_config(start, config_file, overrides)
    lora_adapter = LoraAdapter(lora) if lora is not None else None
    if lora is not None and not resume and checkpoint_step(last) is None:
        lora.write(out)
    trainer = Trainer(
        config,
        corpus,
        out_dir,
        model=model,
        tokenizer=tokenizer,
        adapter=lora_adapter or adapter,
        resume=resume,
        progress=progress,
        console=console,
    )
    result = trainer.run()
    if save_adapter and lora_adapter is not None and result.is_main:
        _save_adapters(lora_adapter, out)
    return result


def _lora_for_run(out: Path, lora: LoraSettings | None, resume: bool) -> LoraSettings | None:
    """The LoRA settings to train with: a resumed LoRA run keeps its own."""
    saved = LoraSettings.read(out) if resume else None
    if not resume or (saved is None and lora is None):
        return lora
    if saved is None:
        raise ValueError(
            f"the run in {out} fine-tuned all weights, not LoRA; resume it without --lora"
        )
    if lora is not None and lora != saved:
        raise ValueError(
            f"the run in {out} trained LoRA with {saved.to_dict()}, not {lora.to_dict()}; "
            "resume with the same settings (or leave them out), or choose another --out"
        )
    return saved


def _save_adapters(adapter: LoraAdapter, out: Path) -> None:
    """The adapter alone, beside the merged model of each checkpoint: the adapter weights of
    that checkpoint's step are put back into the wrapped model, which is then saved."""
    module = adapter.module
    assert module is not None
    for name in (BEST, LAST):
        folder = out / name
        if checkpoint_step(folder) is not None:
            module.load_state_dict(load_checkpoint_state(folder)["model_state"])
            write_adapter(module, folder / ADAPTER_DIR)
