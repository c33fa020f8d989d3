"""The harness the web studio's Chromium tests share: Debian's Chromium driven by
Playwright (headless, no sandbox), the page opened and ready, and layout checks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDE = {"width": 1400, "height": 900}

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if not Path(CHROMIUM).is_file():
    pytest.skip(
        "Chromium is not installed (apt-get install chromium); the web studio tests need it",
        allow_module_level=True,
    )

# Every visible control whose box is not wholly inside the window and inside each scrolling
# box around it (a control cut off at an edge cannot be used without scrolling sideways).
CLIPPED_CONTROLS = """() => {
  const clipped = [];
  const width = document.documentElement.clientWidth;
  for (const el of document.querySelectorAll("input, select, textarea, button")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;  // not shown
    let left = 0, right = width;
    for (let up = el.parentElement; up; up = up.parentElement) {
      if (getComputedStyle(up).overflowX === "visible") continue;
      const frame = up.getBoundingClientRect();
      left = Math.max(left, frame.left);
      right = Math.min(right, frame.right);
    }
    if (box.left < left - 0.5 || box.right > right + 0.5) {
      const name = el.id || el.textContent.trim();
      clipped.push(`${name}: ${box.left}..${box.right} in ${left}..${right}`);
    }
  }
  return clipped;
}"""


def open_studio(browser: Any, url: str, viewport: dict[str, int]) -> Any:
    tab = browser.new_page(viewport=viewport)
    tab.set_default_timeout(60_000)
    tab.goto(url + "/")
    tab.wait_for_selector("#status:has-text('ready')")
    return tab


def finished(page: Any) -> str:
    """The status once the running task is done or has failed."""
    page.wait_for_function(
        "() => { const s = document.getElementById('status');"
        " return s.textContent === 'done' || s.className === 'error'; }"
    )
    return str(page.inner_text("#status"))


@contextmanager
def launched() -> Iterator[Any]:
    """Headless Chromium for one test module (each module's `browser` fixture)."""
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@contextmanager
def studio_tab(url: str) -> Iterator[Any]:
    """One wide studio tab in its own headless Chromium (a module's `page` fixture)."""
    with launched() as chromium:
        tab = open_studio(chromium, url, WIDE)
        yield tab
        tab.close()
