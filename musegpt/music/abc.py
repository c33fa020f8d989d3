"""ABC notation: the normalised form MuseGPT learns and writes, and the header of a request.

A normalised tune is the header fields in one fixed order, then the body:

    X:1
    T:The Lively Jig
    R:jig            (only when the rhythm is known)
    M:6/8
    L:1/8
    K:D
    |:A2B AFD|...

The body keeps notes, rests, bar lines, repeats, ties, tuplets, chords and broken rhythm, and
loses what a small melody model gains nothing from: comments, chord symbols and annotations
("Am"), decorations, grace notes, slurs and lyrics. Tunes that change metre, length or key
part-way, or have several voices, are dropped rather than half-understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# Rhythm -> (metre, unit note length). The same metre and unit are used for every tune of a
# rhythm so the model sees one spelling per rhythm.
RHYTHMS: dict[str, tuple[str, str]] = {
    "jig": ("6/8", "1/8"),
    "slip jig": ("9/8", "1/8"),
    "slide": ("12/8", "1/8"),
    "reel": ("4/4", "1/8"),
    "hornpipe": ("4/4", "1/8"),
    "strathspey": ("4/4", "1/8"),
    "barndance": ("4/4", "1/8"),
    "polka": ("2/4", "1/8"),
    "march": ("2/4", "1/8"),
    "waltz": ("3/4", "1/8"),
    "mazurka": ("3/4", "1/8"),
    "air": ("3/4", "1/8"),
}
# Words in a source's R: field or title that name a rhythm (checked longest first).
_RHYTHM_WORDS = {
    "slip jig": "slip jig",
    "slipjig": "slip jig",
    "single jig": "jig",
    "double jig": "jig",
    "jig": "jig",
    "slide": "slide",
    "reel": "reel",
    "hornpipe": "hornpipe",
    "strathspey": "strathspey",
    "barndance": "barndance",
    "schottische": "barndance",
    "polka": "polka",
    "march": "march",
    "quickstep": "march",
    "quick step": "march",
    "waltz": "waltz",
    "walz": "waltz",
    "mazurka": "mazurka",
    "air": "air",
}

MODES = {
    "": "major",
    "maj": "major",
    "m": "minor",
    "min": "minor",
    "dor": "dorian",
    "mix": "mixolydian",
    "phr": "phrygian",
    "lyd": "lydian",
    "loc": "locrian",
    "ion": "major",
    "aeo": "minor",
}
_MODE_SUFFIX = {"major": "", "minor": "m", "dorian": "dor", "mixolydian": "mix",
                "phrygian": "phr", "lydian": "lyd", "locrian": "loc"}  # fmt: skip
_KEY = re.compile(r"^([A-G])([#b]?)\s*([A-Za-z]*)")


@dataclass(frozen=True)
class Header:
    """The fields a tune is conditioned on."""

    title: str = "Untitled"
    rhythm: str | None = None
    metre: str = "4/4"
    unit: str = "1/8"
    key: str = "C"

    def text(self, number: int = 1) -> str:
        """The header as ABC lines, each ending in a newline (a prompt for the body)."""
        lines = [f"X:{number}", f"T:{self.title}"]
        if self.rhythm:
            lines.append(f"R:{self.rhythm}")
        lines += [f"M:{self.metre}", f"L:{self.unit}", f"K:{self.key}"]
        return "\n".join(lines) + "\n"

    @property
    def bar_units(self) -> Fraction:
        """How many unit notes (L:) fill one bar of the metre."""
        return Fraction(self.metre) / Fraction(self.unit)


def normal_key(value: str) -> str | None:
    """`K:` value in one spelling (tonic, accidental, short mode: "D", "F#m", "Ador"), or
    None for what is not a plain key (none, highland pipes, explicit accidentals...)."""
    match = _KEY.match(value.strip())
    if match is None:
        return None
    tonic, accidental, mode = match[1], match[2], match[3].lower()[:3]
    if mode not in MODES:
        return None
    if value.strip()[match.end() :].strip():  # "K:G exp ^f": global accidentals, not a key
        return None
    return tonic + accidental + _MODE_SUFFIX[MODES[mode]]


def normal_metre(value: str) -> str | None:
    value = value.strip()
    if value == "C":
        return "4/4"
    if value == "C|":
        return "2/2"
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})", value)
    if match is None or int(match[2]) not in (2, 4, 8, 16) or int(match[1]) == 0:
        return None
    return f"{int(match[1])}/{int(match[2])}"


def default_unit(metre: str) -> str:
    """ABC's rule for a missing `L:`: 1/16 below 3/4, else 1/8."""
    return "1/16" if Fraction(metre) < Fraction(3, 4) else "1/8"


