"""Chat messages to one prompt: the model's own chat template where it has one, a plain
transcript for base models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from musegpt.engines.base import Engine

PLAIN_STOP = ["\nUser:", "\nSystem:"]
ROLE_NAMES = {
    "system": "System",
    "developer": "System",
    "user": "User",
    "assistant": "Assistant",
    "tool": "Tool",
}


def chat_template(engine: Engine) -> str | None:
    """The Jinja chat template stored with the model (GGUF metadata or a HF tokenizer)."""
    llama = getattr(engine, "llama", None)
    if llama is not None:
        template = getattr(llama, "metadata", {}).get("tokenizer.chat_template")
        return str(template) if template else None
    hf_tokenizer = getattr(engine.tokenizer, "hf", None)
    template = getattr(hf_tokenizer, "chat_template", None)
    return str(template) if template else None


def render_chat(engine: Engine, messages: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
    """(prompt, extra stop strings) for `messages` as (role, text) pairs."""
    template = chat_template(engine)
    if template:
        try:
            return _render_template(template, messages), []
        except Exception:  # a template our renderer cannot run: fall back to plain text
            pass
    lines = [f"{ROLE_NAMES.get(role, role.title())}: {text}" for role, text in messages]
    return "\n".join([*lines, "Assistant:"]), PLAIN_STOP


def _render_template(template: str, messages: Sequence[tuple[str, str]]) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> Any:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    # The tokenizer adds the beginning-of-sequence token itself, so the template must not.
    return env.from_string(template).render(
        messages=[{"role": r, "content": t} for r, t in messages],
        add_generation_prompt=True,
        bos_token="",
        eos_token="",
    )
