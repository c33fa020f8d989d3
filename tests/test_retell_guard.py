"""A Chinese sentence (a clause) is steered off a forbidden opening before the opening is
written (`RetellGuard`, `CircleGuard`), so the retelling and circling bans take back fewer
tokens: the same openings stay out of the text, with fewer take-backs."""

from __future__ import annotations

import re

import pytest
import torch

from musegpt.engines.base import Engine
from musegpt.generation import decoder
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import DecodeState, LogitsProcessor
from musegpt.studio import plan_checks as checks
from musegpt.studio.retell_guard import (
    GUARD_FROM,
    CircleGuard,
    PhraseGuard,
    RetellGuard,
    told_openings,
)
from musegpt.studio.story import (
    CirclingLines,
    CirclingPhrases,
    EchoedSentences,
    RepeatedOpenings,
)

EARLIER = "她坐在沙发上，看着窗外的雨。乔纳斯走进房间，轻轻地关上了门。"


def test_the_guard_bans_going_on_along_an_opening_once_enough_of_it_is_written(
    gemma: Engine,
) -> None:
    tokenizer = gemma.tokenizer
    guard = RetellGuard(tokenizer, [EARLIER])
    assert told_openings(EARLIER) == ["她坐在沙发上，看着", "乔纳斯走进房间，轻"]

    def banned(text: str) -> list[str]:
        ids = tokenizer.encode(text)
        state = DecodeState([ids], [len(ids)])
        return [tokenizer.decode([t]) for t in guard.continuing(state, 0)]

    written = "他笑了。她坐在沙发"
    assert len("她坐在沙发") >= GUARD_FROM
    assert "上" in banned(written)  # the opening's next character…
    assert all("她坐在沙发上，看着".startswith("她坐在沙发" + piece) for piece in banned(written))
    assert banned("他笑了。她坐在") == []  # …not before GUARD_FROM characters of it
    assert banned("他笑了。他坐在沙发") == []  # another sentence
    assert banned("他笑了。她坐在沙发上，看着窗") == []  # past the opening: the bans' part
    # The row's own whole sentences count as the earlier ones do.
    own = "我们一起去看海吧，好吗？"
    ids = tokenizer.encode("他说：")
    generated = tokenizer.encode(own + "我们一起去看")[1:]
    state = DecodeState([ids + generated], [len(ids)])
    assert "海" in [tokenizer.decode([t]) for t in guard.continuing(state, 0)]


