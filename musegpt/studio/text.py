"""Text helpers every studio task shares: language detection and output hygiene.

Small base models drift: they repeat a line, loop on a phrase, run into the next few-shot
example, or stop mid-sentence at the token limit. These functions clean that up so no
scaffolding leaks into a writer's text and every piece ends cleanly.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Literal

Lang = Literal["en", "zh"]

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
SENTENCE_END = re.compile(r"[.!?。！？…][\"'”’」』)）]*")
WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def detect_lang(text: str) -> Lang:
    """Chinese when Han characters make up at least a fifth of the letters, else English."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    han = sum(1 for c in letters if HAN.match(c))
    return "zh" if han / len(letters) >= 0.2 else "en"


def units(text: str) -> list[str]:
    """Words for English, characters for Chinese: what n-gram statistics count."""
    out: list[str] = []
    for token in WORD.findall(text.lower()):
        out.extend(list(token) if HAN.search(token) else [token])
    return out


def _normal(line: str) -> str:
    return re.sub(r"\W+", " ", unicodedata.normalize("NFKC", line).lower()).strip()


def cut_repeated_lines(text: str, most: int = 2) -> str:
    """Cut the text where any non-empty line appears for the (most+1)-th time."""
    seen: dict[str, int] = {}
    kept: list[str] = []
    for line in text.split("\n"):
        key = _normal(line)
        if key:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > most:
                break
        kept.append(line)
    return "\n".join(kept)


def cut_ngram_loops(text: str, size: int = 4, runs: int = 3) -> str:
    """Cut the text before a run of the same n-gram said `runs` times in a row (for any n up
    to `size`): "and then and then and then" keeps "and then"."""
    spans = [(m.start(), m.end(), m.group(0).lower()) for m in WORD.finditer(text)]
    tokens: list[tuple[int, str]] = []
    for start, _end, token in spans:
        if HAN.search(token):
            tokens.extend((start + i, ch) for i, ch in enumerate(token))
        else:
            tokens.append((start, token))
    words = [t for _, t in tokens]
    for i in range(len(words)):
        for n in range(1, size + 1):
            if i + n * runs > len(words):
                break
            if runs > 1 and words[i + n] != words[i]:
                continue  # no second run begins here (checked first: most positions)
            gram = words[i : i + n]
            if n == 1 and not gram[0].isalnum():
                continue  # "!!!" or "……" is punctuation, not a loop
            if all(words[i + k * n : i + (k + 1) * n] == gram for k in range(1, runs)):
                return text[: tokens[i + n][0]].rstrip()
    return text


def end_cleanly(text: str) -> str:
    """Drop an unfinished last sentence (when at least one sentence is complete)."""
    stripped = text.rstrip()
    ends = list(SENTENCE_END.finditer(stripped))
    if not ends or ends[-1].end() == len(stripped):
        return stripped
    return stripped[: ends[-1].end()]


def strip_labels(text: str, labels: Sequence[str]) -> str:
    """Cut at the first line that starts with a template label (the model began writing the
    next few-shot example)."""
    if not labels:
        return text
    starts = tuple(labels)  # one `startswith` call for all labels (run every few tokens)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if i > 0 and line.strip().startswith(starts):
            return "\n".join(lines[:i]).rstrip()
    return text


def cut_bad_tail(text: str, labels: Sequence[str] = ()) -> str:
    """A prefix of `text` without a new few-shot example, a repeated line or a loop."""
    return cut_ngram_loops(cut_repeated_lines(strip_labels(text, labels)))


# Spaces after Chinese punctuation, which sets none (seen: "柳春发现机器人。 她认识了…"), in
# every task's text; a chapter also loses those between Han characters (`ZH_SPACE` in
# plan_checks), which a lyric may keep as a pause.
CJK_SPACE = re.compile(
    r"(?:(?<=[。！？，、；：」）])|(?<=[。！？，]”))[ \t]+(?=[\u3400-\u9fff“「\n])"
)


