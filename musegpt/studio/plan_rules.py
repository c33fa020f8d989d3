"""Constraints that make a story plan's line come out in its shape on the first draw.

A small base model often ends a plan line too soon ("Rachel and Sophie" for a synopsis,
"家里的雪了。" for a beat) or begins a character line with anything but a name ("30 year
old girl who…", "2nd detective:", "房东："). These logits processors rule such tokens out
while decoding, so the line the model writes is one the plan's checks can keep:

* `EndWhenReady`: the line may not end (a line break, the end of text) until the text so
  far is ready, e.g. holds a whole sentence of enough words;
* `NameFirst`: a character line is a name (capitalised words; Chinese: a surname and a
  few characters), then a colon, then anything;
* `Favour`: the premise's words raised until one is written (the hero's description);

and `phrase_pairs` / `echo_outside` build `banned_regex` patterns for an example's phrases
and for the runs of earlier lines, so a line says its own thing.

The token sets depend only on the vocabulary and are computed once per tokenizer.
"""

from __future__ import annotations

import itertools
import re
import weakref
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch

from musegpt.generation.processors import NEG_INF, BanInText, DecodeState
from musegpt.studio import plan_checks as checks
from musegpt.studio.text import HAN, Lang, cut_ngram_loops, echo_pattern
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

_vocab_bytes: weakref.WeakKeyDictionary[Tokenizer, list[bytes]] = weakref.WeakKeyDictionary()


def vocab_bytes(tokenizer: Tokenizer) -> list[bytes]:
    """Each token's bytes, read from the tokenizer once: every table below is derived from
    this list (each reading Gemma's 262k tokens again cost about a second)."""
    found = _vocab_bytes.get(tokenizer)
    if found is None:
        found = tokenizer.all_token_bytes()
        _vocab_bytes[tokenizer] = found
    return found


_line_ends: weakref.WeakKeyDictionary[Tokenizer, dict[bool, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)
SENTENCE_END_BYTES = tuple(mark.encode() for mark in ".!?。！？")


def line_end_ids(tokenizer: Tokenizer, sentences: bool = False) -> torch.Tensor:
    """The tokens that end a line: any holding a line break, and the end-of-text tokens;
    with `sentences`, also any holding a sentence end."""
    known = _line_ends.setdefault(tokenizer, {})
    if sentences not in known:
        marks = (b"\n", *(SENTENCE_END_BYTES if sentences else ()))
        # One regex search a token: testing each mark in turn took ~0.9 s over Gemma's 262k.
        holds_mark = re.compile(b"|".join(re.escape(m) for m in marks)).search
        ids = {i for i, data in enumerate(vocab_bytes(tokenizer)) if holds_mark(data)}
        ids |= set(getattr(tokenizer, "stop_ids", ())) | {tokenizer.eot_id}
        known[sentences] = torch.tensor(sorted(ids), dtype=torch.long)
    return known[sentences]


_name_tables: weakref.WeakKeyDictionary[Tokenizer, dict[str, NameTokens]] = (
    weakref.WeakKeyDictionary()
)
EN_NAME_START = re.compile(r" ?[A-Z][A-Za-z'-]*")
EN_NAME_PIECE = re.compile(r" ?[A-Z][A-Za-z'-]*|[a-z'-]+")  # a new word, or the word going on
ZH_NAME_PIECE = re.compile(r"[\u4e00-\u9fff·]{1,3}")
COLON_FIRST = re.compile(r" ?[:：]")
# Any script's digits: with ASCII ones banned, Gemma wrote "a robot, ๖ years old".
DIGIT = re.compile(r"\d")
# A digit, or a sign that only stands beside one: with digits banned, chapters wrote "He buys
# a house for $" and broke the line there ("…pay you $\nthis week").
NUMBER_SIGN = re.compile(r"[\d$£€¥%]")


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
        for i, data in enumerate(vocab_bytes(tokenizer)):
            try:
                text = data.decode("utf-8")
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
    """No line break or end of text until `ready(head + the text written so far)` (with
    `sentences`, no sentence end either)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        ready: Callable[[str], bool],
        head: str = "",
        sentences: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.ready = ready
        self.head = head
        self.ends = line_end_ids(tokenizer, sentences)

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


def phrase_pairs(examples: Sequence[str]) -> str:
    """A `banned_regex` for two phrases in a row as one of the `examples` has them (their
    phrases split at punctuation): a style is then not an example's with one word changed
    (seen: "幽默，平实，第一人称，口语化" after "温暖、平实，第一人称，口语化")."""
    pairs: set[tuple[str, str]] = set()
    for example in examples:
        phrases = [p.strip() for p in re.split(r"[、，,；;。.!！]", example) if p.strip()]
        pairs |= set(itertools.pairwise(phrases))
    if not pairs:
        return r"(?!)"  # matches nothing
    parts = sorted(r"\W*".join(re.escape(x) for x in pair) for pair in pairs)
    return r"(?i)(?:" + "|".join(parts) + ")"


def echo_outside(
    texts: Sequence[str], given: str, names: Sequence[str], words: int, chars: int
) -> str:
    """A `banned_regex` for a run of `words` words (Chinese: `chars` characters) of `texts`
    that `given` (the premise) lacks, the runs that hold one of the `names` left out: a
    line says its own thing, though it names the same people (beats: "彭大青听见树木的女孩，
    六十岁" then "乔敏听见树木的女孩，六十岁")."""
    cut = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True) if n))
    # `echo_pattern` takes no run across a brace (its templates' slots): a name is one.
    pieces = [cut.sub("{}", text) if cut.pattern else text for text in texts]
    return echo_pattern("{}".join(pieces), given, words=words, chars=chars)


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


