"""`musegpt eval music`: how well-formed, in key and in metre the tunes a model writes are,
how varied, and how much they copy from the corpus; constrained against unconstrained.

Every measure is taken on music21's reading of the tune, not on the grammar's, so the
constrained decoder is checked by an independent parser:

* parse: music21 reads the tune and finds notes in it;
* bars right: the share of bars lasting exactly one bar of the time signature (a short
  first bar, the pick-up, and a short last bar are allowed, as ABC tunes often have them);
* metre: the share of tunes whose time signature is the one asked for and whose bars are
  all right;
* key: the share of note time spent on pitch classes of the requested key's scale, and the
  share of tunes ending on the key's tonic;
* distinct-n: distinct note n-grams (pitch and length) over all n-grams of all tunes;
* copying: the longest run of consecutive bars a tune shares with any corpus tune.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from statistics import mean
from typing import Any

from musegpt.engines.base import Engine
from musegpt.music.abc import RHYTHMS, Header, header_for, parse_header
from musegpt.music.compose import compose_headers
from musegpt.music.tune import Tune, bars_of, parse_abc

EVAL_RHYTHMS = ["jig", "reel", "hornpipe", "waltz", "polka", "slip jig", "march", "strathspey"]
EVAL_KEYS = ["D major", "G major", "A major", "E minor", "A minor", "C major", "F major",
             "B minor", "A dorian", "E dorian", "D mixolydian", "Bb major", "G minor"]  # fmt: skip
COPY_WINDOW = 8  # copying is measured up to this many bars ("8" means 8 or more)
_NOTE = re.compile(r"[_^=]?[A-Ga-gz][,']*[0-9/]*")


def eval_headers(count: int) -> list[Header]:
    """`count` requests cycling through rhythms and keys (every pair before any repeats)."""
    headers = []
    for i in range(count):
        rhythm = EVAL_RHYTHMS[i % len(EVAL_RHYTHMS)]
        key = EVAL_KEYS[(i // len(EVAL_RHYTHMS) + i) % len(EVAL_KEYS)]
        headers.append(header_for(f"a {rhythm} in {key}"))
    return headers


@dataclass
class TuneScore:
    parses: bool
    bars: int
    bars_right: int
    metre_ok: bool
    in_key: float  # share of note time on the key's scale (0 when unparsed)
    ends_on_tonic: bool
    copied_bars: int  # longest run of bars shared with a corpus tune


def music21_key(key: str) -> Any:
    """music21's Key for a normalised K: value ("D", "F#m", "Ador", "Bbmix")."""
    from music21 import key as m21key

    match = re.fullmatch(r"([A-G])([#b]?)(m|dor|mix|phr|lyd|loc)?", key)
    if match is None:
        raise ValueError(f"not a normalised key: {key!r}")
    tonic = match[1] + {"#": "#", "b": "-", "": ""}[match[2]]
    mode = {None: "major", "m": "minor", "dor": "dorian", "mix": "mixolydian",
            "phr": "phrygian", "lyd": "lydian", "loc": "locrian"}[match[3]]  # fmt: skip
    return m21key.Key(tonic, mode)


def measure_durations(score: Any) -> list[Fraction]:
    return [
        Fraction(m.duration.quarterLength).limit_denominator(96)
        for m in score.recurse().getElementsByClass("Measure")
    ]


def bars_right(durations: Sequence[Fraction], bar: Fraction) -> int:
    """How many bars last one bar; a short first (pick-up) and short last bar count as right."""
    right = 0
    for i, d in enumerate(durations):
        edge = i == 0 or i == len(durations) - 1
        right += d == bar or (edge and 0 < d < bar)
    return right


