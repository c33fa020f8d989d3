"""Constrained decoding for poetic forms: a logits processor that only lets a model write
text in the form.

`form_constraints(form, tokenizer)` gives the processors to pass to the decoder. At every
step the processor reads what each row has written so far, works out where it stands
(which line, how many syllables or characters the line has, the word being spelled) and
sets to -inf every token that would break the form:

* English: words come from a pronouncing lexicon (the CMU dictionary by default), so every
  syllable is counted exactly as the checker counts it. A word may only be spelled on
  towards lexicon words that still fit the line; a line ends (newline) only when its
  syllables are within budget and its last word rhymes as the scheme asks (the word
  closing a rhyme must come from the rhymes of the line that opened it; the word opening
  one must have enough rhymes for the lines to come). When the budget is spent, only
  punctuation and the newline remain.
* Chinese: Han characters are counted as they are written (a character split over
  several byte-level tokens counts once, when complete); a line's last character must
  share a rhyme group with the lines it rhymes with (平水韵 or 中华新韵), and in strict mode
  every character at a key position must keep the 平仄 of a regulated-verse template that
  the poem can still follow.
* After the last line only end-of-text is allowed.

Everything that depends only on the vocabulary (each token's letters, gaps, characters,
tones) is computed once per tokenizer and cached; a step costs a few dictionary look-ups
and vectorised masks, never a loop over the vocabulary.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch

from musegpt.forms import chinese, english, table_cache
from musegpt.forms.english import Lexicon, RhymeIndex
from musegpt.forms.form import Form, key_positions
from musegpt.generation.processors import NEG_INF, DecodeState, LogitsProcessor
from musegpt.tokenizer.base import Tokenizer

# Token kinds.
BANNED, LETTERS, GAP, GAP_LETTERS, NEWLINE, EOT = 0, 1, 2, 3, 4, 5  # English
HAN, HAN_PUNCT, HAN_NEWLINE = 1, 2, 3  # Chinese (EOT as above)

PUNCT = ",.;:!?"
_GAP_CHARS = " " + PUNCT
INTER_GAPS = frozenset({" ", *(p + " " for p in PUNCT)})  # between two words
INTER_PREFIXES = INTER_GAPS | frozenset(PUNCT)
END_GAPS = frozenset({"", *PUNCT})  # between a line's last word and its newline
_LETTERS_RE = re.compile(r"[A-Za-z']+")
_GAP_RE = re.compile(r"[ ,.;:!?]+")
_GAP_LETTERS_RE = re.compile(r"([ ,.;:!?]+)([A-Za-z']+)")
_NEWLINE_RE = re.compile(r"([ ,.;:!?]*)(\n+)")
_EN_LINE_RE = re.compile(r"[A-Za-z' ,.;:!?]*")
_ZH_PUNCT = "，。！？；,.!?;"
# How a token's letters are cased. A word is written lower, Title or UPPER: pieces cased
# otherwise ("oCheLtreE", "bEeN": a surname and a word in the CMU dictionary, spelt from
# Gemma's mixed-case pieces) are no English verse.
LOWER, TITLE, UPPER, MIXED = 0, 1, 2, 3


def letter_case(letters: str) -> int:
    """The casing class of `letters` (apostrophes aside)."""
    alpha = [c for c in letters if c.isalpha()]
    if not any(c.isupper() for c in alpha):
        return LOWER
    if all(c.isupper() for c in alpha):
        return UPPER
    if alpha[0].isupper() and not any(c.isupper() for c in alpha[1:]):
        return TITLE
    return MIXED


def cases_after(partial: str) -> tuple[int, ...]:
    """The casing classes a token may have to go on with the word begun as `partial`."""
    case = letter_case(partial) if any(c.isalpha() for c in partial) else None
    if case is None:
        return (LOWER, TITLE, UPPER)  # a new word
    if case == UPPER:  # "I" + "t", "A" + "ND"; "AN" + "D" only
        return (LOWER, UPPER) if sum(c.isalpha() for c in partial) == 1 else (UPPER,)
    return (LOWER,)


_MAX_CACHED_PREFIXES = 20000


def _any(mask: torch.Tensor) -> bool:
    """Whether any entry is set: numpy's any over a CPU tensor is ~20x faster than torch's
    over 262,144 entries on one thread (measured)."""
    if mask.device.type == "cpu":
        return bool(mask.detach().numpy().any())
    return bool(mask.any())


def _bits(low: int, high: int) -> int:
    """A mask with bits low..high set (syllable counts), 0 when the range is empty."""
    low = max(low, 1)
    high = min(high, Lexicon.MAX_SYLLABLES)
    if high < low:
        return 0
    return ((1 << (high + 1)) - 1) ^ ((1 << low) - 1)


def _split_utf8(data: bytes) -> tuple[str, bytes] | None:
    """Complete text and an incomplete trailing character; None for invalid UTF-8."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            text = data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        tail = data[cut:]
        if tail and not _incomplete_char(tail):
            return None
        return text, tail
    return None


def _char_length(lead: int) -> int:
    if 0xC0 <= lead < 0xE0:
        return 2
    if 0xE0 <= lead < 0xF0:
        return 3
    if 0xF0 <= lead < 0xF8:
        return 4
    return 0


def _incomplete_char(tail: bytes) -> bool:
    """`tail` is the start of one UTF-8 character, not yet complete."""
    need = _char_length(tail[0])
    return 0 < len(tail) < need and all(0x80 <= b < 0xC0 for b in tail[1:])


# ------------------------------------------------------------------ per-tokenizer tables

_TABLES: weakref.WeakKeyDictionary[Tokenizer, dict[str, Any]] = weakref.WeakKeyDictionary()


