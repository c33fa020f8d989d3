"""`musegpt write` on bad input: one clear line and exit 2, never a traceback, never
pydantic's report — a damaged story project, an over-long premise, out-of-range options,
a blank topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_server_helpers import tiny_engine
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.model import save_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny MuseGPT model on disk (64-token context, so a premise of 16 tokens at most)."""
    engine = tiny_engine()
    return str(
        save_model(tmp_path_factory.mktemp("model") / "tiny", engine.model, engine.tokenizer)
    )


def run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=stdin)


def one_error_line(result: Any) -> str:
    """The command's single error line (and check there is nothing else wrong with it)."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output and "pydantic" not in result.output
    return str(lines[0])


@pytest.mark.parametrize(
    "content",
    ["[]", '"a story"', '{"premise": 3, "lang": "en"}', '{"premise": "p", "lang": "fr"}', "{"],
)
def test_a_damaged_story_project_says_so(tmp_path: Path, model: str, content: str) -> None:
    (tmp_path / "story.json").write_text(content, encoding="utf-8")
    result = run("write", "story", "--project", str(tmp_path), "--more", "1", "-m", model)
    line = one_error_line(result)
    assert f"{tmp_path / 'story.json'} is damaged" in line and "start a new project" in line
    assert (tmp_path / "story.json").read_text(encoding="utf-8") == content  # left as it was


def test_an_over_long_premise_is_refused_at_once(tmp_path: Path, model: str) -> None:
    premise = " ".join(["the sea was calm"] * 5000)  # 20,000 words
    folder = tmp_path / "long"
    result = run("write", "story", premise, "--project", str(folder), "-m", model)
    line = one_error_line(result)
    assert "the premise is" in line and "at most 16 fit" in line and "64-token context" in line
    assert not (folder / "story.json").exists()


OUT_OF_RANGE = [
    ("write describe x --top-p 2", "--top-p must be greater than 0 and at most 1 (got 2)"),
    ("write describe x --temperature=-1", "--temperature must be at least 0 and at most 100 (got"
     " -1)"),
    ("write describe x --max-tokens 0", "--max-tokens must be at least 1 and at most 1000000 (got"
     " 0)"),
    ("write brainstorm x -n 0", "--count must be at least 1 and at most 50 (got 0)"),
    ("write story x --chapters 500", "--chapters must be at least 1 and at most 200 (got 500)"),
    ("write poem x --rhymes tang", "--rhymes must be 'pingshui' or 'xinyun' (got 'tang')"),
    ("write poem x --attempts 0", "--attempts must be at least 1 and at most 50 (got 0)"),
    ("sample MODEL --top-p 2", "--top-p must be greater than 0 and at most 1 (got 2)"),
    ("sample MODEL --max-new-tokens 0", "--max-new-tokens must be at least 1 and at most 1000000"
     " (got 0)"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "said"), OUT_OF_RANGE)
def test_out_of_range_options_name_the_option_and_its_range(
    model: str, command: str, said: str
) -> None:
    args = [model if a == "MODEL" else a for a in command.split()]
    if args[0] == "write":
        args += ["-m", model]
    assert one_error_line(run(*args)) == f"error: {said}"


@pytest.mark.parametrize("topic", ["", "   "])
def test_a_blank_topic_is_asked_for(model: str, topic: str) -> None:
    line = one_error_line(run("write", "poem", topic, "-m", model))
    assert line == "error: TOPIC: the topic is empty; say what to write about, e.g. 'autumn rain'"
    line = one_error_line(run("write", "describe", topic, "-m", model))
    assert line.startswith("error: SUBJECT: the subject is empty")


def test_a_valid_project_file_is_read_back(tmp_path: Path, model: str) -> None:
    """A complete project (the shape `save` writes) resumes without any model call."""
    project = {
        "premise": "a robot who discovers love", "lang": "en",
        "bible": {"title": "Tin Heart", "setting": "a city", "style": "plain", "synopsis": "s",
                  "characters": [{"name": "Ada", "description": "a robot"}]},
        "scenes": [{"beat": "Ada wakes.", "text": "Ada woke.", "summary": "Ada woke."}],
        "scene_tokens": 80, "chapters": 1, "meta": {},
    }  # fmt: skip
    (tmp_path / "story.json").write_text(json.dumps(project), encoding="utf-8")
    result = run("write", "story", "--project", str(tmp_path), "-m", model)
    assert result.exit_code == 0, result.output
    assert "Ada woke." in result.stdout and "is complete (1 chapters)" in result.output


def test_text_files_get_the_same_check_as_form_check(tmp_path: Path, model: str) -> None:
    binary = tmp_path / "draft.bin"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00")
    for args in (
        ["write", "story", "--continue", str(binary)],
        ["write", "rewrite", f"@{binary}", "--style", "noir"],
        ["write", "rewrite", "The train was late.", "--sample", str(binary)],
        ["write", "plot-help", f"@{binary}", "--conflict", "stuck"],
    ):
        line = one_error_line(run(*args, "-m", model))
        assert line == f"error: {binary} holds control characters: it is not plain text"
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n", encoding="utf-8")
    line = one_error_line(run("write", "story", "--continue", str(empty), "-m", model))
    assert line == f"error: {empty} is empty: there is nothing to continue"
    line = one_error_line(run("write", "rewrite", f"@{tmp_path / 'nope.txt'}", "--style", "x"))
    assert line == f"error: {tmp_path / 'nope.txt'} does not exist"
