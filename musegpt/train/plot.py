"""The loss-curve picture, `RUN_DIR/loss.png`, redrawn from the metrics log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from musegpt.fileio import atomic_write

PLOT_FILE = "loss.png"


def plot_losses(records: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Train loss (every logged step) and validation loss (every evaluation) against step."""
    # The object-oriented API with the Agg canvas: no pyplot global state and no display
    # needed, so this is safe on headless machines and cheap to call at every evaluation.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train, strict=True), label="train", color="tab:blue", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val, strict=True), label="val", color="tab:orange", marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
