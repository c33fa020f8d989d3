"""The training loop: `Trainer(config, corpus, out_dir).run() -> TrainResult`.

A run folder holds `metrics.jsonl`, `loss.png` and two checkpoints, `last/` (every
`checkpoint_interval` steps and at the end) and `best/` (lowest validation loss so far).
When both are saved at one step, last/'s files are hard links to best/'s, and checkpoints
are finished (fsync, rename) on a background thread while training goes on
(`CheckpointWriter`); `run()` returns once the last one is in place.

Mixed precision on CPU depends on the CPU. Without native bf16 instructions (AVX512-BF16
or AMX) every bf16 matmul is emulated: on an AVX2-only EPYC (Zen 3), torch 2.13, bfloat16
autocast ran the baby Shakespeare config about 20x *slower* than float32. With them (e.g. an
AVX512-BF16 EPYC, Zen 4) oneDNN's bf16 matmuls run 2-3x faster than fp32 ones and a training
step about 1.4x faster, with the same validation loss (docs/benchmarks.md). But native is not
always faster: on an AVX512-BF16 Xeon without AMX, the baby config trained about 2x *slower*
in bfloat16 (small matrices: the casts cost more than the products save). So `dtype: auto`
picks bfloat16 on CUDA GPUs that support it; on a CPU with native bf16 it times the model's
own forward and backward pass on one batch both ways (a fraction of a second) and takes the
faster; elsewhere float32. The choice is kept in the checkpoint, so a resumed run trains in
the dtype it started with. `dtype: float32` or `dtype: bfloat16` overrides the choice.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.console import Console
from torch import nn

from musegpt.data.dataset import PreparedCorpus
from musegpt.model.compiled import CompiledWithFallback
from musegpt.model.gpt import GPT, CausalSelfAttention
from musegpt.model.io import MODEL_FILE
from musegpt.tokenizer.base import Tokenizer
from musegpt.train import distributed, local_procs, sharding
from musegpt.train.batches import BatchSampler
from musegpt.train.checkpoint import (
    CheckpointError,
    CheckpointWriter,
    capture_rng,
    checkpoint_step,
    load_checkpoint_state,
    restore_rng,
)
from musegpt.train.config import FIXED_ON_RESUME, MODEL_KEYS, TrainConfig
from musegpt.train.heap import retained_heap
from musegpt.train.metrics import METRICS_FILE, MetricsLog
from musegpt.train.plot import PLOT_FILE, plot_losses

LAST = "last"
BEST = "best"
# loss.png is redrawn at an evaluation only if this many seconds have passed since it was
# last drawn (and always at the end): drawing it costs ~0.1 s of CPU plus ~0.5 s to import
# matplotlib the first time, so a run of a minute or less (the 2,000-step baby run) draws
# it once, after its loop, where it costs nothing of the loop's 1-2%.
PLOT_INTERVAL_S = 60.0
# Where a run's loop spends its time besides training steps (TrainResult.phase_seconds).
PHASES = ("evaluate", "checkpoint", "plot", "log")


class TrainingDiverged(ValueError):
    """The loss (or the weights) became NaN or infinite."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step

    def __reduce__(self) -> tuple[type[TrainingDiverged], tuple[str, int]]:
        # Picklable, so that a `procs` worker's error reaches the parent process intact.
        return (type(self), (str(self), self.step))


class ModelAdapter(Protocol):
    """Changes *what* is trained, e.g. LoRA. `wrap` returns the module to train around the
    GPT (same forward signature; freeze weights with `requires_grad=False`: only parameters
    that still require grad are optimised); `export` turns that module back into the plain
    GPT saved as model.safetensors (e.g. a copy with the adapters merged in). With an
    adapter, `state.pt` also carries the wrapped module's `state_dict()`, so --resume
    restores the adapters themselves, not just their merged result."""

    def wrap(self, model: GPT) -> nn.Module: ...

    def export(self, module: nn.Module) -> GPT: ...


