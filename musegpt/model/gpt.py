"""A GPT: token embeddings, pre-LayerNorm residual blocks of causal self-attention and a GELU
feed-forward network, and a language-model head tied to the token embeddings."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from musegpt.model.config import GPTConfig
from musegpt.model.fastpath import dropout, layer_norm, linear
from musegpt.model.kv_cache import KVCache
from musegpt.model.positional import (
    LearnedPositions,
    RotaryEmbedding,
    SinusoidalPositions,
    apply_rotary,
)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.head_size
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache | None,
        layer: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, 3C) -> q, k, v each (B, n_head, T, head_size), views into one tensor
        qkv = linear(self.c_attn, x).view(B, T, 3, self.n_head, self.head_size)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if rotary is not None:
            q = apply_rotary(q, *rotary)
            k = apply_rotary(k, *rotary)

        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(layer, k, v)

        dropout_p = self.dropout if self.training else 0.0
        if (
            q.device.type == "cpu"
            and q.requires_grad
            and (q.dtype == torch.bfloat16 or torch.compiler.is_compiling())
        ):
            y = _cpu_training_attention(q, k, v, mask, past, dropout_p)
        else:
            y = self._attend(q, k, v, mask, past, dropout_p)
        y = y.transpose(1, 2).reshape(B, T, C)
        return dropout(self.resid_dropout, linear(self.c_proj, y))

    @staticmethod
    def _attend(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        past: int,
        dropout_p: float,
    ) -> torch.Tensor:
        T = q.shape[2]
        if mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        elif past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=T > 1)
        elif T == 1:
            # One new token may look at everything before it: no mask needed.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            # Several new tokens after a cached prefix: the causal mask is offset by `past`
            # (SDPA's is_causal aligns to the top-left corner, which would be wrong here).
            mask = torch.ones(T, past + T, dtype=torch.bool, device=q.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        return y


@functools.lru_cache(maxsize=16)
def _causal_bias(T: int, S: int, device: torch.device) -> torch.Tensor:
    """(T, S) fp32: 0 where query t may see key s (s <= t + S - T), -inf elsewhere."""
    allowed = torch.ones(T, S, dtype=torch.bool, device=device).tril_(diagonal=S - T)
    return torch.zeros(T, S, device=device).masked_fill_(~allowed, float("-inf"))


def _cpu_training_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    past: int,
    dropout_p: float,
) -> torch.Tensor:
    """Causal attention for training on a CPU in bfloat16 (autocast), or under torch.compile.

    The CPU flash-attention kernel's backward is several times slower in bf16 than in fp32,
    and in fp32 it barely uses a second thread at training shapes (12 x 4 heads x 64 tokens:
    ~3.0 ms per layer forward + backward, 2 threads, torch 2.13). Written out, with bf16
    matmuls and the scaling, mask and softmax in fp32, it takes ~1.7 ms. Compiled, the
    written-out form lets inductor fuse the scaling, mask and softmax into one loop each
    way. Masked or cached attention (never used in training) keeps SDPA, in fp32.
    """
    if mask is not None or past:
        with torch.autocast("cpu", enabled=False):
            return CausalSelfAttention._attend(
                q.float(), k.float(), v.float(), mask, past, dropout_p
            )
    # One pass turns the bf16 q.k products into scaled, masked fp32 scores.
    T, S = q.shape[-2], k.shape[-2]
    # Compiled, the mask is built in the graph (dynamo does not trace through the cache).
    bias = (
        _causal_bias.__wrapped__(T, S, q.device)
        if torch.compiler.is_compiling()
        else _causal_bias(T, S, q.device)
    )
    scores = torch.add(bias, q @ k.transpose(-2, -1), alpha=1.0 / math.sqrt(q.shape[-1]))
    probs = scores.softmax(dim=-1)
    if dropout_p > 0:
        probs = F.dropout(probs, dropout_p)
    return probs.to(v.dtype) @ v


# GPT-2's tanh-approximated GELU, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), is the
# same function as x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), since (1 + tanh z) / 2 =
# sigmoid(2z).
_GELU_CUBE = 0.044715
_GELU_SIGMOID_SCALE = 2.0 * math.sqrt(2.0 / math.pi)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU ("gelu_new"). Eager mode uses ATen's kernel; under torch.compile it is
    written with a sigmoid, which inductor fuses into one vectorised loop forward and one
    backward: 0.8 ms instead of 1.7 (ATen's kernel, or inductor's own tanh) per layer at
    the baby config's shapes, forward + backward, one thread (torch 2.13)."""
    if torch.compiler.is_compiling():
        return x * torch.sigmoid(_GELU_SIGMOID_SCALE * (x + _GELU_CUBE * x * x * x))
    return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear → GELU → Linear, 4× wide."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        # The tanh approximation is GPT-2's "gelu_new": exported models then match exactly.
        self.activation = gelu_tanh if config.activation == "gelu_tanh" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(linear(self.c_fc, x))
        return dropout(self.dropout, linear(self.c_proj, h))