_vocab_texts: weakref.WeakKeyDictionary[Tokenizer, list[str]] = weakref.WeakKeyDictionary()


def vocab_texts(tokenizer: Tokenizer) -> list[str]:
    """Each token's text ("" for a piece of a character), computed once per tokenizer."""
    found = _vocab_texts.get(tokenizer)
    if found is None:
        found = [
            data.decode("utf-8", errors="replace").replace("\ufffd", "")
            for data in vocab_bytes(tokenizer)
        ]
        _vocab_texts[tokenizer] = found
    return found


_han_tokens: weakref.WeakKeyDictionary[Tokenizer, list[tuple[int, str]]] = (
    weakref.WeakKeyDictionary()
)


def han_tokens(tokenizer: Tokenizer) -> list[tuple[int, str]]:
    """The tokens that hold a Han character, with their text (about 20,000 of Gemma's
    262,144): where Chinese words and characters are looked for. Once per tokenizer."""
    found = _han_tokens.get(tokenizer)
    if found is None:
        texts = vocab_texts(tokenizer)
        found = _han_tokens[tokenizer] = [(i, t) for i, t in enumerate(texts) if HAN.search(t)]
    return found


# A character OpenCC makes simplified that simplified Chinese also writes (乾坤, 乾隆).
BOTH_SCRIPTS = frozenset("乾")
_traditional: weakref.WeakKeyDictionary[Tokenizer, list[int]] = weakref.WeakKeyDictionary()


def traditional_ids(tokenizer: Tokenizer) -> list[int]:
    """The tokens holding a traditional (or Japanese) form of a character, which simplified
    Chinese writes otherwise (seen: a chapter kept off 结婚 wrote 結婚, and went on in
    traditional script: 說, 為什麼). Once per tokenizer."""
    found = _traditional.get(tokenizer)
    if found is None:
        import opencc  # only Chinese stories need it

        han = han_tokens(tokenizer)
        chars = sorted({c for _, text in han for c in text if HAN.match(c)})
        # One call for all (a line each: no phrase of the converter spans two).
        simple = opencc.OpenCC("t2s").convert("\n".join(chars)).split("\n")
        changed = {c for c, s in zip(chars, simple, strict=True) if s != c} - BOTH_SCRIPTS
        found = _traditional[tokenizer] = [i for i, text in han if changed & set(text)]
    return found


_matching: weakref.WeakKeyDictionary[Tokenizer, dict[str, list[int]]] = weakref.WeakKeyDictionary()


