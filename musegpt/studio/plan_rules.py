"""Constraints that make a story plan's line come out in its shape on the first draw.

A small base model often ends a plan line too soon ("Rachel and Sophie" for a synopsis,
"家里的雪了。" for a beat) or begins a character line with anything but a name ("30 year
old girl who…", "2nd detective:", "房东："). These logits processors rule such tokens out
while decoding, so the line the model writes is one the plan's checks can keep:

* `EndWhenReady`: the line may not end (a line break, the end of text) until the text so
  far is ready, e.g. holds a whole sentence of enough words;
* `NameFirst`: a character line is a name (capitalised words; Chinese: a surname and a
  few characters), then a colon, then anything.

The token sets depend only on the vocabulary and are computed once per tokenizer.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch

from musegpt.generation.processors import NEG_INF, DecodeState
from musegpt.studio.text import HAN
from musegpt.tokenizer.base import Tokenizer

# Surnames a Chinese character's name may begin with (the commonest, leaving out those
# that more often begin a description: 高, 白, 金, 石, 龙, 于, 向, 万…), and the prefixes of
# a familiar name (老周, 小雨, 阿青).
ZH_NAME_STARTS = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡杜叶程苏魏吕丁"
    "沈姚卢姜崔钟谭陆汪范廖贾夏韦付邹孟熊秦邱尹薛闫段雷侯史陶黎贺顾毛郝龚邵钱严覃武戴莫孔汤"
    "温柳乔岳苗欧"
    "老小阿"
)

_line_ends: weakref.WeakKeyDictionary[Tokenizer, torch.Tensor] = weakref.WeakKeyDictionary()


def line_end_ids(tokenizer: Tokenizer) -> torch.Tensor:
    """The tokens that end a line: any holding a line break, and the end-of-text tokens."""
    found = _line_ends.get(tokenizer)
    if found is None:
        ids = {i for i in range(tokenizer.vocab_size) if b"\n" in tokenizer.token_bytes(i)}
        ids |= set(getattr(tokenizer, "stop_ids", ())) | {tokenizer.eot_id}
        found = torch.tensor(sorted(ids), dtype=torch.long)
        _line_ends[tokenizer] = found
    return found


_name_tables: weakref.WeakKeyDictionary[Tokenizer, dict[str, NameTokens]] = (
    weakref.WeakKeyDictionary()
)
EN_NAME_START = re.compile(r" ?[A-Z][A-Za-z'-]*")
EN_NAME_PIECE = re.compile(r" ?[A-Z][A-Za-z'-]*|[a-z'-]+")  # a new word, or the word going on
ZH_NAME_PIECE = re.compile(r"[\u4e00-\u9fff·]{1,3}")
COLON_FIRST = re.compile(r" ?[:：]")


@dataclass(frozen=True)
class NameTokens:
    """The tokens a name may begin with, go on with, and the colon after it."""

    starts: torch.Tensor
    pieces: torch.Tensor
    colons: torch.Tensor


def name_tokens(tokenizer: Tokenizer, lang: str) -> NameTokens:
    """The vocabulary sorted for `NameFirst` (computed once per tokenizer and language)."""
    known = _name_tables.setdefault(tokenizer, {})
    if lang not in known:
        starts, pieces, colons = [], [], []
        for i in range(tokenizer.vocab_size):
            try:
                text = tokenizer.token_bytes(i).decode("utf-8")
            except UnicodeDecodeError:
                continue  # a piece of a character: it begins nothing by itself
            if not text:
                continue
            if lang == "zh":
                starts += [i] if ZH_NAME_PIECE.fullmatch(text) and text[0] in ZH_NAME_STARTS else []
                pieces += [i] if ZH_NAME_PIECE.fullmatch(text) else []
            else:
                starts += [i] if EN_NAME_START.fullmatch(text) else []
                pieces += [i] if EN_NAME_PIECE.fullmatch(text) else []
            colon = COLON_FIRST.match(text)
            colons += (
                [i] if colon and colon.group(0).strip() == ("：" if lang == "zh" else ":") else []
            )
        known[lang] = NameTokens(
            *(torch.tensor(x, dtype=torch.long) for x in (starts, pieces, colons))
        )
    return known[lang]


class EndWhenReady:
    """No line break or end of text until `ready(head + the text written so far)`."""

    def __init__(self, tokenizer: Tokenizer, ready: Callable[[str], bool], head: str = "") -> None:
        self.tokenizer = tokenizer
        self.ready = ready
        self.head = head
        self.ends = line_end_ids(tokenizer)

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        waiting = [
            row for row in range(scores.shape[0])
            if not self.ready(self.head + self.tokenizer.decode(state.generated(row)))
        ]  # fmt: skip
        if not waiting:
            return scores
        scores = scores.clone()
        ends = self.ends.to(scores.device)
        for row in waiting:
            scores[row, ends] = NEG_INF
        return scores


class NameFirst:
    """A character line begins with a name — capitalised words (English), a surname and up
    to three more characters (Chinese) — and a colon follows it within `NAME_WORDS` words
    (Chinese: `NAME_CHARS` characters)."""

    NAME_WORDS, NAME_CHARS, NAME_TOKENS = 3, 4, 8

    def __init__(self, tokenizer: Tokenizer, lang: str) -> None:
        self.tokenizer = tokenizer
        self.lang = lang
        self.tokens = name_tokens(tokenizer, lang)

    def allowed(self, generated: list[int]) -> torch.Tensor | None:
        """The tokens allowed next (None: any, once the colon is written)."""
        if not generated:
            return self.tokens.starts
        text = self.tokenizer.decode(generated)
        if ":" in text or "：" in text:
            return None
        long = (
            len(HAN.findall(text)) >= self.NAME_CHARS
            if self.lang == "zh"
            else len(text.split()) >= self.NAME_WORDS
        )
        if long or len(generated) >= self.NAME_TOKENS:
            return self.tokens.colons
        return torch.cat([self.tokens.pieces, self.tokens.colons])

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        out = scores
        for row in range(scores.shape[0]):
            allowed = self.allowed(state.generated(row))
            if allowed is None:
                continue
            if out is scores:
                out = scores.clone()
            allowed = allowed.to(scores.device)
            kept = scores[row, allowed]
            out[row] = NEG_INF
            out[row, allowed] = kept
        return out
