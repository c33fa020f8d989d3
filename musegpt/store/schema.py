"""The library's schema as numbered migrations; `PRAGMA user_version` records how many ran.

A migration is only ever appended, never edited: a library written by an older MuseGPT is
brought forward step by step when it is opened."""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: projects, documents, versions, bibles, lorebook, generations
    """
    CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'story',
        lang TEXT NOT NULL DEFAULT 'en',
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        title TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'prose',
        position INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE INDEX documents_project ON documents(project_id);
    CREATE TABLE generations (
        id INTEGER PRIMARY KEY,
        project_id INTEGER REFERENCES projects(id) ON DELETE CASCADE,
        document_id INTEGER REFERENCES documents(id) ON DELETE SET NULL,
        task TEXT NOT NULL,
        model TEXT NOT NULL,
        params TEXT NOT NULL,
        seed INTEGER,
        prompt TEXT NOT NULL,
        output TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE INDEX generations_project ON generations(project_id);
    CREATE TABLE versions (
        id INTEGER PRIMARY KEY,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        text TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        generation_id INTEGER REFERENCES generations(id) ON DELETE SET NULL,
        created TEXT NOT NULL,
        UNIQUE (document_id, number)
    );
    CREATE TABLE bibles (
        project_id INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
        premise TEXT NOT NULL DEFAULT '',
        setting TEXT NOT NULL DEFAULT '',
        style TEXT NOT NULL DEFAULT '',
        notes TEXT NOT NULL DEFAULT '',
        updated TEXT NOT NULL
    );
    CREATE TABLE lore (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        keys TEXT NOT NULL DEFAULT '[]',
        text TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE INDEX lore_project ON lore(project_id);
    """,
    # 2: generations form a tree (alternatives are siblings under one parent); the context
    # blocks a project keeps (memory, author's note); a story's story.json in the library
    """
    ALTER TABLE generations ADD COLUMN parent_id INTEGER
        REFERENCES generations(id) ON DELETE SET NULL;
    CREATE INDEX generations_parent ON generations(parent_id);
    ALTER TABLE bibles ADD COLUMN memory TEXT NOT NULL DEFAULT '';
    ALTER TABLE bibles ADD COLUMN authors_note TEXT NOT NULL DEFAULT '';
    ALTER TABLE bibles ADD COLUMN note_depth INTEGER NOT NULL DEFAULT 3;
    CREATE TABLE stories (
        project_id INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
        data TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    """,
]


def migrate(db: sqlite3.Connection) -> int:
    """Run the migrations this file has not seen yet; the schema version after."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"this works library has schema version {version}; this MuseGPT knows up to "
            f"{len(MIGRATIONS)}: upgrade MuseGPT to open it"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first; the DDL and the version bump share one transaction.
        db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    return len(MIGRATIONS)
