"""A chapter's talk is broken by narration (`SpeechRun`), English chapters spell their
numbers out (`digit_ids`), and a speech tag written as a sentence of its own is set as
prose sets it (`checks.TAG_AFTER_STOP`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from musegpt.engines.base import Engine
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import BanTokens, DecodeState
from musegpt.studio import plan_checks as checks
from musegpt.studio.plan_rules import digit_ids
from musegpt.studio.speech_guard import (
    MOST_BARE,
    MOST_SPEECHES,
    QUOTE,
    SpeechRun,
    bare_in_a_row,
    bare_speech,
    speeches_in_a_row,
)

# The README's story, unseeded (nineteenth session): its last chapter, line after line.
PING_PONG = (
    'Vito looked into her eyes and said: "You love me."\n\n"I don\'t care."\n\n'
    '"I don\'t want to."\n\nShe said: "You don\'t like me?"\n\n'
)
ZH_TALK = "“你爱我吗？”\n“我不知道。”\n她说：“你爱我。”\n“我不爱你。”\n"


def test_speech_paragraphs_in_a_row_are_counted_back_from_the_one_being_written() -> None:
    assert speeches_in_a_row(PING_PONG, "en") == 4 == MOST_SPEECHES
    assert speeches_in_a_row(PING_PONG + '"Yes', "en") == 4  # the one being written aside
    assert speeches_in_a_row("He left.\n\n" + PING_PONG[-40:], "en") == 2
    assert speeches_in_a_row("He left.\n\nShe stayed.\n\n", "en") == 0
    assert speeches_in_a_row(ZH_TALK, "zh") == 4


@given(st.lists(st.booleans(), max_size=12))
def test_the_count_is_the_run_of_speech_lines_at_the_end(spoken: list[bool]) -> None:
    lines = ['"Go on," he said.' if s else "The rain kept on." for s in spoken]
    text = "\n\n".join(lines) + "\n\n"
    run = 0
    for s in reversed(spoken):
        if not s:
            break
        run += 1
    assert speeches_in_a_row(text, "en") == run


def test_after_four_speeches_the_next_paragraph_holds_no_quotation_mark(gemma: Engine) -> None:
    guard = SpeechRun(gemma.tokenizer, PING_PONG, "en")
    banned = {gemma.tokenizer.decode([t]) for t in guard.row_bans(DecodeState([[]], [0]), 0)}
    assert '"' in banned and ' "' in banned and " '" in banned  # single quotes opened too
    assert not {"'", "'s", "'t"} & banned  # an apostrophe in a word is not a quotation
    # A paragraph that holds a quotation mark already may close it; three speeches: nothing.
    begun = gemma.tokenizer.encode('"Yes, I')
    assert guard.row_bans(DecodeState([begun], [0]), 0) == []
    fewer = SpeechRun(gemma.tokenizer, PING_PONG.split("\n\n", 1)[1], "en")
    assert fewer.row_bans(DecodeState([[]], [0]), 0) == []
    params = SamplingParams(temperature=0.0, max_new_tokens=60)
    plain = gemma.generate(PING_PONG, params)
    guarded = gemma.generate(PING_PONG, params, [guard])
    assert QUOTE["en"].search(plain.split("\n")[0])  # the model goes on talking…
    first = guarded.strip().split("\n")[0]
    assert first and not QUOTE["en"].search(first)  # …and the guard makes it narrate


# The eval's Chinese story (twenty-second session): lines no reader can give to anyone.
ZH_BARE = "邓小燕和杜子龙一起去寻找哥哥。\n“我要回去了！你回来吧！”\n“我一定回去了！”\n"


def test_a_bare_speech_line_is_quotations_alone() -> None:
    assert bare_speech('"Yes."', "en") and bare_speech('"No," "Yes!"', "en")
    assert bare_speech("“真开心！我是怎么来的？”“没错！！”", "zh")
    assert bare_speech("“你跟那孩子在一起吗？”！”", "zh")  # a stray mark is no word
    assert bare_speech('"I was', "en")  # still open
    assert not bare_speech('"Yes," he said.', "en")
    assert not bare_speech('He said: "No."', "en")
    assert not bare_speech("他说：“是。”", "zh") and not bare_speech("“好。”乔敏笑了。", "zh")
    assert not bare_speech("He left.", "en") and not bare_speech("", "zh")
    assert bare_in_a_row(ZH_BARE, "zh") == 2 == MOST_BARE
    assert bare_in_a_row(ZH_BARE + "“我", "zh") == 2  # the line being written aside
    assert bare_in_a_row(PING_PONG, "en") == 0  # "She said: …" ends the run


@given(st.lists(st.booleans(), max_size=12))
def test_the_bare_count_is_the_run_of_speech_alone_at_the_end(bare: list[bool]) -> None:
    lines = ['"Go on."' if b else '"Go on," he said.' for b in bare]
    run = 0
    for b in reversed(bare):
        if not b:
            break
        run += 1
    assert bare_in_a_row("\n\n".join(lines) + "\n\n", "en") == run


def test_after_two_bare_speech_lines_the_next_opens_with_narration(gemma: Engine) -> None:
    tokenizer = gemma.tokenizer
    guard = SpeechRun(tokenizer, ZH_BARE, "zh")
    banned = {tokenizer.decode([t]) for t in guard.row_bans(DecodeState([[]], [0]), 0)}
    assert "“" in banned and "「" in banned
    # Once the paragraph is begun with narration, it may quote its speaker.
    told = tokenizer.encode("杜子龙说：")
    assert guard.row_bans(DecodeState([told], [0]), 0) == []
    one = SpeechRun(tokenizer, ZH_BARE.rsplit("“", 1)[0], "zh")  # one bare line: no ban
    assert one.row_bans(DecodeState([[]], [0]), 0) == []
    params = SamplingParams(temperature=0.0, max_new_tokens=30)
    plain = gemma.generate(ZH_BARE, params)
    guarded = gemma.generate(ZH_BARE, params, [guard])
    assert bare_speech(plain.split("\n")[0], "zh")  # the model goes on with a third…
    first = guarded.split("\n")[0]
    assert first.strip() and not QUOTE["zh"].match(first)  # …and the guard makes it narrate


def test_english_chapters_spell_their_numbers_out(gemma: Engine) -> None:
    ids = set(digit_ids(gemma.tokenizer))
    assert all(set(gemma.tokenizer.encode(d)) & ids for d in "0123456789$%")
    assert not ids & set(gemma.tokenizer.encode("He was thirty-two years old."))
    prompt = "Chapter facts. He was"
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    assert any(c.isdigit() for c in gemma.generate(prompt + " born in", params))  # a year…
    out = gemma.generate(prompt + " born in", params, [BanTokens(sorted(ids))])
    assert out.strip() and not any(c.isdigit() for c in out)  # …and none under the ban
    # Nor a sign that stands beside a number (seen: "He buys a house for $" and a line break).
    price = "He bought the house for"
    assert "$" in gemma.generate(price, params)
    priced = gemma.generate(price, params, [BanTokens(sorted(ids))])
    assert priced.strip() and not set("$0123456789") & set(priced)


def test_a_speech_tag_written_as_its_own_sentence_is_set_as_prose() -> None:
    def clean(text: str) -> str:
        return checks.clean_chapter(text, "en", "")

    assert (
        clean('"It is worth it." She said. "But why?"') == '"It is worth it," she said. "But why?"'
    )
    assert clean('"Really?" He asked her.') == '"Really?" he asked her.'
    assert clean('"I guess." Tannia said as she left.') == '"I guess," Tannia said as she left.'
    # A sentence about what was said is not a tag: left as it is.
    assert clean('"Do it." She said that was wrong.') == '"Do it." She said that was wrong.'
    # A tag closed with a colon before the next speech, on its line or the next.
    assert (
        clean('"Well," said Curt:\n\n"If you go, I stay."')
        == '"Well," said Curt. "If you go, I stay."'
    )
    assert (
        clean('"But," he continued: "when it sleeps."') == '"But," he continued, "when it sleeps."'
    )
