"""The web studio end to end in headless Chromium (Debian's), driven by Playwright:
write, continue at the cursor, rewrite a selection, save, reload, find every version, write
a poem with its report, compose a tune and see its score and player."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_server_helpers import running_server, tiny_engine

from musegpt.engines.registry import open_engine
from musegpt.music.tune import SOUNDFONT
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if not Path(CHROMIUM).is_file():
    pytest.skip(
        "Chromium is not installed (apt-get install chromium); the web studio tests need it",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("web")
    settings = ServerSettings(data_dir=folder, max_tokens=200)
    engines = {"tiny": tiny_engine(), "abc-folk": open_engine("abc-folk")}
    app = create_app(engines, settings, WorksStore(folder / "works.db"))
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def page(url: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.set_default_timeout(60_000)
        tab.goto(url + "/")
        tab.wait_for_selector("#status:has-text('ready')")
        yield tab
        browser.close()


def test_continue_at_cursor_streams_tokens_with_probabilities(page: Any) -> None:
    page.fill("#title", "The Lighthouse")
    page.fill("#editor", "The sea was calm")
    page.fill("#max-tokens", "20")
    page.fill("#seed", "1")
    page.click("#continue")
    page.wait_for_selector("#status:has-text('done')")
    tokens = page.locator("#output .tok")
    assert tokens.count() > 0
    assert "%" in (tokens.first.get_attribute("title") or "")  # probability on hover
    text = page.input_value("#editor")
    assert text.startswith("The sea was calm") and len(text) > len("The sea was calm")


def test_rewrite_selection_offers_alternatives(page: Any) -> None:
    page.fill("#alternatives", "2")
    page.fill("#max-tokens", "15")
    page.evaluate(
        "() => { const e = document.getElementById('editor'); e.setSelectionRange(4, 7); }"
    )
    page.click("#rewrite")
    page.wait_for_selector("#status:has-text('done')")
    assert page.locator("#alternatives-list li").count() >= 1


def test_save_reload_and_find_every_version(page: Any, url: str) -> None:
    page.fill("#editor", "First draft.")
    page.click("#save")
    page.wait_for_selector("#status:has-text('saved')")
    page.fill("#editor", "Second draft, better.")
    page.click("#save")
    page.wait_for_selector("#versions li:has-text('v2')")
    page.reload()
    page.wait_for_selector("#status:has-text('ready')")
    page.click("#projects li:has-text('The Lighthouse')")
    page.click("#documents li:has-text('The Lighthouse')")
    page.wait_for_selector("#versions li:has-text('v1')")
    assert page.input_value("#editor") == "Second draft, better."
    page.click("#versions li:has-text('v1')")
    page.wait_for_function("document.getElementById('editor').value === 'First draft.'")
    assert page.locator("#versions li").count() == 2


def test_poem_in_a_form_shows_the_checkers_line_report(page: Any) -> None:
    page.select_option("#form", "haiku")
    page.fill("#poem-topic", "the sea")
    page.click("#poem")
    page.wait_for_selector("#status:has-text('done')")
    assert not page.locator("#report").is_hidden()
    assert page.locator("#report tbody tr").count() >= 1
    assert "haiku" in page.inner_text("#report caption").lower()


def test_compose_shows_the_tune_its_score_and_a_player(page: Any) -> None:
    page.fill("#tune-request", "a waltz in G")
    page.fill("#tune-bars", "4")
    page.fill("#seed", "5")
    page.click("#compose")
    page.wait_for_selector("#status:has-text('done')")
    assert not page.locator("#music").is_hidden()
    assert "M:3/4" in page.inner_text("#output") and "K:G" in page.inner_text("#output")
    check = re.search(r"(\d+)/(\d+) bars of the right length", page.inner_text("#tune-check"))
    assert check is not None and check[1] == check[2]
    assert int(check[2]) in (4, 5)  # 5: a pick-up comes first
    midi = page.get_attribute("#tune-midi", "href") or ""
    assert midi.startswith("blob:")
    if shutil.which("abcm2ps"):
        # the score is an image the browser could decode (a real SVG, not an error page)
        page.wait_for_function("document.getElementById('score').naturalWidth > 0")
    if shutil.which("fluidsynth") and SOUNDFONT.is_file():
        page.wait_for_function("document.getElementById('player').readyState >= 1")
        duration = page.evaluate("document.getElementById('player').duration")
        assert duration > 1.0  # 4 bars of a waltz last seconds