def tidy(text: str, labels: Sequence[str] = (), clean_end: bool = True) -> str:
    """The text as a writer should see it: bad tail cut, blank runs collapsed, and (with
    `clean_end`) no unfinished last sentence."""
    text = re.sub(r"\n{3,}", "\n\n", cut_bad_tail(text.strip("\n"), labels)).strip()
    text = CJK_SPACE.sub("", text)
    return end_cleanly(text) if clean_end else text


def example_phrases(text: str) -> list[str]:
    """The sentences and lines of a few-shot example long enough to be worth banning, so
    the model cannot hand the example back as the user's text."""
    pieces = re.split(r"\n|(?<=[.!?。！？])\s*", text)
    out = []
    for piece in pieces:
        body = piece.split("：", 1)[-1].split(": ", 1)[-1].strip()
        if "{" not in body and len(body) >= (8 if HAN.search(body) else 20):
            out.append(body)
    return out


def distinct_n(texts: list[str], n: int) -> float:
    """Share of distinct n-grams among all n-grams of the texts (0 when there are none)."""
    grams = [tuple(u[i : i + n]) for t in texts for u in [units(t)] for i in range(len(u) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def similarity(a: str, b: str, n: int = 3) -> float:
    """Jaccard similarity of character n-grams (0..1): near-duplicate ideas score high."""

    def grams(s: str) -> set[str]:
        s = _normal(s)
        return {s[i : i + n] for i in range(max(len(s) - n + 1, 1))}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb) if ga | gb else 1.0


# A phrase said three times running inside one line, with only spaces or punctuation
# between: "去去了，去去了，去去了", "go away, go away, go away". Chinese phrases are two or
# more characters (哈哈哈 is a laugh); English ones whole words.
HAN_LOOP = re.compile(f"({HAN.pattern}\\w*?{HAN.pattern}|{HAN.pattern}{{2}})(?:\\W*\\1){{2}}")
WORD_LOOP = re.compile(r"\b([a-z0-9'].*?)\b(?:\W+\1\b){2}")


def phrase_loop(line: str) -> str | None:
    """The phrase a line says three times in a row (a loop, not a refrain), else None."""
    text = _normal(line)
    match = HAN_LOOP.search(text) or WORD_LOOP.search(text)
    return match.group(1) if match else None


def echo_pattern(example: str, given: str = "", words: int = 3, chars: int = 4) -> str:
    """A regex (for `banned_regex`) matching any run of `words` words or `chars` Han
    characters that the few-shot `example` has and the user's own text `given` lacks:
    copying the example with a word changed here and there still trips it."""
    grams: set[str] = set()
    for piece in re.split(r"[{}]", example):
        latin = re.findall(r"[a-z']+", piece.lower())
        grams |= {" ".join(latin[i : i + words]) for i in range(len(latin) - words + 1)}
        for run in re.findall(f"{HAN.pattern}+", piece):
            grams |= {run[i : i + chars] for i in range(len(run) - chars + 1)}
    mine = " ".join(re.findall(r"[a-z']+", given.lower())) + " " + given
    kept = sorted(g for g in grams if g and g not in mine)
    if not kept:
        return r"(?!)"  # matches nothing
    parts = [r"\W+".join(re.escape(w) for w in g.split()) for g in kept]
    return r"(?i)(?<![a-z'])(?:" + "|".join(parts) + r")(?![a-z'])"


def resemblance(text: str, example: str, given: str = "") -> float:
    """Share of the text's character n-grams found in the example but not in `given` (the
    user's own words): near 0 for new writing, high for the example handed back. Trigrams
    for Chinese; for English 6-grams, as its trigrams ("the", "ing") are in any text."""
    size = 3 if HAN.search(text) else 6

    def grams(s: str) -> set[str]:
        s = _normal(s)
        return {s[i : i + size] for i in range(len(s) - size + 1)}

    own = grams(text)
    borrowed = grams(example) - grams(given)
    return len(own & borrowed) / len(own) if own else 0.0
