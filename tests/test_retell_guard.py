"""A Chinese sentence is steered off a forbidden opening before the opening is written
(`RetellGuard`), so the retelling bans take back fewer tokens: the same openings stay out
of the text, with fewer take-backs."""

from __future__ import annotations

import re

import pytest
import torch

from musegpt.engines.base import Engine
from musegpt.generation import decoder
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import DecodeState
from musegpt.studio.retell_guard import GUARD_FROM, RetellGuard, told_openings

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


def test_the_guard_keeps_the_opening_out_with_fewer_take_backs(
    gemma: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    take_backs: list[int] = []
    take_back = decoder.Decoder._take_back

    def counted(self: decoder.Decoder, row: decoder._Row, t: int) -> None:
        take_backs.append(t)
        take_back(self, row, t)

    monkeypatch.setattr(decoder.Decoder, "_take_back", counted)
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