def score_tune(tune: Tune, copied: Callable[[list[str]], int]) -> TuneScore:
    bars = tune.bars()
    copy_run = copied(bars)
    try:
        score = parse_abc(tune.abc)
        notes = list(score.flatten().notes)
    except Exception:  # music21 raises many kinds on broken ABC: all mean "does not parse"
        return TuneScore(False, len(bars), 0, False, 0.0, False, copy_run)
    if not notes:
        return TuneScore(False, len(bars), 0, False, 0.0, False, copy_run)
    bar = Fraction(tune.header.metre) * 4  # in quarter notes, as music21 counts
    durations = measure_durations(score)
    right = bars_right(durations, bar)
    signatures = {ts.ratioString for ts in score.recurse().getElementsByClass("TimeSignature")}
    metre_ok = bool(durations) and right == len(durations) and signatures == {tune.header.metre}
    key = music21_key(tune.header.key)
    scale = {p.pitchClass for p in key.pitches}
    pitched = [(p.pitchClass, float(n.duration.quarterLength)) for n in notes for p in n.pitches]
    total = sum(d for _, d in pitched) or 1.0
    in_key = sum(d for pc, d in pitched if pc in scale) / total
    ends = notes[-1].pitches[-1].pitchClass == key.tonic.pitchClass
    return TuneScore(True, len(durations) or len(bars), right, metre_ok, in_key, ends, copy_run)


class CopyIndex:
    """Every run of up to `COPY_WINDOW` consecutive bars of the corpus tunes, hashed."""

    def __init__(self, tunes: Iterable[str]) -> None:
        self.runs: list[set[int]] = [set() for _ in range(COPY_WINDOW + 1)]
        for text in tunes:
            try:
                _, body = parse_header(text)
            except ValueError:
                continue
            self.add(bars_of(body))

    def add(self, bars: list[str]) -> None:
        for size in range(1, COPY_WINDOW + 1):
            for i in range(len(bars) - size + 1):
                self.runs[size].add(hash(tuple(bars[i : i + size])))

    def longest(self, bars: list[str]) -> int:
        """The longest run of `bars` found in the corpus (at most COPY_WINDOW)."""
        best = 0
        for size in range(1, COPY_WINDOW + 1):
            found = any(
                hash(tuple(bars[i : i + size])) in self.runs[size]
                for i in range(len(bars) - size + 1)
            )
            if not found:
                break
            best = size
        return best


def distinct_notes(bodies: Sequence[str], n: int) -> float:
    """Distinct n-grams of notes (pitch with length, rests too) over all of them."""
    grams = [
        tuple(notes[i : i + n])
        for body in bodies
        for notes in [_NOTE.findall(body)]
        for i in range(len(notes) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


@dataclass
class ModeResult:
    """The scores of one way of decoding (constrained or not)."""

    mode: str
    tunes: list[Tune]
    scores: list[TuneScore]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        s = self.scores
        bars = sum(x.bars for x in s) or 1
        return {
            "decoding": self.mode,
            "tunes": len(s),
            "parse %": 100 * mean(x.parses for x in s),
            "bars right %": 100 * sum(x.bars_right for x in s) / bars,
            "metre %": 100 * mean(x.metre_ok for x in s),
            "in key %": 100 * mean(x.in_key for x in s),
            "ends on tonic %": 100 * mean(x.ends_on_tonic for x in s),
            "distinct-2": distinct_notes([t.body for t in self.tunes], 2),
            "distinct-4": distinct_notes([t.body for t in self.tunes], 4),
            "longest copy (bars)": max(x.copied_bars for x in s),
            "tunes copying > 4 bars": sum(x.copied_bars > 4 for x in s),
            "s / tune": self.seconds / max(len(s), 1),
        }

    def table_row(self) -> dict[str, str]:
        """`row()` rounded for a Markdown table."""
        return {
            k: (f"{v:.3f}" if isinstance(v, float) and v < 1 else
                f"{v:.1f}" if isinstance(v, float) else str(v))
            for k, v in self.row().items()
        }  # fmt: skip


def evaluate_mode(
    engine: Engine,
    headers: Sequence[Header],
    copy_index: CopyIndex,
    constrained: bool,
    bars: int = 16,
    seed: int = 0,
    batch: int = 25,
    progress: Callable[[int], None] | None = None,
) -> ModeResult:
    tunes: list[Tune] = []
    started = time.perf_counter()
    for first in range(0, len(headers), batch):
        chunk = headers[first : first + batch]
        tunes += compose_headers(engine, chunk, bars, seed + first, constrained)
        if progress is not None:
            progress(len(chunk))
    seconds = time.perf_counter() - started
    scores = [score_tune(t, copy_index.longest) for t in tunes]
    return ModeResult("constrained" if constrained else "unconstrained", tunes, scores, seconds)


__all__ = ["RHYTHMS", "CopyIndex", "eval_headers", "evaluate_mode"]
