"""Poetic forms as data: a `Form` says how many lines, how long each is, which lines rhyme,
and (optionally) the stress or tone pattern lines follow.

Built-in forms are looked up by name in English or Chinese (`get_form("wujue")`,
`get_form("五言绝句")`); a few take arguments (`quatrain:ABAB`, `couplet:AA:10`, `free:12`);
any other form can be written as a small YAML file (see `form_from_yaml`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Language = Literal["en", "zh"]
RhymeSystem = Literal["pingshui", "xinyun"]
RHYME_SYSTEMS: tuple[RhymeSystem, ...] = ("pingshui", "xinyun")
UNRHYMED = "x"  # a line that rhymes with nothing (also accepted: "X", "-")
FREE_LINE_DECODE_MAX = 12  # syllables / characters a free line may take while decoding
MAX_LINES = 200  # longer than any poem asked for; a form of a billion lines would never build


class FormError(RuntimeError):
    """No text in the required form could be produced (see `write_poem`)."""


class UnknownFormError(ValueError):
    """A form name that is neither built in nor a readable YAML file."""


@dataclass(frozen=True)
class Budget:
    """How long one line is: between `low` and `high` units (syllables or characters),
    inclusive; `high` None means no upper bound."""

    low: int
    high: int | None

    def __post_init__(self) -> None:
        if self.low < 0 or (self.high is not None and self.high < self.low):
            raise ValueError(f"bad line length {self.low}..{self.high}")

    @classmethod
    def exact(cls, n: int) -> Budget:
        return cls(n, n)

    @classmethod
    def around(cls, n: int, tolerance: int) -> Budget:
        return cls(max(n - tolerance, 1), n + tolerance)

    @classmethod
    def free(cls) -> Budget:
        return cls(1, None)

    def admits(self, n: int) -> bool:
        return n >= self.low and (self.high is None or n <= self.high)

    def admits_range(self, low: int, high: int) -> bool:
        """Whether any count in low..high fits (words with several pronunciations)."""
        return high >= self.low and (self.high is None or low <= self.high)

    def decode_high(self) -> int:
        return self.high if self.high is not None else max(self.low, FREE_LINE_DECODE_MAX)

    def __str__(self) -> str:
        if self.high is None:
            return "any" if self.low <= 1 else f"{self.low}+"
        if self.low == self.high:
            return str(self.low)
        middle, odd = divmod(self.low + self.high, 2)
        if not odd and self.low > 1:
            return f"{middle}±{middle - self.low}"
        return f"{self.low}-{self.high}"


@dataclass(frozen=True)
class Form:
    """A poetic form.

    `rhyme` has one letter per line: lines with the same letter rhyme, `x` rhymes with
    nothing. In Chinese forms a lowercase letter marks a line that may join the rhyme
    (首句入韵) but need not. `stress` (English) is a foot repeated along each line, `x/`
    for iambs (`x` unstressed, `/` stressed): scored, never required. `tone_patterns`
    (Chinese) are the alternative 平仄 templates for the whole poem: scored, and required
    at the key positions (二四六分明 and the last character) when `strict`.
    """

    name: str
    language: Language
    lines: int
    budgets: tuple[Budget, ...]
    rhyme: str
    title: str = ""
    stanza_breaks: tuple[int, ...] = ()  # a blank line may follow these line numbers (1-based)
    stress: str | None = None
    tone_patterns: tuple[tuple[str, ...], ...] = ()
    rhyme_system: RhymeSystem = "pingshui"
    strict: bool = False
    aliases: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.language not in ("en", "zh"):
            raise ValueError(f"form {self.name!r}: language must be 'en' or 'zh'")
        if self.lines < 1:
            raise ValueError(f"form {self.name!r} needs at least one line")
        if len(self.budgets) != self.lines:
            raise ValueError(
                f"form {self.name!r} has {self.lines} lines but {len(self.budgets)} lengths"
            )
        if len(self.rhyme) != self.lines:
            raise ValueError(
                f"form {self.name!r} has {self.lines} lines but the rhyme scheme "
                f"{self.rhyme!r} has {len(self.rhyme)} letters"
            )
        if not all(c.isalpha() and c.isascii() for c in self.rhyme):
            raise ValueError(f"form {self.name!r}: rhyme scheme letters must be A-Z or x")
        if self.rhyme_system not in RHYME_SYSTEMS:
            raise ValueError(f"rhyme system must be one of {', '.join(RHYME_SYSTEMS)}")
        if any(not 1 <= b < self.lines for b in self.stanza_breaks):
            raise ValueError(f"form {self.name!r}: stanza breaks must fall between lines")
        if self.stress is not None and not re.fullmatch(r"[x/]+", self.stress):
            raise ValueError(f"form {self.name!r}: stress foot must use x and /, e.g. 'x/'")
        for template in self.tone_patterns:
            if len(template) != self.lines or any(
                len(p) != (b.high or 0) or set(p) - set("平仄中")
                for p, b in zip(template, self.budgets, strict=True)
            ):
                raise ValueError(
                    f"form {self.name!r}: each tone template needs one 平/仄/中 pattern "
                    "per line, as long as the line"
                )

    @property
    def unit(self) -> Literal["syllable", "character"]:
        return "syllable" if self.language == "en" else "character"

    @property
    def display_name(self) -> str:
        return self.title or self.name

    def rhyme_letter(self, line: int) -> str | None:
        """The rhyme group of line `line` (0-based), upper-cased; None when unrhymed."""
        letter = self.rhyme[line]
        return None if letter in "xX" else letter.upper()

    def rhyme_required(self, line: int) -> bool:
        letter = self.rhyme[line]
        if letter in "xX":
            return False
        return self.language == "en" or letter.isupper()

    def with_options(
        self, rhyme_system: RhymeSystem | None = None, strict: bool | None = None
    ) -> Form:
        """This form with another rhyme system (Chinese: 平水韵 `pingshui` or 中华新韵
        `xinyun`) or strictness."""
        changes: dict[str, Any] = {}
        if rhyme_system is not None:
            if rhyme_system not in RHYME_SYSTEMS:
                raise ValueError(
                    f"unknown rhyme system {rhyme_system!r}; use {' or '.join(RHYME_SYSTEMS)}"
                )
            changes["rhyme_system"] = rhyme_system
        if strict is not None:
            changes["strict"] = strict
        return dataclasses.replace(self, **changes) if changes else self

    def describe(self) -> str:
        """One line: lines, lengths, rhyme scheme."""
        unit = "syllables" if self.language == "en" else "characters"
        lengths = ", ".join(str(b) for b in self.budgets) + f" {unit}"
        if len(set(self.budgets)) == 1:
            lengths = f"{self.budgets[0]} {unit} each"
        scheme = self.rhyme
        for cut in sorted(self.stanza_breaks, reverse=True):
            scheme = scheme[:cut] + " " + scheme[cut:]
        rhyme = "unrhymed" if set(scheme) <= set("xX ") else f"rhyme {scheme}"
        return f"{self.lines} lines of {lengths}; {rhyme}"


# ------------------------------------------------------------------ Chinese tone templates

# The four line types of a five-character regulated line; a seven-character line puts the
# opposite pair in front (仄仄平平仄 -> 平平仄仄平平仄).
_LINE_TYPES = {"A": "仄仄平平仄", "B": "平平仄仄平", "C": "平平平仄仄", "D": "仄仄仄平平"}
# 仄起首句不入韵, 仄起首句入韵, 平起首句不入韵, 平起首句入韵 (named for five characters)
_QUATRAINS = ("ABCD", "DBCD", "CDAB", "BDAB")


def _seven(pattern: str) -> str:
    flip = {"平": "仄", "仄": "平"}
    return flip[pattern[0]] + flip[pattern[1]] + pattern


def regulated_templates(chars: int, lines: int) -> tuple[tuple[str, ...], ...]:
    """The 平仄 templates of a regulated verse (绝句 with 4 lines, 律诗 with 8) of 5 or 7
    characters a line: 平起/仄起, with and without a rhyming first line."""
    if chars not in (5, 7) or lines not in (4, 8):
        raise ValueError("regulated verse has 5 or 7 characters a line and 4 or 8 lines")
    templates = []
    for quatrain in _QUATRAINS:
        order = quatrain
        if lines == 8:
            # The second half repeats the pattern with an unrhymed opening line.
            plain = {"D": "A", "B": "C"}.get(quatrain[0], quatrain[0])
            unrhymed = next(q for q in _QUATRAINS if q[0] == plain)
            order = quatrain + unrhymed
        line_patterns = [_LINE_TYPES[t] for t in order]
        if chars == 7:
            line_patterns = [_seven(p) for p in line_patterns]
        templates.append(tuple(line_patterns))
    return tuple(templates)


def template_name(template: Sequence[str]) -> str:
    """平起/仄起 (the first line's second character) and whether the first line rhymes."""
    first = template[0]
    start = "平起" if first[1] == "平" else "仄起"
    return start + ("首句入韵" if first[-1] == "平" else "首句不入韵")


def key_positions(chars: int) -> tuple[int, ...]:
    """0-based positions whose tone is fixed: the even ones (二四六分明) and the last."""
    return tuple(sorted({*range(1, chars, 2), chars - 1}))


# ------------------------------------------------------------------ the built-in forms


def _en(
    name: str,
    title: str,
    budgets: Sequence[Budget],
    rhyme: str,
    aliases: Sequence[str] = (),
    stanza_breaks: Sequence[int] = (),
    stress: str | None = None,
    description: str = "",
) -> Form:
    return Form(
        name=name,
        language="en",
        lines=len(budgets),
        budgets=tuple(budgets),
        rhyme=rhyme,
        title=title,
        stanza_breaks=tuple(stanza_breaks),
        stress=stress,
        aliases=tuple(aliases),
        description=description,
    )


def _regulated(name: str, title: str, chars: int, lines: int, aliases: Sequence[str]) -> Form:
    rhyme = "aAxA" if lines == 4 else "aAxAxAxA"
    return Form(
        name=name,
        language="zh",
        lines=lines,
        budgets=tuple(Budget.exact(chars) for _ in range(lines)),
        rhyme=rhyme,
        title=title,
        tone_patterns=regulated_templates(chars, lines),
        aliases=tuple(aliases),
        description=f"{lines} lines of {chars} characters; the even lines rhyme (the first may)",
    )


def _builtins() -> list[Form]:
    sonnet_lines = [Budget.around(10, 1)] * 14
    return [
        _en(
            "haiku",
            "Haiku",
            [Budget.exact(5), Budget.exact(7), Budget.exact(5)],
            "xxx",
            aliases=["俳句"],
            description="three unrhymed lines of 5, 7 and 5 syllables",
        ),
        _en(
            "tanka",
            "Tanka",
            [Budget.exact(n) for n in (5, 7, 5, 7, 7)],
            "xxxxx",
            aliases=["短歌", "和歌"],
            description="five unrhymed lines of 5, 7, 5, 7 and 7 syllables",
        ),
        _en(
            "limerick",
            "Limerick",
            [Budget(7, 10), Budget(7, 10), Budget(4, 7), Budget(4, 7), Budget(7, 10)],
            "AABBA",
            aliases=["五行打油诗", "打油诗", "利默里克"],
            description="five lines, AABBA: long lines of 7-10 syllables, short of 4-7",
        ),
        _en(
            "shakespearean-sonnet",
            "Shakespearean sonnet",
            sonnet_lines,
            "ABABCDCDEFEFGG",
            aliases=[
                "sonnet",
                "english-sonnet",
                "elizabethan-sonnet",
                "莎士比亚十四行诗",
                "莎士比亚体十四行诗",
                "英式十四行诗",
                "十四行诗",
            ],
            stanza_breaks=[4, 8, 12],
            stress="x/",
            description="14 lines of iambic pentameter, ABAB CDCD EFEF GG",
        ),
        _en(
            "petrarchan-sonnet",
            "Petrarchan sonnet",
            sonnet_lines,
            "ABBAABBACDECDE",
            aliases=["italian-sonnet", "彼特拉克十四行诗", "彼特拉克体十四行诗", "意大利十四行诗"],
            stanza_breaks=[4, 8, 11],
            stress="x/",
            description="14 lines of iambic pentameter, ABBAABBA CDECDE",
        ),
        _regulated("wujue", "五言绝句", 5, 4, ["五言绝句", "五绝", "五言絕句", "wuyan-jueju"]),
        _regulated("qijue", "七言绝句", 7, 4, ["七言绝句", "七绝", "七言絕句", "qiyan-jueju"]),
        _regulated(
            "wulu",
            "五言律诗",
            5,
            8,
            ["五言律诗", "五律", "五言律詩", "wulv", "wulü", "wuyan-lushi"],
        ),
        _regulated(
            "qilu",
            "七言律诗",
            7,
            8,
            ["七言律诗", "七律", "七言律詩", "qilv", "qilü", "qiyan-lushi"],
        ),
    ]


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-·]+", "", name.strip().lower())


