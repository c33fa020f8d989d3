"""Full fine-tuning: continue training an existing model on a new corpus.

The model's shape and tokenizer come from the base model; the corpus must have been
prepared with that same tokenizer. What is trained can be narrowed with a `ModelAdapter`
(e.g. LoRA), passed through to the `Trainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from musegpt.data.dataset import PreparedCorpus
from musegpt.model.io import load_model
from musegpt.tokenizer.base import Tokenizer
from musegpt.train.checkpoint import saved_config
from musegpt.train.config import MODEL_KEYS, TrainConfig, coerce_settings, load_config
from musegpt.train.trainer import LAST, ModelAdapter, Trainer, TrainResult

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
    resume: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> TrainResult:
    model, tokenizer = load_model(base_model)
    corpus = PreparedCorpus.open(corpus_dir)
    check_same_tokenizer(tokenizer, corpus, str(base_model))
    start = TrainConfig.for_model(model.config, **FINETUNE_DEFAULTS)
    last = Path(out_dir).expanduser() / LAST
    if resume and last.is_dir():
        start = TrainConfig(**coerce_settings(saved_config(last), f"checkpoint {last}"))
    config = finetune_config(start, config_file, overrides)
    trainer = Trainer(
        config,
        corpus,
        out_dir,
        model=model,
        tokenizer=tokenizer,
        adapter=adapter,
        resume=resume,
        progress=progress,
        console=console,
    )
    return trainer.run()