def _tables_for(tokenizer: Tokenizer) -> dict[str, Any]:
    try:
        return _TABLES.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no sharing
        return {}


def _english_arrays(tokenizer: Tokenizer) -> table_cache.Arrays:
    """Each token's part in English verse, as arrays (see `EnglishTable`)."""
    size = tokenizer.vocab_size
    kind = np.zeros(size, dtype=np.int8)
    gap_id = np.zeros(size, dtype=np.int32)
    newlines = np.zeros(size, dtype=np.int8)
    gaps = [""]
    gap_index = {"": 0}
    letter_tokens: list[int] = []
    letter_texts: list[str] = []
    case = np.full(size, MIXED, dtype=np.int8)
    max_letters = 1
    for token in range(size):
        if token == tokenizer.eot_id:
            kind[token] = EOT
            continue
        try:
            text = tokenizer.token_bytes(token).decode("utf-8")
        except (UnicodeDecodeError, ValueError):
            continue
        gap = letters = ""
        if _LETTERS_RE.fullmatch(text):
            k, letters = LETTERS, text
        elif _GAP_RE.fullmatch(text):
            k, gap = GAP, text
        elif m := _GAP_LETTERS_RE.fullmatch(text):
            k, gap, letters = GAP_LETTERS, m[1], m[2]
        elif m := _NEWLINE_RE.fullmatch(text):
            k, gap = NEWLINE, m[1]
            newlines[token] = min(len(m[2]), 3)
        else:
            continue
        kind[token] = k
        if gap not in gap_index:
            gap_index[gap] = len(gaps)
            gaps.append(gap)
        gap_id[token] = gap_index[gap]
        if letters:
            letter_tokens.append(token)
            letter_texts.append(letters.lower())
            case[token] = letter_case(letters)
            max_letters = max(max_letters, len(letters))
    return {
        "kind": kind,
        "gap_id": gap_id,
        "newlines": newlines,
        "gaps": table_cache.pack_lines(gaps),
        "gap_count": np.array(len(gaps)),
        "letter_tokens": np.array(letter_tokens, dtype=np.int32),
        "letter_texts": table_cache.pack_lines(letter_texts),
        "max_letters": np.array(max_letters),
        "case": case,
    }


def _table_identity(tokenizer: Tokenizer) -> str:
    """A vocabulary table's identity: the tokenizer's, and this file's (the code that
    classifies tokens), so an edited classification is never read from an old table."""
    return table_cache.hashed(
        table_cache.tokenizer_identity(tokenizer), table_cache.file_stamp(__file__)
    )


