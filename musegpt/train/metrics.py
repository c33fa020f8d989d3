"""The run's metrics log, `RUN_DIR/metrics.jsonl`: one JSON object per logged step.

Keys: step, train_loss, lr, tokens_per_sec, elapsed_s on every line; val_loss and ppl on
the lines of evaluation steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from musegpt.fileio import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; a diverged step is logged as null rather than as invalid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _clean(v) for k, v in record.items()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a crash
        return records

    def truncate_after(self, step: int) -> None:
        """Forget lines after `step`: on resume, what a crashed run logged after its last
        checkpoint is replayed, so it must not be logged twice."""
        if not self.path.is_file():
            return
        kept = [r for r in self.read() if int(r.get("step", 0)) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
