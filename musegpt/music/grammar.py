"""The ABC body grammar that constrained decoding writes, as a character-level state machine
that also keeps time: every bar it lets through lasts exactly one bar of the metre.

What the grammar writes (a subset of ABC that music21, abc2midi and abcm2ps all read the
same way):

* notes: an optional accidental (^ _ =), a pitch letter, at most one octave mark (C, or c'),
  and a length from `LENGTHS` (multiples of half a unit note, so a bar's remaining time is
  always a multiple of 1/2 and can always be filled: no dead ends);
* rests `z` with a length;
* triplets `(3` of three notes or rests of equal length (2/3 each; the group lasts 2 notes);
* ties `-` to the next note, which must have the same pitch (across a bar line too);
* broken rhythm `A>B` (the first note dotted, the second halved) and `A<B` (the reverse)
  between two notes of the same written length, 1 or 2 units (`A2>B2`), so every bar's
  remaining time stays a multiple of half a unit;
* a pick-up bar: a first bar of at most half a bar closed early (`A|d2e fed|...`), which
  does not count among the requested bars and shortens the last bar by as much, as in the
  corpus' tunes;
* bar lines `|` only when the bar is full; repeats `|:` ... `:|`; a newline only
  after a bar line, forced after `MAX_LINE_BARS` bars;
* after the requested number of bars the tune ends with `|]` (or `:|` closing a repeat),
  then an optional newline and end of text;
* given the key's tonic, the tune's last note is the tonic (its letter, no accidental: the
  key signature makes it right), as folk tunes end. Every choice on the way keeps that
  reachable: a note or rest that is not the tonic never fills the last bar.

Durations are exact `Fraction`s in unit notes (L:). The state is an immutable, hashable
value, so constrained decoding caches one mask per state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

# Note lengths written after a pitch, in unit notes.
LENGTHS: dict[str, Fraction] = {
    "": Fraction(1),
    "2": Fraction(2),
    "3": Fraction(3),
    "4": Fraction(4),
    "6": Fraction(6),
    "8": Fraction(8),
    "/": Fraction(1, 2),
    "/2": Fraction(1, 2),
    "3/2": Fraction(3, 2),
}
_LENGTH_PREFIXES = {s[:i] for s in LENGTHS for i in range(len(s) + 1)}
PITCHES = "ABCDEFGabcdefg"
ACCIDENTALS = "^_="
ALPHABET = frozenset(PITCHES + ACCIDENTALS + "z,'/0123456789|:]-(<> \n")
MAX_LINE_BARS = 8  # a newline is forced after this many bars on one line
TRIPLET = 3
# Broken rhythm: what the pair's second note counts as, in its written length.
BROKEN = {">": Fraction(1, 2), "<": Fraction(3, 2)}
BROKEN_LENGTHS = frozenset({Fraction(1), Fraction(2)})

# Phases of the machine.
LINE_START = 0  # start of the body or of a line: an element (or "|:" at the very start)
BETWEEN = 1  # after an element, a space or a bar line: an element, space or bar line
ACCIDENTAL = 2  # after ^ _ =: a pitch letter
NOTE = 3  # after a pitch (or rest) and part of its length: more length, a tie, or the next
TUPLET_OPEN = 4  # after "(": the 3
OPENER = 5  # after "|" at the start of the body: the ":" of "|:"
BAR = 6  # after "|": ":", "]" or the next bar
COLON = 7  # after ":" ending a bar: "|" (":|")
END = 8  # after the final bar line: a newline or end of text
DONE = 9  # after the final newline: end of text only
PAIRED = 10  # after ">" or "<": the pair's second note (an accidental or a pitch)


@dataclass(frozen=True)
class State:
    phase: int = LINE_START
    elapsed: Fraction = Fraction(0)  # of the current bar, without the pending note
    pitch: str = ""  # the pending note's pitch ("z" for a rest), accidental included
    length: str = ""  # the pending note's length as written so far
    tuplet_left: int = 0  # notes still to come in an open triplet
    tuplet_len: Fraction | None = None  # the written length every note of the triplet has
    tie: str = ""  # the pitch the next note must have (a tie is pending)
    bars: int = 0  # completed bars
    line_bars: int = 0  # completed bars on this line
    repeat: bool = False  # a "|:" is open
    space: bool = False  # the last character was a space
    pair_len: Fraction | None = None  # the written length a broken pair's 2nd note must have
    pair_scale: Fraction = Fraction(1)  # what that note counts as, in its written length
    pickup_len: Fraction = Fraction(0)  # the pick-up bar's length (0: none)

    @property
    def ended(self) -> bool:
        return self.phase in (END, DONE)

    @property
    def pickup(self) -> bool:
        """A pick-up bar was written."""
        return self.pickup_len > 0


class Grammar:
    """The machine for one metre (`bar` unit notes per bar), a number of bars and, if given,
    the tonic letter the tune must end on."""

    def __init__(self, bar: Fraction, bars: int, tonic: str | None = None) -> None:
        if bar <= 0 or bar % Fraction(1, 2) != 0:
            raise ValueError(f"a bar of {bar} unit notes cannot be filled with half units")
        if bars < 1:
            raise ValueError(f"a tune needs at least one bar, got {bars}")
        if tonic is not None and (len(tonic) != 1 or tonic not in PITCHES.upper()):
            raise ValueError(f"the tonic is a pitch letter A-G, got {tonic!r}")
        self.bar = bar
        self.bars = bars
        self.tonic = tonic

    def start(self) -> State:
        return State()

    def feed(self, state: State | None, text: str) -> State | None:
        """The state after `text`, or None if the grammar does not allow it."""
        for ch in text:
            if state is None:
                return None
            state = self.step(state, ch)
        return state

    # ------------------------------------------------------------------ one character

    def step(self, s: State, ch: str) -> State | None:
        phase = s.phase
        if phase == NOTE:
            return self._in_note(s, ch)
        if phase == ACCIDENTAL:
            return self._pitch(s, s.pitch, ch) if ch in PITCHES else None
        if phase == TUPLET_OPEN:
            return replace(s, phase=BETWEEN, tuplet_left=TRIPLET) if ch == "3" else None
        if phase == OPENER:
            return replace(s, phase=BETWEEN, repeat=True) if ch == ":" else None
        if phase == BAR:
            return self._after_bar(s, ch)
        if phase == COLON:
            return self._after_colon(s, ch)
        if phase == PAIRED:
            if ch in ACCIDENTALS:
                return self._can_end(replace(s, phase=ACCIDENTAL, pitch=ch))
            return self._pitch(s, "", ch) if ch in PITCHES else None
        if phase == END:
            return replace(s, phase=DONE) if ch == "\n" else None
        if phase == DONE:
            return None
        return self._between(s, ch)

    def _between(self, s: State, ch: str) -> State | None:
        """LINE_START or BETWEEN: the start of an element, a space or a bar line."""
        if s.bars >= self.bars:
            return None
        full = s.elapsed == self._bar(s) and s.tuplet_left == 0
        if ch == "|":
            if s.phase == LINE_START and s.bars == 0 and s.elapsed == 0 and not s.repeat:
                return replace(s, phase=OPENER, space=False)
            if self._pickup_ends(s):
                return replace(s, phase=BAR, elapsed=Fraction(0), pickup_len=s.elapsed, space=False)
            if not full or (s.tie and s.bars + 1 >= self.bars):
                return None
            if s.repeat and s.bars + 1 == self.bars:
                return None  # the last bar closes the open repeat with ":|"
            return self._close_bar(s, BAR)
        if ch == ":":
            return replace(s, phase=COLON, space=False) if full and s.repeat else None
        if ch == "\n":
            # Lines break only right after a bar line (the bar is empty, nothing pending).
            after_bar = s.phase == BETWEEN and s.bars > 0 and s.elapsed == 0
            ok = after_bar and not s.space and not s.tuplet_left
            return replace(s, phase=LINE_START, line_bars=0) if ok else None
        if ch == " ":
            if s.phase == LINE_START or s.space or s.tuplet_left or s.tie:
                return None
            return replace(s, space=True)
        if ch == "(":
            if s.tuplet_left or s.tie or self._bar(s) - s.elapsed < 1:
                return None
            return replace(s, phase=TUPLET_OPEN, space=False)
        if s.elapsed >= self._bar(s):
            return None  # the bar is full: only a bar line may follow
        if ch in ACCIDENTALS:
            if s.tie and not s.tie.startswith(ch):
                return None
            # a note with an accidental is never the tonic: it must have room to come
            return self._can_end(replace(s, phase=ACCIDENTAL, pitch=ch, space=False))
        if ch in PITCHES:
            return self._pitch(s, "", ch)
        if ch == "z":
            if s.tie:
                return None
            return self._can_end(replace(s, phase=NOTE, pitch="z", length="", space=False))
        return None

    def _pitch(self, s: State, accidental: str, letter: str) -> State | None:
        pitch = accidental + letter
        if s.tie and not s.tie.startswith(pitch):
            return None
        return self._can_end(replace(s, phase=NOTE, pitch=pitch, length="", space=False))

    def _can_end(self, s: State) -> State | None:
        """`s` (a note, rest or accidental just begun) if some length suits it: with a tonic
        to end on, a note that is not the tonic may not be forced to fill the last bar."""
        if self.tonic is None or self._is_tonic(s.pitch):
            return s
        return s if any(self._fits(s, length) for length in LENGTHS.values()) else None

    def _is_tonic(self, pitch: str) -> bool:
        return pitch[:1] in PITCHES and pitch[0].upper() == self.tonic

    def _ends_tune(self, s: State, length: Fraction) -> bool:
        """Would the pending note, at this written length, fill the tune's last bar?"""
        if s.bars + 1 != self.bars or s.tuplet_left > 1:
            return False
        counted = length * Fraction(2, TRIPLET) if s.tuplet_left else length * s.pair_scale
        return s.elapsed + counted == self._bar(s)

    def _in_note(self, s: State, ch: str) -> State | None:
        if ch in ",'" and not s.length and s.pitch != "z":
            letter = s.pitch[-1]
            if s.pitch[-1] in ",'" or (ch == ",") != letter.isupper():
                return None  # one octave mark at most, "," only below c and "'" only above
            if s.tie and not s.tie.startswith(s.pitch + ch):
                return None
            return replace(s, pitch=s.pitch + ch)
        if s.tie and s.pitch != s.tie:
            return None  # a tied note must repeat the pitch, octave mark included
        if ch.isdigit() or ch == "/":
            length = s.length + ch
            if length not in _LENGTH_PREFIXES:
                return None
            if not any(w.startswith(length) and self._fits(s, LENGTHS[w]) for w in LENGTHS):
                return None
            return replace(s, length=length)
        done = self._finish_note(s)
        if done is None:
            return None
        if ch in BROKEN:
            return self._broken(s, done, ch)
        if ch == "-":
            # A tie needs a next note of the same pitch: not from a rest, inside a triplet,
            # or from the tune's very last note.
            last = done.elapsed == self._bar(done) and done.bars + 1 >= self.bars
            if s.pitch == "z" or s.tuplet_left or done.tuplet_left or last:
                return None
            if self.tonic is not None and not self._is_tonic(s.pitch):
                # the tied note repeats this pitch: it must not be forced to end the tune
                tied = replace(done, phase=NOTE, pitch=s.pitch, length="", tie=s.pitch)
                if done.elapsed == self._bar(done):  # it starts the next bar
                    tied = replace(tied, elapsed=Fraction(0), bars=done.bars + 1)
                if self._can_end(tied) is None:
                    return None
            return replace(done, tie=s.pitch)
        return self._between(done, ch)

    def _broken(self, s: State, done: State, ch: str) -> State | None:
        """After the pair's first note (`s` pending, `done` finished): ">" dots it and
        halves the next note, "<" the reverse; the pair lasts two written lengths."""
        length = LENGTHS[s.length]
        plain = s.pitch != "z" and not (s.tie or s.tuplet_left or s.pair_len is not None)
        if not plain or length not in BROKEN_LENGTHS or done.elapsed + length > self._bar(done):
            return None
        shift = length / 2 if ch == ">" else -length / 2
        return replace(
            done, phase=PAIRED, elapsed=done.elapsed + shift, pair_len=length,
            pair_scale=BROKEN[ch],
        )  # fmt: skip

    def _bar(self, s: State) -> Fraction:
        """The length of the bar `s` is in: the last bar is shortened by the pick-up, so
        pick-up and last bar make one bar between them, as in printed tunes."""
        return self.bar - s.pickup_len if s.bars + 1 == self.bars else self.bar

    def _pickup_ends(self, s: State) -> bool:
        """May "|" close a short first bar here (a pick-up of at most half a bar)?"""
        pending = s.tie or s.tuplet_left or s.repeat or s.space
        return s.bars == 0 and not s.pickup and not pending and 0 < s.elapsed <= self.bar / 2

    def _fits(self, s: State, length: Fraction) -> bool:
        """Can the pending note have this written length?"""
        if self.tonic is not None and not self._is_tonic(s.pitch) and self._ends_tune(s, length):
            return False
        room = self._bar(s) - s.elapsed
        if s.pair_len is not None:
            return length == s.pair_len
        if s.tuplet_len is not None:
            return length == s.tuplet_len
        if s.tuplet_left:  # the triplet's first note: the whole group must fit
            return length * 2 <= room
        return length <= room

    def _finish_note(self, s: State) -> State | None:
        """The pending note ends: check its length and count its time."""
        if s.length not in LENGTHS or not self._fits(s, LENGTHS[s.length]):
            return None
        length = LENGTHS[s.length]
        if s.tie and s.pitch != s.tie:
            return None
        if s.tuplet_left:
            left = s.tuplet_left - 1
            return replace(
                s,
                phase=BETWEEN,
                elapsed=s.elapsed + length * Fraction(2, TRIPLET),
                pitch="",
                length="",
                tie="",
                tuplet_left=left,
                tuplet_len=length if left else None,
            )
        return replace(
            s, phase=BETWEEN, elapsed=s.elapsed + length * s.pair_scale, pitch="", length="",
            tie="", pair_len=None, pair_scale=Fraction(1),
        )  # fmt: skip

    def _close_bar(self, s: State, phase: int) -> State:
        return replace(
            s, phase=phase, elapsed=Fraction(0), bars=s.bars + 1, line_bars=s.line_bars + 1,
            space=False,
        )  # fmt: skip

    def _after_bar(self, s: State, ch: str) -> State | None:
        """After a bar line "|" (the bar is counted)."""
        if s.bars >= self.bars:
            return replace(s, phase=END) if ch == "]" and not s.repeat else None
        if s.line_bars >= MAX_LINE_BARS:
            return replace(s, phase=LINE_START, line_bars=0) if ch == "\n" else None
        if ch == ":":
            return None if s.repeat else replace(s, phase=BETWEEN, repeat=True)
        if ch == "|":
            return None  # "||" is left out: with few bars music21 then reads no bars at all
        if ch == "\n":
            return replace(s, phase=LINE_START, line_bars=0)
        return self._between(replace(s, phase=BETWEEN), ch)

    def _after_colon(self, s: State, ch: str) -> State | None:
        """After ":" at the end of a full bar: ":|" ends the repeat. ("::" is left out: music21
        reads the bar after it short.)"""
        if ch == "|":
            closed = self._close_bar(replace(s, repeat=False), BETWEEN)
            if closed.bars >= self.bars:
                return replace(closed, phase=END)
            if closed.line_bars >= MAX_LINE_BARS:
                return replace(closed, phase=BAR)  # only the newline can follow
            return closed
        return None