class EnglishTable:
    """What each token of a vocabulary does to English verse: its kind (letters, a gap of
    spaces and punctuation, gap then letters, newlines), its gap and its letters.

    Built once per tokenizer from its 262,144 (Gemma) token pieces and then read from the
    user cache (`EnglishTable.cached`); `EnglishTable.build` always builds afresh."""

    def __init__(
        self,
        arrays: table_cache.Arrays,
        vocab_size: int,
        eot_id: int,
        identity: str | None = None,
    ) -> None:
        self.vocab_size = vocab_size
        self.eot_id = eot_id
        self.identity = identity  # the tokenizer's, when tables may be kept on disk
        kind = torch.from_numpy(arrays["kind"].astype(np.int8))
        gap_id = torch.from_numpy(arrays["gap_id"].astype(np.int64))
        newlines = torch.from_numpy(arrays["newlines"].astype(np.int8))
        self.gaps: list[str] = table_cache.unpack_lines(arrays["gaps"], int(arrays["gap_count"]))
        letter_tokens = arrays["letter_tokens"].tolist()
        texts = table_cache.unpack_lines(arrays["letter_texts"], len(letter_tokens))
        self.letters: dict[int, dict[str, list[int]]] = {LETTERS: {}, GAP_LETTERS: {}}
        token_kinds = arrays["kind"]
        for token, text in zip(letter_tokens, texts, strict=True):
            self.letters[int(token_kinds[token])].setdefault(text, []).append(token)
        self.max_letters = int(arrays["max_letters"])
        # Per kind, every token with letters beside the index of its letters in `keys`.
        self._keys: dict[int, list[str]] = {}
        self._flat: dict[int, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
        for k, by_letters in self.letters.items():
            self._keys[k] = list(by_letters)
            tokens = [t for ids in by_letters.values() for t in ids]
            index = [i for i, ids in enumerate(by_letters.values()) for _ in ids]
            self._flat[k] = (np.array(tokens, dtype=np.int64), np.array(index, dtype=np.int64))
        self.kind = kind
        self.case = torch.from_numpy(arrays["case"].astype(np.int64))
        self.gap_id = gap_id
        self.newlines = newlines
        self.is_gap = kind == GAP
        self.is_gap_letters = kind == GAP_LETTERS
        self.one_newline = (kind == NEWLINE) & (newlines == 1)
        self.two_newlines = (kind == NEWLINE) & (newlines == 2)
        self.newline_only = self.one_newline & (gap_id == 0)
        self._gap_rules: dict[tuple[str, bool, bool], tuple[torch.Tensor, ...]] = {}
        self._gap_masks: dict[
            tuple[str, bool, bool], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
        ] = {}
        self._nodes: weakref.WeakKeyDictionary[
            Lexicon, dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]
        ] = weakref.WeakKeyDictionary()

    @classmethod
    def build(cls, tokenizer: Tokenizer) -> EnglishTable:
        return cls(_english_arrays(tokenizer), tokenizer.vocab_size, tokenizer.eot_id)

    @classmethod
    def cached(cls, tokenizer: Tokenizer) -> EnglishTable:
        identity = _table_identity(tokenizer)
        arrays = table_cache.cached_table(
            "english-tokens", identity, lambda: _english_arrays(tokenizer)
        )
        return cls(arrays, tokenizer.vocab_size, tokenizer.eot_id, identity)

    def gap_rules(
        self, gap: str, can_end: bool, more: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per gap string: may a GAP, GAP_LETTERS or NEWLINE token with it follow `gap`?"""
        key = (gap, can_end, more)
        if key not in self._gap_rules:
            fulls = [gap + g for g in self.gaps]
            self._gap_rules[key] = (
                torch.tensor(
                    [(more and f in INTER_PREFIXES) or (can_end and f in END_GAPS) for f in fulls],
                    dtype=torch.bool,
                ),
                torch.tensor([more and f in INTER_GAPS for f in fulls], dtype=torch.bool),
                torch.tensor([can_end and f in END_GAPS for f in fulls], dtype=torch.bool),
            )
        gap_ok, letters_ok, newline_ok = self._gap_rules[key]
        return gap_ok, letters_ok, newline_ok

    def gap_masks(
        self, gap: str, can_end: bool, more: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`gap_rules` spread over the vocabulary, (vocab,) bool each: the GAP tokens, the
        GAP_LETTERS tokens and the tokens (of any kind) whose gap may follow `gap`. Kept
        per rule: a step then costs no gather over 262,144 tokens."""
        key = (gap, can_end, more)
        found = self._gap_masks.get(key)
        if found is None:
            gap_ok, letters_ok, newline_ok = self.gap_rules(gap, can_end, more)
            found = (
                self.is_gap & gap_ok[self.gap_id],
                self.is_gap_letters & letters_ok[self.gap_id],
                newline_ok[self.gap_id],
            )
            self._gap_masks[key] = found
        return found

    def nodes(self, lexicon: Lexicon, prefix: str, kind: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids of `kind` whose letters continue `prefix` towards a lexicon word, and
        for each a bitmask of the syllable counts of the words it may still become."""
        cache = self._nodes.setdefault(lexicon, {})
        key = (prefix, kind)
        found = cache.get(key)
        if found is None:
            if len(cache) > _MAX_CACHED_PREFIXES:
                cache.clear()
            found = self._find_nodes(lexicon, prefix, kind)
            cache[key] = found
        return found

    def _find_nodes(
        self, lexicon: Lexicon, prefix: str, kind: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not prefix and self.identity is not None and lexicon.identity is not None:
            # Every word's start, for a lexicon that does not change: kept on disk.
            arrays = table_cache.cached_table(
                "english-word-starts",
                table_cache.hashed(self.identity, lexicon.identity, kind),
                lambda: self._word_starts(lexicon, kind),
            )
            return torch.from_numpy(arrays["ids"]), torch.from_numpy(arrays["masks"])
        return self._nodes_in(lexicon, prefix, kind)

    def _nodes_in(
        self, lexicon: Lexicon, prefix: str, kind: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self._keys[kind]
        lo, hi = lexicon.word_range(prefix)
        if hi - lo > len(keys):
            # Many words (the start of a word): ask for each token's letters, at the cost
            # of two bisections each, rather than walk every word's every continuation.
            masks = lexicon.prefix_masks([prefix + k for k in keys] if prefix else keys)
            tokens, index = self._flat[kind]
            token_masks = masks[index]
            keep = token_masks != 0
            return torch.from_numpy(tokens[keep]), torch.from_numpy(token_masks[keep])
        by_letters = self.letters[kind]
        ids: list[int] = []
        found: list[int] = []
        for continuation, mask in lexicon.nodes(prefix, self.max_letters).items():
            for token in by_letters.get(continuation, ()):
                ids.append(token)
                found.append(mask)
        return torch.tensor(ids, dtype=torch.long), torch.tensor(found, dtype=torch.long)

    def _word_starts(self, lexicon: Lexicon, kind: int) -> table_cache.Arrays:
        ids, masks = self._nodes_in(lexicon, "", kind)
        return {"ids": ids.numpy(), "masks": masks.numpy()}


@dataclass
class _TokenSet:
    """Per-token facts for Chinese verse, for the whole vocabulary or for the tokens that
    can complete a pending character."""

    ids: torch.Tensor  # (N,) token ids
    kind: torch.Tensor  # (N,) HAN / HAN_PUNCT / HAN_NEWLINE / EOT / BANNED
    hans: torch.Tensor  # (N,) complete Han characters
    partial: torch.Tensor  # (N,) bool: ends with the first bytes of a Han character
    punct: torch.Tensor  # (N,) bool: has end punctuation
    chars: torch.Tensor  # (N, K) registry ids of its Han characters, -1 padding
    last: torch.Tensor  # (N,) registry id of its last Han character, -1 none
    span_lo: torch.Tensor  # (N,) registry ids the partial character may still become:
    span_hi: torch.Tensor  # span_lo <= id < span_hi (0, 0 when there is none)
    tone_bits: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


@dataclass
class _ZhPiece:
    kind: int
    chars: list[int]
    hans: int
    partial: bytes = b""  # the first bytes of a character still to be completed
    punct: bool = False


def _registry_id(ch: str) -> int:
    code = ord(ch)
    if chinese.REGISTRY_START <= code < chinese.REGISTRY_END and chinese.is_han(ch):
        return code - chinese.REGISTRY_START
    return -1


def _span(partial: bytes) -> tuple[int, int]:
    """Registry ids of the three-byte characters that begin with `partial`."""
    if not partial:
        return 0, 0
    code = (partial[0] & 0x0F) << 12
    width = 4096
    if len(partial) > 1:
        code |= (partial[1] & 0x3F) << 6
        width = 64
    size = chinese.REGISTRY_END - chinese.REGISTRY_START
    lo = min(max(code - chinese.REGISTRY_START, 0), size)
    hi = min(max(code + width - chinese.REGISTRY_START, 0), size)
    return lo, hi


def _zh_piece(data: bytes) -> _ZhPiece | None:
    """What a run of bytes (with no leading continuation bytes) does to Chinese verse."""
    split = _split_utf8(data)
    if split is None:
        return None
    body, tail = split
    if tail and not 0xE4 <= tail[0] <= 0xE9:
        return None  # only a CJK ideograph may be left incomplete
    kind = HAN
    punct = False
    if body.endswith("\n"):
        if tail:
            return None
        body, kind = body[:-1], HAN_NEWLINE
    if body and body[-1] in _ZH_PUNCT:
        if tail:
            return None
        body, punct = body[:-1], True
        kind = HAN_PUNCT if kind == HAN else kind
    if not all(chinese.is_han(ch) for ch in body):
        return None
    if kind == HAN and not body and not tail:
        return None
    return _ZhPiece(kind, [_registry_id(ch) for ch in body], len(body), tail, punct)


def _token_set(ids: list[int], pieces: list[_ZhPiece | None], width: int) -> _TokenSet:
    n = len(ids)
    kind = [0] * n
    hans = [0] * n
    partial = [False] * n
    punct = [False] * n
    last = [-1] * n
    span_lo = [0] * n
    span_hi = [0] * n
    rows: list[int] = []
    cols: list[int] = []
    values: list[int] = []
    for row, piece in enumerate(pieces):
        if piece is None or piece.hans > width:
            continue
        kind[row] = piece.kind
        hans[row] = piece.hans
        partial[row] = bool(piece.partial)
        punct[row] = piece.punct
        span_lo[row], span_hi[row] = _span(piece.partial)
        if piece.chars:
            last[row] = piece.chars[-1]
            rows.extend([row] * len(piece.chars))
            cols.extend(range(len(piece.chars)))
            values.extend(piece.chars)
    chars = torch.full((n, width), -1, dtype=torch.long)
    if rows:
        chars[torch.tensor(rows), torch.tensor(cols)] = torch.tensor(values)
    return _TokenSet(
        torch.tensor(ids, dtype=torch.long),
        torch.tensor(kind, dtype=torch.int8),
        torch.tensor(hans, dtype=torch.long),
        torch.tensor(partial, dtype=torch.bool),
        torch.tensor(punct, dtype=torch.bool),
        chars,
        torch.tensor(last, dtype=torch.long),
        torch.tensor(span_lo, dtype=torch.long),
        torch.tensor(span_hi, dtype=torch.long),
    )


_ZH_WIDTH = 16  # tokens with more Han characters than this never fit a line


def _chinese_arrays(tokenizer: Tokenizer) -> table_cache.Arrays:
    """Each token's part in Chinese verse, as arrays (see `ChineseTable`)."""
    pieces: list[_ZhPiece | None] = []
    continuing: list[tuple[int, int, bytes]] = []  # tokens starting mid-character
    for token in range(tokenizer.vocab_size):
        try:
            data = tokenizer.token_bytes(token)
        except ValueError:
            data = b""
        if token == tokenizer.eot_id:
            pieces.append(_ZhPiece(EOT, [], 0))
            continue
        lead = 0
        while lead < min(len(data), 3) and 0x80 <= data[lead] < 0xC0:
            lead += 1
        if lead:
            continuing.append((token, lead, data))
            pieces.append(None)
        else:
            pieces.append(_zh_piece(data) if data else None)
    tokens = _token_set(list(range(tokenizer.vocab_size)), pieces, _ZH_WIDTH)
    rows, cols = torch.nonzero(tokens.chars >= 0, as_tuple=True)
    blob, lengths = table_cache.pack_bytes([data for _, _, data in continuing])
    return {
        "kind": tokens.kind.numpy(),
        "hans": tokens.hans.numpy().astype(np.int16),
        "partial": tokens.partial.numpy(),
        "punct": tokens.punct.numpy(),
        "last": tokens.last.numpy().astype(np.int32),
        "span_lo": tokens.span_lo.numpy().astype(np.int32),
        "span_hi": tokens.span_hi.numpy().astype(np.int32),
        "char_rows": rows.numpy().astype(np.int32),
        "char_cols": cols.numpy().astype(np.int8),
        "char_values": tokens.chars[rows, cols].numpy().astype(np.int32),
        "continuing_tokens": np.array([t for t, _, _ in continuing], dtype=np.int32),
        "continuing_leads": np.array([lead for _, lead, _ in continuing], dtype=np.int8),
        "continuing_bytes": blob,
        "continuing_lengths": lengths,
    }


class ChineseTable:
    """What each token of a vocabulary does to Chinese verse (kept in the user cache like
    `EnglishTable`: `ChineseTable.cached`, or `ChineseTable.build` afresh)."""

    WIDTH = _ZH_WIDTH

    def __init__(self, arrays: table_cache.Arrays, vocab_size: int, eot_id: int) -> None:
        self.vocab_size = vocab_size
        self.eot_id = eot_id
        chars = torch.full((vocab_size, self.WIDTH), -1, dtype=torch.long)
        rows = torch.from_numpy(arrays["char_rows"].astype(np.int64))
        cols = torch.from_numpy(arrays["char_cols"].astype(np.int64))
        chars[rows, cols] = torch.from_numpy(arrays["char_values"].astype(np.int64))

        def long(name: str) -> torch.Tensor:
            return torch.from_numpy(arrays[name].astype(np.int64))

        self.all = _TokenSet(
            torch.arange(vocab_size, dtype=torch.long),
            torch.from_numpy(arrays["kind"].astype(np.int8)),
            long("hans"),
            torch.from_numpy(arrays["partial"].astype(np.bool_)),
            torch.from_numpy(arrays["punct"].astype(np.bool_)),
            chars,
            long("last"),
            long("span_lo"),
            long("span_hi"),
        )
        # The tokens that start mid-character, by their number of leading continuation
        # bytes, and their bytes: what can complete a pending character.
        self.continuing: dict[int, list[int]] = {1: [], 2: [], 3: []}
        self.token_bytes: dict[int, bytes] = {}
        pieces = table_cache.unpack_bytes(arrays["continuing_bytes"], arrays["continuing_lengths"])
        tokens = arrays["continuing_tokens"].tolist()
        leads = arrays["continuing_leads"].tolist()
        for token, lead, data in zip(tokens, leads, pieces, strict=True):
            self.continuing[lead].append(token)
            self.token_bytes[token] = data
        self._pending: dict[bytes, _TokenSet] = {}
        self._tones: dict[str, torch.Tensor] = {}

    @classmethod
    def build(cls, tokenizer: Tokenizer) -> ChineseTable:
        return cls(_chinese_arrays(tokenizer), tokenizer.vocab_size, tokenizer.eot_id)

    @classmethod
    def cached(cls, tokenizer: Tokenizer) -> ChineseTable:
        arrays = table_cache.cached_table(
            "chinese-tokens", _table_identity(tokenizer), lambda: _chinese_arrays(tokenizer)
        )
        return cls(arrays, tokenizer.vocab_size, tokenizer.eot_id)

    def completing(self, pending: bytes) -> _TokenSet:
        """The tokens that complete the character begun by `pending` (as a Han character)
        and what each then does; other tokens cannot follow."""
        found = self._pending.get(pending)
        if found is None:
            need = _char_length(pending[0]) - len(pending)
            ids: list[int] = []
            pieces: list[_ZhPiece | None] = []
            for lead in range(1, need):
                # Continuation bytes alone (byte-fallback tokens): the character stays open.
                for token in self.continuing.get(lead, []):
                    if len(self.token_bytes[token]) == lead:
                        ids.append(token)
                        pieces.append(_ZhPiece(HAN, [], 0, pending + self.token_bytes[token]))
            for token in self.continuing.get(need, []):
                data = self.token_bytes[token]
                try:
                    ch = (pending + data[:need]).decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if not chinese.is_han(ch):
                    continue
                rest = data[need:]
                piece = _zh_piece(rest) if rest else _ZhPiece(HAN, [], 0)
                if piece is None:
                    continue
                piece.chars.insert(0, _registry_id(ch))
                piece.hans += 1
                ids.append(token)
                pieces.append(piece)
            found = _token_set(ids, pieces, self.WIDTH)
            self._pending[pending] = found
        return found

    def tone_bits(self, tokens: _TokenSet, system: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) bitmasks of the tokens' characters that are surely 平 and surely 仄 (bit j
        for the token's j-th Han character)."""
        found = tokens.tone_bits.get(system)
        if found is None:
            char_tones = _char_tables(system)[0]
            padded = torch.cat([char_tones, torch.zeros(1, dtype=torch.int8)])
            codes = padded[tokens.chars]  # -1 (padding) reads the trailing 0
            weights = 1 << torch.arange(codes.shape[1], dtype=torch.long)
            found = (
                ((codes == 1).long() * weights).sum(dim=1),
                ((codes == 2).long() * weights).sum(dim=1),
            )
            tokens.tone_bits[system] = found
        return found


_CHAR_TABLES: dict[str, tuple[torch.Tensor, torch.Tensor, list[str]]] = {}


def _char_tables(system: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """For every registry character: tone code, and a (chars, groups) membership matrix
    (read from the user cache; built from pypinyin's readings the first time)."""
    if system not in _CHAR_TABLES:
        try:
            pinyin = version("pypinyin")
        except PackageNotFoundError:
            pinyin = "absent"
        identity = table_cache.hashed(
            "chinese-chars", system, pinyin, table_cache.file_stamp(chinese.__file__)
        )
        arrays = table_cache.cached_table(
            f"chinese-chars-{system}", identity, lambda: _char_arrays(system)
        )
        names = table_cache.unpack_lines(arrays["names"], int(arrays["name_count"]))
        tones = torch.from_numpy(arrays["tones"].astype(np.int8))
        groups = torch.from_numpy(arrays["groups"].astype(np.bool_))
        _CHAR_TABLES[system] = (tones, groups, names)
    return _CHAR_TABLES[system]


def _char_arrays(system: str) -> table_cache.Arrays:
    """`_char_tables` built afresh."""
    from pypinyin import Style, lazy_pinyin

    count = chinese.REGISTRY_END - chinese.REGISTRY_START
    chars = [chr(chinese.REGISTRY_START + i) for i in range(count)]
    found = lazy_pinyin(
        chars, style=Style.TONE3, neutral_tone_with_five=True, errors=chinese.no_reading
    )
    readings = [chinese.reading_text(r) for r in found]
    if len(readings) != count:
        readings = [chinese.default_reading(ch) for ch in chars]
    names = (
        list(chinese.pingshui_group_names())
        if system == "pingshui"
        else list(chinese.XINYUN_GROUPS)
    )
    column = {g: j for j, g in enumerate(names)}
    tones = torch.zeros(count, dtype=torch.int8)
    groups = torch.zeros(count, len(names), dtype=torch.bool)
    code = {"平": 1, "仄": 2, "?": 0}
    for i, ch in enumerate(chars):
        if not chinese.is_han(ch):
            continue
        sound = chinese.char_sound(
            ch, "pingshui" if system == "pingshui" else "xinyun", readings[i]
        )
        tones[i] = code[sound.tone]
        for g in sound.groups:
            groups[i, column[g]] = True
    return {
        "tones": tones.numpy(),
        "groups": groups.numpy(),
        "names": table_cache.pack_lines(names),
        "name_count": np.array(len(names)),
    }


# ------------------------------------------------------------------ the processor


def _decode_generated(table_bytes: Sequence[bytes]) -> tuple[str, bytes] | None:
    return _split_utf8(b"".join(table_bytes))


class FormConstraint:
    """A logits processor that keeps each row's generated text in `form`."""

    def __init__(self, form: Form, tokenizer: Tokenizer, lexicon: Lexicon | None = None) -> None:
        self.form = form
        self.tokenizer = tokenizer
        tables = _tables_for(tokenizer)
        self._eot = tokenizer.eot_id
        self._only_eot = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        self._only_eot[self._eot] = True
        if form.language == "en":
            if "en" not in tables:
                tables["en"] = EnglishTable.cached(tokenizer)
            self.en: EnglishTable = tables["en"]
            self.lexicon = lexicon if lexicon is not None else english.cmu_lexicon()
            self.rhymes = _rhyme_index(self.lexicon)
        else:
            if "zh" not in tables:
                tables["zh"] = ChineseTable.cached(tokenizer)
            self.zh: ChineseTable = tables["zh"]
            system = form.rhyme_system
            self._char_tones, self._char_groups, names = _char_tables(system)
            self._ping_columns = torch.tensor(
                [chinese.is_ping_group(g) for g in names], dtype=torch.bool
            )
            self._final_cache: dict[tuple[Any, ...], torch.Tensor] = {}

    # -- the protocol ---------------------------------------------------------------------

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        masks = []
        for row in range(scores.shape[0]):
            allowed = self.allowed(state.generated(row))
            if allowed.shape[0] < vocab:
                allowed = torch.cat(
                    [allowed, torch.zeros(vocab - allowed.shape[0], dtype=torch.bool)]
                )
            masks.append(allowed[:vocab])
        keep = torch.stack(masks).to(scores.device)
        out = scores.masked_fill(~keep, NEG_INF)
        # A row whose every allowed token was already -inf (another processor banned them)
        # is left as it came: the checker will reject the text rather than the sampler fail.
        # (amax: one fast pass; torch's all/any over a long row are slow on one thread.)
        dead = (out.amax(dim=-1) == NEG_INF) & (scores.amax(dim=-1) != NEG_INF)
        if _any(dead):
            out[dead] = scores[dead]
        return out

    def allowed(self, generated: Sequence[int]) -> torch.Tensor:
        """(vocab,) bool: the tokens that may come after `generated`."""
        pieces = [self.tokenizer.token_bytes(t) for t in generated if t != self._eot]
        decoded = _decode_generated(pieces)
        if decoded is None:
            return self._only_eot.clone()
        text, pending = decoded
        if self.form.language == "en":
            if pending:
                return self._only_eot.clone()
            mask = self._english(text)
        else:
            mask = self._chinese(text, pending)
        if not _any(mask):
            mask = self._only_eot.clone()
        return mask

    # -- English --------------------------------------------------------------------------

    def _english(self, text: str) -> torch.Tensor:
        form, table = self.form, self.en
        raw = text.split("\n")
        done = [line for line in raw[:-1] if line.strip()]
        current = raw[-1]
        i = len(done)
        if i >= form.lines:
            return self._only_eot.clone()
        if not all(_EN_LINE_RE.fullmatch(line) for line in raw):
            return self._only_eot.clone()  # not text this processor wrote: give up
        match = re.search(r"[A-Za-z']+$", current)
        partial = match.group().lower() if match else ""
        go_on_cased = torch.zeros(MIXED + 1, dtype=torch.bool)
        go_on_cased[list(cases_after(match.group() if match else ""))] = True
        new_word_cased = torch.zeros(MIXED + 1, dtype=torch.bool)
        new_word_cased[list(cases_after(""))] = True
        head = current[: len(current) - len(partial)]
        gap = re.search(r"[^A-Za-z']*$", head)
        gap_text = gap.group() if gap else ""
        done_words = [w.lower() for w in re.findall(r"[A-Za-z']+", head)]
        used = sum(english.word_sound(w).syllables for w in done_words)
        budget = form.budgets[i]
        low, high = budget.low, budget.decode_high()
        final_lexicon = self._final_lexicon(i, done)
        min_final = max(final_lexicon.min_syllables, 1)

        allowed = torch.zeros(table.vocab_size, dtype=torch.bool)

        def letters(prefix: str, syllables: int, kind: int) -> torch.Tensor:
            """The ids of the `kind` tokens that spell on towards a word that fits."""
            found = []
            not_last = _bits(1, high - syllables - min_final)
            last = _bits(low - syllables, high - syllables)
            if not_last:
                ids, masks = table.nodes(self.lexicon, prefix, kind)
                found.append(ids[(masks & not_last) != 0])
            if last:
                ids, masks = table.nodes(final_lexicon, prefix, kind)
                found.append(ids[(masks & last) != 0])
            if not found:
                return torch.zeros(0, dtype=torch.long)
            ids = torch.cat(found)
            cased = go_on_cased if prefix else new_word_cased
            return ids[cased[table.case[ids]]]

        def after_word(syllables: int, word: str, gap: str) -> None:
            more = syllables + min_final <= high
            can_end = low <= syllables <= high and word in final_lexicon
            gaps, gap_letters, newline_ok = table.gap_masks(gap, can_end, more)
            allowed.logical_or_(gaps)
            if more:
                new_word = letters("", syllables, GAP_LETTERS)
                allowed[new_word[gap_letters[new_word]]] = True
                if gap in INTER_GAPS:
                    allowed[letters("", syllables, LETTERS)] = True
            if can_end:
                lines = table.one_newline
                if i + 1 in form.stanza_breaks:
                    lines = lines | table.two_newlines
                allowed.logical_or_(lines & newline_ok)
                if i == form.lines - 1 and gap in END_GAPS:
                    allowed[self._eot] = True

        if partial:
            allowed[letters(partial, used, LETTERS)] = True
            if partial in self.lexicon:
                after_word(used + english.word_sound(partial).syllables, partial, "")
        elif done_words:
            after_word(used, done_words[-1], gap_text)
        else:  # the start of a line
            allowed[letters("", 0, LETTERS)] = True
            if i in form.stanza_breaks and not current and raw[-2:-1] != [""]:
                allowed.logical_or_(table.newline_only)  # a blank line between stanzas
        if not _any(allowed):
            allowed.logical_or_(table.newline_only)  # no way on: end the line (the checker)
        return allowed

    def _final_lexicon(self, line: int, done: list[str]) -> Lexicon:
        """The words that may end line `line`: any word, the rhymes of the line that opened
        its rhyme, or (opening a rhyme) words that have enough rhymes."""
        form = self.form
        letter = form.rhyme_letter(line)
        if letter is None:
            return self.lexicon
        group = [j for j in range(form.lines) if form.rhyme_letter(j) == letter]
        earlier = [j for j in group if j < line]
        if not earlier:
            return self.rhymes.rhymable(len(group)) if len(group) > 1 else self.lexicon
        ends = [re.findall(r"[A-Za-z']+", done[j])[-1].lower() for j in earlier]
        keys = english.word_sound(ends[0]).rhyme_keys
        found = self.rhymes.rhymes_with(keys, ends) if keys else None
        return found if found is not None and len(found) else self.lexicon

    # -- Chinese --------------------------------------------------------------------------

    def _chinese(self, text: str, pending: bytes) -> torch.Tensor:
        form, table = self.form, self.zh
        raw = text.split("\n")
        done = [line for line in raw[:-1] if chinese.han_chars(line)]
        current = raw[-1]
        i = len(done)
        if i >= form.lines:
            return self._only_eot.clone()
        match = re.fullmatch(r"(.*?)([" + _ZH_PUNCT + r"]?)", current, re.S)
        if match is None or not all(chinese.is_han(ch) for ch in match[1]):
            return self._only_eot.clone()
        line_chars = [_registry_id(ch) for ch in match[1]]
        used = len(line_chars)
        ended = bool(match[2])
        budget = form.budgets[i]
        low, high = budget.low, budget.decode_high()
        final_ok = self._final_ok(i, done)
        patterns = self._fitting_patterns(done, line_chars, i)
        tokens = table.completing(pending) if pending else table.all

        def ok_char(index: torch.Tensor) -> torch.Tensor:
            if final_ok is None:
                return torch.ones(index.shape, dtype=torch.bool)
            return (index >= 0) & final_ok[index.clamp(min=0)]

        line_last_ok = bool(ok_char(torch.tensor(line_chars[-1:] or [-1]))[0]) if used else False
        new_used = used + tokens.hans
        last_ok = torch.where(tokens.hans > 0, ok_char(tokens.last), line_last_ok)
        fits_end = (new_used >= low) & (new_used <= high) & (new_used > 0) & last_ok
        han = (
            (tokens.kind == HAN)
            & (new_used + tokens.partial.long() <= high)
            & ~(((new_used == high) & ~tokens.partial) & ~last_ok)
        )
        punct = (tokens.kind == HAN_PUNCT) & fits_end
        newline = (tokens.kind == HAN_NEWLINE) & fits_end
        if ended:
            han = torch.zeros_like(han)
            punct = torch.zeros_like(punct)
            newline &= ~tokens.punct & (tokens.hans == 0)
        keep = han | punct | newline
        if patterns is not None:
            keep &= self._tone_ok(tokens, patterns, used)
        keep &= self._partial_ok(tokens, patterns, used, high, final_ok)
        allowed = torch.zeros(table.vocab_size, dtype=torch.bool)
        allowed[tokens.ids[keep]] = True
        if not pending and i == form.lines - 1 and low <= used <= high and line_last_ok:
            allowed[self._eot] = True
        if not bool(allowed.any()) and not pending:
            plain = (table.all.kind == HAN_NEWLINE) & (table.all.hans == 0) & ~table.all.punct
            allowed[table.all.ids[plain]] = True
        return allowed

    def _partial_ok(
        self,
        tokens: _TokenSet,
        patterns: list[str] | None,
        used: int,
        high: int,
        final_ok: torch.Tensor | None,
    ) -> torch.Tensor:
        """Tokens that leave a character incomplete: some character it may become must
        keep the tone of its position and, at the end of the line, the rhyme."""
        ok = torch.ones(tokens.ids.shape[0], dtype=torch.bool)
        if not bool(tokens.partial.any()):
            return ok
        position = used + tokens.hans
        for pos in torch.unique(position[tokens.partial]).tolist():
            choices = final_ok if pos == high - 1 else None
            if patterns is not None:
                compatible = self._tone_choices(patterns, pos)
                if compatible is not None:
                    choices = compatible if choices is None else choices & compatible
            if choices is None:
                continue
            counts = torch.zeros(choices.shape[0] + 1, dtype=torch.long)
            counts[1:] = torch.cumsum(choices.long(), 0)
            some = (counts[tokens.span_hi] - counts[tokens.span_lo]) > 0
            here = tokens.partial & (position == pos)
            ok[here] = some[here]
        return ok

    def _tone_choices(self, patterns: list[str], pos: int) -> torch.Tensor | None:
        """(registry,) bool: characters whose tone fits position `pos` of one of `patterns`
        (None: any tone does)."""
        out: torch.Tensor | None = None
        for pattern in patterns:
            if pos >= len(pattern) or pos not in key_positions(len(pattern)):
                return None
            wanted = pattern[pos]
            if wanted == "中":
                return None
            fits = self._char_tones != (2 if wanted == "平" else 1)
            out = fits if out is None else out | fits
        return out

    def _sound_of(self, index: int) -> tuple[int, frozenset[int]]:
        if index < 0:
            return 0, frozenset()
        columns = torch.nonzero(self._char_groups[index]).flatten().tolist()
        return int(self._char_tones[index]), frozenset(columns)

    def _final_ok(self, line: int, done: list[str]) -> torch.Tensor | None:
        """(registry,) bool: characters that may end line `line`; None = any."""
        form = self.form
        letter = form.rhyme_letter(line)
        if letter is None:
            return None
        tones = self._char_tones
        if not form.rhyme_required(line):
            if not form.strict:
                return None
            # A first line ending in 平 joins the rhyme: it must have a known group.
            return self._cached(("open",), lambda: (tones != 1) | self._char_groups.any(1))
        members: list[int] = []
        for j in range(line):
            if form.rhyme_letter(j) != letter:
                continue
            end = chinese.han_chars(done[j])[-1:]
            index = _registry_id(end) if end else -1
            tone, _ = self._sound_of(index)
            if form.rhyme_required(j) or (form.strict and tone == 1):
                members.append(index)
        groups = self._char_groups
        if not members:
            key: tuple[Any, ...] = ("anchor", form.strict)
            if form.strict and form.rhyme_system == "pingshui":
                return self._cached(key, lambda: groups[:, self._ping_columns].any(1))
            if form.strict:
                return self._cached(key, lambda: groups.any(1) & (self._char_tones != 2))
            return self._cached(key, lambda: groups.any(1))
        common: frozenset[int] | None = None
        for index in members:
            _, cols = self._sound_of(index)
            common = cols if common is None else common & cols
        assert common is not None
        if form.strict and form.rhyme_system == "pingshui":
            common = frozenset(c for c in common if bool(self._ping_columns[c]))
        if not common:
            return None  # the rhyme is already broken: let the checker say so
        columns = torch.tensor(sorted(common), dtype=torch.long)
        ok = self._cached(("rhyme", common, form.strict), lambda: groups[:, columns].any(1))
        if form.strict and form.rhyme_system == "xinyun":
            ok = ok & (self._char_tones != 2)
        fresh = ok.clone()
        fresh[[m for m in members if m >= 0]] = False  # no rhyme character twice (重韵)
        return fresh if bool(fresh.any()) else ok

    def _cached(self, key: tuple[Any, ...], make: Any) -> torch.Tensor:
        if key not in self._final_cache:
            self._final_cache[key] = make()
        return self._final_cache[key]

    def _fitting_patterns(
        self, done: list[str], line_chars: list[int], line: int
    ) -> list[str] | None:
        """In strict mode: this line's pattern in every template the poem still keeps at its
        key positions; None when tones are free (or no template fits any more)."""
        form = self.form
        if not form.strict or not form.tone_patterns:
            return None
        written = [[_registry_id(ch) for ch in chinese.han_chars(d)] for d in done] + [line_chars]
        fitting = []
        for template in form.tone_patterns:
            if all(self._keeps(template[j], chars) for j, chars in enumerate(written)):
                fitting.append(template[line])
        return fitting or None

    def _tone_ok(self, tokens: _TokenSet, patterns: list[str], start: int) -> torch.Tensor:
        """Tokens whose complete characters keep the key positions of one of `patterns`."""
        level, oblique = self.zh.tone_bits(tokens, self.form.rhyme_system)
        ok = torch.zeros(level.shape[0], dtype=torch.bool)
        for pattern in patterns:
            want_level = want_oblique = 0
            for pos in key_positions(len(pattern)):
                if pos >= start and pos - start < ChineseTable.WIDTH:
                    if pattern[pos] == "平":
                        want_level |= 1 << (pos - start)
                    elif pattern[pos] == "仄":
                        want_oblique |= 1 << (pos - start)
            ok |= ((level & want_oblique) | (oblique & want_level)) == 0
        return ok

    def _keeps(self, pattern: str, chars: list[int]) -> bool:
        keys = key_positions(len(pattern))
        for pos, index in enumerate(chars[: len(pattern)]):
            if pos not in keys or index < 0 or pattern[pos] == "中":
                continue
            tone = int(self._char_tones[index])
            if tone and tone != (1 if pattern[pos] == "平" else 2):
                return False
        return True


_RHYME_INDEXES: weakref.WeakKeyDictionary[Lexicon, RhymeIndex] = weakref.WeakKeyDictionary()


def _rhyme_index(lexicon: Lexicon) -> RhymeIndex:
    found = _RHYME_INDEXES.get(lexicon)
    if found is None:
        found = RhymeIndex(lexicon)
        _RHYME_INDEXES[lexicon] = found
    return found


def form_constraints(
    form: Form, tokenizer: Tokenizer, *, lexicon: Lexicon | None = None
) -> list[LogitsProcessor]:
    """The processors that keep generated text in `form`, for a model with `tokenizer`.
    English words are drawn from `lexicon` (default: the CMU dictionary; see
    `english.lexicon_from_words` for a smaller one)."""
    return [FormConstraint(form, tokenizer, lexicon)]