def matching_ids(tokenizer: Tokenizer, pattern: re.Pattern[str]) -> list[int]:
    """The tokens whose text `pattern` finds, once per tokenizer and pattern."""
    found = _matching.setdefault(tokenizer, {})
    if pattern.pattern not in found:
        texts = vocab_texts(tokenizer)
        found[pattern.pattern] = [i for i, t in enumerate(texts) if pattern.search(t)]
    return found[pattern.pattern]


def digit_ids(tokenizer: Tokenizer) -> list[int]:
    """The tokens holding a digit or a sign that goes with one ($, %), which fiction writes
    in words (seen in English chapters: "someone he wanted 32 years to be a part of", '"
    18, it's a lot."', "(see page 3)", 20 in 24 chapters; Chinese: "1931年12月16日 - 30日"
    as a line of its own, 4 in 24)."""
    return matching_ids(tokenizer, NUMBER_SIGN)


_word_starts: weakref.WeakKeyDictionary[
    Tokenizer, dict[tuple[frozenset[str], str], torch.Tensor]
] = weakref.WeakKeyDictionary()


def word_start_ids(tokenizer: Tokenizer, words: Collection[str], lang: str) -> torch.Tensor:
    """The tokens that begin one of `words` or are one begun (Chinese: characters leading
    a keyword, "机" or "机器人" for 机器; English: three letters or more of the word); kept
    per tokenizer (a story asks for its premise's words once per beat and chapter, each a
    pass over the vocabulary)."""
    known = _word_starts.setdefault(tokenizer, {})
    key = (frozenset(words), lang)
    if key not in known:
        known[key] = scan_word_starts(tokenizer, words, lang)
    return known[key]


_piece_index: weakref.WeakKeyDictionary[Tokenizer, dict[str, dict[str, list[tuple[int, str]]]]] = (
    weakref.WeakKeyDictionary()
)


def piece_index(tokenizer: Tokenizer, lang: str) -> dict[str, list[tuple[int, str]]]:
    """The tokens that may begin a word, as (id, lower-cased piece), by the piece's head:
    its first character (Chinese: a Han character) or first three letters (English: pieces
    of three letters or more). A token and a word that begin one another share that head,
    so each word looks in one bucket (a chapter's steps each ask for their own words: a
    pass over Gemma's 262k tokens a step cost about half a second)."""
    known = _piece_index.setdefault(tokenizer, {})
    if lang not in known:
        index: dict[str, list[tuple[int, str]]] = {}
        width = 1 if lang == "zh" else 3
        for i, text in enumerate(vocab_texts(tokenizer)):
            piece = text.strip().lower()
            if lang == "zh" and not (piece and HAN.fullmatch(piece[0])):
                continue
            if lang != "zh" and not (len(piece) >= 3 and piece.isalpha()):
                continue
            index.setdefault(piece[:width], []).append((i, piece))
        known[lang] = index
    return known[lang]


def scan_word_starts(tokenizer: Tokenizer, words: Collection[str], lang: str) -> torch.Tensor:
    """`word_start_ids`, read from the vocabulary's index of word heads."""
    index, width = piece_index(tokenizer, lang), 1 if lang == "zh" else 3
    ids: set[int] = set()
    for word in words:
        for i, piece in index.get(word[:width], []):
            if word.startswith(piece) or piece.startswith(word):
                ids.add(i)
    return torch.tensor(sorted(ids), dtype=torch.long)


def whole_words(
    tokenizer: Tokenizer, ids: torch.Tensor, written: Callable[[str], bool]
) -> list[int]:
    """The tokens of `ids` that write a word by themselves (`written` accepts their text)."""
    texts = vocab_texts(tokenizer)
    return [i for i in ids.tolist() if written(texts[i])]


