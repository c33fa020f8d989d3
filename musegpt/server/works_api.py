"""REST endpoints of the works library: projects, documents and their versions, the story
bible, lorebook entries, provenance, export and import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from musegpt.server.errors import APIError, invalid
from musegpt.server.moderation_api import provenance_params
from musegpt.server.state import state_of
from musegpt.store.works import NotFound, StoreError, WorksStore

router = APIRouter(prefix="/v1")
T = TypeVar("T")
Id = int  # path ids; FastAPI rejects non-integers with a 400 naming the parameter
MAX_ID = 2**62


class NewProject(BaseModel):
    name: str = Field(..., min_length=1, max_length=200)
    kind: str = Field("story", max_length=40)
    lang: str = Field("en", max_length=10)


class Rename(BaseModel):
    name: str = Field(..., min_length=1, max_length=200)


class NewDocument(BaseModel):
    title: str = Field(..., min_length=1, max_length=200)
    kind: str = Field("prose", max_length=40)
    text: str = ""


class Save(BaseModel):
    text: str
    note: str = Field("", max_length=500)
    generation_id: int | None = Field(None, ge=1, le=MAX_ID)


class Bible(BaseModel):
    premise: str | None = None
    setting: str | None = None
    style: str | None = None
    notes: str | None = None
    memory: str | None = Field(None, max_length=20_000, description="always atop the context")
    authors_note: str | None = Field(None, max_length=5_000)
    note_depth: int | None = Field(None, ge=0, le=100, description="lines above the cursor")


class Lore(BaseModel):
    name: str = Field(..., min_length=1, max_length=200)
    text: str = ""
    keys: list[str] | None = None


class LoreUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    text: str | None = None
    keys: list[str] | None = None


class NewGeneration(BaseModel):
    """A generation the studio made through another endpoint (a completion), kept as a
    node of the project's tree: `prompt` is the text it continues, `parent_id` the node
    that text came from."""

    task: str = Field("continue", min_length=1, max_length=40)
    model: str = Field(..., min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    prompt: str = Field(..., max_length=1_000_000)
    output: str = Field(..., max_length=200_000)
    document_id: int | None = Field(None, ge=1, le=MAX_ID)
    parent_id: int | None = Field(None, ge=1, le=MAX_ID)


def _store(request: Request) -> WorksStore:
    store = state_of(request).store
    if store is None:
        raise APIError(404, "this server has no works library (start it with --works)")
    return store


def run_on_store(request: Request, action: Callable[[WorksStore], T]) -> T:
    """The library's own errors as HTTP errors: missing things 404, bad input 400."""
    try:
        return action(_store(request))
    except NotFound as err:
        raise APIError(404, str(err), None, "not_found") from None
    except StoreError as err:
        raise invalid(str(err), err.field) from None


def check_provenance_target(
    request: Request, project_id: int, document_id: int | None, parent_id: int | None = None
) -> None:
    """404 now, before any generation, when provenance would go to a missing place; 400
    when the node it would hang under (`parent_id`) is not one of the project's."""
    run_on_store(request, lambda s: s.project(project_id))
    if document_id is not None:
        run_on_store(request, lambda s: s.document(document_id))
    if parent_id is not None:
        run_on_store(request, lambda s: s.check_parent(parent_id, project_id))


def checked_id(value: int, name: str) -> int:
    """`value` when it is a valid id, else a 400 naming `name`."""
    if not 1 <= value <= MAX_ID:
        raise invalid(f"{name} must be a positive id", name)
    return value


@router.get("/projects")
def list_projects(request: Request) -> dict[str, Any]:
    return {"data": run_on_store(request, lambda s: s.projects())}


@router.post("/projects")
def create_project(body: NewProject, request: Request) -> dict[str, Any]:
    return run_on_store(request, lambda s: s.create_project(body.name, body.kind, body.lang))


