"""The works library: versions are never lost, exports round-trip, the schema migrates."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.store import NotFound, StoreError, WorksStore
from musegpt.store.schema import MIGRATIONS


def test_every_save_is_a_new_version(tmp_path: Path) -> None:
    store = WorksStore(tmp_path / "w.db")
    project = store.create_project("Lighthouse")
    doc = store.create_document(project["id"], "Chapter 1", text="It was dark.")
    assert store.save(doc["id"], "It was dark and cold.", "more")["version"] == 2
    assert store.save(doc["id"], "It was dark, cold and wet.")["version"] == 3
    assert store.document(doc["id"])["text"] == "It was dark, cold and wet."
    assert [v["number"] for v in store.versions(doc["id"])] == [1, 2, 3]
    assert store.version(doc["id"], 1)["text"] == "It was dark."
    with pytest.raises(NotFound):
        store.version(doc["id"], 9)
    with pytest.raises(StoreError):
        store.create_project("  ")


def test_pragmas_foreign_keys_and_migrations(tmp_path: Path) -> None:
    store = WorksStore(tmp_path / "w.db")
    db = sqlite3.connect(tmp_path / "w.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    project = store.create_project("P")
    doc = store.create_document(project["id"], "D", text="x")
    store.delete_project(project["id"])  # cascades to documents and versions
    with pytest.raises(NotFound):
        store.document(doc["id"])
    assert db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 0
    store.close()
    assert WorksStore(tmp_path / "w.db").schema_version == len(MIGRATIONS)  # reopen: no-op
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    with pytest.raises(RuntimeError, match="upgrade MuseGPT"):
        WorksStore(tmp_path / "w.db")


def test_bible_lore_provenance_and_json_round_trip(tmp_path: Path) -> None:
    store = WorksStore(tmp_path / "w.db")
    pid = store.create_project("Robot", lang="en")["id"]
    store.set_bible(pid, premise="a robot who discovers love", style="spare")
    store.add_lore(pid, "Ada", "the robot", ["Ada", "robot"])
    gen = store.record_generation("story", "tiny", {"seed": 3, "temperature": 0.8}, "p", "out", pid)
    did = store.create_document(pid, "One", text="v1")["id"]
    store.save(did, "v2", generation_id=gen)
    script = store.create_document(pid, "Scene", kind="script", text="INT. LAB - NIGHT")["id"]
    assert store.generation(gen)["seed"] == 3
    exported = store.export_json(pid)
    copy = store.import_json(json.loads(json.dumps(exported)))
    again = store.export_json(copy["id"])
    for key in ("bible", "lore", "project"):
        a = (
            {k: v for k, v in again[key].items() if k not in ("updated", "created")}
            if key != "lore"
            else again[key]
        )
        b = (
            {k: v for k, v in exported[key].items() if k not in ("updated", "created")}
            if key != "lore"
            else exported[key]
        )
        assert a == b
    assert [[v["text"] for v in d["versions"]] for d in again["documents"]] == [
        ["v1", "v2"],
        ["INT. LAB - NIGHT"],
    ]
    assert again["documents"][0]["versions"][1]["generation_id"] == again["generations"][0]["id"]
    markdown = store.export_markdown(pid)
    assert "# Robot" in markdown and "## One" in markdown and "```fountain" in markdown
    assert store.export_fountain(pid).startswith("Title: Robot")
    assert store.document(script)["kind"] == "script"
    with pytest.raises(StoreError):
        store.import_json({"format": "other"})


def test_works_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--db", str(tmp_path / "w.db")]
    pid = runner.invoke(app, ["works", "new", "Poems", *db]).stdout.strip()
    draft = tmp_path / "draft.txt"
    draft.write_text("first", encoding="utf-8")
    did = runner.invoke(app, ["works", "add", pid, "Sea", "--file", str(draft), *db]).stdout.strip()
    draft.write_text("second", encoding="utf-8")
    assert runner.invoke(app, ["works", "save", did, str(draft), *db]).stdout.strip() == "2"
    assert "v2" in runner.invoke(app, ["works", "versions", did, *db]).stdout
    assert runner.invoke(app, ["works", "cat", did, "--version", "1", *db]).stdout == "first\n"
    out = tmp_path / "poems.json"
    assert runner.invoke(app, ["works", "export", pid, "-o", str(out), *db]).exit_code == 0
    copy = runner.invoke(app, ["works", "import", str(out), *db]).stdout.strip()
    assert copy != pid
    assert "Sea" in runner.invoke(app, ["works", "show", copy, *db]).stdout
    md = runner.invoke(app, ["works", "export", copy, "--format", "markdown", *db]).stdout
    assert "## Sea" in md and "second" in md
    bad = runner.invoke(app, ["works", "show", "99", *db])
    assert bad.exit_code == 2


@pytest.mark.parametrize("seed", [0, 2**63 - 1, 2**63, 2**64 - 1])
def test_every_64_bit_seed_is_kept_and_exported(tmp_path: Path, seed: int) -> None:
    # Seeds are unsigned 64-bit; SQLite's integers are signed.
    store = WorksStore(tmp_path / "w.db")
    pid = store.create_project("Seeds")["id"]
    gen = store.record_generation("story", "tiny", {"seed": seed}, "p", "out", pid)
    assert store.generation(gen)["seed"] == seed
    copy = store.import_json(json.loads(json.dumps(store.export_json(pid))))
    assert [g["seed"] for g in store.generations(copy["id"])] == [seed]


def test_a_version_1_library_migrates_keeping_its_works(tmp_path: Path) -> None:
    """A library written before generations had parents opens, data intact, as a tree."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    now = "2026-01-01T00:00:00.000+00:00"
    db.execute("INSERT INTO projects (name, created, updated) VALUES ('Old', ?, ?)", (now, now))
    db.execute("INSERT INTO bibles (project_id, premise, updated) VALUES (1, 'sea', ?)", (now,))
    db.execute(
        "INSERT INTO generations (project_id, task, model, params, prompt, output, created)"
        " VALUES (1, 'continue', 'tiny', '{}', 'p', 'o', ?)",
        (now,),
    )
    db.commit()
    db.close()
    store = WorksStore(path)
    assert store.schema_version == len(MIGRATIONS) >= 2
    old = store.generation(1)
    assert old["parent_id"] is None and old["output"] == "o"
    bible = store.bible(1)
    assert (bible["premise"], bible["memory"], bible["note_depth"]) == ("sea", "", 3)
    child = store.record_generation("continue", "tiny", {}, "po", "x", 1, parent_id=1)
    assert store.branch(1)["children"] == [child]


