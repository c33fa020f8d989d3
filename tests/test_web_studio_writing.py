"""The web studio as a place to write in, end to end in headless Chromium: generations as
a tree (retry, flip ← →, continue any node, undo/redo, accept), a token's alternative taken,
memory, lorebook and author's note in the context the model is given, a story planned,
written, re-rolled, edited, stopped, exported and imported, shortcuts, the dark theme,
a phone's width, and an accessibility check with axe-core."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from studio_browser import CLIPPED_CONTROLS, WIDE, finished, launched, open_studio
from test_server_helpers import running_server, tiny_engine

from musegpt.engines.base import Engine
from musegpt.paths import cache_dir
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore
from musegpt.studio.story import PROJECT_FILE, StoryProject

AXE = "axe-core@4.10.2"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, gemma: Engine) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("web-writing")
    settings = ServerSettings(data_dir=folder, max_tokens=200)
    app = create_app(
        {"tiny": tiny_engine(block_size=256), "gemma": gemma}, settings, WorksStore(folder / "w.db")
    )
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def page(browser: Any, url: str) -> Iterator[Any]:
    tab = open_studio(browser, url, WIDE)
    yield tab
    tab.close()


def get(url: str, path: str) -> Any:
    return httpx.get(url + path, timeout=30).json()


def editor(page: Any) -> str:
    return str(page.input_value("#editor"))


def continue_at_end(page: Any, button: str = "#continue") -> None:
    page.evaluate("() => { const e = document.getElementById('editor');"
                  " e.setSelectionRange(e.value.length, e.value.length); }")  # fmt: skip
    page.click(button)
    assert finished(page) == "done"


def test_retry_flip_continue_undo_redo_and_accept(page: Any, url: str) -> None:
    page.fill("#title", "Branches")
    page.fill("#editor", "The sea was calm")
    page.fill("#max-tokens", "8")
    page.fill("#seed", "")
    continue_at_end(page)
    first = editor(page)
    assert first.startswith("The sea was calm") and len(first) > len("The sea was calm")
    page.click("#retry")
    assert finished(page) == "done"
    second = editor(page)
    assert page.inner_text("#alt-position") == "alternative 2 of 2"
    node = page.evaluate("state.node")
    assert node["prompt"] == "The sea was calm" and node["parent_id"] is None
    page.click("#prev-alt")
    page.wait_for_selector("#alt-position:has-text('alternative 1 of 2')")
    assert editor(page) == first
    page.click("#next-alt")
    page.wait_for_selector("#alt-position:has-text('alternative 2 of 2')")
    assert editor(page) == second
    continue_at_end(page)  # continues the node shown: a child of alternative 2
    child = page.evaluate("state.node")
    assert child["parent_id"] == node["id"] and child["prompt"] == second
    tree = get(url, f"/v1/generations/{node['id']}")
    assert tree["children"] == [child["id"]] and len(tree["siblings"]) == 2
    page.click("#undo")
    assert editor(page) == second and page.evaluate("state.node.id") == node["id"]
    page.click("#redo")
    assert editor(page) == child["prompt"] + child["output"]
    page.click("#accept")
    page.wait_for_selector("#status:has-text('accepted')")
    document = page.evaluate("state.document")
    versions = get(url, f"/v1/documents/{document}/versions")["data"]
    assert versions[-1]["generation_id"] == child["id"]

    page.reload()  # the tree is in the library: after a reload it is there to browse
    page.wait_for_selector("#status:has-text('ready')")
    page.click("#projects li:has-text('Branches')")
    under_second = f"#generations li:has(> button[data-id='{node['id']}']) > ul button"
    page.wait_for_selector(under_second)
    assert page.locator(under_second).get_attribute("data-id") == str(child["id"])
    assert page.locator("#generations > li").count() == 2  # the two alternatives
    page.click(f"#generations button[data-id='{node['siblings'][0]}']")
    page.wait_for_selector("#alt-position:has-text('alternative 1 of 2')")
    assert editor(page) == first
    page.click("#next-alt")  # and on from there
    page.wait_for_selector("#alt-position:has-text('alternative 2 of 2')")
    assert editor(page) == second


def test_an_alternative_token_taken_continues_as_a_new_branch(page: Any, url: str) -> None:
    page.fill("#editor", "She opened the door")
    page.fill("#max-tokens", "10")
    page.fill("#alternatives", "3")
    continue_at_end(page)
    before = page.evaluate("state.node")
    tokens = before["params"]["tokens"]
    page.click("#output .tok[data-index='3']")
    page.wait_for_selector("#token-choices:not([hidden])")
    choice = page.locator("#token-choices-list button").first
    picked = json.loads(choice.inner_text().rsplit(" ", 1)[0])
    assert picked != tokens[3][0]
    choice.click()
    assert finished(page) == "done"
    after = page.evaluate("state.node")
    lead = "".join(t[0] for t in tokens[:3]) + picked
    assert after["output"].startswith(lead) and editor(page).startswith(before["prompt"] + lead)
    assert after["id"] != before["id"] and before["id"] in after["siblings"]  # kept, a sibling
    assert get(url, f"/v1/generations/{before['id']}")["output"] == before["output"]


def test_a_studio_task_is_a_node_under_the_continuation_it_worked_on(page: Any, url: str) -> None:
    page.fill("#editor", "The lighthouse keeper")
    page.fill("#max-tokens", "8")
    page.fill("#alternatives", "1")
    continue_at_end(page)
    node = page.evaluate("state.node")
    page.evaluate("() => document.getElementById('editor').setSelectionRange(4, 21)")
    page.click("#describe")
    assert finished(page) == "done"
    [made] = get(url, f"/v1/generations/{node['id']}")["children"]
    kept = get(url, f"/v1/generations/{made}")
    assert kept["task"] == "describe" and kept["prompt"] == "lighthouse keeper"
    under = f"#generations li:has(> button[data-id='{node['id']}']) > ul button"
    page.wait_for_selector(under)
    assert page.locator(under).inner_text().startswith(f"#{made} describe: ")
    # Opened from the tree, its work is offered again; the continuation stays shown.
    page.evaluate("() => { document.getElementById('alternatives-list').textContent = ''; }")
    page.evaluate("() => { const e = document.getElementById('editor');"
                  " e.setSelectionRange(e.value.length, e.value.length); }")  # fmt: skip
    page.click(under)
    page.wait_for_selector("#alternatives-list li")
    offered = page.eval_on_selector("#alternatives-list li", "li => li.firstChild.textContent")
    assert offered == kept["output"] and page.evaluate("state.node.id") == node["id"]
    # Put into the editor, it is continued like any node: the continuation is its child.
    page.click("#alternatives-list li button")
    continue_at_end(page)
    after = page.evaluate("state.node")
    assert after["parent_id"] == made and kept["output"].strip() in after["prompt"]


def test_memory_lorebook_and_note_make_the_context_shown_and_sent(page: Any, url: str) -> None:
    page.click("#context-panel summary")
    page.fill("#memory", "MEMORY: a ghost story.")
    page.fill("#authors-note", "gloomy")
    page.fill("#note-depth", "1")
    page.fill("#lore-name", "Keeper")
    page.fill("#lore-keys", "lighthouse, keeper")
    page.fill("#lore-text", "LORE: the keeper is old.")
    page.click("#lore-add")
    page.wait_for_selector(".lore-entry:has-text('Keeper')")
    page.fill("#lore-name", "Moon")
    page.fill("#lore-text", "LORE: the moon listens.")
    page.click("#lore-add")
    page.wait_for_selector(".lore-entry:has-text('Moon')")
    page.click("#context-save")
    page.wait_for_selector("#status:has-text('memory and note saved')")
    page.fill("#editor", "The wind rose.\nThe lighthouse was dark.\nShe")
    page.fill("#max-tokens", "5")
    page.evaluate("() => { const e = document.getElementById('editor');"
                  " e.setSelectionRange(e.value.length, e.value.length); }")  # fmt: skip
    page.click("#context-show")
    # The box may still be open from an earlier continuation: wait for the new context.
    page.wait_for_function(
        "() => document.getElementById('context-view').textContent.startsWith('MEMORY')"
    )
    shown = page.inner_text("#context-view")
    assert shown == (
        "MEMORY: a ghost story.\n\nLORE: the keeper is old.\n\n"
        "The wind rose.\nThe lighthouse was dark.\n[Author's note: gloomy]\nShe"
    )  # the moon's entry is not mentioned, so not active
    assert page.inner_text("#active-lore") == "Keeper"
    tokens = int(page.inner_text("#context-tokens").strip("(").split()[0])
    assert tokens == len(shown)  # the char model: one token a character
    with page.expect_request("**/v1/completions") as sent:
        page.click("#continue")
    assert finished(page) == "done"
    assert sent.value.post_data_json["prompt"] == shown  # exactly what was shown
    bible = get(url, f"/v1/projects/{page.evaluate('state.project')}/bible")
    assert (bible["memory"], bible["note_depth"]) == ("MEMORY: a ghost story.", 1)
    page.fill("#memory", "")
    page.fill("#authors-note", "")
    page.click("#context-save")


def test_shortcuts_continue_retry_flip_and_undo(page: Any) -> None:
    page.fill("#editor", "The moon")
    page.fill("#max-tokens", "4")
    page.focus("#editor")
    page.keyboard.press("End")
    page.keyboard.press("Control+Enter")
    assert finished(page) == "done"
    first = editor(page)
    page.keyboard.press("Alt+r")
    page.wait_for_selector("#alt-position:has-text('of 2')")
    assert finished(page) == "done"
    page.keyboard.press("Alt+ArrowLeft")
    page.wait_for_selector("#alt-position:has-text('alternative 1 of 2')")
    assert editor(page) == first
    page.keyboard.press("Alt+z")
    page.keyboard.press("Alt+z")
    page.keyboard.press("Alt+z")
    assert editor(page) == "The moon"


def test_errors_show_where_the_action_was_taken(page: Any) -> None:
    page.click("#view-story")
    page.fill("#story-premise", "")
    page.click("#story-new")
    page.wait_for_selector("#story-error:has-text('premise')")
    assert page.inner_text("#writing-error") == ""
    if not page.is_visible("#lore-add"):
        page.click("#context-panel summary")
    page.fill("#lore-name", "")
    page.click("#lore-add")
    page.wait_for_selector("#context-error:has-text('needs a name')")
    page.click("#view-text")


def test_story_planned_written_rerolled_edited_stopped_exported_and_imported(
    page: Any, url: str, tmp_path: Path
) -> None:
    page.select_option("#model", "gemma")
    page.click("#view-story")
    page.fill("#story-premise", "a robot who discovers love")
    page.fill("#story-chapters", "2")
    page.fill("#story-tokens", "32")
    page.fill("#seed", "2")
    page.click("#story-new")
    page.wait_for_selector("#story-body:not([hidden])")
    pid = page.evaluate("state.project")
    said = ""
    for seed in (2, 3, 4, 5):  # the plan's checks reject some draws: Plan again goes on
        page.fill("#seed", str(seed))
        page.click("#story-plan")
        said = finished(page)
        if said == "done":
            break
        assert page.inner_text("#story-error") == said  # said beside the story
    assert said == "done", said
    assert page.input_value("#bible-title") and page.input_value("#bible-characters")
    title = page.input_value("#bible-title")  # names the project, named by its premise so far
    page.wait_for_selector(f"#projects li.selected:text-is({json.dumps(title)})")
    beats = page.locator("#story-chapter-list .beat")
    assert beats.count() == 2 and all(beats.nth(i).input_value() for i in range(2))
    page.fill("#bible-title", "The Robot's Heart")
    page.click("#story-save")
    assert finished(page) == "done"
    assert get(url, f"/v1/projects/{pid}/story")["bible"]["title"] == "The Robot's Heart"

    page.click("#story-chapter-list li:nth-child(1) .write-chapter")
    assert finished(page) == "done", page.inner_text("#story-error")
    text = page.locator("#story-chapter-list .chapter-text").first
    first = text.input_value()
    assert first and get(url, f"/v1/projects/{pid}/story")["scenes"][0]["text"] == first
    assert page.evaluate("document.getElementById('story-progress').value") == 1
    said = ""
    for seed in (5, 6, 7):  # a re-roll; a draw the story's checks reject says so
        page.fill("#seed", str(seed))
        page.click("#story-chapter-list li:nth-child(1) .write-chapter")
        said = finished(page)
        if said == "done":
            break
        assert "chapter 1" in page.inner_text("#story-error")
    assert said == "done", said
    rerolled = text.input_value()
    assert rerolled and rerolled != first
    # Both chapter 1s are nodes of the project's tree: the re-roll a sibling of the first.
    made = get(url, f"/v1/projects/{pid}/generations")["data"]
    chapters = [g for g in made if g["task"] == "chapter"]
    assert [g["output"] for g in chapters] == [first, rerolled]
    assert get(url, f"/v1/generations/{chapters[1]['id']}")["siblings"] == [
        g["id"] for g in chapters
    ]
    text.fill(rerolled + " THE END.")
    page.click("#story-save")
    assert finished(page) == "done"

    longer = {**get(url, f"/v1/projects/{pid}/story"), "scene_tokens": 400}
    assert httpx.put(f"{url}/v1/projects/{pid}/story", json=longer).status_code == 200
    page.evaluate(f"openStory({{id: {pid}}})")  # a long chapter, to stop while it streams
    page.wait_for_function("() => state.story.scene_tokens === 400")
    page.click("#story-chapter-list li:nth-child(2) .write-chapter")
    page.wait_for_selector("#story-status:has-text('Writing chapter 2')")  # under way
    page.click("#story-stop")
    page.wait_for_selector("#status:has-text('stopped')")
    assert not get(url, f"/v1/projects/{pid}/story")["scenes"][1]["text"]  # nothing half-kept
    tasks = [g["task"] for g in get(url, f"/v1/projects/{pid}/generations")["data"]]
    assert tasks.count("chapter") == 2  # and no node for the chapter stopped

    with page.expect_download() as download:
        page.click("#story-export")
    folder = tmp_path / "robot"
    folder.mkdir()
    download.value.save_as(folder / PROJECT_FILE)
    project = StoryProject.load(folder)  # the CLI's model reads the export
    assert project.bible is not None and project.bible.title == "The Robot's Heart"
    assert project.scenes[0].text == rerolled + " THE END."

    page.set_input_files("#story-import", str(folder / PROJECT_FILE))
    page.wait_for_function(f"() => state.project !== {pid} && state.story !== null")
    assert page.input_value("#bible-title") == "The Robot's Heart"
    page.click("#view-text")
    page.select_option("#model", "tiny")
    page.fill("#seed", "")


PLANNED = {
    "premise": "a lighthouse keeper who befriends a whale",
    "lang": "en",
    "bible": {
        "title": "The Keeper",
        "setting": "a rock in the sea, where the ferries no longer stop",
        "style": "quiet, close third person",
        "synopsis": "Mara, who keeps the light, meets a whale that sings at night.",
        "characters": [{"name": "Mara", "description": "the keeper, sixty, who talks to the sea"}],
    },
    "scenes": [{"beat": "Mara hears the whale.", "text": "The light turned. " * 40, "summary": ""}],
    "scene_tokens": 120,
    "chapters": 2,
}


def test_dark_theme_is_kept_and_a_phone_width_fits(browser: Any, url: str) -> None:
    tab = open_studio(browser, url, {"width": 390, "height": 800})
    story = httpx.post(f"{url}/v1/stories/import", json={"story": PLANNED}, timeout=30).json()
    try:
        tab.evaluate(f"openProject({{id: {story['project']['id']}}})")  # a story to lay out
        tab.wait_for_selector("#story-body:not([hidden])")
        tab.click("#theme")
        assert tab.evaluate("document.documentElement.dataset.theme") == "dark"
        tab.reload()
        tab.wait_for_selector("#status:has-text('ready')")
        assert tab.evaluate("document.documentElement.dataset.theme") == "dark"
        paper = tab.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        assert paper == "rgb(23, 22, 27)"
        opened = "(d) => { d.open = true; }"  # the shortcuts' list would cover the view buttons
        tab.evaluate(f"document.querySelectorAll('details:not(#shortcuts)').forEach({opened})")
        for view in ("text", "story"):
            tab.click(f"#view-{view}")
            window = tab.evaluate("document.documentElement.clientWidth")
            assert tab.evaluate("document.documentElement.scrollWidth") <= window, view
            assert tab.evaluate(CLIPPED_CONTROLS) == [], view
        tab.click("#theme")
    finally:
        tab.close()


def axe_script() -> Path:
    """axe-core from npm, fetched once into the cache (skips when npm cannot fetch it)."""
    target = cache_dir() / "npm" / AXE.replace("@", "-") / "axe.min.js"
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("the accessibility check needs axe-core from npm, and npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", AXE, "--silent"], cwd=tmp, check=True, timeout=120,
                           capture_output=True)  # fmt: skip
        except (subprocess.SubprocessError, OSError) as err:
            pytest.skip(f"npm could not fetch {AXE} for the accessibility check: {err}")
        [tarball] = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as tar:
            member = tar.extractfile("package/axe.min.js")
            assert member is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            partial.write_bytes(member.read())
            partial.replace(target)
    return target


def serious_violations(tab: Any, script: Path) -> list[str]:
    if not tab.evaluate("typeof axe !== 'undefined'"):
        tab.add_script_tag(path=str(script))
    found = tab.evaluate("axe.run(document).then((r) => r.violations)")
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def test_no_serious_accessibility_violations(browser: Any, url: str) -> None:
    script = axe_script()
    tab = open_studio(browser, url, WIDE)
    try:
        tab.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
        for theme in ("light", "dark"):
            tab.evaluate(f"setTheme('{theme}')")
            # the text view with a tree, a lorebook and a context; the story view with a story
            for project, view in (("Branches", "text"), ("The Keeper", "story")):
                tab.click(f"#projects li:has-text('{project}')")
                tab.click(f"#view-{view}")
                if view == "text":
                    tab.click("#generations button.node")  # its tokens, and one's choices
                    tab.click("#output .tok[data-index='1']")
                    tab.wait_for_selector("#token-choices:not([hidden])")
                    tab.click("#context-show")
                    tab.wait_for_selector("#context-box:not([hidden])")
                else:
                    tab.wait_for_selector("#story-body:not([hidden])")
                assert serious_violations(tab, script) == [], (theme, view)
        tab.evaluate("setTheme('light')")
    finally:
        tab.close()