_BUILTINS: dict[str, Form] = {}
_ALIASES: dict[str, str] = {}
# Forms that take arguments after a colon: quatrain:ABAB, couplet:AA:10, free:12.
_PARAMETRIC = {
    "couplet": ("couplet", 2, "AA"),
    "对句": ("couplet", 2, "AA"),
    "quatrain": ("quatrain", 4, "ABAB"),
    "四行诗": ("quatrain", 4, "ABAB"),
    "free": ("free", 0, ""),
    "freeverse": ("free", 0, ""),
    "自由诗": ("free", 0, ""),
}


def _registry() -> tuple[dict[str, Form], dict[str, str]]:
    if not _BUILTINS:
        for form in _builtins():
            _BUILTINS[form.name] = form
            for alias in (form.name, form.title, *form.aliases):
                _ALIASES[_normalise(alias)] = form.name
    return _BUILTINS, _ALIASES


def builtin_forms() -> list[Form]:
    """Every built-in form with a fixed shape (parametric ones are listed by `form_names`)."""
    return list(_registry()[0].values())


def form_names() -> list[str]:
    """What `get_form` understands, for help texts and error messages."""
    names = [f.name for f in builtin_forms()]
    return [*names, "couplet[:AA[:N]]", "quatrain[:ABAB[:N]]", "free:N", "FILE.yaml"]


