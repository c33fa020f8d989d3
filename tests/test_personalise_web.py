"""Train my voice in the web studio (headless Chromium): the button in the works panel
starts an adapter job for the open project, shows its progress and a Cancel button while it
runs, and puts the finished adapter in the model menu; a project with too little text gets
its error beside the button. The job is a real tiny run (the works defaults made small)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from studio_browser import studio_tab
from test_personalise import LETTERS, TINY
from test_server_helpers import running_server

from musegpt.adapters import works
from musegpt.engines.base import Engine
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore

JOB_MS = 600_000  # a tiny job takes about a minute on a loaded 2-core machine


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, gemma: Engine) -> Iterator[str]:
    from musegpt.adapters.convert import converter_folder

    try:
        converter_folder()
    except OSError as err:
        pytest.skip(f"llama.cpp's converter is unavailable here: {err}")
    folder = tmp_path_factory.mktemp("personalise-web")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MUSEGPT_CONFIG", str(folder / "config"))
        for key, value in TINY.items():  # the button sends no settings: make the defaults tiny
            patch.setitem(works.WORKS_DEFAULTS, key, value)
        store = WorksStore(folder / "works.db")
        letters = store.create_project("Sea letters")
        store.create_document(int(letters["id"]), "Letters", text="\n\n".join(LETTERS))
        short = store.create_project("Short")
        store.create_document(int(short["id"]), "Note", text="Too little.\n\nTo learn from.")
        app = create_app({"gemma3-270m": gemma}, ServerSettings(data_dir=folder), store)
        with running_server(app) as base:
            yield base


@pytest.fixture(scope="module")
def page(url: str) -> Iterator[Any]:
    with studio_tab(url) as tab:
        yield tab


def open_project(page: Any, name: str) -> None:
    page.click(f"#projects li:text-is('{name}')")
    page.wait_for_selector("#train-voice:enabled")


def test_too_little_text_is_shown_beside_the_button(page: Any) -> None:
    open_project(page, "Short")
    page.click("#train-voice")
    page.wait_for_selector("#train-error:has-text('at least 100 words')")
    assert page.is_hidden("#train-cancel")


def test_train_my_voice_shows_progress_and_adds_the_model_to_the_menu(page: Any) -> None:
    open_project(page, "Sea letters")
    page.click("#train-voice")
    page.wait_for_selector("#train-cancel:visible")  # while it runs: Cancel, no second start
    assert page.is_disabled("#train-voice")
    page.wait_for_selector("#train-progress:has-text('works-Sea-letters')")
    page.wait_for_selector("#train-progress:has-text('ready in the model menu')", timeout=JOB_MS)
    assert page.input_value("#model") == "works-Sea-letters"
    assert "held-out perplexity" in page.inner_text("#train-progress")
    assert page.is_hidden("#train-cancel") and page.is_enabled("#train-voice")
    assert page.inner_text("#train-error") == ""
