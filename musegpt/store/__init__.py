"""The works library: projects, documents with every version kept, story bibles, lorebook
entries and the provenance of every generation, in one SQLite file (WAL, foreign keys)."""

from musegpt.store.works import NotFound, StoreError, WorksStore

__all__ = ["NotFound", "StoreError", "WorksStore"]
