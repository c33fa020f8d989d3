"""`Work`: what a studio task returns — the text, its parts, and a Markdown page to keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musegpt.fileio import atomic_write_text
from musegpt.studio.text import Lang


@dataclass
class Work:
    task: str
    title: str
    lang: Lang
    text: str  # the piece itself, plain (for a script: Fountain)
    parts: list[str] = field(default_factory=list)  # ideas, alternatives, sections, scenes
    meta: dict[str, Any] = field(default_factory=dict)  # model, seed, settings: provenance
    document: str = ""  # the whole work as Markdown, when the task composes it (a story)

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        if self.document:
            lines = [self.document.strip()]
        elif self.task == "script":
            lines += ["```fountain", self.text.strip(), "```"]
        elif self.task in ("brainstorm", "plot-help", "rewrite") and self.parts:
            lines += [f"{i}. {p.strip()}" for i, p in enumerate(self.parts, 1)]
        else:
            lines.append(self.text.strip())
        details = ", ".join(f"{k}: {v}" for k, v in self.meta.items() if v not in (None, ""))
        if details:
            lines += ["", "---", f"*{self.task} · {details}*"]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the Markdown page atomically (a crash never leaves half a file)."""
        path = Path(path)
        atomic_write_text(path, self.markdown())
        return path