class Favour:
    """Raise the scores of tokens that begin one of `words` by `bias`, in the text after
    `after` (e.g. a character line's colon) until one of them is written: a nudge, where
    the other constraints only rule tokens out (the hero's description names the premise:
    unnudged, Gemma described the robot of "一个发现爱情的机器人" as "男人，穿长裤…").
    With `whole`, only tokens that are a whole word (that `written` accepts alone): in a
    long text a nudged "爱" that never became 爱情 was written again and again
    ("爱自己，爱自己的爱人，爱自己…"). With `window`, "written" means within the last
    `window` characters of `context` (the text before this call's) and the text decoded:
    a long chapter is nudged again once the word is that far behind, and a continuation
    is not nudged while its head has just said it. With `enough`, the nudge goes on until
    `enough` holds of the text instead (e.g. two of the words written, not one)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        words: Collection[str],
        lang: str,
        written: Callable[[str], bool],
        after: str = "",
        bias: float = 4.0,
        whole: bool = False,
        context: str = "",
        window: int | None = None,
        enough: Callable[[str], bool] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.words, self.lang = sorted(words, key=len, reverse=True), lang  # longest first
        self.written = written
        self.enough = written if enough is None else enough
        self.after = after
        self.bias = bias
        self.context, self.window = context, window
        self.ids = word_start_ids(tokenizer, words, lang)
        if whole:  # only tokens that write a word by themselves: "爱情", not "爱" (see above)
            self.ids = torch.tensor(whole_words(tokenizer, self.ids, written), dtype=torch.long)

    def nudged(self, state: DecodeState) -> list[int]:
        """The rows not yet written a word (in the window): those raised."""
        rows = []
        for row in range(len(state.sequences)):
            text = self.tokenizer.decode(state.generated(row))
            _, sep, tail = text.partition(self.after) if self.after else ("", "", text)
            if self.window is not None:
                tail = (self.context + tail)[-self.window :]
            if not ((self.after and not sep) or self.enough(tail)):
                rows.append(row)
        return rows

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        rows = self.nudged(state)
        if not rows:
            return scores
        out = scores.clone()
        self._raise(state, out, rows)
        return out

    def apply_(self, state: DecodeState, scores: torch.Tensor) -> None:
        """As `__call__`, on `scores` itself (`processors.InPlace`)."""
        self._raise(state, scores, self.nudged(state))

    def _raise(self, state: DecodeState, scores: torch.Tensor, rows: list[int]) -> None:
        for row in rows:
            scores[row, self.ids] += self.bias


class Spell(Favour):
    """`Favour` for words the vocabulary has no token for (Gemma writes 收音机 and 码头 a
    character at a time): while none of `words` is written, the tokens that begin one are
    raised by `bias`; once the text ends with the start of one, the tokens that go on with
    it are raised by `finish` instead (a raised 码 that never became 码头 would be raised
    again and again, as a nudged 爱 was)."""

    def __init__(self, *args: Any, finish: float = 6.0, **options: Any) -> None:
        super().__init__(*args, **options)
        self.finish = finish

    def going_on(self, text: str, words: Sequence[str] | None = None) -> torch.Tensor | None:
        """The tokens that go on with a word (of `words`, by default all) `text` ends with
        the start of, if any."""
        for word in self.words if words is None else words:
            for size in range(min(len(word) - 1, len(text)), 0, -1):
                if text.endswith(word[:size]):
                    return word_start_ids(self.tokenizer, {word[size:]}, self.lang)
        return None

    def _raise(self, state: DecodeState, scores: torch.Tensor, rows: list[int]) -> None:
        for row in rows:
            text = self.tokenizer.decode(state.generated(row)) or self.context
            ids = self.going_on(text)
            if ids is not None and len(ids):
                scores[row, ids] += self.finish
            else:
                scores[row, self.ids] += self.bias


class FavourUnsaid(Spell):
    """Raise the words of `words` not yet written, each until it is (Chinese spelt on as in
    `Spell`), while `enough` does not hold of the text: a rewrite keeps its passage's
    words. Unnudged, 11 of 14 noir rewrites of "The train was late, so we walked home."
    kept fewer than two of train, late, walked, home and were drawn again; raised all
    together, a word already said would be raised again."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        words: Collection[str],
        lang: str,
        enough: Callable[[str], bool],
        bias: float = 4.0,
    ) -> None:
        super().__init__(tokenizer, words, lang, lambda text: False, bias=bias, enough=enough)
        self.text_lang: Lang = "zh" if lang == "zh" else "en"
        self.each: dict[str, list[int]] = {}
        for word in self.words:
            ids = word_start_ids(tokenizer, {word}, lang)
            said = partial(checks.says_any, {word}, self.text_lang)
            # Chinese spelt on (`Spell`); English whole words only (see `Favour`)
            self.each[word] = ids.tolist() if lang == "zh" else whole_words(tokenizer, ids, said)

    def _raise(self, state: DecodeState, scores: torch.Tensor, rows: list[int]) -> None:
        for row in rows:
            text = self.tokenizer.decode(state.generated(row))
            if not text.strip():  # the first word is the model's: raised, a word opened
                continue  # telegrams ("waited to see if train…", "River flood, bridge…")
            unsaid = [w for w in self.words if not checks.says_any({w}, self.text_lang, text)]
            going = self.going_on(text, unsaid) if self.lang == "zh" else None
            if going is not None and len(going):
                scores[row, going] += self.finish
                continue
            ids = sorted({i for word in unsaid for i in self.each[word]})
            if ids:
                scores[row, ids] += self.bias


