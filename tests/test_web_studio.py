"""The web studio end to end in headless Chromium (Debian's), driven by Playwright:
write, continue at the cursor, rewrite a selection, save, reload, find every version, write
a poem with its report, compose a tune and see its score and player; and the page's layout
on a phone and a small laptop screen."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from studio_browser import CLIPPED_CONTROLS, WIDE, finished, launched, open_studio
from test_server_helpers import running_server, tiny_engine

from musegpt.engines.base import Engine
from musegpt.engines.registry import open_engine
from musegpt.music.tune import SOUNDFONT
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore

# The score in the page and in its full-size view: [natural w, h, drawn w, h] each.
SCORE_SIZES = """() => ["score", "score-full"].map((id) => {
  const img = document.getElementById(id);
  const box = img.getBoundingClientRect();
  return [img.naturalWidth, img.naturalHeight, box.width, box.height];
})"""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, gemma: Engine) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("web")
    settings = ServerSettings(data_dir=folder, max_tokens=200)
    engines = {
        "tiny": tiny_engine(),
        # rewrites are checked to keep the passage's meaning: only a real model passes
        "gemma3-270m": gemma,  # the session's copy, not a second load
        "abc-folk": open_engine("abc-folk"),
    }
    app = create_app(engines, settings, WorksStore(folder / "works.db"))
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


def compose(page: Any, request: str, bars: int, seed: int) -> None:
    page.fill("#tune-request", request)
    page.fill("#tune-bars", str(bars))
    page.fill("#seed", str(seed))
    page.click("#compose")
    page.wait_for_selector("#status:has-text('done')")


def test_model_menu_offers_only_text_models(page: Any) -> None:
    offered = page.eval_on_selector_all("#model option", "options => options.map(o => o.value)")
    assert offered == ["tiny", "gemma3-270m"]  # abc-folk writes tunes: Compose uses it
    tunes = page.eval_on_selector_all("#tune-model option", "options => options.map(o => o.value)")
    assert tunes == ["abc-folk"]
    models = page.evaluate("fetch('/v1/models').then(r => r.json())")["data"]
    assert {m["id"]: m["kind"] for m in models} == {
        "tiny": "text",
        "gemma3-270m": "text",
        "abc-folk": "music",
        "icons": "image",  # the images API draws with it
    }


def test_continue_at_cursor_streams_tokens_with_probabilities(page: Any) -> None:
    page.fill("#title", "The Lighthouse")
    page.fill("#editor", "The sea was calm")
    page.fill("#max-tokens", "20")
    page.fill("#seed", "1")
    page.click("#continue")
    page.wait_for_selector("#status:has-text('done')")
    tokens = page.locator("#output .tok")
    titles = [tokens.nth(i).get_attribute("title") or "" for i in range(tokens.count())]
    assert len(titles) == 20  # a char model: one token a character, none cut off
    assert all(re.match(r"\d+\.\d%", title) for title in titles)  # probability on hover
    streamed = "".join(tokens.all_text_contents())
    assert page.input_value("#editor") == "The sea was calm" + streamed


def test_a_rewrite_the_model_cannot_make_says_why(page: Any) -> None:
    page.fill("#alternatives", "2")
    page.fill("#max-tokens", "15")
    page.evaluate(
        "() => { const e = document.getElementById('editor'); e.setSelectionRange(4, 7); }"
    )
    page.click("#rewrite")  # a random model's "rewrite" keeps none of the passage's words
    said = finished(page)
    assert page.get_attribute("#status", "class") == "error"
    assert "rewrite" in said and "seed" in said  # the server's reason and what to try
    assert page.inner_text("#writing-error") == said  # shown where the action was taken
    assert page.locator("#alternatives-list li").count() == 0
    assert page.is_disabled("#stop")


def test_rewrite_replaces_part_of_a_sentence_without_a_double_period(page: Any) -> None:
    page.select_option("#model", "gemma3-270m")
    page.fill("#alternatives", "1")
    page.fill("#max-tokens", "40")
    page.fill("#editor", "The sea was calm. The wind rose.")
    said = ""
    for seed in (3, 2, 5, 7):  # a rewrite must keep the passage's words: not every draw does
        page.fill("#seed", str(seed))
        page.evaluate(  # "The sea was calm", without its full stop
            "() => { const e = document.getElementById('editor'); e.setSelectionRange(0, 16); }"
        )
        page.click("#rewrite")
        said = finished(page)
        if said == "done":
            break
    assert said == "done", f"no rewrite in four seeds: {said}"
    assert page.inner_text("#output") == ""  # the finished version is shown once, below
    [version] = page.eval_on_selector_all(
        "#alternatives-list li", "items => items.map(li => li.firstChild.textContent)"
    )
    assert page.inner_text("#alternatives-list li button") == "Replace selection"
    assert re.search(r"[.!?]$", version), f"{version!r} ends no sentence: nothing to check"
    page.click("#alternatives-list li button")
    text = page.input_value("#editor")
    assert text == version.strip()[:-1] + ". The wind rose."
    assert not re.search(r"[.!?]\.", text)
    page.select_option("#model", "tiny")


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
    poem = page.eval_on_selector("#alternatives-list li", "li => li.firstChild.textContent")
    lines = [line for line in poem.splitlines() if line.strip()]
    rows = page.locator("#report tbody tr")
    assert rows.count() == len(lines) > 0  # one row a line of the poem
    assert rows.first.locator("td").nth(1).inner_text() == lines[0].strip()
    assert "haiku" in page.inner_text("#report caption").lower()


def test_compose_shows_the_tune_once_its_score_and_a_player(page: Any) -> None:
    compose(page, "a waltz in G", 4, 5)
    assert not page.locator("#music").is_hidden()
    abc = page.inner_text("#output")
    assert "M:3/4" in abc and "K:G" in abc
    assert page.inner_text("body").count("M:3/4") == 1  # the ABC is on the page once
    check = re.search(r"(\d+)/(\d+) bars of the right length", page.inner_text("#tune-check"))
    assert check is not None and check[1] == check[2]
    assert int(check[2]) in (4, 5)  # 5: a pick-up comes first
    midi = page.get_attribute("#tune-midi", "href") or ""
    assert midi.startswith("blob:")
    page.evaluate("() => { const e = document.getElementById('editor'); e.value = 'Tune: '; }")
    page.evaluate("() => document.getElementById('editor').setSelectionRange(6, 6)")
    page.click("#insert-tune")
    tune = page.evaluate("state.tune")
    assert tune.strip() == abc.strip() and page.input_value("#editor") == "Tune: " + tune
    if shutil.which("fluidsynth") and SOUNDFONT.is_file():
        page.wait_for_function("document.getElementById('player').readyState >= 1")
        duration = page.evaluate("document.getElementById('player').duration")
        assert duration > 1.0  # 4 bars of a waltz last seconds


@pytest.mark.skipif(shutil.which("abcm2ps") is None, reason="abcm2ps draws the score")
def test_score_keeps_its_proportions_and_opens_full_size(page: Any) -> None:
    compose(page, "a jig in D", 8, 3)
    page.wait_for_function("document.getElementById('score').naturalWidth > 0")
    (natural_w, natural_h, drawn_w, drawn_h), _ = page.evaluate(SCORE_SIZES)
    assert drawn_w / drawn_h == pytest.approx(natural_w / natural_h, rel=0.01)
    assert drawn_w >= 0.6 * natural_w  # legible in the page, not a thumbnail strip
    page.click("#score")
    page.wait_for_selector("#score-dialog[open]")
    page.wait_for_function("document.getElementById('score-full').naturalWidth > 0")
    _, (natural_w, natural_h, full_w, full_h) = page.evaluate(SCORE_SIZES)
    assert full_w / full_h == pytest.approx(natural_w / natural_h, rel=0.01)
    assert full_w >= natural_w - 1 and full_w >= drawn_w
    page.click("#score-dialog button")
    page.wait_for_selector("#score-dialog", state="hidden")


@pytest.mark.parametrize("width", [390, 800])
def test_layout_fits_a_narrow_screen(browser: Any, url: str, width: int) -> None:
    """On a phone (390 px) and a small laptop window (800 px) the editor takes the width
    and no control is cut off (folded sections opened), after a tune has been composed too."""
    tab = open_studio(browser, url, {"width": width, "height": 800})
    tab.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    try:
        for stage in ("empty", "with a tune"):
            window = tab.evaluate("document.documentElement.clientWidth")
            assert tab.evaluate("document.documentElement.scrollWidth") <= window, stage
            editor = tab.locator("#editor").bounding_box()
            assert editor["width"] >= 0.9 * window - 32, (stage, editor)
            assert tab.evaluate(CLIPPED_CONTROLS) == [], stage
            if stage == "empty":
                compose(tab, "a reel in D", 4, 2)
    finally:
        tab.close()


def test_page_loads_with_no_failed_request_or_script_error(browser: Any, url: str) -> None:
    failed: list[str] = []

    def on_response(response: Any) -> None:
        if response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    def on_console(message: Any) -> None:
        if message.type == "error":
            failed.append(message.text)

    tab = browser.new_page(viewport=WIDE)
    tab.on("response", on_response)
    tab.on("console", on_console)
    tab.on("pageerror", lambda err: failed.append(str(err)))
    try:
        tab.goto(url + "/")
        tab.wait_for_selector("#status:has-text('ready')")
        icon = tab.evaluate(
            "fetch(document.querySelector('link[rel=icon]').href).then(r => r.status)"
        )
        assert icon == 200
        assert failed == []
    finally:
        tab.close()


def test_sampler_fields_of_the_parameters_panel_are_sent(page: Any) -> None:
    page.click("#samplers summary")
    page.fill("#dry_multiplier", "0.8")
    page.fill("#xtc_probability", "0.5")
    page.select_option("#mirostat", "2")
    page.fill("#editor", "The sea")
    page.fill("#max-tokens", "5")
    with page.expect_request("**/v1/completions") as sent:
        page.click("#continue")
    page.wait_for_selector("#status:has-text('done')")
    body = sent.value.post_data_json
    assert (body["dry_multiplier"], body["xtc_probability"], body["mirostat"]) == (0.8, 0.5, 2)
    assert "top_n_sigma" not in body and "dynatemp_range" not in body  # unset: not sent
    for field in ("dry_multiplier", "xtc_probability"):
        page.fill(f"#{field}", "")
    page.select_option("#mirostat", "")
