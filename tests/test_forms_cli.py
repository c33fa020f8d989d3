"""`musegpt form check` / `musegpt form list`: a table, exit 1 on a failing poem, exit 2 with
one clear line on bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from musegpt.cli.form import form_app

HAIKU = "An old pond sits still\na green frog leaps in the pond\nthe water is calm\n"
DENG_GUAN_QUE_LOU = "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。\n"
JING_YE_SI = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n"


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(form_app, name="form")
    return app


def run(*args: str, stdin: str | bytes | None = None) -> Any:
    return CliRunner().invoke(cli(), ["form", *args], input=stdin)


def said(result: Any) -> str:
    return " ".join(str(result.output).split())


def write(tmp_path: Path, text: str, name: str = "poem.txt") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_valid_poem_passes_with_a_table(tmp_path: Path) -> None:
    result = run("check", write(tmp_path, HAIKU), "--form", "haiku")
    assert result.exit_code == 0, result.output
    out = said(result)
    assert "PASS" in out and "Haiku" in out and "the water is calm" in out
    assert "5 / 5" in out and "7 / 7" in out


def test_a_broken_poem_fails_with_reasons(tmp_path: Path) -> None:
    broken = HAIKU.replace("An old pond", "An ancient pond")
    result = run("check", write(tmp_path, broken), "-f", "俳句")
    assert result.exit_code == 1, result.output
    assert "FAIL" in said(result) and "line 1 has 6 syllables; it should have 5" in said(result)


def test_chinese_options(tmp_path: Path) -> None:
    poem = write(tmp_path, JING_YE_SI)
    assert run("check", poem, "--form", "五言绝句").exit_code == 0
    strict = run("check", poem, "--form", "wujue", "--strict")
    assert strict.exit_code == 1 and "breaks the 平仄" in said(strict)
    modern = run(
        "check", write(tmp_path, DENG_GUAN_QUE_LOU), "--form", "wujue", "--rhymes", "xinyun"
    )
    assert modern.exit_code == 0 and "尤" in said(modern)


def test_stdin_and_yaml_forms(tmp_path: Path) -> None:
    assert run("check", "-", "--form", "haiku", stdin=HAIKU).exit_code == 0
    form = write(tmp_path, "name: tercet\nlines: 3\nsyllables: '4-8'\nrhyme: xxx\n", "tercet.yaml")
    result = run("check", write(tmp_path, HAIKU), "--form", form)
    assert result.exit_code == 0 and "tercet" in said(result)


def test_bad_input_exits_2_with_one_clear_line(tmp_path: Path) -> None:
    missing = run("check", str(tmp_path / "nope.txt"), "--form", "haiku")
    assert missing.exit_code == 2 and "nope.txt does not exist" in said(missing)
    unknown = run("check", write(tmp_path, HAIKU), "--form", "villanelle")
    assert unknown.exit_code == 2
    assert "unknown form 'villanelle'; known forms: haiku" in said(unknown)
    assert "wujue" in said(unknown) and "Traceback" not in said(unknown)
    bad_rhymes = run("check", write(tmp_path, HAIKU), "--form", "wujue", "--rhymes", "guangyun")
    assert bad_rhymes.exit_code == 2 and "--rhymes must be one of pingshui, xinyun" in said(
        bad_rhymes
    )
    binary = tmp_path / "poem.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    not_text = run("check", str(binary), "--form", "haiku")
    assert not_text.exit_code == 2 and "not UTF-8 text" in said(not_text)
    bad_yaml = write(tmp_path, "lines: 2\n", "bad.yaml")
    assert run("check", write(tmp_path, HAIKU), "--form", bad_yaml).exit_code == 2


@pytest.mark.parametrize("data", [b"\xff\xfe\x00bad", b"\x7fELF\x02\x01\x01\x00\x00"])
def test_standard_input_gets_the_same_text_check_as_a_file(tmp_path: Path, data: bytes) -> None:
    from_stdin = run("check", "-", "--form", "haiku", stdin=data)
    binary = tmp_path / "poem.bin"
    binary.write_bytes(data)
    from_file = run("check", str(binary), "--form", "haiku")
    for result, source in ((from_stdin, "standard input"), (from_file, str(binary))):
        assert result.exit_code == 2, result.output
        assert said(result).startswith(f"error: {source} ")
        assert "not UTF-8 text" in said(result) or "not plain text" in said(result)
        assert not any(char in result.output for char in "\x00\x01\x02\x7f\ufffd")


def test_list_names_the_forms() -> None:
    result = run("list")
    assert result.exit_code == 0
    out = said(result)
    for name in (
        "haiku",
        "limerick",
        "shakespearean-sonnet",
        "wujue",
        "五言绝句",
        "qilu",
        "free:N",
    ):
        assert name in out


def test_registered_in_the_musegpt_command() -> None:
    from musegpt.cli.app import app

    result = CliRunner().invoke(app, ["form", "--help"])
    assert result.exit_code == 0 and "check" in result.output
