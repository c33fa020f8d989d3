"""A project in the works library as training text for a personal adapter."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musegpt.adapters.train import AdapterSettings
from musegpt.fileio import atomic_write_text

if TYPE_CHECKING:
    from musegpt.store import WorksStore

WORKS_FILE = "works.txt"
# A long paragraph is cut, at sentence ends, into pieces of about this many words (or CJK
# characters): the trainer reads 128 tokens of a document, and a writer's long paragraphs
# would otherwise lose most of their text (70% of a 23,000-word novel in letters).
PIECE_WORDS = 90
MIN_WORDS = 100  # less is too little to learn a voice from, or to measure one on
CJK_ENDS = ("。", "！", "？", "；")
SENTENCE_END = re.compile(r"(?<=[。！？；])|(?<=[.!?;:\"”’)])\s+")
WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\s\u3400-\u9fff\uf900-\ufaff]+")
# A writer waits for this run, so it is short and bounded: the last 4 of 18 layers, a
# held-out check every 10 steps that stops it after two without progress, and 25 minutes
# for the whole run, measurements included (training stops in time to leave them theirs).
WORKS_DEFAULTS: dict[str, Any] = {
    "layers": 4, "steps": 80, "learning_rate": 2e-3, "warmup_steps": 5, "eval_every": 10,
    "eval_documents": 16, "patience": 2, "max_minutes": 25.0, "eos": False,
}  # fmt: skip


def works_settings(**given: Any) -> AdapterSettings:
    """The adapter settings of a works project: `WORKS_DEFAULTS` unless given (None: not)."""
    return AdapterSettings(
        **{**WORKS_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    )


def pieces(paragraph: str, limit: int = PIECE_WORDS) -> list[str]:
    """`paragraph` as consecutive runs of whole sentences of about `limit` words each (a
    CJK character counts as a word)."""
    out: list[str] = []
    run: list[str] = []
    words = 0
    for sentence in (s.strip() for s in SENTENCE_END.split(paragraph)):
        size = len(WORD.findall(sentence))
        if run and words + size > limit:
            out.append(_joined(run))
            run, words = [], 0
        if sentence:
            run.append(sentence)
            words += size
    if run:
        out.append(_joined(run))
    return out


def _joined(sentences: list[str]) -> str:
    """Sentences back into one text (a space after each, except after CJK punctuation)."""
    text = sentences[0]
    for sentence in sentences[1:]:
        text += ("" if text.endswith(CJK_ENDS) else " ") + sentence
    return text


def project_paragraphs(store: WorksStore, project: str) -> tuple[str, list[str]]:
    """(name, training paragraphs) of `project` (its id or its name) in the works library:
    the latest version of every document, long paragraphs cut into `pieces`."""
    projects = store.projects()
    chosen = [p for p in projects if str(p["id"]) == project or p["name"] == project]
    if not chosen:
        names = ", ".join(f"{p['id']} ({p['name']})" for p in projects) or "none"
        raise ValueError(f"no project {project!r} in {store.path}; projects: {names}")
    texts = [
        str(store.document(int(doc["id"]))["text"]) for doc in store.documents(int(chosen[0]["id"]))
    ]
    paragraphs = [
        piece
        for text in texts
        for paragraph in re.split(r"\n\s*\n", text)
        if paragraph.strip()
        for piece in pieces(paragraph.strip())
    ]
    words = sum(len(WORD.findall(p)) for p in paragraphs)
    name = str(chosen[0]["name"])
    if len(paragraphs) < 2 or words < MIN_WORDS:
        raise ValueError(
            f"the project {name!r} holds {words} words in {len(paragraphs)} paragraph(s): an "
            f"adapter needs at least {MIN_WORDS} words of the writer's own text, in two "
            "paragraphs or more, to learn from and to measure itself on; write or import more"
        )
    return name, paragraphs


def works_text(db: Path, project: str, out: Path) -> Path:
    """Write `project_paragraphs` of `project` in the works library `db` to
    `out`/works.txt (blank lines between)."""
    from musegpt.store import WorksStore

    if not db.is_file():
        raise FileNotFoundError(f"no works library at {db} (--works-db)")
    store = WorksStore(db)
    try:
        paragraphs = project_paragraphs(store, project)[1]
    finally:
        store.close()
    return write_works(paragraphs, out)


def write_works(paragraphs: list[str], out: Path) -> Path:
    """`paragraphs` as the training text of a run folder (`out`/works.txt)."""
    file = out / WORKS_FILE
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(file, "\n\n".join(paragraphs) + "\n")
    return file


def works_model_name(project: str) -> str:
    """The model name a project's adapter is registered under: works-<project>."""
    return "works-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", project).strip("-.") or "project")
