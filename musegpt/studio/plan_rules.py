"""Constraints that make a story plan's line come out in its shape on the first draw.

A small base model often ends a plan line too soon ("Rachel and Sophie" for a synopsis,
"家里的雪了。" for a beat) or begins a character line with anything but a name ("30 year
old girl who…", "2nd detective:", "房东："). These logits processors rule such tokens out
while decoding, so the line the model writes is one the plan's checks can keep:

* `EndWhenReady`: the line may not end (a line break, the end of text) until the text so
  far is ready, e.g. holds a whole sentence of enough words;
* `BeginWith`: the line's first token is one of a set, e.g. a capitalised word or a
  Chinese surname.

The token sets depend only on the vocabulary and are computed once per tokenizer.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection

import torch

from musegpt.generation.processors import NEG_INF, DecodeState
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


def starting_ids(tokenizer: Tokenizer, starts: Callable[[str], bool]) -> torch.Tensor:
    """The tokens whose text (a leading space aside) passes `starts`."""
    ids = []
    for i in range(tokenizer.vocab_size):
        try:
            text = tokenizer.token_bytes(i).decode("utf-8").lstrip(" ")
        except UnicodeDecodeError:
            continue  # a piece of a character: it begins nothing by itself
        if text and starts(text):
            ids.append(i)
    return torch.tensor(ids, dtype=torch.long)


_name_starts: weakref.WeakKeyDictionary[Tokenizer, dict[str, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def name_start_ids(tokenizer: Tokenizer, lang: str) -> torch.Tensor:
    """Tokens a character's name may begin with: a capitalised word (English), a surname
    or a familiar prefix (Chinese)."""
    known = _name_starts.setdefault(tokenizer, {})
    if lang not in known:
        if lang == "zh":
            known[lang] = starting_ids(tokenizer, lambda t: t[0] in ZH_NAME_STARTS)
        else:
            known[lang] = starting_ids(tokenizer, lambda t: t[0].isascii() and t[0].isupper())
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


class BeginWith:
    """The first token written is one of `allowed` (token ids)."""

    def __init__(self, allowed: torch.Tensor | Collection[int]) -> None:
        self.allowed = torch.as_tensor(list(allowed) if not isinstance(allowed, torch.Tensor)
                                       else allowed, dtype=torch.long)  # fmt: skip

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        first = [row for row in range(scores.shape[0]) if not state.generated(row)]
        if not first:
            return scores
        kept = torch.full_like(scores[0], NEG_INF)
        allowed = self.allowed.to(scores.device)
        scores = scores.clone()
        for row in first:
            kept.fill_(NEG_INF)
            kept[allowed] = scores[row, allowed]
            scores[row] = kept
        return scores