def _parametric(kind: str, args: list[str], spec: str) -> Form:
    canonical, lines, default_scheme = _PARAMETRIC[kind]
    if canonical == "free":
        if len(args) != 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= MAX_LINES:
            raise UnknownFormError(
                f"free verse takes a line count from 1 to {MAX_LINES}, e.g. free:12 (got {spec!r})"
            )
        n = int(args[0])
        return Form(
            name=f"free:{n}",
            language="en",
            lines=n,
            budgets=tuple(Budget.free() for _ in range(n)),
            rhyme=UNRHYMED * n,
            title=f"Free verse ({n} lines)",
            description=f"{n} lines, any length, no rhyme",
        )
    if len(args) > 2:
        raise UnknownFormError(f"{canonical} takes a rhyme scheme and a line length: {spec!r}")
    scheme = (args[0] if args else default_scheme).replace("-", "x").replace(" ", "")
    if len(scheme) != lines or not scheme.isalpha() or not scheme.isascii():
        raise UnknownFormError(
            f"a {canonical} needs a rhyme scheme of {lines} letters (e.g. "
            f"{canonical}:{default_scheme}), got {scheme!r}"
        )
    budget = Budget.free()
    if len(args) == 2:
        if not args[1].isdigit() or int(args[1]) < 1:
            raise UnknownFormError(f"line length must be a number of syllables: {spec!r}")
        budget = Budget.around(int(args[1]), 1)
    scheme = "".join("x" if c in "xX" else c.upper() for c in scheme)
    suffix = f":{scheme}" + (f":{args[1]}" if len(args) == 2 else "")
    return Form(
        name=canonical + suffix,
        language="en",
        lines=lines,
        budgets=(budget,) * lines,
        rhyme=scheme,
        title=f"{canonical.capitalize()} ({scheme})",
        description=f"{lines} lines rhyming {scheme}",
    )


