"""`musegpt works`: the works library from the terminal (the same file the server uses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from musegpt.cli.errors import err_console, user_errors

if TYPE_CHECKING:
    from musegpt.store import WorksStore

works_app = typer.Typer(help="Projects, documents and every version of them.", no_args_is_help=True)
DEFAULT_DB = Path("musegpt-works/works.db")
DbOption = Annotated[Path, typer.Option("--db", help="The works library (SQLite file).")]


def _open(db: Path) -> WorksStore:
    from musegpt.store import WorksStore

    return WorksStore(db)


@works_app.command("list")
def list_command(db: DbOption = DEFAULT_DB) -> None:
    """Every project, most recently changed first."""
    with user_errors():
        from rich.console import Console
        from rich.table import Table

        table = Table("id", "name", "kind", "documents", "updated")
        for p in _open(db).projects():
            table.add_row(str(p["id"]), p["name"], p["kind"], str(p["documents"]), p["updated"])
        Console().print(table)


@works_app.command("new")
def new_command(
    name: Annotated[str, typer.Argument(help="The project's name.")],
    kind: Annotated[str, typer.Option(help="story, script, lyrics, poems, ...")] = "story",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Start a project; prints its id."""
    with user_errors():
        print(_open(db).create_project(name, kind)["id"])


@works_app.command("show")
def show_command(project: Annotated[int, typer.Argument()], db: DbOption = DEFAULT_DB) -> None:
    """A project's documents (id, title, latest version)."""
    with user_errors():
        store = _open(db)
        info = store.project(project)
        print(f"{info['name']} ({info['kind']})")
        for doc in store.documents(project):
            print(f"  {doc['id']}\t{doc['title']}\tv{doc['version']}")


@works_app.command("add")
def add_command(
    project: Annotated[int, typer.Argument()],
    title: Annotated[str, typer.Argument()],
    file: Annotated[Path | None, typer.Option(help="Its first text.")] = None,
    kind: Annotated[str, typer.Option(help="prose, script, lyrics, poem, notes")] = "prose",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Add a document to a project; prints its id."""
    with user_errors():
        text = file.read_text(encoding="utf-8") if file else ""
        print(_open(db).create_document(project, title, kind, text)["id"])


@works_app.command("save")
def save_command(
    document: Annotated[int, typer.Argument()],
    file: Annotated[Path, typer.Argument(help="The new text.")],
    note: Annotated[str, typer.Option(help="What changed.")] = "",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Save a file as the document's next version; prints the version number."""
    with user_errors():
        print(_open(db).save(document, file.read_text(encoding="utf-8"), note)["version"])


@works_app.command("versions")
def versions_command(document: Annotated[int, typer.Argument()], db: DbOption = DEFAULT_DB) -> None:
    """Every version of a document."""
    with user_errors():
        for v in _open(db).versions(document):
            print(f"v{v['number']}\t{v['created']}\t{v['chars']} chars\t{v['note']}")


@works_app.command("cat")
def cat_command(
    document: Annotated[int, typer.Argument()],
    version: Annotated[
        int | None, typer.Option(help="A version number; default the latest.")
    ] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Print a document's text."""
    with user_errors():
        store = _open(db)
        text = (
            store.version(document, version)["text"]
            if version
            else store.document(document)["text"]
        )
        print(text)


@works_app.command("export")
def export_command(
    project: Annotated[int, typer.Argument()],
    format: Annotated[str, typer.Option(help="json, markdown or fountain")] = "json",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File; default stdout.")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Export a project (JSON keeps every version and can be imported again)."""
    with user_errors():
        text = _export(_open(db), project, format)
        if out is None:
            print(text, end="")
        else:
            from musegpt.fileio import atomic_write_text

            atomic_write_text(out, text)
            err_console.print(f"wrote {out}")


def _export(store: WorksStore, project: int, format: str) -> str:
    kinds: dict[str, Literal["json", "markdown", "fountain"]] = {
        "json": "json",
        "markdown": "markdown",
        "md": "markdown",
        "fountain": "fountain",
    }
    if format not in kinds:
        raise ValueError(f"unknown format {format!r}: use json, markdown or fountain")
    if kinds[format] == "json":
        return json.dumps(store.export_json(project), ensure_ascii=False, indent=2) + "\n"
    if kinds[format] == "markdown":
        return store.export_markdown(project)
    return store.export_fountain(project)


@works_app.command("import")
def import_command(file: Annotated[Path, typer.Argument()], db: DbOption = DEFAULT_DB) -> None:
    """Import a JSON export as a new project; prints its id."""
    with user_errors():
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{file} is not JSON: {err}") from None
        print(_open(db).import_json(data)["id"])


@works_app.command("import-story")
def import_story_command(
    folder: Annotated[Path, typer.Argument(help="A story folder (`musegpt write story`).")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """A story folder's story.json as a new project (the web studio's Story view opens
    it); prints its id."""
    with user_errors():
        from musegpt.store.stories import import_story_folder

        print(import_story_folder(_open(db), folder)["id"])


@works_app.command("export-story")
def export_story_command(
    project: Annotated[int, typer.Argument()],
    folder: Annotated[Path, typer.Argument(help="A new or empty folder.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """A project's story as a story folder: `musegpt write story --project FOLDER` goes on."""
    with user_errors():
        from musegpt.store.stories import export_story_folder

        err_console.print(f"wrote {export_story_folder(_open(db), project, folder)}")
