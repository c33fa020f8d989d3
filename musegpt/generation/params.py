"""`SamplingParams`: the one description of how to sample, shared by the CLI, the Python API
and the server. Pydantic checks every range and names the offending field."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SEED = 2**64 - 1  # torch generators take 64-bit seeds


class SamplingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    max_new_tokens: int = Field(128, ge=1, le=1_000_000, description="tokens to generate at most")
    min_new_tokens: int = Field(0, ge=0, description="the end-of-text token is banned before this")
    temperature: float = Field(1.0, ge=0.0, le=100.0, description="0 means greedy")
    top_k: int = Field(0, ge=0, description="keep the k likeliest tokens; 0 = off")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass; 1 = off")
    min_p: float = Field(0.0, ge=0.0, lt=1.0, description="drop tokens below min_p × top prob")
    typical_p: float = Field(1.0, gt=0.0, le=1.0, description="locally typical sampling; 1 = off")
    repetition_penalty: float = Field(1.0, gt=0.0, le=100.0, description="CTRL-style; 1 = off")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="OpenAI-style")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="OpenAI-style")
    repeat_last_n: int = Field(
        64, ge=-1, description="repetition_penalty sees the last n tokens; -1 = all, 0 = off"
    )
    no_repeat_ngram_size: int = Field(0, ge=0, description="no n-gram of this size twice; 0 = off")
    # llama.cpp's samplers, under llama.cpp server's names and with its defaults.
    dry_multiplier: float = Field(0.0, ge=0.0, le=100.0, description="DRY strength; 0 = off")
    dry_base: float = Field(1.75, ge=1.0, le=100.0, description="DRY's penalty grows as base**n")
    dry_allowed_length: int = Field(2, ge=0, description="DRY spares repeats up to this long")
    dry_penalty_last_n: int = Field(
        64, ge=-1, description="DRY looks at this many last tokens; -1 = all, 0 = off"
    )
    dry_sequence_breakers: list[str] = Field(
        default_factory=lambda: ["\n", ":", '"', "*"],
        description="DRY never counts a repeat across these strings",
    )
    xtc_probability: float = Field(0.0, ge=0.0, le=1.0, description="XTC's chance a step; 0 = off")
    xtc_threshold: float = Field(
        0.1, ge=0.0, le=1.0, description="XTC cuts the likeliest tokens above this; > 0.5 = off"
    )
    mirostat: int = Field(0, ge=0, le=2, description="Mirostat version 1 or 2; 0 = off")
    mirostat_tau: float = Field(5.0, ge=0.0, le=100.0, description="Mirostat's target surprise")
    mirostat_eta: float = Field(0.1, ge=0.0, le=1.0, description="Mirostat's learning rate")
    dynatemp_range: float = Field(
        0.0, ge=0.0, le=100.0, description="temperature varies by ± this with entropy; 0 = off"
    )
    dynatemp_exponent: float = Field(
        1.0, ge=0.0, le=100.0, description="how entropy maps to dynamic temperature"
    )
    top_n_sigma: float = Field(
        -1.0, ge=-1.0, le=100.0, description="keep logits within n std devs of the top; <= 0 = off"
    )
    logit_bias: dict[int, float] = Field(default_factory=dict, description="token id -> bias")
    stop: list[str] = Field(default_factory=list, description="stop before any of these strings")
    banned: list[str] = Field(default_factory=list, description="phrases that never appear")
    banned_regex: list[str] = Field(default_factory=list, description="patterns never matched")
    max_copy: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="copy no span longer than this many tokens from the model's indexed "
        "training corpus (docs/originality.md); None = off",
    )
    n: int = Field(1, ge=1, le=128, description="samples per prompt")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="same seed, same output; 0 to 2**64 - 1"
    )
    logprobs: int | None = Field(None, ge=0, le=20, description="top alternatives per step")
    echo: bool = Field(False, description="include the prompt in the output")
    allow_special_tokens: bool = Field(
        False, description="let the model write control/special tokens (e.g. <start_of_image>)"
    )

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[int, float]) -> dict[int, float]:
        for token, bias in value.items():
            if token < 0:
                raise ValueError(f"token ids are non-negative (got {token})")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"biases lie in [-100, 100] (token {token} has {bias})")
        return value

    @field_validator("stop", "banned", "dry_sequence_breakers")
    @classmethod
    def _non_empty_strings(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("empty strings are not allowed")
        return value

    @field_validator("banned_regex")
    @classmethod
    def _valid_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {err}") from err
        return value

    @model_validator(mode="after")
    def _min_below_max(self) -> SamplingParams:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens ({self.min_new_tokens}) must not exceed "
                f"max_new_tokens ({self.max_new_tokens})"
            )
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0