@router.get("/projects/{project_id}")
def get_project(project_id: Id, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    return run_on_store(
        request,
        lambda s: {
            **s.project(pid),
            "documents": s.documents(pid),
            "bible": s.bible(pid),
            "lore": s.lore(pid),
        },
    )


@router.patch("/projects/{project_id}")
def rename_project(project_id: Id, body: Rename, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    return run_on_store(request, lambda s: s.rename_project(pid, body.name))


@router.delete("/projects/{project_id}")
def delete_project(project_id: Id, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    run_on_store(request, lambda s: s.delete_project(pid))
    return {"deleted": True, "id": pid}


@router.get("/projects/{project_id}/documents")
def list_documents(project_id: Id, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    return {"data": run_on_store(request, lambda s: s.documents(pid))}


@router.post("/projects/{project_id}/documents")
def create_document(project_id: Id, body: NewDocument, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    return run_on_store(request, lambda s: s.create_document(pid, body.title, body.kind, body.text))


@router.get("/documents/{document_id}")
def get_document(document_id: Id, request: Request) -> dict[str, Any]:
    did = checked_id(document_id, "document_id")
    return run_on_store(request, lambda s: s.document(did))


@router.put("/documents/{document_id}")
def save_document(document_id: Id, body: Save, request: Request) -> dict[str, Any]:
    """A new version; the answer comes only after it is committed to disk."""
    did = checked_id(document_id, "document_id")
    return run_on_store(request, lambda s: s.save(did, body.text, body.note, body.generation_id))


@router.patch("/documents/{document_id}")
def rename_document(document_id: Id, body: Rename, request: Request) -> dict[str, Any]:
    did = checked_id(document_id, "document_id")
    return run_on_store(request, lambda s: s.rename_document(did, body.name))


@router.delete("/documents/{document_id}")
def delete_document(document_id: Id, request: Request) -> dict[str, Any]:
    did = checked_id(document_id, "document_id")
    run_on_store(request, lambda s: s.delete_document(did))
    return {"deleted": True, "id": did}


@router.get("/documents/{document_id}/versions")
def list_versions(document_id: Id, request: Request) -> dict[str, Any]:
    did = checked_id(document_id, "document_id")
    return {"data": run_on_store(request, lambda s: s.versions(did))}


@router.get("/documents/{document_id}/versions/{number}")
def get_version(document_id: Id, number: int, request: Request) -> dict[str, Any]:
    did, n = checked_id(document_id, "document_id"), checked_id(number, "number")
    return run_on_store(request, lambda s: s.version(did, n))


@router.get("/projects/{project_id}/bible")
def get_bible(project_id: Id, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    return run_on_store(request, lambda s: s.bible(pid))


@router.put("/projects/{project_id}/bible")
def set_bible(project_id: Id, body: Bible, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    fields = {k: v for k, v in body.model_dump().items() if v is not None}
    return run_on_store(request, lambda s: s.set_bible(pid, **fields))


@router.get("/projects/{project_id}/lore")
def list_lore(project_id: Id, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    return {"data": run_on_store(request, lambda s: s.lore(pid))}


@router.post("/projects/{project_id}/lore")
def add_lore(project_id: Id, body: Lore, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    return run_on_store(request, lambda s: s.add_lore(pid, body.name, body.text, body.keys))


@router.put("/lore/{lore_id}")
def update_lore(lore_id: Id, body: LoreUpdate, request: Request) -> dict[str, Any]:
    lid = checked_id(lore_id, "lore_id")
    return run_on_store(request, lambda s: s.update_lore(lid, body.name, body.text, body.keys))


@router.delete("/lore/{lore_id}")
def delete_lore(lore_id: Id, request: Request) -> dict[str, Any]:
    lid = checked_id(lore_id, "lore_id")
    run_on_store(request, lambda s: s.delete_lore(lid))
    return {"deleted": True, "id": lid}


@router.get("/projects/{project_id}/generations")
def list_generations(project_id: Id, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    return {"data": run_on_store(request, lambda s: s.generations(pid))}


@router.post("/projects/{project_id}/generations")
def record_generation(project_id: Id, body: NewGeneration, request: Request) -> dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    gid = run_on_store(
        request,
        lambda s: s.record_generation(
            body.task,
            body.model,
            provenance_params(state_of(request), body.params, body.output),
            body.prompt,
            body.output,
            pid,
            body.document_id,
            body.parent_id,
        ),
    )
    return run_on_store(request, lambda s: s.branch(gid))


@router.get("/generations/{generation_id}")
def get_generation(generation_id: Id, request: Request) -> dict[str, Any]:
    """A node of the tree with its siblings (alternatives) and children (continuations)."""
    gid = checked_id(generation_id, "generation_id")
    return run_on_store(request, lambda s: s.branch(gid))


@router.get("/projects/{project_id}/export", response_model=None)
def export_project(
    project_id: Id, request: Request, format: Literal["json", "markdown", "fountain"] = "json"
) -> Response | dict[str, Any]:
    pid = checked_id(project_id, "project_id")
    if format == "json":
        return run_on_store(request, lambda s: s.export_json(pid))
    if format == "markdown":
        text = run_on_store(request, lambda s: s.export_markdown(pid))
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")
    text = run_on_store(request, lambda s: s.export_fountain(pid))
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


@router.post("/projects/import")
def import_project(body: dict[str, Any], request: Request) -> dict[str, Any]:
    return run_on_store(request, lambda s: s.import_json(body))
