"""The web studio's Draw view end to end in headless Chromium: draw a grid of pictures from a
caption with a style, a count and a seed; re-roll one; vary one; save one into the project;
errors shown where the writer is looking."""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from images_helpers import tiny_image_model
from studio_browser import CLIPPED_CONTROLS, WIDE, finished, launched, open_studio
from test_server_helpers import running_server, tiny_engine
from test_web_studio_writing import axe_script, serious_violations

from musegpt.server import ServerSettings, create_app
from musegpt.server.images_api import serve_image_models
from musegpt.store import WorksStore

PICTURES = """() => [...document.querySelectorAll('#draw-grid li.picture img')].map(
  (img) => [img.getAttribute('src'), img.naturalWidth, img.complete])"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, WorksStore]]:
    folder: Path = tmp_path_factory.mktemp("web-draw")
    store = WorksStore(folder / "works.db")
    app = create_app({"tiny": tiny_engine()}, ServerSettings(data_dir=folder), store)
    serve_image_models(app, {"circles": tiny_image_model(tmp_path_factory)})
    with running_server(app) as base:
        yield base, store


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def page(browser: Any, served: tuple[str, WorksStore]) -> Iterator[Any]:
    tab = open_studio(browser, served[0], WIDE)
    tab.click("#view-draw")
    tab.wait_for_selector("#draw-style option[value='tiny']", state="attached")
    yield tab
    tab.close()


def run(page: Any, selector: str, nth: int = 0) -> str:
    """Click the nth match of `selector` and wait for the action it starts to end."""
    page.evaluate("() => status('')")
    page.locator(selector).nth(nth).click()
    return finished(page)


def pictures(page: Any) -> list[list[Any]]:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#draw-grid img')].every((i) => i.complete)"
    )
    found: list[list[Any]] = page.evaluate(PICTURES)
    return found


def test_draw_a_grid_reroll_one_and_save_one(page: Any, served: tuple[str, WorksStore]) -> None:
    assert page.is_visible("#draw-view") and not page.is_visible("#editor")
    page.fill("#draw-prompt", "a red circle")
    page.select_option("#draw-style", "tiny")
    page.fill("#draw-n", "3")
    page.fill("#draw-seed", "5")
    assert run(page, "#draw") == "done"
    grid = pictures(page)
    assert len(grid) == 3 and all(width == 256 for _, width, _ in grid)
    assert page.inner_text("#draw-grid li.picture >> nth=0").startswith("seed 5 · tiny")

    assert run(page, ".draw-reroll", 1) == "done"
    after = pictures(page)
    assert after[0][0] == grid[0][0] and after[2][0] == grid[2][0]
    assert after[1][0] != grid[1][0] and after[1][1] == 256  # only the second is new

    assert run(page, ".draw-save", 0) == "done"
    assert page.inner_text(".draw-save >> nth=0") == "Saved"
    page.wait_for_selector("#documents li:has-text('a red circle')")
    store = served[1]
    project = next(p for p in store.projects() if p["name"] == "a red circle")
    (document,) = store.documents(project["id"])
    saved = store.document(document["id"])
    assert saved["kind"] == "image" and grid[0][0].endswith(saved["text"].split("(")[1][:-2])


def png_rows(base: str, url: str) -> np.ndarray[Any, Any]:
    from PIL import Image

    with urllib.request.urlopen(base + url if url.startswith("/") else url, timeout=30) as answer:
        return np.asarray(Image.open(io.BytesIO(answer.read())).convert("RGB"))


def test_vary_keeps_the_top_half_of_one_picture_and_redraws_the_rest(
    page: Any, served: tuple[str, WorksStore]
) -> None:
    page.fill("#draw-prompt", "a green circle")
    page.fill("#draw-n", "3")
    page.fill("#draw-seed", "7")
    assert run(page, "#draw") == "done"
    grid = pictures(page)
    assert run(page, ".draw-vary", 2) == "done"
    varied = pictures(page)
    assert len(varied) == 3 and varied[0][0] == grid[2][0]  # the source first, then 2 new
    source = png_rows(served[0], grid[2][0])
    half = source.shape[0] // 2
    for url, width, _ in varied[1:]:
        assert url not in {u for u, _, _ in grid} and width == 256
        assert np.array_equal(png_rows(served[0], url)[:half], source[:half])


def test_a_caption_is_needed(page: Any) -> None:
    page.fill("#draw-prompt", "")
    assert "write a caption first" in run(page, "#draw")
    assert "write a caption first" in page.inner_text("#draw-error")


def test_other_views_hide_the_draw_view(page: Any) -> None:
    page.click("#view-text")
    assert not page.is_visible("#draw-view") and page.is_visible("#editor")
    assert page.get_attribute("#view-draw", "aria-pressed") == "false"
    page.click("#view-draw")
    assert page.is_visible("#draw-view") and not page.is_visible("#editor")


@pytest.mark.parametrize("width", [390, 800])
def test_the_draw_view_fits_a_narrow_screen(
    browser: Any, served: tuple[str, WorksStore], width: int
) -> None:
    """On a phone and a small laptop window, with pictures drawn, nothing is cut off."""
    tab = open_studio(browser, served[0], {"width": width, "height": 800})
    tab.click("#view-draw")
    tab.fill("#draw-prompt", "a blue circle")
    tab.fill("#draw-n", "2")
    assert run(tab, "#draw") == "done"
    try:
        window = tab.evaluate("document.documentElement.clientWidth")
        assert tab.evaluate("document.documentElement.scrollWidth") <= window
        assert tab.evaluate(CLIPPED_CONTROLS) == []
        assert len(pictures(tab)) == 2
        assert tab.get_attribute(".draw-download >> nth=0", "download").startswith("a-blue-circle-")
    finally:
        tab.close()


def test_no_serious_accessibility_violations_in_the_draw_view(page: Any) -> None:
    script = axe_script()
    page.click("#view-draw")
    page.fill("#draw-prompt", "an orange circle")
    page.fill("#draw-n", "2")
    assert run(page, "#draw") == "done"
    pictures(page)
    try:
        for theme in ("light", "dark"):
            page.evaluate(f"setTheme('{theme}')")
            assert serious_violations(page, script) == [], theme
    finally:
        page.evaluate("setTheme('light')")
