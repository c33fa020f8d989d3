"""Which adapter a studio task uses: on a built-in model (the default, or the default with
its faster output table), the shipped adapter for the task's language and kind (`auto`),
none (`none`), or one named by the user."""

from __future__ import annotations

import threading

from musegpt.engines.base import Engine, EngineError
from musegpt.engines.default_model import BUILT_IN, DEFAULT_MODEL

AUTO, NONE = "auto", "none"
# (task, language) -> the shipped adapter written for it
# (Scripts: `stage` is on request only; it fails more scenes than it helps, docs/adapters.md.)
TASK_ADAPTERS = {("poem", "zh"): "tang", ("poem", "en"): "verse-en"}

_opened: dict[str, Engine] = {}  # an adapter model is loaded once per process
_lock = threading.Lock()


def adapted_engine(engine: Engine, task: str, language: str, adapter: str = AUTO) -> Engine:
    """The engine to write with: `engine` itself unless it is a plain built-in model and
    an adapter applies (or `adapter` names one: a shipped adapter or an adapter model)."""
    from musegpt.adapters.registry import adapter_models, open_adapter_model, shipped_adapter

    choice = adapter_choice(engine, adapter)
    if choice == NONE:
        return engine
    if choice == AUTO:
        shipped = TASK_ADAPTERS.get((task, language))
        if not _plain_built_in(engine) or shipped is None or shipped_adapter(shipped) is None:
            return engine
        choice = f"{engine.name}:{shipped}"
    with _lock:
        if choice not in _opened:
            _opened[choice] = open_adapter_model(adapter_models()[choice])
        return _opened[choice]


def adapter_choice(engine: Engine, adapter: str) -> str:
    """`adapter` checked before any work: AUTO, NONE, or an adapter model's full name (a
    shipped adapter's short name, "stage", becomes "gemma3-270m:stage", or on the faster
    built-in "gemma3-270m-q5:stage"). An unknown name, or an adapter for a built-in model
    asked of another model, is an EngineError saying so."""
    from musegpt.adapters.registry import adapter_models, shipped_adapter

    choice = adapter.strip() or AUTO
    if choice in (AUTO, NONE):
        return choice
    if ":" not in choice and shipped_adapter(choice) is not None:
        base = engine.name if _plain_built_in(engine) else DEFAULT_MODEL
        choice = f"{base}:{choice}"
    models = adapter_models()
    if choice not in models:
        known = ", ".join([AUTO, NONE, *models]) if models else f"{AUTO}, {NONE}"
        raise EngineError(f"unknown adapter {adapter!r}; known: {known}")
    base = models[choice].base
    if base in BUILT_IN and not (_plain_built_in(engine) and engine.name == base):
        raise EngineError(f"the adapter {choice} is for {base}, not {engine.name}")
    return choice


def _plain_built_in(engine: Engine) -> bool:
    """A built-in model without an adapter of its own."""
    return engine.name in BUILT_IN and getattr(engine, "adapter", "") is None