def word_nudge(
    tokenizer: Tokenizer,
    words: Collection[str],
    lang: str,
    written: Callable[[str], bool],
    **options: Any,
) -> Favour:
    """The nudge toward one of `words` until `written`: in Chinese spelt a character at a
    time where Gemma has no token for the word (`Spell`: 雨夜, 小吃, 灯塔 have none, and a
    whole-token nudge raised nothing for them), in English whole words only."""
    if lang == "zh":
        return Spell(tokenizer, words, lang, written, **options)
    return Favour(tokenizer, words, lang, written, whole=True, **options)


class JudgedWhenEnded(BanInText):
    """A rule about a row's ended stretches (clauses, sentences): judged only when one ends
    (an `END` mark among the newest characters), and again only when the text up to its
    last mark changed, not on every token after it; takes back from the start of the first
    banned stretch whose end is not yet streamed."""

    END: ClassVar[re.Pattern[str]]
    LOOK_BACK = 8  # characters: a stretch ends in the newest token's

    def __init__(self) -> None:
        self.judged: dict[str, list[tuple[int, int]]] = {}  # ended text -> banned spans

    def spans(self, ended: str) -> list[tuple[int, int]]:
        """The banned stretches of `ended` (text whose last stretch has just ended)."""
        raise NotImplementedError

    def banned_at(self, text: str, shown: int) -> int | None:
        ends = list(self.END.finditer(text, max(len(text) - self.LOOK_BACK, 0)))
        if not ends:
            return None  # nothing ended just now (most tokens): nothing new to judge
        ended = text[: ends[-1].end()]
        found = self.judged.get(ended)
        if found is None:
            if len(self.judged) >= 4:  # a few rows' latest: a batch's rows take turns
                self.judged.clear()
            found = self.judged[ended] = self.spans(ended)
        return next((start for start, end in found if end >= shown), None)


class EchoedSentences(JudgedWhenEnded):
    """A draft's sentence may not echo one of the story's (`before`: the earlier chapters
    and the chapter so far) or of the draft: `checks.echoed_sentences`, a sentence told
    again with a word or two swapped. Taken back from its start, whose first token is then
    blocked. A sentence `before` leaves unfinished (a round that ran out of tokens, the
    name a chapter's first sentence begins with) is judged whole, with the draft's first."""

    END = checks.SENTENCE_OR_LINE_END

    def __init__(self, lang: Lang, before: str) -> None:
        super().__init__()
        self.lang = lang
        pieces = checks.sentences(before)
        self.unfinished = pieces[-1] if pieces and not checks.ENDED.search(pieces[-1]) else ""
        whole = before[: len(before) - len(self.unfinished)]
        self.before = checks.said_sentences(whole, lang)  # split once, not on every sentence

    def spans(self, ended: str) -> list[tuple[int, int]]:
        shift = len(self.unfinished)
        found = checks.echoed_sentences(self.unfinished + ended, self.lang, self.before)
        return [(max(start - shift, 0), end - shift) for start, end in found if end > shift]


