"""`WorksStore`: the works library on SQLite.

Every save is a new version in its own committed transaction (WAL, synchronous=FULL), so
a save the caller was told about survives a crash or a kill; nothing is ever overwritten.
One connection per store, guarded by a lock: SQLite serialises writers anyway, and the
server's handlers run on a thread pool.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from musegpt.store.export import EXPORT_FORMAT, EXPORT_VERSION, WorksExport
from musegpt.store.schema import migrate

Row = dict[str, Any]


class StoreError(ValueError):
    """A request the library cannot honour (bad input); the message says why and `field`
    names the input at fault, when one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(StoreError):
    """No such project, document, version or lore entry."""


BIBLE_FIELDS = {"premise", "setting", "style", "notes", "memory", "authors_note", "note_depth"}
MAX_NOTE_DEPTH = 100


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class WorksStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged save is on disk
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self.schema_version = migrate(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, *args: Any) -> list[Row]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def _one(self, sql: str, *args: Any, what: str) -> Row:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        if row is None:
            raise NotFound(f"no {what}")
        return dict(row)

    # -- projects -------------------------------------------------------------------------

    def projects(self) -> list[Row]:
        return self._all(
            "SELECT p.*, (SELECT COUNT(*) FROM documents d WHERE d.project_id = p.id) AS documents"
            " FROM projects p ORDER BY p.updated DESC, p.id DESC"
        )

    def create_project(self, name: str, kind: str = "story", lang: str = "en") -> Row:
        name = _required(name, "name")
        now = _now()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO projects (name, kind, lang, created, updated) VALUES (?, ?, ?, ?, ?)",
                (name, kind, lang, now, now),
            )
            db.execute(
                "INSERT INTO bibles (project_id, updated) VALUES (?, ?)", (cur.lastrowid, now)
            )
        return self.project(int(cur.lastrowid or 0))

    def project(self, project_id: int) -> Row:
        return self._one(
            "SELECT * FROM projects WHERE id = ?", project_id, what=f"project {project_id}"
        )

    def rename_project(self, project_id: int, name: str) -> Row:
        self.project(project_id)
        with self._tx() as db:
            db.execute(
                "UPDATE projects SET name = ?, updated = ? WHERE id = ?",
                (_required(name, "name"), _now(), project_id),
            )
        return self.project(project_id)

    def delete_project(self, project_id: int) -> None:
        self.project(project_id)
        with self._tx() as db:
            db.execute("DELETE FROM projects WHERE id = ?", (project_id,))

    def _touch(self, db: sqlite3.Connection, project_id: int, now: str) -> None:
        db.execute("UPDATE projects SET updated = ? WHERE id = ?", (now, project_id))

    # -- documents and versions -----------------------------------------------------------

    def documents(self, project_id: int) -> list[Row]:
        self.project(project_id)
        return self._all(
            "SELECT d.*, (SELECT MAX(number) FROM versions v WHERE v.document_id = d.id)"
            " AS version FROM documents d WHERE project_id = ? ORDER BY position, id",
            project_id,
        )

    def create_document(
        self, project_id: int, title: str, kind: str = "prose", text: str = ""
    ) -> Row:
        self.project(project_id)
        now = _now()
        with self._tx() as db:
            position = db.execute(
                "SELECT COUNT(*) FROM documents WHERE project_id = ?", (project_id,)
            ).fetchone()[0]
            cur = db.execute(
                "INSERT INTO documents (project_id, title, kind, position, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (project_id, _required(title, "title"), kind, position, now, now),
            )
            document_id = int(cur.lastrowid or 0)
            self._add_version(db, document_id, text, "created", None, now)
            self._touch(db, project_id, now)
        return self.document(document_id)

    def document(self, document_id: int) -> Row:
        doc = self._one(
            "SELECT * FROM documents WHERE id = ?", document_id, what=f"document {document_id}"
        )
        latest = self._one(
            "SELECT number, text, created FROM versions WHERE document_id = ?"
            " ORDER BY number DESC LIMIT 1",
            document_id,
            what=f"version of document {document_id}",
        )
        return {**doc, "version": latest["number"], "text": latest["text"]}

    def save(
        self, document_id: int, text: str, note: str = "", generation_id: int | None = None
    ) -> Row:
        """A new version of the document; returned once it is committed to disk."""
        doc = self._one(
            "SELECT * FROM documents WHERE id = ?", document_id, what=f"document {document_id}"
        )
        if generation_id is not None:
            self._check_generation(generation_id)
        now = _now()
        with self._tx() as db:
            number = self._add_version(db, document_id, text, note, generation_id, now)
            db.execute("UPDATE documents SET updated = ? WHERE id = ?", (now, document_id))
            self._touch(db, int(doc["project_id"]), now)
        return {"document_id": document_id, "version": number, "created": now}

    def rename_document(self, document_id: int, title: str) -> Row:
        self.document(document_id)
        with self._tx() as db:
            db.execute(
                "UPDATE documents SET title = ?, updated = ? WHERE id = ?",
                (_required(title, "title"), _now(), document_id),
            )
        return self.document(document_id)

    def delete_document(self, document_id: int) -> None:
        self.document(document_id)
        with self._tx() as db:
            db.execute("DELETE FROM documents WHERE id = ?", (document_id,))

    @staticmethod
    def _add_version(
        db: sqlite3.Connection,
        document_id: int,
        text: str,
        note: str,
        generation_id: int | None,
        now: str,
    ) -> int:
        last = db.execute(
            "SELECT COALESCE(MAX(number), 0) FROM versions WHERE document_id = ?", (document_id,)
        ).fetchone()[0]
        number = int(last) + 1
        db.execute(
            "INSERT INTO versions (document_id, number, text, note, generation_id, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (document_id, number, text, note, generation_id, now),
        )
        return number

    def versions(self, document_id: int) -> list[Row]:
        self.document(document_id)
        return self._all(
            "SELECT number, note, generation_id, created, LENGTH(text) AS chars FROM versions"
            " WHERE document_id = ? ORDER BY number",
            document_id,
        )

    def version(self, document_id: int, number: int) -> Row:
        return self._one(
            "SELECT document_id, number, text, note, generation_id, created FROM versions"
            " WHERE document_id = ? AND number = ?",
            document_id,
            number,
            what=f"version {number} of document {document_id}",
        )

    # -- story bible and lorebook ---------------------------------------------------------

    def bible(self, project_id: int) -> Row:
        self.project(project_id)
        return self._one(
            "SELECT * FROM bibles WHERE project_id = ?",
            project_id,
            what=f"bible of project {project_id}",
        )

    def set_bible(self, project_id: int, **fields: str | int) -> Row:
        """Set the bible's fields: premise, setting, style, notes, and the context blocks
        (memory, authors_note, note_depth: lines above the cursor the note goes)."""
        self.project(project_id)
        unknown = set(fields) - BIBLE_FIELDS
        if unknown:
            raise StoreError(f"a bible has no field {sorted(unknown)[0]!r}")
        depth = fields.get("note_depth", 0)
        if not isinstance(depth, int) or not 0 <= depth <= MAX_NOTE_DEPTH:
            raise StoreError(
                f"note_depth is a number of lines from 0 to {MAX_NOTE_DEPTH}", "note_depth"
            )
        now = _now()
        with self._tx() as db:
            for name, value in fields.items():
                db.execute(
                    f"UPDATE bibles SET {name} = ?, updated = ? WHERE project_id = ?",
                    (value, now, project_id),
                )
            self._touch(db, project_id, now)
        return self.bible(project_id)

    def lore(self, project_id: int) -> list[Row]:
        self.project(project_id)
        return [
            _lore(r)
            for r in self._all(
                "SELECT * FROM lore WHERE project_id = ? ORDER BY name, id", project_id
            )
        ]

    def add_lore(
        self, project_id: int, name: str, text: str = "", keys: list[str] | None = None
    ) -> Row:
        self.project(project_id)
        now = _now()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO lore (project_id, name, keys, text, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (project_id, _required(name, "name"), json.dumps(keys or [name]), text, now, now),
            )
            self._touch(db, project_id, now)
        return self.lore_entry(int(cur.lastrowid or 0))

    def lore_entry(self, lore_id: int) -> Row:
        return _lore(
            self._one("SELECT * FROM lore WHERE id = ?", lore_id, what=f"lore entry {lore_id}")
        )

    def update_lore(
        self,
        lore_id: int,
        name: str | None = None,
        text: str | None = None,
        keys: list[str] | None = None,
    ) -> Row:
        entry = self.lore_entry(lore_id)
        with self._tx() as db:
            db.execute(
                "UPDATE lore SET name = ?, text = ?, keys = ?, updated = ? WHERE id = ?",
                (
                    _required(name, "name") if name is not None else entry["name"],
                    text if text is not None else entry["text"],
                    json.dumps(keys if keys is not None else entry["keys"]),
                    _now(),
                    lore_id,
                ),
            )
        return self.lore_entry(lore_id)

    def delete_lore(self, lore_id: int) -> None:
        self.lore_entry(lore_id)
        with self._tx() as db:
            db.execute("DELETE FROM lore WHERE id = ?", (lore_id,))

    # -- stories --------------------------------------------------------------------------

    def story(self, project_id: int) -> dict[str, Any] | None:
        """The project's story (story.json's content), or None when it has none."""
        self.project(project_id)
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM stories WHERE project_id = ?", (project_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row["data"]))

    def set_story(self, project_id: int, data: dict[str, Any]) -> None:
        """Keep `data` (story.json's content) as the project's story, replacing the last."""
        self.project(project_id)
        now = _now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO stories (project_id, data, updated) VALUES (?, ?, ?)"
                " ON CONFLICT(project_id) DO UPDATE SET data = excluded.data,"
                " updated = excluded.updated",
                (project_id, json.dumps(data, ensure_ascii=False), now),
            )
            self._touch(db, project_id, now)

    # -- provenance -----------------------------------------------------------------------

    def record_generation(
        self,
        task: str,
        model: str,
        params: dict[str, Any],
        prompt: str,
        output: str,
        project_id: int | None = None,
        document_id: int | None = None,
        parent_id: int | None = None,
    ) -> int:
        """What made a piece of text: model, parameters, seed, prompt and output. A
        generation that continues another names it as `parent_id` (its prompt then ends
        with the parent's output); alternatives of one continuation share parent and prompt."""
        if project_id is not None:
            self.project(project_id)
        if document_id is not None:
            self.document(document_id)
        if parent_id is not None:
            self.check_parent(parent_id, project_id)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO generations (project_id, document_id, parent_id, task, model,"
                " params, seed, prompt, output, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    project_id,
                    document_id,
                    parent_id,
                    task,
                    model,
                    json.dumps(params, ensure_ascii=False),
                    _seed_to_column(params.get("seed")),
                    prompt,
                    output,
                    _now(),
                ),
            )
        return int(cur.lastrowid or 0)

    def generations(self, project_id: int) -> list[Row]:
        self.project(project_id)
        rows = self._all("SELECT * FROM generations WHERE project_id = ? ORDER BY id", project_id)
        return [_generation_row(r) for r in rows]

    def check_parent(self, parent_id: int, project_id: int | None) -> None:
        """A StoreError naming `parent_id` unless it is a generation of `project_id`."""
        try:
            parent = self.generation(parent_id)
        except NotFound:
            raise StoreError(
                f"parent_id {parent_id} is not a generation in this library", "parent_id"
            ) from None
        if parent["project_id"] != project_id:
            raise StoreError(
                f"generation {parent_id} belongs to another project: a branch stays in "
                "its own project",
                "parent_id",
            )

    def branch(self, generation_id: int) -> Row:
        """A generation in its tree: the generation, its alternatives (siblings: the same
        parent and prompt, oldest first, itself included) and its continuations (children)."""
        node = self.generation(generation_id)
        parent_test = "parent_id IS ?" if node["parent_id"] is None else "parent_id = ?"
        siblings = self._all(
            f"SELECT id FROM generations WHERE {parent_test} AND prompt = ?"
            " AND project_id IS ? AND task = ? ORDER BY id",
            node["parent_id"],
            node["prompt"],
            node["project_id"],
            node["task"],
        )
        children = self._all(
            "SELECT id FROM generations WHERE parent_id = ? ORDER BY id", generation_id
        )
        return {
            **node,
            "siblings": [r["id"] for r in siblings],
            "children": [r["id"] for r in children],
        }

    def _check_generation(self, generation_id: int) -> None:
        try:
            self.generation(generation_id)
        except NotFound:
            raise StoreError(
                f"generation_id {generation_id} is not a generation in this library "
                "(use the id a generation answer gave, or leave it out)",
                "generation_id",
            ) from None

    def generation(self, generation_id: int) -> Row:
        row = self._one(
            "SELECT * FROM generations WHERE id = ?",
            generation_id,
            what=f"generation {generation_id}",
        )
        return _generation_row(row)

    # -- export and import ----------------------------------------------------------------

    def export_json(self, project_id: int) -> dict[str, Any]:
        """Everything about a project: documents with every version, bible, lore, provenance."""
        project = self.project(project_id)
        documents = []
        for doc in self.documents(project_id):
            versions = self._all(
                "SELECT number, text, note, generation_id, created FROM versions"
                " WHERE document_id = ? ORDER BY number",
                doc["id"],
            )
            documents.append(
                {"id": doc["id"], "title": doc["title"], "kind": doc["kind"], "versions": versions}
            )
        bible = {k: v for k, v in self.bible(project_id).items() if k != "project_id"}
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "project": {k: project[k] for k in ("name", "kind", "lang", "created")},
            "bible": bible,
            "lore": [{k: e[k] for k in ("name", "keys", "text")} for e in self.lore(project_id)],
            "documents": documents,
            "generations": self.generations(project_id),
            "story": self.story(project_id),
        }

    def import_json(self, data: Any) -> Row:
        """A new project from `export_json`'s output (ids are new; links are kept). The
        whole export is checked first: a `StoreError` names the first field at fault."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise StoreError(
                f"not a MuseGPT works export (format should be {EXPORT_FORMAT!r})", "format"
            )
        return self._import(checked_export(data))

    def _import(self, data: WorksExport) -> Row:
        now = _now()
        meta, bible = data.project, data.bible
        with self._tx() as db:
            pid = int(
                db.execute(
                    "INSERT INTO projects (name, kind, lang, created, updated)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (meta.name.strip(), meta.kind, meta.lang, meta.created or now, now),
                ).lastrowid
                or 0
            )
            db.execute(
                "INSERT INTO bibles (project_id, premise, setting, style, notes, memory,"
                " authors_note, note_depth, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    pid,
                    bible.premise,
                    bible.setting,
                    bible.style,
                    bible.notes,
                    bible.memory,
                    bible.authors_note,
                    bible.note_depth,
                    now,
                ),
            )
            if data.story is not None:
                db.execute(
                    "INSERT INTO stories (project_id, data, updated) VALUES (?, ?, ?)",
                    (pid, json.dumps(data.story, ensure_ascii=False), now),
                )
            for entry in data.lore:
                db.execute(
                    "INSERT INTO lore (project_id, name, keys, text, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (pid, entry.name, json.dumps(entry.keys), entry.text, now, now),
                )
            generation_ids: dict[int, int] = {}
            for gen in data.generations:
                generation_ids[gen.id] = int(
                    db.execute(
                        "INSERT INTO generations (project_id, task, model, params, seed, prompt,"
                        " output, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            pid,
                            gen.task,
                            gen.model,
                            json.dumps(gen.params, ensure_ascii=False),
                            _seed_to_column(gen.seed),
                            gen.prompt,
                            gen.output,
                            gen.created or now,
                        ),
                    ).lastrowid
                    or 0
                )
            for gen in data.generations:  # parents: linked once every new id is known
                if gen.parent_id is not None:
                    db.execute(
                        "UPDATE generations SET parent_id = ? WHERE id = ?",
                        (generation_ids[gen.parent_id], generation_ids[gen.id]),
                    )
            for position, doc in enumerate(data.documents):
                did = int(
                    db.execute(
                        "INSERT INTO documents (project_id, title, kind, position, created,"
                        " updated) VALUES (?, ?, ?, ?, ?, ?)",
                        (pid, doc.title, doc.kind, position, now, now),
                    ).lastrowid
                    or 0
                )
                for v in doc.versions:
                    gen_id = None if v.generation_id is None else generation_ids[v.generation_id]
                    db.execute(
                        "INSERT INTO versions (document_id, number, text, note, generation_id,"
                        " created) VALUES (?, ?, ?, ?, ?, ?)",
                        (did, v.number, v.text, v.note, gen_id, v.created or now),
                    )
        return self.project(pid)

    def export_markdown(self, project_id: int) -> str:
        project = self.project(project_id)
        bible = self.bible(project_id)
        lines = [f"# {project['name']}", ""]
        for name in ("premise", "setting", "style"):
            if bible[name]:
                lines += [f"**{name.title()}:** {bible[name]}", ""]
        for doc in self.documents(project_id):
            text = self.document(doc["id"])["text"].strip()
            lines += [f"## {doc['title']}", ""]
            lines += ["```fountain", text, "```"] if doc["kind"] == "script" else [text]
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def export_fountain(self, project_id: int) -> str:
        """The project as one Fountain screenplay: a title page, then each document as
        a section (prose documents become action)."""
        project = self.project(project_id)
        lines = [f"Title: {project['name']}", "Credit: written with MuseGPT", ""]
        for doc in self.documents(project_id):
            lines += [f"# {doc['title']}", "", self.document(doc["id"])["text"].strip(), ""]
        return "\n".join(lines).rstrip() + "\n"


def checked_export(data: dict[str, Any]) -> WorksExport:
    """The export, every field checked; a `StoreError` names the first one at fault."""
    try:
        return WorksExport.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(part) for part in first["loc"]]
        message = str(first["msg"]).removeprefix("Value error, ")
        inner, sep, rest = message.partition(": ")
        if sep and re.fullmatch(r"[\w.]+", inner):  # a check across fields names its own
            loc, message = [*loc, inner], rest
        where = ".".join(loc) or None
        prefix = f"{where}: " if where else ""
        raise StoreError(f"the export cannot be imported: {prefix}{message}", where) from None


def _required(value: str | None, field: str) -> str:
    if value is None or not value.strip():
        raise StoreError(f"{field} must not be empty")
    return value.strip()


def _lore(row: Row) -> Row:
    return {**row, "keys": json.loads(row["keys"])}


# Seeds run from 0 to 2**64 - 1, SQLite's integers are signed 64-bit: the upper half is kept
# as its two's-complement negative and read back as it was given.
_SEED_WRAP = 2**64


def _seed_to_column(seed: int | None) -> int | None:
    return seed - _SEED_WRAP if seed is not None and seed >= _SEED_WRAP // 2 else seed


def _generation_row(row: Row) -> Row:
    seed = row["seed"]
    if seed is not None and seed < 0:
        seed += _SEED_WRAP
    return {**row, "params": json.loads(row["params"]), "seed": seed}