def rhythm_of(*texts: str) -> str | None:
    """The first rhythm word found in `texts` (an R: field, then the title)."""
    for text in texts:
        lowered = text.lower()
        for word in sorted(_RHYTHM_WORDS, key=len, reverse=True):
            if re.search(rf"\b{word}s?\b", lowered):
                return _RHYTHM_WORDS[word]
    return None


# ------------------------------------------------------------------ tune normalisation

_FIELD = re.compile(r"^([A-Za-z]):(?![|:])(.*)$")
_DROP_TUNE = re.compile(r"\[[A-Za-z]:|&|[ZV]")  # inline fields, voice overlay, multi-bar rests
_ANNOTATION = re.compile(r'"[^"\n]*"')
_DECORATION = re.compile(r"![^!\n]*!|\+[^+\n]*\+")
_GRACE = re.compile(r"\{[^}\n]*\}")
_SLUR_OPEN = re.compile(r"\((?!\d)")
_DECORATION_CHARS = re.compile(r"[.~HIJKLMNOPQRSTUWYhijklmnopqrstuvwy$*#@;?]")
_SPACES = re.compile(r"[ \t]+")
_TITLE_CHARS = re.compile(r"[^A-Za-z0-9' ,.-]+")


def split_tunes(text: str) -> list[str]:
    """The tunes of an ABC file, each starting at its `X:` line (the file header is left out)."""
    tunes: list[list[str]] = []
    for line in text.splitlines():
        if re.match(r"^X:", line):
            tunes.append([])
        if tunes:
            tunes[-1].append(line)
    return ["\n".join(t) for t in tunes]


def normalise_tune(raw: str) -> str | None:
    """`raw` (one tune) in the normalised form, or None when it cannot be normalised."""
    fields: dict[str, str] = {}
    body_lines: list[str] = []
    in_body = False
    for line in raw.splitlines():
        line = line.split("%", 1)[0].rstrip()  # comments, whole-line or trailing
        if not line.strip():
            if in_body and body_lines:
                break  # a blank line ends the tune
            continue
        field = _FIELD.match(line) if not line.startswith("|:") else None
        if not in_body:
            if field is None:
                return None  # body before K:
            name, value = field[1].upper(), field[2].strip()
            fields.setdefault(name, value)  # the first T: is the title
            in_body = name == "K"
            continue
        if field is not None:
            if field[1] in "KLMVIm":  # changes part-way, voices, macros: not handled
                return None
            continue  # parts, lyrics, notes, sources...
        body_lines.append(line)
    if not in_body:
        return None
    header = _normal_header(fields)
    body = _normal_body(body_lines)
    if header is None or body is None:
        return None
    return header.text() + body


def _normal_header(fields: dict[str, str]) -> Header | None:
    metre = normal_metre(fields.get("M", ""))
    key = normal_key(fields.get("K", ""))
    if metre is None or key is None:
        return None
    unit = fields.get("L", "").strip() or default_unit(metre)
    if unit not in ("1/4", "1/8", "1/16"):
        return None
    title = _TITLE_CHARS.sub(" ", fields.get("T", "")).strip(" ,.-") or "Untitled"
    title = _SPACES.sub(" ", title)[:60]
    return Header(title, rhythm_of(fields.get("R", ""), title), metre, unit, key)


