"""Training settings: one flat dataclass, read from YAML and `key=value` overrides.

Flat (model shape and optimisation side by side) so every setting can be overridden on the
command line by its plain name: `n_layer=2 learning_rate=3e-4`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from musegpt.model.config import ACTIVATIONS, POSITIONAL_ENCODINGS, GPTConfig

DTypeName = Literal["auto", "float32", "bfloat16"]

# Settings that fix the model's shape: taken from the base model when fine-tuning, and
# never changed when resuming.
MODEL_KEYS: tuple[str, ...] = (
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "bias",
    "positional",
    "rope_base",
    "activation",
)
# Settings that must not change on --resume, or the continued run would not be the same run.
FIXED_ON_RESUME: tuple[str, ...] = (
    *MODEL_KEYS,
    "dropout",
    "batch_size",
    "gradient_accumulation_steps",
    "seed",
)


@dataclass
class TrainConfig:
    # --- model shape (the vocabulary size comes from the corpus's tokenizer)
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    block_size: int = 256
    dropout: float = 0.0
    bias: bool = False
    positional: str = "learned"
    rope_base: float = 10000.0
    activation: str = "gelu_tanh"  # or "gelu" (exact, as nanoGPT): see musegpt/model/config.py
    # --- batches: tokens per optimizer step = batch_size * block_size
    #     * gradient_accumulation_steps * number of processes
    batch_size: int = 12
    gradient_accumulation_steps: int = 1
    # 0: a window may start at any token (nanoGPT). N: windows start at multiples of N, for
    # corpora of fixed-length records (an image model's caption + image token sequences).
    window_stride: int = 0
    # --- optimiser: AdamW, linear warm-up then cosine decay to min_lr at lr_decay_iters
    max_iters: int = 5000
    learning_rate: float = 6e-4
    min_lr: float = 6e-5
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: decay over the whole run (max_iters)
    decay_lr: bool = True
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 turns clipping off
    # --- evaluation, logging, checkpoints (intervals in optimizer steps)
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    checkpoint_interval: int | None = None  # None: with every evaluation
    # --- runtime
    seed: int = 1337
    device: str = "auto"  # auto (cuda if present, else cpu), cpu, cuda, cuda:N, mps
    dtype: DTypeName = "auto"
    compile: bool = False
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default (one per core)
    # Data-parallel processes on this machine sharing each batch (batch_size stays the
    # global batch: the same run, on more cores); see musegpt/train/local_procs.py.
    procs: int = 1
    # Under torchrun: shard weights, gradients and optimizer state across the processes
    # (FSDP2) instead of a whole copy on each (DDP). See musegpt/train/sharding.py.
    fsdp: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        problems: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        for name in (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "batch_size",
            "gradient_accumulation_steps",
            "max_iters",
            "eval_interval",
            "eval_iters",
            "log_interval",
        ):
            need(getattr(self, name) >= 1, f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("lr_decay_iters", "checkpoint_interval"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name} must be at least 1 (got {value})")
        need(self.warmup_iters >= 0, f"warmup_iters must be >= 0 (got {self.warmup_iters})")
        need(self.threads >= 0, f"threads must be >= 0 (got {self.threads})")
        need(self.procs >= 1, f"procs must be at least 1 (got {self.procs})")
        need(
            self.procs < 1 or self.batch_size % self.procs == 0,
            f"batch_size ({self.batch_size}) must be a multiple of procs ({self.procs}): "
            "each process takes batch_size / procs rows of every batch",
        )
        need(self.window_stride >= 0, f"window_stride must be >= 0 (got {self.window_stride})")
        need(0 <= self.seed < 2**31, f"seed must be in [0, 2^31) (got {self.seed})")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1) (got {self.dropout})")
        need(self.learning_rate > 0, f"learning_rate must be > 0 (got {self.learning_rate})")
        need(
            0 <= self.min_lr <= self.learning_rate,
            f"min_lr must be in [0, learning_rate] (got {self.min_lr})",
        )
        need(self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})")
        need(0.0 <= self.beta1 < 1.0, f"beta1 must be in [0, 1) (got {self.beta1})")
        need(0.0 <= self.beta2 < 1.0, f"beta2 must be in [0, 1) (got {self.beta2})")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0 (got {self.grad_clip})")
        need(self.rope_base > 0, f"rope_base must be > 0 (got {self.rope_base})")
        need(
            self.dtype in get_args(DTypeName),
            f"dtype must be one of {', '.join(get_args(DTypeName))} (got {self.dtype!r})",
        )
        need(
            self.positional in POSITIONAL_ENCODINGS,
            f"positional must be one of {', '.join(POSITIONAL_ENCODINGS)} "
            f"(got {self.positional!r})",
        )
        need(
            self.activation in ACTIVATIONS,
            f"activation must be one of {', '.join(ACTIVATIONS)} (got {self.activation!r})",
        )
        device = self.device
        need(
            device in ("auto", "cpu", "cuda", "mps")
            or (device.startswith("cuda:") and device[5:].isdigit()),
            f"device must be auto, cpu, cuda, cuda:N or mps (got {device!r})",
        )
        if not problems:
            try:
                self.gpt_config(vocab_size=1)  # the model's own checks (e.g. n_embd % n_head)
            except ValueError as err:
                problems.append(str(err).removeprefix("invalid model config: "))
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    # ------------------------------------------------------------------ derived values

    @property
    def decay_iters(self) -> int:
        return self.lr_decay_iters if self.lr_decay_iters is not None else self.max_iters

    @property
    def save_interval(self) -> int:
        return (
            self.checkpoint_interval if self.checkpoint_interval is not None else self.eval_interval
        )

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
            bias=self.bias,
            positional=self.positional,  # type: ignore[arg-type]  # checked in validate()
            rope_base=self.rope_base,
            activation=self.activation,  # type: ignore[arg-type]  # checked in validate()
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """A config from (possibly string-valued) settings; unknown keys or values that do
        not fit a field's type are errors naming the key."""
        return cls(**coerce_settings(data, source))

    def replace(self, settings: dict[str, Any], source: str = "config") -> TrainConfig:
        return TrainConfig(**{**self.to_dict(), **coerce_settings(settings, source)})

    @classmethod
    def for_model(cls, model: GPTConfig, **settings: Any) -> TrainConfig:
        """Defaults whose shape matches an existing model (for fine-tuning)."""
        shape = {key: getattr(model, key) for key in MODEL_KEYS}
        return cls(**{**shape, "dropout": model.dropout, **settings})


