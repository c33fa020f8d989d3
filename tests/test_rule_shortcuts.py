"""The chapter rules' per-token shortcuts judge as the plain rules do: the same text gets
the same verdict, character by character as a decode writes it (issue 14: these run on
every token of a story, so they skip work whose answer cannot have changed)."""

from __future__ import annotations

import pytest

from musegpt.studio import plan_checks as checks
from musegpt.studio.story import CirclingLines
from musegpt.studio.text import HAN, WORD, cut_ngram_loops, strip_labels

# Dialogue going round (the README story's), with other lines between and a take-back's
# worth of text after each clause.
ZH = (
    "莫拉笑了，她说：“你为什么会这样？”\n乔纳斯看着她。“我为什么会这样？”\n"
    "她问：“你看见了什么？”他为什么会这样？莫拉笑了，她说：“你为什么会这样？”\n"
    "她走到窗前，看着外面的雨。你为什么会这样？"
)


def plain_verdict(text: str, shown: int, before: str) -> int | None:
    """`CirclingLines.banned_at` as written before the shortcut: every clause judged."""
    if not checks.CLAUSE_MARK.search(text, max(len(text) - CirclingLines.LOOK_BACK, 0)):
        return None
    for start in checks.circling_clauses(text, "zh", before):
        clause = checks.CLAUSE.match(text, start)
        if clause is not None and clause.end() >= shown:
            return start
    return None


@pytest.mark.parametrize("before", ["", "你为什么会这样？莫拉笑了。"])
def test_circling_lines_judges_each_prefix_as_the_plain_rule(before: str) -> None:
    rule = CirclingLines("zh", before)
    verdicts = []
    for end in range(1, len(ZH) + 1):
        for shown in (0, max(end - 6, 0)):
            got = rule.banned_at(ZH[:end], shown)
            assert got == plain_verdict(ZH[:end], shown, before), (end, shown)
            verdicts.append(got)
    assert any(v is not None for v in verdicts)  # the rule did fire on this text


def test_circling_lines_two_rows_taking_turns() -> None:
    """One rule serves both rows of a batch: alternating texts get their own verdicts."""
    rule = CirclingLines("zh")
    other = "她走到窗前。" * 3
    for end in range(1, len(ZH) + 1):
        assert rule.banned_at(ZH[:end], 0) == plain_verdict(ZH[:end], 0, "")
        short = other[: min(end, len(other))]
        assert rule.banned_at(short, 0) == plain_verdict(short, 0, "")


def plain_loops(text: str, size: int = 4, runs: int = 3) -> str:
    """`cut_ngram_loops` without its first-unit check (the definition)."""
    spans = [(m.start(), m.group(0).lower()) for m in WORD.finditer(text)]
    tokens: list[tuple[int, str]] = []
    for start, token in spans:
        chars = [(start + i, ch) for i, ch in enumerate(token)]
        tokens += chars if HAN.search(token) else [(start, token)]
    words = [t for _, t in tokens]
    for i in range(len(words)):
        for n in range(1, size + 1):
            if i + n * runs > len(words):
                break
            gram = words[i : i + n]
            if n == 1 and not gram[0].isalnum():
                continue
            if all(words[i + k * n : i + (k + 1) * n] == gram for k in range(1, runs)):
                return text[: tokens[i + n][0]].rstrip()
    return text


@pytest.mark.parametrize(
    "text",
    [
        "and then and then and then she left",
        "He ran. He ran. He ran home!!! and so on",
        "她哭了她哭了她哭了。",
        "好好好的，……………… 他说",
        ZH,
        "a b a b a c a b a b a b",
    ],
)
def test_ngram_loops_cut_where_the_definition_does(text: str) -> None:
    assert cut_ngram_loops(text) == plain_loops(text)
    assert cut_ngram_loops(text, runs=1) == plain_loops(text, runs=1)


def test_strip_labels_with_several_labels() -> None:
    text = "She left.\nNote: none\nChapter 2: more\n  Premise: again"
    assert strip_labels(text, ["Premise:", "Chapter"]) == "She left.\nNote: none"
    assert strip_labels(text, []) == text
    assert strip_labels("Premise: first line stays", ["Premise:"]) == "Premise: first line stays"