def _normal_body(lines: list[str]) -> str | None:
    joined: list[str] = []
    for line in lines:
        continued = line.endswith("\\")
        line = line.rstrip("\\")
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + line + ("\\" if continued else "")
        else:
            joined.append(line + ("\\" if continued else ""))
    out: list[str] = []
    for line in joined:
        line = line.rstrip("\\")
        line = _ANNOTATION.sub("", line)
        line = _DECORATION.sub("", line)
        line = _GRACE.sub("", line)
        if _DROP_TUNE.search(line):
            return None
        line = _SLUR_OPEN.sub("", line).replace(")", "")
        line = _DECORATION_CHARS.sub("", line).replace("x", "z")
        line = _SPACES.sub(" ", line).strip()
        if line:
            out.append(line)
    body = "\n".join(out)
    if not re.search(r"[A-Ga-g]", body):
        return None
    return body


def parse_header(text: str) -> tuple[Header, str]:
    """The header of a normalised tune (or of a prompt ending after `K:`) and its body."""
    fields: dict[str, str] = {}
    lines = text.split("\n")
    for i, line in enumerate(lines):
        field = _FIELD.match(line)
        if field is None:
            raise ValueError(f"line {i + 1} of the header is not a field: {line!r}")
        fields.setdefault(field[1].upper(), field[2].strip())
        if field[1].upper() == "K":
            metre = normal_metre(fields.get("M", "4/4")) or "4/4"
            header = Header(
                fields.get("T", "Untitled"),
                fields.get("R") or None,
                metre,
                fields.get("L") or default_unit(metre),
                fields["K"],
            )
            return header, "\n".join(lines[i + 1 :])
    raise ValueError("the tune has no K: field, so its header never ends")


# ------------------------------------------------------------------ requests

_KEY_REQUEST = re.compile(
    r"\b(?:in\s+)?([A-G])(?:\s*(#|b|sharp|flat)(?![a-z]))?"
    r"(?:\s+(major|minor|dorian|mixolydian|phrygian|lydian|locrian|maj|min|dor|mix))?\b"
)
_METRE_REQUEST = re.compile(r"\b(\d{1,2}/\d{1,2})\b")
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a an the in of and for with to on at by time tune song piece melody key major minor "
        "dorian mixolydian phrygian lydian locrian sharp flat",
    )
)


def header_for(request: str, title: str | None = None) -> Header:
    """The header that conditions a tune on a request such as "a lively jig in D major":
    the rhythm names metre and unit (jig -> 6/8, reel -> 4/4, waltz -> 3/4...), a key names
    `K:`, an explicit metre ("in 3/4") wins over the rhythm's, and the remaining words make
    the title."""
    rhythm = rhythm_of(request)
    metre, unit = RHYTHMS.get(rhythm or "", ("4/4", "1/8"))
    metre_match = _METRE_REQUEST.search(request)
    if metre_match and normal_metre(metre_match[1]):
        metre = normal_metre(metre_match[1]) or metre
        unit = default_unit(metre) if rhythm is None else unit
    key = "C"
    rest = _METRE_REQUEST.sub(" ", request)
    for match in _KEY_REQUEST.finditer(request):
        # A lone capital "A" is the article unless a mode or "in" says it is a key.
        if match[1] == "A" and not (match[2] or match[3] or match[0].lower().startswith("in")):
            continue
        accidental = {"sharp": "#", "flat": "b"}.get(match[2] or "", match[2] or "")
        mode = MODES.get((match[3] or "")[:3], "major")
        key = match[1] + accidental + _MODE_SUFFIX[mode]
        rest = rest.replace(match[0], " ")
        break
    if title is None:
        words = [w for w in re.findall(r"[A-Za-z']+", rest) if w.lower() not in _STOPWORDS]
        title = " ".join(w.capitalize() for w in words) or "Untitled"
    return Header(title[:60], rhythm, metre, unit, key)


# ------------------------------------------------------------------ tunes from outside