@dataclass
class TrainResult:
    out_dir: Path
    steps: int  # optimizer steps completed, counting those before a resume
    tokens: int  # tokens trained in this call, over all processes
    seconds: float  # wall time of this call's training loop
    # Training throughput over all processes, from the end of this call's first step (which
    # pays one-off warm-up, e.g. torch.compile) to the end, evaluations and checkpoints
    # included: comparable with the per-iteration times nanoGPT prints.
    tokens_per_second: float
    # The same with evaluation, checkpoint and plotting time left out.
    train_tokens_per_second: float
    final_train_loss: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    rank: int = 0  # this process's rank under DDP; only rank 0 writes and reports
    # With `compile`: seconds the first step took (compiling included); None when the
    # run did not compile, or compiling failed and it trained eagerly.
    compile_seconds: float | None = None
    # Wall seconds of this call's loop after the first step spent on each of PHASES
    # (evaluations, checkpoints, loss.png, the log points' loss read-back and lines);
    # `tokens_per_second` counts them, `train_tokens_per_second` does not.
    phase_seconds: dict[str, float] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def learning_rate_at(config: TrainConfig, it: int) -> float:
    """Learning rate for iteration `it` (0-based): linear warm-up, cosine decay to min_lr at
    lr_decay_iters, then flat (nanoGPT's schedule, so runs compare like for like)."""
    if not config.decay_lr:
        return config.learning_rate
    if it < config.warmup_iters:
        return config.learning_rate * (it + 1) / (config.warmup_iters + 1)
    if it > config.decay_iters:
        return config.min_lr
    span = max(config.decay_iters - config.warmup_iters, 1)
    ratio = (it - config.warmup_iters) / span
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return config.min_lr + coeff * (config.learning_rate - config.min_lr)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this machine has no usable CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but MPS is not available here")
    return device


def resolve_dtype(
    name: str, device: torch.device, step_seconds: Callable[[torch.dtype], float] | None = None
) -> torch.dtype:
    """The training dtype for the config's `dtype`. For `auto` on a CPU with native bf16,
    `step_seconds(dtype)` (when given) times a training pass in each, and the faster wins."""
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    # auto: see the module docstring for which devices get bfloat16.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bf16():
        if step_seconds is None:
            return torch.bfloat16
        faster = step_seconds(torch.bfloat16) < step_seconds(torch.float32)
        return torch.bfloat16 if faster else torch.float32
    return torch.float32