def test_generations_form_a_tree_that_exports_and_imports(tmp_path: Path) -> None:
    store = WorksStore(tmp_path / "w.db")
    pid = store.create_project("Tree")["id"]
    root = store.record_generation("continue", "m", {}, "The sea", " was calm", pid)
    other = store.record_generation("continue", "m", {}, "The sea", " rose", pid)
    child = store.record_generation("continue", "m", {}, "The sea rose", ".", pid, parent_id=other)
    assert store.branch(root)["siblings"] == [root, other]  # alternatives of one continuation
    assert store.branch(other)["children"] == [child] and store.branch(child)["siblings"] == [child]
    elsewhere = store.create_project("Elsewhere")["id"]
    with pytest.raises(StoreError, match="another project"):
        store.record_generation("continue", "m", {}, "x", "y", elsewhere, parent_id=root)
    with pytest.raises(StoreError, match="parent_id 999"):
        store.record_generation("continue", "m", {}, "x", "y", pid, parent_id=999)
    store.set_bible(pid, memory="M", authors_note="N", note_depth=2)
    with pytest.raises(StoreError, match="note_depth"):
        store.set_bible(pid, note_depth=-1)
    copy = store.import_json(json.loads(json.dumps(store.export_json(pid))))["id"]
    gens = store.generations(copy)
    by_output = {g["output"]: g for g in gens}
    assert by_output["."]["parent_id"] == by_output[" rose"]["id"] != other
    assert store.bible(copy)["authors_note"] == "N" and store.bible(copy)["note_depth"] == 2
    broken = store.export_json(pid)
    broken["generations"][2]["parent_id"] = 12345
    with pytest.raises(StoreError, match="parent_id"):
        store.import_json(broken)


STORY = {
    "premise": "a lighthouse keeper who befriends a whale",
    "lang": "en",
    "bible": {
        "title": "The Keeper",
        "setting": "a rock in the sea",
        "style": "quiet",
        "synopsis": "Mara meets a whale.",
        "characters": [{"name": "Mara", "description": "the keeper"}],
    },
    "scenes": [
        {
            "beat": "Mara sees the whale.",
            "text": "She saw it.",
            "summary": "Mara saw it.",
            "steps": [],
        }
    ],
    "scene_tokens": 120,
    "chapters": 1,
    "meta": {"seed": 1},
    "steps": False,
}


def test_a_story_folder_goes_into_the_library_and_back_out(tmp_path: Path) -> None:
    from musegpt.store.stories import export_story_folder, import_story_folder, save_story
    from musegpt.studio.story import PROJECT_FILE, StoryProject

    folder = tmp_path / "keeper"
    folder.mkdir()
    (folder / PROJECT_FILE).write_text(json.dumps(STORY), encoding="utf-8")
    store = WorksStore(tmp_path / "w.db")
    project = import_story_folder(store, folder)
    assert (project["name"], project["kind"]) == ("The Keeper", "story")
    assert store.story(project["id"]) == STORY
    edited = {**STORY, "scenes": [{**STORY["scenes"][0], "text": "She saw it, at last."}]}
    save_story(store, project["id"], edited, tmp_path / "work")
    out = export_story_folder(store, project["id"], tmp_path / "out")
    again = StoryProject.load(out)  # what `musegpt write story --project` reads
    assert again.scenes[0].text == "She saw it, at last." and (out / "story.md").is_file()
    copy = store.import_json(json.loads(json.dumps(store.export_json(project["id"]))))
    assert store.story(copy["id"]) == store.story(project["id"])
    with pytest.raises(StoreError, match="already holds a story"):
        export_story_folder(store, project["id"], out)
    with pytest.raises(StoreError, match="scenes"):
        save_story(store, project["id"], {**STORY, "scenes": "none"}, tmp_path / "work")


def test_works_cli_moves_a_story_folder_in_and_out(tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--db", str(tmp_path / "w.db")]
    folder = tmp_path / "keeper"
    folder.mkdir()
    (folder / "story.json").write_text(json.dumps(STORY), encoding="utf-8")
    pid = runner.invoke(app, ["works", "import-story", str(folder), *db]).stdout.strip()
    out = tmp_path / "again"
    assert runner.invoke(app, ["works", "export-story", pid, str(out), *db]).exit_code == 0
    assert json.loads((out / "story.json").read_text(encoding="utf-8"))["bible"] == STORY["bible"]
    again = runner.invoke(app, ["works", "export-story", pid, str(out), *db])
    assert again.exit_code != 0 and "already holds a story" in again.output