@pytest.fixture
def take_backs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each take-back of the decoder from now on (where it took back to)."""
    taken: list[int] = []
    take_back = decoder.Decoder._take_back

    def counted(self: decoder.Decoder, row: decoder._Row, t: int) -> None:
        taken.append(t)
        take_back(self, row, t)

    monkeypatch.setattr(decoder.Decoder, "_take_back", counted)
    return taken


def test_the_guard_keeps_the_opening_out_with_fewer_take_backs(
    gemma: Engine, take_backs: list[int]
) -> None:
    prompt = (EARLIER + "\n") * 3
    bans = [re.escape(opening) for opening in told_openings(EARLIER)]
    params = SamplingParams(temperature=0.0, max_new_tokens=60, banned_regex=bans)
    plain = gemma.generate(prompt, params)
    without = len(take_backs)
    take_backs.clear()
    guarded = gemma.generate(prompt, params, [RetellGuard(gemma.tokenizer, [EARLIER])])
    for text in (plain, guarded):
        assert not any(opening in text for opening in told_openings(EARLIER))
    assert without >= 2  # the model keeps beginning the sentences it was shown…
    assert len(take_backs) < without  # …and the guard turns it before they are written


def test_the_guard_changes_no_score_on_most_steps(gemma: Engine) -> None:
    guard = RetellGuard(gemma.tokenizer, [EARLIER])
    ids = gemma.tokenizer.encode("他笑了。她走到窗前")
    scores = torch.zeros(1, 8)
    assert guard(DecodeState([ids], [len(ids)]), scores) is scores


CIRCLING = "她的眼睛里流淌着她的泪水，她抬起头。她的眼睛里流淌着她的泪水，"


def test_a_clause_said_twice_is_not_gone_on_along_a_third_time(gemma: Engine) -> None:
    tokenizer = gemma.tokenizer
    guard = CircleGuard(tokenizer, CIRCLING)

    def banned(text: str) -> list[str]:
        ids = tokenizer.encode(text)
        state = DecodeState([ids], [len(ids)])
        return [tokenizer.decode([t]) for t in guard.continuing(state, 0)]

    assert "流" in banned("。她的眼睛里")  # its first eight characters said twice
    assert banned("。她的眼睛") == []  # …fewer than GUARD_FROM written
    assert banned("。他的眼睛里") == []
    assert (
        CircleGuard(tokenizer, CIRCLING[:20])(  # said once: nothing banned
            DecodeState([tokenizer.encode("。她的眼睛里")], [1]), torch.zeros(1, 8)
        )
        .eq(0)
        .all()
    )


# Chapters that begin with the circling clause after different lead-ins: which clause the
# model circles on, and how often, depends on the CPU's float rounding, so the guard is
# judged over all of them.
CIRCLING_LEADS = ["", "他笑了。", "她低下头。", "雨还在下。", "他说：“"]


def test_the_circle_guard_takes_back_fewer_clauses(
    gemma: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[str] = []  # the clause each take-back removed
    take_back = decoder.Decoder._take_back

    def counted(self: decoder.Decoder, row: decoder._Row, t: int) -> None:
        taken.append(checks.CLAUSE.findall(row.text)[-1])
        take_back(self, row, t)

    monkeypatch.setattr(decoder.Decoder, "_take_back", counted)
    params = SamplingParams(temperature=0.0, max_new_tokens=60)
    plain: list[str] = []
    guarded: list[str] = []
    changed = 0
    for lead in CIRCLING_LEADS:
        prompt = lead + CIRCLING
        rules = [CirclingLines("zh", prompt)]
        taken.clear()
        text = gemma.generate(prompt, params, rules)
        plain += taken
        taken.clear()
        guard = CircleGuard(gemma.tokenizer, prompt)
        changed += gemma.generate(prompt, params, [*rules, guard]) != text
        guarded += taken

    def long(clauses: list[str]) -> int:  # the clauses the guard is for
        return sum(len(checks.clause_units(c, "zh")) >= checks.CLAUSE_CORE for c in clauses)

    assert long(plain) >= 3  # the model goes round its long clauses again…
    assert long(guarded) < long(plain) / 2  # …and the guard turns most of them before
    assert len(guarded) < len(plain)  # fewer take-backs in all
    assert changed >= 1


# "长达八十厘米的高个子" in three different clauses (the README's Chinese story, seed 1, said
# it six times in three chapters): no clause is said again, so the clause rule passes them.
ROUND = "她是一个长达八十厘米的高个子女孩。他爱上了这个长达八十厘米的高个子，"


def test_a_run_said_twice_in_the_story_is_not_said_a_third_time(gemma: Engine) -> None:
    third = ROUND + "她戴上了一个长达八十厘米的高个子机器人的衣服。"
    assert checks.circling_clauses(third, "zh") == []
    starts = [third.rindex("个长达八十厘米的高个子") + i for i in range(4)]
    assert checks.circling_phrases(third) == [(s, s + checks.PHRASE_RUN) for s in starts]
    assert checks.circling_phrases(third[len(ROUND) :], before=ROUND)  # counting the story
    assert checks.circling_phrases(ROUND) == []  # twice is allowed
    assert (
        checks.circling_phrases("乔纳·杜比走了。乔纳·杜比走了。乔纳·杜比走了。") == []
    )  # short runs

    tokenizer = gemma.tokenizer
    guard = PhraseGuard(tokenizer, ROUND)

    def banned(text: str) -> list[str]:
        ids = tokenizer.encode(text)
        return [tokenizer.decode([t]) for t in guard.banned(ids, ids)]

    assert "厘" in banned("她戴上了一个长达八十")  # five of its characters written: not on
    assert banned("她戴上了一个长达") == []  # …fewer than GUARD_FROM: only a token ending it
    assert banned("她戴上了一个短达八十") == []
    assert (
        PhraseGuard(tokenizer, ROUND[:20]).banned(*[tokenizer.encode("长达八十厘米的高")] * 2) == []
    )


# Greedy continuations that copy their prompt's lines: without the rules each says a run of
# eight characters a third time (checked: the model copies what it was shown).
COPYING = [
    "他看到一个穿着红色衣服的小女孩。她又看到一个穿着红色衣服的小女孩。",
    "那天，乔纳在白宫的房间里发现了爱情。第二天，许希在白宫的房间里发现了爱情。",
    "她是一个长达八十厘米的高个子女孩。他也是一个长达八十厘米的高个子男孩。",
]


def test_the_phrase_rules_keep_a_third_time_out_of_a_decode(gemma: Engine) -> None:
    params = SamplingParams(temperature=0.0, max_new_tokens=40)
    plain = [gemma.generate(p, params) for p in COPYING]
    assert (
        sum(bool(checks.circling_phrases(t, p)) for t, p in zip(plain, COPYING, strict=True)) >= 2
    )
    for prompt in COPYING:
        rules: list[LogitsProcessor] = [
            CirclingPhrases(prompt),
            PhraseGuard(gemma.tokenizer, prompt),
        ]
        text = gemma.generate(prompt, params, rules)
        assert checks.circling_phrases(text, prompt) == [], text


# English runs of words the greedy model says a third time (checked), as stories did ("took
# out a big box of toy cars" three times in the README's story).
COPYING_EN = [
    "Reuben took out a big box of toy cars. Then Drew took out a big box of toy cars. After "
    "that, Eliot",
    "Mona walked to the old mill by the river. Later, Mordel walked to the old mill by the "
    "river. At night, Ruben",
    '"I know what it is," he said. "I know what it is," she said. Then the doctor said,',
]


def test_a_run_of_words_is_not_said_a_third_time_in_english(gemma: Engine) -> None:
    twice = "He took out a big box of toys; she took out a big box of cards."
    assert checks.circling_phrases(twice, lang="en") == []
    third = twice + " Then they took out a big box of pens."
    start = third.rindex("took out a big box")
    spans = checks.circling_phrases(third, lang="en")  # and "out a big box of"
    assert spans[0] == (start, start + len("took out a big box")) and len(spans) == 2
    # Words across a clause's end are no run ("box. Of toys" is not "box of toys").
    assert checks.circling_phrases("a b c d e. " * 3, lang="en") != []
    assert checks.circling_phrases("a b c. d e " * 3, lang="en") == []
    params = SamplingParams(temperature=0.0, max_new_tokens=30)
    plain = [gemma.generate(p, params) for p in COPYING_EN]
    copied = [
        bool(checks.circling_phrases(t, p, "en")) for t, p in zip(plain, COPYING_EN, strict=True)
    ]
    assert all(copied)
    for prompt in COPYING_EN:
        text = gemma.generate(prompt, params, [CirclingPhrases(prompt, "en")])
        assert checks.circling_phrases(text, prompt, "en") == [], text


# Sentences that open alike, as the model then goes on (seen: "乔纳多发现…" ten times in a
# chapter): greedy, it opens the next ones the same way too.
ALIKE = [
    "阿铁看着大海。阿铁看着天空。阿铁看着远方。",
    "乔纳多发现了一只猫。乔纳多发现了一本书。乔纳多发现了一扇门。",
]


def test_no_sentence_opens_as_three_of_its_chapter_did(gemma: Engine) -> None:
    text = "乔纳多发现了他。乔纳多发现她哭了。\n“乔纳多发现了吗？”乔纳多发现男人。他笑了。"
    assert checks.repeated_openings(text) == [text.rindex("乔纳多发现男人")]
    assert checks.repeated_openings("乔纳多看着她。", text) == []  # another opening
    assert (
        checks.repeated_openings("他笑了。他笑了。他笑了。他笑了。") == []
    )  # under four characters
    # Sentences opened with 当 count as one opening, whatever follows it (seen: nine in a
    # chapter of README length); 当然 is another word.
    whens = "当他说起自己的遭遇时，她很高兴。当他说起自己的事时，她很激动。"
    whens += "当她听到自己的名字时，她很平静。当然，他笑了。当她听到自己的遭遇时，她很开心。"
    assert checks.repeated_openings(whens) == [whens.rindex("当她听到")]
    params = SamplingParams(temperature=0.0, max_new_tokens=40)
    for prompt in ALIKE:
        plain = gemma.generate(prompt, params)
        assert checks.repeated_openings(plain, prompt), plain
        kept = gemma.generate(prompt, params, [RepeatedOpenings(prompt)])
        assert checks.repeated_openings(kept, prompt) == [], kept


# Sentences told again with a word or two swapped, as seen in the README's Chinese story
# (and the English one's "She looked at the robot in …"): greedy, the model goes on with
# another variant.
ECHOING = [
    "当他的眼睛越来越亮的时候，当他看见了她的声音时，他就说不出来。"
    "当他的眼睛渐渐亮的时候，当他看见了她的声音时，他就哭了。",
    "她的丈夫的母亲在电视上看到了这个男人。她的丈夫的父亲在电视上知道了这个男人。",
    "第二个女孩看见这个男人，她非常高兴。第三个女孩看见这个男人，她非常难过。",
]


def test_a_sentence_echoing_one_of_the_story_is_found() -> None:
    text = "然后他穿上红色衬衫，黑色长裤，红色长发。他笑了。"
    text += "然后他穿上黄色衬衫，红色长裤，黄色长发。"
    second = text.rindex("然后")
    assert checks.echoed_sentences(text, "zh") == [(second, len(text))]
    assert checks.echoed_sentences(text[second:], "zh", text[:second]) == [(0, len(text) - second)]
    assert checks.echoed_sentences(text[: second + 10], "zh") == []  # not ended: not judged
    assert checks.echoed_sentences("他笑了。他笑了。他笑了。", "zh") == []  # short: may recur
    assert checks.echoed_sentences("他走进厨房，打开了冰箱。她坐在窗前，看着外面的雨。", "zh") == []
    said = "She looked at the robot in her room and saw that it was very sad."
    again = " She looked at the robot in the garden and saw that it was happy."
    assert checks.echoed_sentences(again, "en", said) == [(1, len(again))]
    # A sentence that holds an earlier one whole (seen, seed 12), or is held in one.
    said_zh = "当他睁眼的时候，看见了她，他都笑了笑。"
    holds = "当邓思把这个视频放在床头的时候，当他睁眼的时候，看见了她，他都笑了笑。"
    assert checks.echoed_sentences(holds, "zh", said_zh) == [(0, len(holds))]
    assert checks.echoed_sentences(said_zh, "zh", holds) == [(0, len(said_zh))]
    assert checks.echoed_sentences("他走进厨房。", "zh", holds) == []  # too short to judge held
    other = " The robot walked to the door and opened it slowly."
    assert checks.echoed_sentences(other, "en", said) == []


def test_a_sentence_left_unfinished_before_the_draft_is_judged_whole() -> None:
    # A round that ran out of tokens mid-sentence: its sentence ends in the next round's
    # draft, and is what a later sentence echoes (seen in the README's story, seed 13).
    before = "他每天去公司。但他们在一起的时间很少，"
    draft = "因为他每天的工作很忙。他笑了。"
    echo = "他们在一起的时间很少，因为他的工作很忙碌。"
    rule = EchoedSentences("zh", before)
    assert rule.banned_at(draft + echo, 0) == len(draft)
    assert rule.banned_at(draft + "他走进厨房，打开了冰箱，拿出一瓶水。", 0) is None
    # …and the sentence the draft finishes is itself judged against the story.
    assert EchoedSentences("zh", echo + before).banned_at(draft, 0) == 0


def test_no_sentence_of_a_decode_echoes_one_of_the_story(gemma: Engine) -> None:
    params = SamplingParams(temperature=0.0, max_new_tokens=40)
    for prompt in ECHOING:
        plain = gemma.generate(prompt, params)
        assert checks.echoed_sentences(plain, "zh", prompt), plain
        kept = gemma.generate(prompt, params, [EchoedSentences("zh", prompt)])
        assert checks.echoed_sentences(kept, "zh", prompt) == [], kept