def get_form(
    spec: str | Form,
    *,
    rhyme_system: RhymeSystem | None = None,
    strict: bool | None = None,
) -> Form:
    """The form called `spec`: a built-in name or alias in English or Chinese (`haiku`,
    `wujue`, `五言绝句`), a parametric form (`quatrain:ABAB`, `couplet:AA:10`, `free:12`),
    or the path of a YAML form file. Options override the form's rhyme system and strictness.
    """
    if isinstance(spec, Form):
        return spec.with_options(rhyme_system, strict)
    text = spec.strip()
    looks_like_path = "/" in text or "\\" in text
    if text.lower().endswith((".yaml", ".yml")) or (looks_like_path and Path(text).is_file()):
        return form_from_yaml(Path(text)).with_options(rhyme_system, strict)
    forms, aliases = _registry()
    head, *args = re.split(r"[:：]", text)
    key = _normalise(head)
    if args or key in _PARAMETRIC:
        if key not in _PARAMETRIC:
            raise UnknownFormError(_unknown_message(spec))
        return _parametric(key, args, spec).with_options(rhyme_system, strict)
    if key not in aliases:
        raise UnknownFormError(_unknown_message(spec))
    return forms[aliases[key]].with_options(rhyme_system, strict)


def _unknown_message(spec: str) -> str:
    return f"unknown form {spec!r}; known forms: {', '.join(form_names())}"


# ------------------------------------------------------------------ YAML forms

_YAML_KEYS = {
    "name",
    "title",
    "language",
    "lines",
    "syllables",
    "characters",
    "tolerance",
    "rhyme",
    "stanzas",
    "stress",
    "tones",
    "rhymes",
    "strict",
    "aliases",
    "description",
}


