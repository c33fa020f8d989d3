"""Every `musegpt ...` command line shown in README.md and docs/*.md parses: its subcommand
exists and each option it uses is one that command accepts (read from the click command's
own parameters), so a documented option can never again be missing."""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from musegpt.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`(musegpt [^`]+)`(?!`)")
SEPARATORS = {"&&", "||", ";", "|"}
PLACEHOLDERS = {"...", "…"}  # "musegpt works ..." in prose: the rest left out


@dataclass(frozen=True)
class Shown:
    page: str
    line: int
    words: tuple[str, ...]  # after "musegpt"

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: musegpt {' '.join(self.words)}"


def shown_commands() -> list[Shown]:
    """Each `musegpt` command in the pages' code blocks and inline code, split into words
    as a shell would (comments dropped, `\\` continuations joined, `&&` chains split)."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        snippets = [(m.start(1), m.group(1).replace("\\\n", " ")) for m in FENCE.finditer(text)]
        snippets += [(m.start(1), m.group(1)) for m in INLINE.finditer(text)]
        for start, snippet in snippets:
            for offset, line in enumerate(snippet.split("\n")):
                if "musegpt" not in line:
                    continue
                words = shlex.split(line, comments=True)
                where = text.count("\n", 0, start) + offset + 1
                found += [Shown(page.name, where, c) for c in _chains(words)]
    return found


def _chains(words: list[str]) -> list[tuple[str, ...]]:
    commands, current = [], list[str]()
    for word in [*words, ";"]:
        if word in SEPARATORS:
            if current[:1] == ["musegpt"]:
                commands.append(tuple(current[1:]))
            current = []
        else:
            current.append(word)
    return commands


COMMANDS = shown_commands()


def test_the_pages_show_commands() -> None:
    pages = {c.page for c in COMMANDS}
    assert {"README.md", "server.md", "music.md", "poetry.md"} <= pages
    assert len(COMMANDS) > 40


ROOT_COMMAND: Any = typer.main.get_command(app)


@functools.cache
def help_page(path: tuple[str, ...]) -> tuple[int, str]:
    """`musegpt PATH --help` through typer's testing runner: its exit code and output."""
    result = CliRunner().invoke(app, [*path, "--help"])
    return result.exit_code, result.output


def _takes_no_value(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False) or getattr(param, "count", False))


@pytest.mark.parametrize("shown", COMMANDS, ids=str)
def test_each_shown_command_parses(shown: Shown) -> None:
    command = ROOT_COMMAND
    path: list[str] = []
    words = [w for w in shown.words if w not in PLACEHOLDERS]
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        assert name in command.commands, f"{shown}: no command `musegpt {' '.join([*path, name])}`"
        command = command.commands[name]
        path.append(name)
    # The subcommand exists for typer's own runner too.
    exit_code, output = help_page(tuple(path))
    assert exit_code == 0, f"{shown}: {output}"
    options = {
        name: param
        for param in command.params
        if param.param_type_name == "option"
        for name in [*param.opts, *param.secondary_opts]
    }
    options["--help"] = None
    slots = [p.nargs for p in command.params if p.param_type_name == "argument"]
    positional = 0
    while words:
        word = words.pop(0)
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            assert name in options, f"{shown}: `musegpt {' '.join(path)}` has no option {name}"
            param = options[name]
            if param is not None and "=" not in word and not _takes_no_value(param):
                assert len(words) >= param.nargs, f"{shown}: {name} needs a value"
                del words[: param.nargs]
        else:
            positional += 1
    if -1 not in slots:
        assert positional <= sum(slots), f"{shown}: {positional} arguments, it takes {sum(slots)}"


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        (("write", "poem", "rain", "--rhyme", "pingshui"), "has no option --rhyme"),
        (("write", "sonnet", "rain"), "no command `musegpt write sonnet`"),
        (("compose", "a jig", "--bars"), "--bars needs a value"),
        (("sample", "runs/baby/best", "extra"), "2 arguments, it takes 1"),
    ],
)
def test_a_wrong_command_line_is_caught(words: tuple[str, ...], problem: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(problem)):
        test_each_shown_command_parses(Shown("made-up.md", 1, words))