# nanoGPT's CPU "baby" model for character-level Shakespeare (its README's first example);
# `musegpt quickstart` trains it, and configs/shakespeare-char.yaml holds the same settings.
SHAKESPEARE_CHAR: dict[str, Any] = {
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    "block_size": 64,
    "dropout": 0.0,
    "bias": False,
    "activation": "gelu",  # nanoGPT's nn.GELU() is the exact GELU
    "batch_size": 12,
    "gradient_accumulation_steps": 1,
    "max_iters": 2000,
    "learning_rate": 1e-3,
    "min_lr": 1e-4,
    "warmup_iters": 100,
    "lr_decay_iters": 2000,
    "beta2": 0.99,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "eval_interval": 250,
    "eval_iters": 20,
    "log_interval": 10,
}
# Steps `musegpt quickstart` trains the baby model for (see the README for timings).
QUICKSTART_ITERS = 4000


# ---------------------------------------------------------------------- parsing


def _field_types() -> dict[str, Any]:
    return get_type_hints(TrainConfig)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))


def _unknown_key_message(key: str, source: str) -> str:
    close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown setting {key!r} in {source}{hint} (settings: {', '.join(FIELD_NAMES)})"


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """`value` (from YAML or the command line, so often a string) as the field's type."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(key, value, options[0])
    if origin is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise ValueError(
                f"setting {key!r} must be one of {', '.join(map(str, choices))} (got {value!r})"
            )
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"setting {key!r} must be true or false (got {value!r})")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"setting {key!r} must be an integer (got {value!r})")
        if isinstance(value, int):
            return value
        try:
            number = float(value)  # accepts "2000" and "2e3"
        except (TypeError, ValueError):
            raise ValueError(f"setting {key!r} must be an integer (got {value!r})") from None
        if not number.is_integer():
            raise ValueError(f"setting {key!r} must be an integer (got {value!r})")
        return int(number)
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError(f"setting {key!r} must be a number (got {value!r})")
        try:
            # PyYAML reads "3e-4" (no dot) as a string, so strings are parsed here too.
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"setting {key!r} must be a number (got {value!r})") from None
    if annotation is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"setting {key!r} must be a string (got {value!r})")
        return str(value)
    raise TypeError(f"no parser for setting {key!r} of type {annotation!r}")  # pragma: no cover


def coerce_settings(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    types_ = _field_types()
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in types_:
            raise ValueError(_unknown_key_message(str(key), source))
        out[key] = _coerce(key, value, types_[key])
    return out


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`["n_layer=2", "learning_rate=3e-4"]` -> {"n_layer": "2", "learning_rate": "3e-4"};
    values stay strings until `coerce_settings` types them."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("--").replace("-", "_")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r} (e.g. learning_rate=3e-4)")
        if key not in FIELD_NAMES:
            raise ValueError(_unknown_key_message(key, "the command line"))
        out[key] = value.strip()
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must be a mapping of setting: value")
    return {str(k): v for k, v in data.items()}


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    base: TrainConfig | None = None,
) -> TrainConfig:
    """`base` (or the defaults), then the YAML file's settings, then the overrides."""
    settings: dict[str, Any] = {}
    if path is not None:
        settings.update(coerce_settings(read_config_file(path), f"config file {path}"))
    if isinstance(overrides, dict):
        settings.update(coerce_settings(overrides, "the overrides"))
    elif overrides:
        settings.update(coerce_settings(dict(parse_overrides(overrides)), "the command line"))
    start = base.to_dict() if base is not None else {}
    return TrainConfig(**{**start, **settings})