def _lengths(value: Any, lines: int, tolerance: int, where: str) -> tuple[Budget, ...]:
    """A length per line from a number, a "7-10" range, or a list of either."""
    items = value if isinstance(value, list) else [value] * lines
    if len(items) != lines:
        raise ValueError(f"{where}: {len(items)} line lengths given for {lines} lines")
    budgets = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"{where}: line length {item!r} is not a number")
        if isinstance(item, int):
            budgets.append(Budget.around(item, tolerance) if tolerance else Budget.exact(item))
            continue
        match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(item))
        if not match or int(match[1]) > int(match[2]) or int(match[2]) < 1:
            raise ValueError(f"{where}: line length {item!r} is not a number or a range like 7-10")
        budgets.append(Budget(int(match[1]), int(match[2])))
    return tuple(budgets)


def form_from_mapping(data: Mapping[str, Any], where: str = "form") -> Form:
    """A form from parsed YAML (see `form_from_yaml` for the keys)."""
    unknown = sorted(set(data) - _YAML_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    language = data.get("language", "zh" if "characters" in data else "en")
    if language not in ("en", "zh"):
        raise ValueError(f"{where}: language must be en or zh, not {language!r}")
    lines = data.get("lines")
    if not isinstance(lines, int) or isinstance(lines, bool) or not 1 <= lines <= MAX_LINES:
        raise ValueError(f"{where}: 'lines' must be a number of lines from 1 to {MAX_LINES}")
    unit_key = "characters" if language == "zh" else "syllables"
    if unit_key not in data:
        raise ValueError(f"{where}: give '{unit_key}' per line (a number, a range, or a list)")
    tolerance = data.get("tolerance", 0)
    if not isinstance(tolerance, int) or isinstance(tolerance, bool) or tolerance < 0:
        raise ValueError(f"{where}: 'tolerance' must be a whole number of {unit_key}")
    budgets = _lengths(data[unit_key], lines, tolerance, where)
    rhyme = str(data.get("rhyme", UNRHYMED * lines)).replace(" ", "").replace("-", "x")
    if language == "en":
        rhyme = "".join("x" if c in "xX" else c.upper() for c in rhyme)
    stanzas = data.get("stanzas", [])
    if not isinstance(stanzas, list) or not all(isinstance(s, int) for s in stanzas):
        raise ValueError(f"{where}: 'stanzas' lists the line numbers a stanza ends after")
    stress = data.get("stress")
    stress = {"iambic": "x/", "trochaic": "/x", "anapestic": "xx/", "dactylic": "/xx"}.get(
        str(stress), stress
    )
    tones = data.get("tones")
    tone_patterns: tuple[tuple[str, ...], ...] = ()
    if tones is not None:
        if not isinstance(tones, list) or not tones:
            raise ValueError(f"{where}: 'tones' is a list of 平仄 patterns, one per line")
        nested = tones if isinstance(tones[0], list) else [tones]
        tone_patterns = tuple(tuple(str(p) for p in t) for t in nested)
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list):
        raise ValueError(f"{where}: 'aliases' is a list of names")
    name = str(data.get("name") or Path(where).stem)
    return Form(
        name=name,
        language=language,
        lines=lines,
        budgets=budgets,
        rhyme=rhyme,
        title=str(data.get("title", name)),
        stanza_breaks=tuple(stanzas),
        stress=None if stress is None else str(stress),
        tone_patterns=tone_patterns,
        rhyme_system=data.get("rhymes", "pingshui"),
        strict=bool(data.get("strict", False)),
        aliases=tuple(str(a) for a in aliases),
        description=str(data.get("description", "")),
    )


def form_from_yaml(path: Path) -> Form:
    """A user-defined form from a YAML file such as::

        name: cinquain
        lines: 5
        syllables: [2, 4, 6, 8, 2]   # or one number for every line, or ranges like "7-10"
        tolerance: 0                 # optional: each length may be off by this much
        rhyme: xxxxx                 # optional: one letter per line, x = unrhymed
        stanzas: []                  # optional: stanza breaks after these lines
        stress: iambic               # optional: iambic, trochaic, ... or a foot like "x/"

    A Chinese form says `language: zh` and `characters:` instead of `syllables:`, and may
    give `rhymes: pingshui` or `xinyun`, `strict: true` and `tones:` (平仄 per line).
    """
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"form file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable YAML file ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a form file is a YAML mapping (name:, lines:, ...)")
    try:
        return form_from_mapping(data, str(path))
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from err
