"""Screenshots and samples of the web studio for docs/web-studio.md, made in headless
Chromium on the default model: a story planned and its first chapter written, a passage
continued with memory and a lorebook entry, retried and branched at a token, and the page on
a phone in the dark theme.

    python benchmarks/web_studio_screenshots.py [--out docs] [--seed 2]

Prints what the model wrote (the bible, the outline, the chapter, the continuations) as
JSON, for the document to quote verbatim.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from studio_browser import finished, launched, open_studio
from test_server_helpers import running_server

from musegpt.engines.registry import open_engine
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore

PREMISE = "a lighthouse keeper who befriends a whale"
PASSAGE = "Mara climbed the stairs of the lighthouse as the storm came in. "
VIEW = {"width": 1400, "height": 1000}


def story(tab: Any, seed: int, out: Path) -> dict[str, Any]:
    tab.click("#view-story")
    tab.fill("#story-premise", PREMISE)
    tab.fill("#story-chapters", "3")
    tab.fill("#story-tokens", "200")
    tab.fill("#seed", str(seed))
    tab.click("#story-new")
    tab.wait_for_selector("#story-body:not([hidden])")
    tab.click("#story-plan")
    assert finished(tab) == "done", tab.inner_text("#story-error")
    tab.click("#story-chapter-list li:nth-child(1) .write-chapter")
    assert finished(tab) == "done", tab.inner_text("#story-error")
    tab.screenshot(path=str(out / "web-studio-story.png"), full_page=True)
    return dict(tab.evaluate("state.story"))


def branches(tab: Any, seed: int, out: Path) -> dict[str, Any]:
    tab.click("#view-text")
    tab.click("#new-project")  # a prompt() names it
    tab.wait_for_selector("#projects li.selected:has-text('The Keeper')")
    tab.fill("#title", "The Keeper")
    tab.click("#context-panel summary")
    tab.fill("#memory", "A quiet story told by the sea.")
    tab.fill("#lore-name", "Mara")
    tab.fill("#lore-keys", "Mara")
    tab.fill("#lore-text", "Mara is the lighthouse keeper, sixty years old; she talks to the sea.")
    tab.click("#lore-add")
    tab.wait_for_selector(".lore-entry:has-text('Mara')")
    tab.fill("#title", "The Keeper")
    tab.fill("#editor", PASSAGE)
    tab.fill("#max-tokens", "40")
    tab.fill("#seed", str(seed))
    tab.evaluate("() => { const e = document.getElementById('editor');"
                 " e.setSelectionRange(e.value.length, e.value.length); }")  # fmt: skip
    tab.click("#continue")
    assert finished(tab) == "done"
    first = tab.evaluate("state.node.output")
    tab.fill("#seed", "")
    tab.click("#retry")
    assert finished(tab) == "done"
    second = tab.evaluate("state.node.output")
    tab.click("#output .tok[data-index='2']")
    tab.wait_for_selector("#token-choices:not([hidden])")
    taken = tab.locator("#token-choices-list button").first.inner_text()
    tab.locator("#token-choices-list button").first.click()
    assert finished(tab) == "done"
    third = tab.evaluate("state.node.output")
    tab.click("#output .tok[data-index='5']")  # the alternatives offered, in the picture
    tab.locator("#token-choices").scroll_into_view_if_needed()
    tab.screenshot(path=str(out / "web-studio.png"))
    context = tab.inner_text("#context-view")
    return {"first": first, "retry": second, "token_taken": taken, "branch": third,
            "context": context, "position": tab.inner_text("#alt-position")}  # fmt: skip


def phone(browser: Any, url: str, out: Path) -> None:
    tab = open_studio(browser, url, {"width": 390, "height": 844})
    tab.click("#theme")
    tab.screenshot(path=str(out / "web-studio-phone-dark.png"))
    tab.click("#theme")
    tab.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    settings = ServerSettings(data_dir=folder, max_tokens=400)
    app = create_app({"gemma3-270m": open_engine(None)}, settings, WorksStore(folder / "w.db"))
    with running_server(app) as url, launched() as browser:
        tab = open_studio(browser, url, VIEW)
        tab.on("dialog", lambda dialog: dialog.accept("The Keeper"))
        samples = {"story": story(tab, args.seed, args.out)}
        samples["branches"] = branches(tab, args.seed, args.out)
        phone(browser, url, args.out)
    print(json.dumps(samples, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
