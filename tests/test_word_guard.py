"""A word said `WORD_MOST` times within a paragraph or two of a Chinese chapter is not
written again there (`checks.overused_words`, `WordGuard`), the premise's words and the
cast's names aside; and a simplified Chinese chapter writes no traditional characters. The
words are counted in English too, for the eval's measure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from musegpt.engines.base import Engine
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import BanTokens, DecodeState
from musegpt.studio import plan_checks as checks
from musegpt.studio.plan_rules import traditional_ids
from musegpt.studio.word_guard import ENGLISH_MOST, WordGuard

# The Chinese README story's second chapter, as it went round 答应 (seed 11, 15th session).
PROMISES = "“你答应我的，我愿意，我就答应给你，你就会答应。”“我答应你的，你会答应”，她笑着说。"
MALL = (
    "Linda went to the mall. At the mall, she saw Elliot. The next day, Linda went back to the mall"
)


def never(_: str) -> bool:
    return False


def test_the_words_said_most_are_counted_and_names_grammar_and_speech_are_not() -> None:
    assert checks.overused_words(PROMISES, "zh", never) == {"答应"}
    # 没有 holds a grammar character, 起来 is a complement: said often, never counted.
    assert (
        checks.overused_words("没有，没有，没有。她笑起来，笑起来，笑起来。", "zh", never) == set()
    )
    assert checks.overused_words(MALL, "en", never) == {"mall"}
    said = 'He said "no." She said "yes." He said "why?" She said "because."'
    assert checks.overused_words(said, "en", never) == set()
    # A capital inside a sentence is a name ("saw Elliot"), however often it is said.
    assert (
        checks.overused_words("I saw Elliot, met Elliot, and Elliot left; Elliot", "en", never)
        == set()
    )
    # Nor a word never written without a capital (a name beginning every sentence), nor a
    # contraction (seen in the eval: "Kei-O", "don't").
    names = "Kei-O went. Kei-O ran. Kei-O sat. Kei-O left. I don't, don't, don't, don't."
    assert checks.overused_words(names, "en", never) == set()
    # The premise's words and the cast's names are spared.
    assert checks.overused_words(PROMISES, "zh", "答应".__contains__) == set()
    # A word the dictionary has with a grammar character (很漂亮) counts as the word in it
    # (seen: 很漂亮 six times in five lines of a chapter the guard let through).
    pretty = "衣服很漂亮。它很漂亮。你很漂亮。"
    assert checks.overused_words(pretty, "zh", never) == {"漂亮"}
    assert [w for _, w in checks.counted_words(pretty, "zh")] == ["衣服", "漂亮", "漂亮", "漂亮"]


def test_only_the_last_window_counts() -> None:
    far = PROMISES + "嗯。" * (checks.WORD_WINDOW["zh"] // 2)  # no word counted in the filler
    assert checks.overused_words(far, "zh", never) == set()
    assert checks.words_going_round(far, "zh", never) == {"答应"}  # it did go round, earlier
    spread = ("她答应了。" + "嗯。" * 120) * 4
    assert checks.words_going_round(spread, "zh", never) == set()


@given(st.lists(st.sampled_from(["答应", "旅行", "他笑了", "。", "，", "我"]), max_size=60))
def test_a_word_banned_by_the_guard_is_one_that_goes_round(pieces: list[str]) -> None:
    text = "".join(pieces)
    for word in checks.overused_words(text, "zh", never):
        # Said WORD_MOST times already: once more and the text would say it a fourth time.
        assert checks.words_going_round(text + word, "zh", never) >= {word}


def banned_texts(guard: WordGuard, engine: Engine, text: str) -> set[str]:
    ids = engine.tokenizer.encode(text)
    state = DecodeState([ids], [0])
    return {engine.tokenizer.decode([t]) for t in guard.row_bans(state, 0)}


def test_the_guard_bans_the_tokens_that_would_write_the_word_again(gemma: Engine) -> None:
    guard = WordGuard(gemma.tokenizer, PROMISES, never)
    banned = banned_texts(guard, gemma, "她说：“我")
    assert "答应" in banned and all("答应" in piece for piece in banned)
    assert any(piece.startswith("应") for piece in banned_texts(guard, gemma, "她说：“我答"))
    assert banned_texts(WordGuard(gemma.tokenizer, PROMISES[:20], never), gemma, "我") == set()
    assert (
        banned_texts(WordGuard(gemma.tokenizer, PROMISES, "答应".__contains__), gemma, "我")
        == set()
    )


def test_a_chapter_under_the_guard_does_not_say_the_word_a_fourth_time(gemma: Engine) -> None:
    prompt = "她们坐在车里。" + PROMISES + "\n\n"
    params = SamplingParams(temperature=0.0, max_new_tokens=60)
    plain = gemma.generate(prompt, params)
    guard = WordGuard(gemma.tokenizer, prompt, never)
    guarded = gemma.generate(prompt, params, [guard])
    assert "答应" in plain  # the model goes on promising…
    assert "答应" not in guarded  # …and the guard keeps it to other words
    assert guarded.strip()


def test_traditional_characters_are_banned_in_a_simplified_chapter(gemma: Engine) -> None:
    ids = set(traditional_ids(gemma.tokenizer))
    texts = {gemma.tokenizer.decode([i]) for i in ids}
    assert all(any(char in t for t in texts) for char in "說們結")
    simple = ["说", "我们", "结婚", "乾"]  # 乾 is written in both scripts
    for text in simple:
        assert not ids & set(gemma.tokenizer.encode(text)), text
    prompt = "他說：“我們為什麼"
    out = gemma.generate(
        prompt, SamplingParams(temperature=0.0, max_new_tokens=30), [BanTokens(ids)]
    )
    assert out.strip() and not ids & set(gemma.tokenizer.encode(out))


def test_the_guard_changes_nothing_while_no_word_goes_round(gemma: Engine) -> None:
    guard = WordGuard(gemma.tokenizer, "她走到窗前。", never)
    assert banned_texts(guard, gemma, "他笑了。") == set()


# The README's English story at --seed 12 (seventeenth session), "bored" twelve times.
BORED = (
    "She was so bored. She felt bored, which was her problem, not because she was bored in "
    "the first place. She was bored, and she was bored."
)


def test_an_english_word_is_guarded_only_when_it_goes_round_far_more(gemma: Engine) -> None:
    guard = WordGuard(gemma.tokenizer, BORED, never, "en")
    banned = banned_texts(guard, gemma, " She felt")
    assert {" bored", " Bored", " boredom"} <= banned
    assert all(checks.stem(piece.strip().lower()) == "bored" for piece in banned)
    # Said ENGLISH_MOST - 1 times, or spared as the premise's: nothing banned.
    fewer = BORED.replace("bored", "tired", 6 - ENGLISH_MOST)
    assert banned_texts(WordGuard(gemma.tokenizer, fewer, never, "en"), gemma, " She") == set()
    spared = WordGuard(gemma.tokenizer, BORED, "bored".__contains__, "en")
    assert banned_texts(spared, gemma, " She") == set()
    prompt = BORED + "\n\nShe was"
    params = SamplingParams(temperature=0.0, max_new_tokens=40)
    assert "bored" in gemma.generate(prompt, params)  # the model goes on being bored…
    guarded = gemma.generate(prompt, params, [WordGuard(gemma.tokenizer, prompt, never, "en")])
    assert "bored" not in guarded.lower() and guarded.strip()  # …and the guard moves it on