# Header fields a submitted tune may carry (information only). Refused: I: (abcm2ps reads it
# as a %% directive), U: and m: (symbol and macro definitions), V: (voices), and the rest.
SUBMITTED_FIELDS = frozenset("XTCORMLKQNZSBDHAGFPW")
_UNITS = frozenset({"1/1", "1/2", "1/4", "1/8", "1/16", "1/32", "1/64"})
_INLINE_FIELD = re.compile(r"\[[A-Za-z]:")
# A body is notes, rests, bar lines, repeats, chords, ties, slurs, tuplets, broken rhythm,
# grace notes and decoration shortcuts; then quoted chord symbols and !named! decorations.
_BODY_SYMBOLS = re.compile(r"[A-Ga-gzx^_=,'0-9/|:\[\]()\-<> .~{}HLMOPSTuv]*")
_CHORD_SYMBOL = re.compile(r'"[^"%\\\x00-\x1f]*"')
_DECORATION_NAME = re.compile(r"![A-Za-z0-9.<>()+-]*!")
_FIELD_TEXT = re.compile(r"[^%\x00-\x1f\x7f]*")


class UnsafeAbcError(ValueError):
    """A submitted tune uses something outside the whitelist; the message names it."""


def checked_abc(text: str) -> tuple[Header, str]:
    """A tune sent from outside (a web client), checked against a strict whitelist before
    any tool reads it: its header (fields limited to `SUBMITTED_FIELDS`, metre, unit and key
    in their plain spellings) and its body (only musical symbols, no `%%` directives, no
    fields), comments dropped. Raises `UnsafeAbcError` naming the first line refused.

    The header is rebuilt from `Header`, so only X:, T:, R:, M:, L: and K: reach a tool."""
    fields: dict[str, str] = {}
    body: list[str] = []
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        stripped = raw.strip()
        if stripped.startswith("%%"):
            directive = stripped.split(maxsplit=1)[0]
            raise UnsafeAbcError(
                f"line {number}: the directive {directive} is not accepted (ABC directives "
                "can make the renderer read files on the server); remove the line"
            )
        line = raw.split("%", 1)[0].rstrip()  # a comment, whole-line or trailing
        if not line.strip():
            continue
        field = _FIELD.match(line)
        if "K" not in fields:
            if field is None:
                raise UnsafeAbcError(
                    f"line {number} of the header is not a field (the header ends with K:)"
                )
            _check_field(number, field[1], field[2].strip())
            fields.setdefault(field[1], field[2].strip())
            continue
        if field is not None or _INLINE_FIELD.search(line):
            raise UnsafeAbcError(
                f"line {number}: fields inside the tune's body are not accepted; "
                "send one tune in one metre, unit and key"
            )
        _check_body_line(number, line)
        body.append(line.strip())
    if "K" not in fields:
        raise UnsafeAbcError("the tune has no K: field, so its header never ends")
    if not body:
        raise UnsafeAbcError("the tune has no body after its K: field")
    metre = normal_metre(fields.get("M", "4/4")) or "4/4"
    header = Header(
        fields.get("T", "Untitled")[:200],
        fields.get("R") or None,
        metre,
        fields.get("L") or default_unit(metre),
        normal_key(fields["K"]) or "C",
    )
    return header, "\n".join(body) + "\n"


def _check_field(number: int, name: str, value: str) -> None:
    if name not in SUBMITTED_FIELDS:
        allowed = " ".join(f"{f}:" for f in sorted(SUBMITTED_FIELDS))
        raise UnsafeAbcError(
            f"line {number}: the field {name}: is not accepted (allowed: {allowed})"
        )
    problem = ""
    if name == "M" and normal_metre(value) is None:
        problem = "a metre such as 6/8, 4/4 or C"
    elif name == "L" and value not in _UNITS:
        problem = "a unit note length such as 1/8"
    elif name == "K" and normal_key(value) is None:
        problem = "a key such as D, Em, F#m or Ador"
    elif not _FIELD_TEXT.fullmatch(value):
        problem = "text without % or control characters"
    if problem:
        raise UnsafeAbcError(f"line {number}: {name}:{value} is not {problem}")


def _check_body_line(number: int, line: str) -> None:
    rest = _DECORATION_NAME.sub("", _CHORD_SYMBOL.sub("", line))
    if not _BODY_SYMBOLS.fullmatch(rest):
        bad = next(ch for ch in rest if not _BODY_SYMBOLS.fullmatch(ch))
        raise UnsafeAbcError(
            f"line {number}: {bad!r} is not an ABC symbol accepted here (notes, rests, bar "
            "lines, repeats, chords, ties, tuplets, broken rhythm, grace notes, "
            '"chord symbols" and !decorations!)'
        )
