"""The shape of a works export (`WorksStore.export_json`), checked in full before an import
writes anything: every field's type, non-empty names and titles, one version per number,
and every version's generation among the export's generations."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

EXPORT_FORMAT = "musegpt-works"
EXPORT_VERSION = 1  # of the export's shape; an import reads this one and older
# Exports carry more than an import reads (ids, timestamps, counts); the rest is ignored.
_LENIENT = ConfigDict(extra="ignore")


class ExportProject(BaseModel):
    model_config = _LENIENT
    name: StrictStr = Field(..., min_length=1, pattern=r"\S")
    kind: StrictStr = "story"
    lang: StrictStr = "en"
    created: StrictStr | None = None


class ExportBible(BaseModel):
    model_config = _LENIENT
    premise: StrictStr = ""
    setting: StrictStr = ""
    style: StrictStr = ""
    notes: StrictStr = ""
    memory: StrictStr = ""
    authors_note: StrictStr = ""
    note_depth: int = Field(3, ge=0, le=100)


class ExportLore(BaseModel):
    model_config = _LENIENT
    name: StrictStr = Field(..., min_length=1)
    keys: list[StrictStr] = []
    text: StrictStr = ""


class ExportGeneration(BaseModel):
    model_config = _LENIENT
    id: int
    task: StrictStr
    model: StrictStr
    params: dict[str, Any] = {}
    seed: int | None = None
    prompt: StrictStr
    output: StrictStr
    created: StrictStr | None = None
    parent_id: int | None = None


class ExportVersion(BaseModel):
    model_config = _LENIENT
    number: int = Field(..., ge=1)
    text: StrictStr
    note: StrictStr = ""
    generation_id: int | None = None
    created: StrictStr | None = None


class ExportDocument(BaseModel):
    model_config = _LENIENT
    title: StrictStr = Field(..., min_length=1)
    kind: StrictStr = "prose"
    versions: list[ExportVersion] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _one_version_per_number(self) -> ExportDocument:
        seen: set[int] = set()
        for i, version in enumerate(self.versions):
            if version.number in seen:
                raise ValueError(f"versions.{i}.number: version {version.number} appears twice")
            seen.add(version.number)
        return self


class WorksExport(BaseModel):
    model_config = _LENIENT
    format: StrictStr
    version: int = Field(EXPORT_VERSION, ge=1, le=EXPORT_VERSION)  # newer: a newer MuseGPT
    project: ExportProject
    bible: ExportBible = ExportBible()
    lore: list[ExportLore] = []
    documents: list[ExportDocument] = []
    generations: list[ExportGeneration] = []
    story: dict[str, Any] | None = None  # story.json's content, for a story project

    @model_validator(mode="after")
    def _links_resolve(self) -> WorksExport:
        known = {g.id for g in self.generations}
        for g, gen in enumerate(self.generations):
            if gen.parent_id is not None and gen.parent_id not in known:
                raise ValueError(
                    f"generations.{g}.parent_id: generation {gen.parent_id} is not among "
                    "the export's generations"
                )
        for d, doc in enumerate(self.documents):
            for v, version in enumerate(doc.versions):
                if version.generation_id is not None and version.generation_id not in known:
                    raise ValueError(
                        f"documents.{d}.versions.{v}.generation_id: generation "
                        f"{version.generation_id} is not among the export's generations"
                    )
        return self