def autocast_to(dtype: torch.dtype, device: torch.device) -> AbstractContextManager[Any]:
    """Mixed precision in `dtype`, or nothing for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def pass_seconds(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], repeats: int = 3
) -> Callable[[torch.dtype], float]:
    """A timer for `resolve_dtype`: the fastest of `repeats` forward+backward passes of
    `model` on `batch` in a dtype, in eval mode. The model's weights, gradients, mode and
    the random state are left as they were."""

    def seconds(dtype: torch.dtype) -> float:
        device = batch[0].device
        best = math.inf
        training = model.training
        model.eval()  # no dropout: nothing random, and not a training pass (step counters)
        try:
            for _ in range(repeats):
                start = time.perf_counter()
                with autocast_to(dtype, device):
                    loss = _loss(model(*batch))
                loss.backward()  # type: ignore[no-untyped-call]
                best = min(best, time.perf_counter() - start)
        finally:
            model.train(training)
            model.zero_grad(set_to_none=True)
        return best

    return seconds


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX, through oneDNN)."""
    if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        return False
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(torch.cpu, check, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:  # pragma: no cover - a torch build without the probe
            pass
    return False


def set_dropout(model: GPT, p: float) -> None:
    """Change the dropout of an existing model (e.g. a base model being fine-tuned)."""
    model.config.dropout = p
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        elif isinstance(module, CausalSelfAttention):
            module.dropout = p


def optimizer_for(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on matrices and embeddings (>= 2-D)
    only, not on biases and LayerNorm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    betas = (config.beta1, config.beta2)
    # Fused kernels exist for CUDA and (since torch 2.4) CPU; foreach is the fallback.
    if device.type in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(groups, lr=config.learning_rate, betas=betas, fused=True)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=betas, foreach=True)


def _loss(output: Any) -> torch.Tensor:
    loss = output.loss
    if loss is None:  # pragma: no cover - GPT always returns a loss when given targets
        raise RuntimeError("the model returned no loss")
    assert isinstance(loss, torch.Tensor)
    return loss


class Trainer:
    """Train a GPT on a prepared corpus.

    `model` and `tokenizer` default to a fresh model shaped by `config` and the corpus's
    tokenizer; pass them to continue from existing weights (fine-tuning). `adapter` changes
    what is trained (see `ModelAdapter`). `resume=True` continues the run in `out_dir` from
    its `last/` checkpoint exactly (same batches, same dropout masks, same weights as if it
    had never stopped); without it, a folder that already holds a run is refused.
    """

    def __init__(
        self,
        config: TrainConfig,
        corpus: PreparedCorpus | str | Path,
        out_dir: str | Path,
        *,
        model: GPT | None = None,
        tokenizer: Tokenizer | None = None,
        adapter: ModelAdapter | None = None,
        resume: bool = False,
        progress: bool = True,
        console: Console | None = None,
    ) -> None:
        self.config = config
        self.corpus = corpus if isinstance(corpus, PreparedCorpus) else PreparedCorpus.open(corpus)
        self.out_dir = Path(out_dir).expanduser()
        self.tokenizer = tokenizer if tokenizer is not None else self.corpus.tokenizer
        if tokenizer is not None and tokenizer.to_dict() != self.corpus.tokenizer.to_dict():
            raise ValueError(
                f"the corpus {self.corpus.path} was prepared with a different tokenizer than "
                "the model's; prepare it again with the model's tokenizer"
            )
        self.model_in = model
        self.adapter = adapter
        self.resume = resume
        self.show_progress = progress
        self.console = console or Console()

    # ------------------------------------------------------------------ set-up

    def _build_model(self) -> GPT:
        cfg = self.config
        vocab = self.tokenizer.vocab_size
        if self.model_in is None:
            return GPT(cfg.gpt_config(vocab))
        model = self.model_in
        if model.config.vocab_size != vocab:
            raise ValueError(
                f"the model has {model.config.vocab_size} token ids but the tokenizer "
                f"{vocab}; they do not belong together"
            )
        wrong = [
            f"{key} (model {getattr(model.config, key)}, config {getattr(cfg, key)})"
            for key in MODEL_KEYS
            if getattr(model.config, key) != getattr(cfg, key)
        ]
        if wrong:
            raise ValueError("the config does not match the model's shape: " + ", ".join(wrong))
        if model.config.dropout != cfg.dropout:
            set_dropout(model, cfg.dropout)
        return model

    def _training_dtype(
        self,
        model: nn.Module,
        batches: BatchSampler,
        resumed: str | None,
        device: torch.device,
        dist_info: distributed.DistInfo,
    ) -> torch.dtype:
        """The config's dtype; for `auto`, the one the resumed run used, else the measured
        choice (rank 0's, so that every process trains alike)."""
        cfg = self.config
        if cfg.dtype == "auto" and resumed in ("float32", "bfloat16"):
            return getattr(torch, resumed)  # type: ignore[no-any-return]
        if cfg.dtype != "auto" or device.type != "cpu":
            return resolve_dtype(cfg.dtype, device)
        position = batches.get_state()
        timer = pass_seconds(model, batches.next())
        batches.set_state(position)
        dtype = resolve_dtype(cfg.dtype, device, timer)
        bf16 = distributed.broadcast_flag(dtype == torch.bfloat16, dist_info, device)
        dtype = torch.bfloat16 if bf16 else torch.float32
        if dist_info.is_main and cpu_has_native_bf16():
            self.console.print(
                f"dtype auto: {str(dtype).removeprefix('torch.')}, the faster of the two for "
                "this model on this CPU (dtype=float32 or dtype=bfloat16 to choose)"
            )
        return dtype

    def _check_resumable(self, saved: dict[str, Any]) -> None:
        changed = [
            f"{key} (run {saved.get(key)!r}, now {getattr(self.config, key)!r})"
            for key in FIXED_ON_RESUME
            if saved.get(key) != getattr(self.config, key)
        ]
        if changed:
            raise ValueError(
                "cannot resume with different settings for: " + ", ".join(changed) + "; "
                "start a new run (another --out) to change them"
            )

    # ------------------------------------------------------------------ the run

    def run(self) -> TrainResult:
        cfg = self.config
        if cfg.procs > 1 and not local_procs.in_worker():
            return self._run_local_processes()
        own_group = not distributed.launched_by_torchrun() or not torch.distributed.is_initialized()
        device = resolve_device(cfg.device)
        dist_info = distributed.setup(device)
        # On a CPU, a step's buffers are reused warm instead of faulted in afresh (heap.py).
        keep_heap = retained_heap() if device.type == "cpu" else nullcontext()
        try:
            with keep_heap:
                return self._run(distributed.local_device(device, dist_info), dist_info)
        finally:
            if own_group:
                distributed.teardown()

    def _run_local_processes(self) -> TrainResult:
        cfg = self.config
        if distributed.launched_by_torchrun():
            raise ValueError(
                f"procs={cfg.procs} starts its own processes; under torchrun leave procs at 1 "
                "(batch_size is then each process's share)"
            )
        if resolve_device(cfg.device).type != "cpu":
            raise ValueError(
                f"procs={cfg.procs} shares CPU cores among processes; on GPUs train with "
                "torchrun --nproc_per_node=<GPUs>, or set device=cpu"
            )
        return local_procs.run(
            cfg,
            self.corpus.path,
            self.out_dir,
            model=self.model_in,
            tokenizer=self.tokenizer if self.model_in is not None else None,
            adapter=self.adapter,
            resume=self.resume,
            progress=self.show_progress,
            console=self.console,
        )

    def _run(self, device: torch.device, dist_info: distributed.DistInfo) -> TrainResult:
        cfg = self.config
        main = dist_info.is_main
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.fsdp:
            sharding.check_supported(device, adapter=self.adapter is not None)
        last_dir, best_dir = self.out_dir / LAST, self.out_dir / BEST
        metrics = MetricsLog(self.out_dir / METRICS_FILE)

        existing = checkpoint_step(last_dir)
        if self.resume and existing is None:
            raise CheckpointError(
                f"nothing to resume: {last_dir} holds no checkpoint (start without --resume)"
            )
        if not self.resume and existing is not None:
            raise FileExistsError(
                f"{self.out_dir} already holds a run (checkpoint at step {existing}); "
                "pass --resume to continue it, or choose another --out"
            )

        # Seeds: the model's initial weights are the same on every rank; dropout differs.
        torch.manual_seed(cfg.seed)
        gpt = self._build_model()
        model: nn.Module = self.adapter.wrap(gpt) if self.adapter is not None else gpt
        # Under FSDP only each rank's shard goes to the device (see sharding.shard_model).
        model.to(torch.device("cpu") if cfg.fsdp else device)
        model.train()
        optimizer = optimizer_for(model, cfg, device)
        rows = local_procs.rows_per_process(cfg.batch_size, cfg.procs)
        train_batches = BatchSampler(
            self.corpus.tokens("train"),
            cfg.block_size,
            rows,
            cfg.seed,
            dist_info.rank,
            dist_info.world_size,
            device,
            split="train",
            stride=cfg.window_stride,
        )
        val_batches = BatchSampler(
            self.corpus.tokens("val"),
            cfg.block_size,
            rows,
            cfg.seed + 1,
            dist_info.rank,
            dist_info.world_size,
            device,
            split="val",
            stride=cfg.window_stride,
        )
        val_start = val_batches.get_state()  # every evaluation sees the same val windows

        step, best_val, prior_elapsed = 0, math.inf, 0.0
        resumed_dtype: str | None = None
        if self.resume:
            state = load_checkpoint_state(last_dir)
            resumed_dtype = state.get("dtype")
            self._check_resumable(state["config"])
            if "model_state" in state:
                model.load_state_dict(state["model_state"])
            else:
                from safetensors.torch import load_file

                weights = load_file(str(last_dir / MODEL_FILE), device=str(device))
                missing, unexpected = model.load_state_dict(weights, strict=False)
                if [k for k in missing if k != "lm_head.weight"] or unexpected:
                    raise CheckpointError(f"{last_dir} does not match the model being trained")
            optimizer.load_state_dict(state["optimizer"])
            train_batches.set_state(state["data"])
            step, best_val = int(state["step"]), float(state["best_val_loss"])
            prior_elapsed = float(state.get("elapsed", 0.0))
            if step >= cfg.max_iters:
                raise ValueError(
                    f"the run in {self.out_dir} already reached step {step} (max_iters "
                    f"{cfg.max_iters}); to train on, resume with a larger max_iters, e.g. "
                    f"max_iters={step * 2}"
                )
            rngs = state["rng"]
            if len(rngs) == dist_info.world_size:
                restore_rng(rngs[dist_info.rank])
            else:
                torch.manual_seed(cfg.seed + 1000 * step + dist_info.rank)
                if main:
                    self.console.print(
                        f"[yellow]note:[/] the run used {len(rngs)} processes, now "
                        f"{dist_info.world_size}: dropout randomness will differ"
                    )
            if main:
                metrics.truncate_after(step)
        else:
            torch.manual_seed(cfg.seed + dist_info.rank)
            random.seed(cfg.seed + dist_info.rank)
            np.random.seed(cfg.seed + dist_info.rank)
            if main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                metrics.clear()

        dtype = self._training_dtype(model, val_batches, resumed_dtype, device, dist_info)
        if cfg.fsdp:
            optimizer = sharding.shard_training(
                gpt, optimizer, lambda: optimizer_for(gpt, cfg, device), dtype, device
            )
            summary = sharding.shard_summary(gpt, dist_info)  # every rank: it gathers
            if main:
                self.console.print(summary)

        forward: nn.Module = model
        compiled: CompiledWithFallback | None = None
        if cfg.compile:

            def compile_failed(reason: str) -> None:
                if main:
                    self.console.print(
                        f"[yellow]note:[/] torch.compile failed, training without it ({reason})"
                    )

            forward = compiled = CompiledWithFallback(model, on_fallback=compile_failed)
        ddp: nn.parallel.DistributedDataParallel | None = None
        if dist_info.world_size > 1 and not cfg.fsdp:
            ddp = nn.parallel.DistributedDataParallel(
                forward, device_ids=[device.index] if device.type == "cuda" else None
            )
            forward = ddp

        def autocast() -> AbstractContextManager[Any]:
            return autocast_to(dtype, device)

        params = [p for p in model.parameters() if p.requires_grad]
        accum = cfg.gradient_accumulation_steps

        def train_step() -> torch.Tensor:
            """One optimizer step; returns its mean loss as a tensor (no host sync)."""
            total: torch.Tensor | None = None
            for micro in range(accum):
                x, y = train_batches.next()
                # Gradients are all-reduced only on the last micro-batch.
                sync = micro == accum - 1
                with distributed.gradient_sync(ddp if ddp is not None else model, sync):
                    with autocast():
                        loss = _loss(forward(x, y))
                    scaled = loss / accum if accum > 1 else loss
                    scaled.backward()  # type: ignore[no-untyped-call]
                total = loss.detach() if total is None else total + loss.detach()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            assert total is not None
            return total / accum if accum > 1 else total

        @torch.inference_mode()  # no autograd bookkeeping at all (not even version counters)
        def evaluate() -> float:
            # The plain model (not compiled, not DDP): eval mode would make torch.compile
            # build a second graph, a long pause for a few forward passes.
            model.eval()
            val_batches.set_state(val_start)
            losses = torch.zeros(cfg.eval_iters, device=device)
            for k in range(cfg.eval_iters):
                x, y = val_batches.next()
                with autocast():
                    losses[k] = _loss(model(x, y)).float()
            model.train()
            return float(distributed.all_reduce_mean(losses.mean(), dist_info).item())

        def export() -> GPT:
            return self.adapter.export(model) if self.adapter is not None else gpt

        def is_finite() -> bool:
            return sharding.all_finite(params, dist_info)

        writer = CheckpointWriter()

        def save(folder: Path, at: int, extra: dict[str, str], also: list[Path]) -> None:
            rng = distributed.gather_objects(capture_rng(), dist_info)
            plain: GPT | None = None  # under FSDP, the gathered weights and optimizer state
            optimizer_state: dict[str, Any] | None = None
            if cfg.fsdp:  # collectives: every rank takes part
                plain = sharding.full_model(gpt)
                optimizer_state = sharding.full_optimizer_state(gpt, optimizer)
            if not main:
                return
            state: dict[str, Any] = {
                "step": at,
                "best_val_loss": best_val,
                "config": cfg.to_dict(),
                "optimizer": optimizer_state if cfg.fsdp else optimizer.state_dict(),
                "rng": rng,
                "data": train_batches.get_state(),
                "world_size": dist_info.world_size,
                "elapsed": prior_elapsed + (time.perf_counter() - loop_start),
                "dtype": str(dtype).removeprefix("torch."),
            }
            if self.adapter is not None:
                state["model_state"] = model.state_dict()
            model_out = plain or export()
            writer.save(folder, model_out, self.tokenizer, state, metadata=extra, also=also)

        tokens_per_step = rows * cfg.block_size * accum * dist_info.world_size
        window: list[torch.Tensor] = []  # this log window's per-step losses, still tensors
        last_saved = existing if self.resume else None
        final_train: float | None = None
        final_val: float | None = None
        records: list[dict[str, Any]] = metrics.read() if (main and self.resume) else []
        start_step = step
        overhead = 0.0  # seconds spent on evaluation, checkpoints and plots
        phases = dict.fromkeys(PHASES, 0.0)  # the same, by phase, after the first step
        timing = False  # whether the first step is done, i.e. phases count

        @contextmanager
        def phase(name: str) -> Iterator[None]:
            start = time.perf_counter()
            try:
                yield
            finally:
                if timing:
                    phases[name] += time.perf_counter() - start

        loop_start = time.perf_counter()
        first_step_end: float | None = None
        overhead_after_first = 0.0
        window_start, window_overhead = loop_start, 0.0
        last_plot = loop_start

        try:
            with self._progress(main, start_step) as advance:
                while step < cfg.max_iters:
                    lr = learning_rate_at(cfg, step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    window.append(train_step())
                    step += 1
                    if first_step_end is None:
                        first_step_end = time.perf_counter()
                        overhead_after_first = overhead
                        timing = True
                    is_eval = step % cfg.eval_interval == 0 or step == cfg.max_iters
                    is_save = step % cfg.save_interval == 0 or step == cfg.max_iters
                    if not (is_eval or is_save or step % cfg.log_interval == 0):
                        advance(step, None, None)
                        continue

                    # ---- a log point: the only place the loop waits for the losses
                    t_log = time.perf_counter()
                    losses = distributed.all_reduce_mean(torch.stack(window), dist_info).tolist()
                    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
                    if bad is not None:
                        self._diverged(step - len(losses) + bad + 1, losses[bad], lr, last_saved)
                    now = time.perf_counter()
                    elapsed_window = now - window_start - window_overhead
                    speed = len(window) * tokens_per_step / max(elapsed_window, 1e-9)
                    final_train = sum(losses) / len(losses)
                    window.clear()
                    record: dict[str, Any] = {
                        "step": step,
                        "train_loss": round(final_train, 6),
                        "lr": lr,
                        "tokens_per_sec": round(speed, 1),
                        "elapsed_s": round(prior_elapsed + now - loop_start, 3),
                    }
                    t_over = time.perf_counter()
                    if timing:
                        phases["log"] += t_over - t_log
                    if is_eval:
                        with phase("evaluate"):
                            final_val = evaluate()
                        if not math.isfinite(final_val):
                            self._diverged(step, final_val, lr, last_saved)
                        record["val_loss"] = round(final_val, 6)
                        record["ppl"] = round(math.exp(min(final_val, 50.0)), 4)
                    improved = is_eval and final_val is not None and final_val < best_val
                    # Never let non-finite weights replace a good checkpoint.
                    if (is_save or improved) and not is_finite():
                        self._diverged(step, math.nan, lr, last_saved, weights=True)
                    with phase("log"):
                        if main:  # before the checkpoint: resuming drops lines after its step
                            metrics.append(record)
                            records.append(record)
                    with phase("checkpoint"):
                        scored = {"val_loss": f"{final_val:.6f}"} if final_val is not None else {}
                        if improved and final_val is not None:
                            best_val = final_val
                            # last/ holds the same weights and state: linked, not written again
                            save(best_dir, step, scored, [last_dir] if is_save else [])
                        elif is_save:
                            save(last_dir, step, scored if is_eval else {}, [])
                        last_saved = step if is_save else last_saved
                    # Not at the last step: the end draws the plot anyway, after the loop.
                    due = time.perf_counter() - last_plot >= PLOT_INTERVAL_S
                    if main and is_eval and step < cfg.max_iters and due:
                        with phase("plot"):
                            plot_losses(records, self.out_dir / PLOT_FILE)
                        last_plot = time.perf_counter()
                    if main and is_eval:
                        self.console.print(
                            f"step {step}: train loss {final_train:.4f}, val loss "
                            f"{final_val:.4f} (ppl {math.exp(min(final_val or 0.0, 50.0)):.2f}),"
                            f" lr {lr:.2e}, {speed:,.0f} tok/s",
                            soft_wrap=True,
                        )
                    spent = time.perf_counter() - t_over
                    overhead += spent
                    window_start, window_overhead = time.perf_counter(), 0.0
                    advance(step, final_train, speed)
            # The run is done when its last checkpoint is on disk and in place.
            t_wait = time.perf_counter()
            with phase("checkpoint"):
                writer.wait()
            overhead += time.perf_counter() - t_wait
        finally:
            writer.close()  # also after an error: the last good checkpoint is kept whole

        end = time.perf_counter()
        seconds = end - loop_start
        steps_done = step - start_step
        tokens = steps_done * tokens_per_step
        if first_step_end is not None and steps_done > 1:
            timed = end - first_step_end
            timed_tokens = (steps_done - 1) * tokens_per_step
            tps = timed_tokens / max(timed, 1e-9)
            train_tps = timed_tokens / max(timed - (overhead - overhead_after_first), 1e-9)
        else:
            tps = train_tps = tokens / max(seconds, 1e-9)
        if main and records:
            plot_losses(records, self.out_dir / PLOT_FILE)
        return TrainResult(
            out_dir=self.out_dir,
            steps=step,
            tokens=tokens,
            seconds=seconds,
            tokens_per_second=tps,
            train_tokens_per_second=train_tps,
            final_train_loss=final_train,
            final_val_loss=final_val,
            best_val_loss=best_val if math.isfinite(best_val) else None,
            rank=dist_info.rank,
            compile_seconds=compiled.compile_seconds if compiled and compiled.compiled else None,
            phase_seconds={name: round(seconds, 4) for name, seconds in phases.items()},
        )

    # ------------------------------------------------------------------ helpers

    def _diverged(
        self, step: int, value: float, lr: float, last_saved: int | None, weights: bool = False
    ) -> None:
        what = "the weights became non-finite" if weights else f"the loss became {value}"
        rate = self.config.learning_rate
        if last_saved is not None:
            kept = f"the last good checkpoint (step {last_saved}) is kept in {self.out_dir / LAST}"
        else:
            kept = "no checkpoint had been written yet"
        raise TrainingDiverged(
            f"training diverged at step {step}: {what} (learning_rate {rate:g}, lr at that step "
            f"{lr:.3g}); {kept}. Try a lower learning rate, e.g. learning_rate={rate / 10:g}, "
            "or grad_clip=1.0",
            step,
        )

    @contextmanager
    def _progress(
        self, main: bool, start: int
    ) -> Iterator[Callable[[int, float | None, float | None], None]]:
        """A rich progress bar (rank 0 only) showing step, loss and tokens/s; yields
        `advance(step, loss, tokens_per_sec)`."""
        if not (main and self.show_progress):
            yield lambda step, loss, speed: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        ) as bar:
            task = bar.add_task(
                "train", total=self.config.max_iters, completed=start, loss="-", speed="-"
            )

            def advance(step: int, loss: float | None, speed: float | None) -> None:
                if loss is None:
                    bar.update(task, completed=step)
                else:
                    bar.update(task, completed=step, loss=f"{loss:.4f}", speed=f"{speed or 0:,.0f}")

            yield advance