class SaidTwice(JudgedWhenEnded):
    """A plan field may not say a clause again, nor an English word twice in a row
    (`checks.says_twice`, which refuses the field once drawn), nor name a second person or
    tense (English; Chinese styles: `Phrases`): judged as each clause ends and taken back
    from the clause that says it again, whose first token is then blocked there. Seen:
    "First person, first person, past tense. It's the night before…" went on for forty
    tokens to be refused whole, a style redrawn on a quarter of the failing first draws."""

    END = re.compile(r"[,，、;；。.!?！？]")

    def spans(self, ended: str) -> list[tuple[int, int]]:
        found = checks.said_again(ended)
        for kind in checks.ONE_OF:
            found += [(m.start(), m.end()) for m in list(kind.finditer(ended))[1:2]]
        return sorted(found)


_pieces: weakref.WeakKeyDictionary[Tokenizer, dict[str, list[int]]] = weakref.WeakKeyDictionary()
PIECE_MOST = 8  # characters: the longest token text `short_pieces` keeps


def short_pieces(tokenizer: Tokenizer) -> dict[str, list[int]]:
    """The tokens whose text is one to `PIECE_MOST` whole characters, by that text (once per
    tokenizer): where a rule looks up the tokens that write a given short stretch."""
    found = _pieces.get(tokenizer)
    if found is None:
        found = {}
        for token_id, text in enumerate(vocab_texts(tokenizer)):
            if 0 < len(text) <= PIECE_MOST:
                found.setdefault(text, []).append(token_id)
        _pieces[tokenizer] = found
    return found


class Phrases:
    """A line written only in `phrases` joined by `separators` and closed by `end` (then the
    line ends): each step allows the tokens that go on along a phrase the piece being
    written begins, or close it with a separator. For a field a small model fills with
    words that are no words: Chinese styles came out "前人称", "人称物", "二元代", "逻辑化"
    (12 of 20 plans) or no style ("感情，情感，故事，开头"); no two of one `exclusive` group
    ("第一人称，第三人称"). Written for unspaced scripts (Chinese).
    A row whose text left the phrases (a take-back, a program-written head), or whose
    every allowed token is blocked, is left as it is."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        phrases: Collection[str],
        separators: str = "，、",
        end: str = "。",
        exclusive: Sequence[Collection[str]] = (),
    ) -> None:
        self.tokenizer, self.phrases = tokenizer, sorted(set(phrases))
        self.exclusive = [set(group) for group in exclusive]  # one of each group at most
        self.separators, self.end = separators, end
        self.texts = short_pieces(tokenizer)
        self.line_ends = set(line_end_ids(tokenizer).tolist())
        self.marks = re.compile(f"[{re.escape(separators + end)}]")

    def allowed(self, text: str) -> set[int] | None:
        """The tokens that may follow `text` (the row's line so far), or None for any."""
        text = text.lstrip()
        if text.endswith(self.end):
            return self.line_ends
        *written, piece = self.marks.split(text)
        taken = {p for group in self.exclusive if group & set(written) for p in group}
        rests = [p[len(piece) :] for p in self.phrases if p.startswith(piece) and p not in taken]
        if not rests:
            return None
        closes = self.separators + self.end
        wanted = {rest[:k] for rest in rests for k in range(1, len(rest) + 1)}
        wanted |= {rest + mark for rest in rests for mark in closes}
        return {i for piece_text in wanted for i in self.texts.get(piece_text, ())}

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        for row in range(scores.shape[0]):
            allowed = self.allowed(self.tokenizer.decode(state.generated(row)))
            blocked = state.blocked[row] if row < len(state.blocked) else ()
            if allowed is None or not (allowed := allowed - set(blocked)):
                continue
            keep = torch.tensor(sorted(allowed), dtype=torch.long, device=scores.device)
            kept = scores[row, keep]
            scores[row] = NEG_INF
            scores[row, keep] = kept
        return scores


class LoopTakenBack(BanInText):
    """A word or a few (Chinese: characters) said a third time running is taken back from
    its second time, which is then blocked there, instead of the line being stopped as a
    loop (`text.cut_ngram_loops`, what the writer's watch stops on). Seen: Chinese beats
    stopped at "顾青画" by "画画画画": 5 of 20 outlines redrawn."""

    def banned_at(self, text: str, shown: int) -> int | None:
        kept = cut_ngram_loops(text)
        return len(kept) if len(kept) < len(text) and len(kept) >= shown else None