class Block(nn.Module):
    """Pre-LayerNorm residual block: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = FeedForward(config)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache | None,
        layer: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        x = x + self.attn(layer_norm(self.ln_1, x), rotary, cache, layer, mask)
        x = x + self.mlp(layer_norm(self.ln_2, x))
        return x


@dataclass
class GPTOutput:
    logits: torch.Tensor  # (B, T, vocab), or (B, 1, vocab) with last_only
    loss: torch.Tensor | None = None


def padded_positions_and_mask(
    pos: torch.Tensor, past: int, left_padding: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row positions (B, T) and the attention mask (B, 1, T, past + T) for left-padded
    rows: causal, never looking at padding. A padding query may see itself, so no row of
    the mask is empty (an empty row would make attention produce NaN)."""
    positions = (pos.unsqueeze(0) - left_padding.unsqueeze(1)).clamp(min=0)
    keys = torch.arange(past + pos.shape[0], device=pos.device)
    causal = keys.unsqueeze(0) <= pos.unsqueeze(1)  # (T, S)
    real_key = keys.unsqueeze(0) >= left_padding.unsqueeze(1)  # (B, S)
    mask = causal.unsqueeze(0) & real_key.unsqueeze(1)
    mask |= keys.unsqueeze(0) == pos.unsqueeze(1)
    return positions, mask.unsqueeze(1)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.positions: LearnedPositions | SinusoidalPositions | None = None
        self.rotary: RotaryEmbedding | None = None
        if config.positional == "learned":
            self.positions = LearnedPositions(config.block_size, config.n_embd)
        elif config.positional == "sinusoidal":
            self.positions = SinusoidalPositions(config.block_size, config.n_embd)
        else:
            self.rotary = RotaryEmbedding(config.block_size, config.head_size, config.rope_base)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied input/output embeddings
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer) so the residual stream's
        # variance does not grow with depth.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameter count (tied weights counted once); optionally without position embeddings."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings and isinstance(self.positions, LearnedPositions):
            n -= self.positions.wpe.weight.numel()
        return n

    def new_cache(self, batch_size: int, max_length: int | None = None) -> KVCache:
        """An empty key/value cache for incremental decoding of up to `max_length` tokens."""
        param = self.wte.weight
        return KVCache(
            n_layer=self.config.n_layer,
            batch_size=batch_size,
            n_head=self.config.n_head,
            max_length=max_length or self.config.block_size,
            head_size=self.config.head_size,
            dtype=param.dtype,
            device=param.device,
        )

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        last_only: bool = False,
        left_padding: torch.Tensor | None = None,
    ) -> GPTOutput:
        """Logits for token ids `idx` (B, T); with `targets` (B, T), the mean cross-entropy
        (positions whose target is -1 are ignored). With `cache`, `idx` continues the
        cached sequence and the cache grows by T.

        `left_padding` (B,) says how many leading positions of each row (counted from the
        start of the cached sequence) are padding: they are never attended to and the real
        tokens' positions start at 0, so rows of different lengths batch together."""
        T = idx.shape[1]
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(
                f"sequence of {past + T} tokens exceeds the model's context of "
                f"{self.config.block_size}; crop or slide the input first"
            )
        pos = torch.arange(past, past + T, device=idx.device)
        mask = None
        if left_padding is not None:
            pos, mask = padded_positions_and_mask(pos, past, left_padding.to(idx.device))
        x = self.wte(idx)
        rotary = None
        if self.positions is not None:
            x = x + self.positions(pos)
        elif self.rotary is not None:
            cos, sin = self.rotary(pos)
            # (T, h/2) is shared by all heads and rows; (B, T, h/2) needs a head axis.
            rotary = (cos.unsqueeze(1), sin.unsqueeze(1)) if cos.dim() == 3 else (cos, sin)
        x = dropout(self.drop, x)
        for layer, block in enumerate(self.blocks):
            x = block(x, rotary, cache, layer, mask)
        if cache is not None:
            cache.advance(T)
        x = layer_norm(self.ln_f, x)

        if targets is not None:
            logits = linear(self.lm_head, x)
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1
            )
            return GPTOutput(logits=logits, loss=loss)
        if last_only:
            x = x[:, -1:, :]  # generation needs only the next-token distribution
        return GPTOutput(logits=linear(self.lm_head, x))

    def flops_per_token(self) -> float:
        """Forward+backward FLOPs per trained token (PaLM appendix B), for MFU figures."""
        cfg = self.config
        n = self.num_parameters(exclude_embeddings=True)
        return 6 * n + 12 * cfg.n_layer * cfg.n_head * cfg.head_size * cfg.block_size
