"""Stories in the works library: a story's `story.json` (the CLI's project file, the same
model) kept with its project, and moved between a story folder and the library.

The story functions work on a folder; the library lends them one (the project's working
folder), loads the kept story into it and keeps what they saved there afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from musegpt.store.works import Row, StoreError, WorksStore
from musegpt.studio.story import PROJECT_FILE, ProjectFile, StoryProject, damage
from musegpt.studio.tasks import StudioError


def checked_story(data: Any) -> dict[str, Any]:
    """`data` as a story.json holds it, every field checked; a `StoreError` says where
    it is wrong."""
    try:
        return ProjectFile.model_validate(data).model_dump(mode="json")
    except ValidationError as err:
        raise StoreError(f"not a story: {damage(err)}", "story") from None


def premise_name(premise: str) -> str:
    """A story project's name until its bible gives it a title."""
    return premise[:60]


def new_story(premise: str, lang: str, chapters: int, scene_tokens: int) -> dict[str, Any]:
    """A story not yet planned: the premise and how long it should be."""
    return checked_story(
        {
            "premise": premise.strip(),
            "lang": lang,
            "chapters": chapters,
            "scene_tokens": scene_tokens,
        }
    )


def open_story(store: WorksStore, project_id: int, folder: Path) -> StoryProject:
    """The project's story, loaded into `folder` (made fresh) for the story functions."""
    data = store.story(project_id)
    if data is None:
        raise StoreError(f"project {project_id} has no story; start one from a premise")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / PROJECT_FILE).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return load_folder(folder)


def keep_story(store: WorksStore, project_id: int, folder: Path) -> dict[str, Any]:
    """What the story functions last saved in `folder`, kept as the project's story."""
    data = checked_story(json.loads((folder / PROJECT_FILE).read_text(encoding="utf-8")))
    store.set_story(project_id, data)
    return data


def save_story(store: WorksStore, project_id: int, data: Any, folder: Path) -> dict[str, Any]:
    """An edited story (story.json's content) kept as the project's, in the form the
    story functions write it."""
    store.set_story(project_id, checked_story(data))
    open_story(store, project_id, folder).save()
    return keep_story(store, project_id, folder)


def import_story(store: WorksStore, data: Any, name: str = "") -> Row:
    """A new story project in the library from story.json's content."""
    story = checked_story(data)
    bible = story.get("bible") or {}
    name = name.strip() or bible.get("title") or premise_name(story["premise"])
    project = store.create_project(name, "story", story["lang"])
    store.set_bible(project["id"], premise=story["premise"])
    store.set_story(project["id"], story)
    return project


def import_story_folder(store: WorksStore, folder: str | Path) -> Row:
    """A story folder the CLI wrote (its story.json) as a new project in the library."""
    return import_story(store, json.loads(load_folder(Path(folder)).folder.joinpath(PROJECT_FILE)
                                          .read_text(encoding="utf-8")))  # fmt: skip


def export_story_folder(store: WorksStore, project_id: int, folder: str | Path) -> Path:
    """The project's story written out as a story folder (story.json, story.md, bible.md)
    that `musegpt write story --project FOLDER` goes on with."""
    folder = Path(folder)
    if (folder / PROJECT_FILE).exists():
        raise StoreError(f"{folder} already holds a story; choose an empty folder", "folder")
    data = store.story(project_id)
    if data is None:
        raise StoreError(f"project {project_id} has no story to export")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROJECT_FILE).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    load_folder(folder).save()  # and its Markdown views
    return folder


def load_folder(folder: Path) -> StoryProject:
    try:
        return StoryProject.load(folder)
    except StudioError as err:
        raise StoreError(str(err), "story") from None
