"""A project in the works library as training text for a personal adapter."""

from __future__ import annotations

import re
from pathlib import Path

from musegpt.fileio import atomic_write_text

WORKS_FILE = "works.txt"


def works_text(db: Path, project: str, out: Path) -> Path:
    """Write the latest version of every document of `project` (its id or its name) to
    `out`/works.txt, one paragraph per document of training text (blank lines between)."""
    from musegpt.store import WorksStore

    if not db.is_file():
        raise FileNotFoundError(f"no works library at {db} (--works-db)")
    store = WorksStore(db)
    try:
        projects = store.projects()
        chosen = [p for p in projects if str(p["id"]) == project or p["name"] == project]
        if not chosen:
            names = ", ".join(f"{p['id']} ({p['name']})" for p in projects) or "none"
            raise ValueError(f"no project {project!r} in {db}; projects: {names}")
        texts = [
            str(store.document(int(doc["id"]))["text"])
            for doc in store.documents(int(chosen[0]["id"]))
        ]
    finally:
        store.close()
    paragraphs = [p.strip() for t in texts for p in re.split(r"\n\s*\n", t) if p.strip()]
    if len(paragraphs) < 2:
        raise ValueError(
            f"project {project!r} holds {len(paragraphs)} paragraph(s) of text: an adapter "
            "needs more of the writer's text to learn from and to measure itself on"
        )
    file = out / WORKS_FILE
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(file, "\n\n".join(paragraphs) + "\n")
    return file


def works_model_name(project: str) -> str:
    """The model name a project's adapter is registered under: works-<project>."""
    return "works-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", project).strip("-.") or "project")
