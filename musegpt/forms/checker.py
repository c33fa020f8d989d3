"""`check(text, form)`: does a poem keep its form? A report per line (length, rhyme, stress
or tones) and, when it fails, the reasons in plain words."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from musegpt.forms import chinese, english
from musegpt.forms.form import Budget, Form, get_form, template_name

_ZH_LINE_SPLIT = re.compile(r"[\n" + re.escape(chinese.LINE_END_PUNCT) + r"]")


@dataclass(frozen=True)
class LineReport:
    number: int  # 1-based
    text: str
    units: int  # syllables (canonical pronunciations) or Han characters
    units_low: int  # fewest syllables any pronunciation gives (= units for Chinese)
    units_high: int
    budget: Budget | None  # None: a line beyond the form's length
    end: str  # the rhyming word or character
    rhyme_letter: str  # as in the scheme; "" beyond the form
    rhyme_group: str  # e.g. "-ey1" or 下平聲七陽 or 唐
    rhymes_with: int | None = None  # the line (1-based) it was compared with
    rhyme_kind: str = ""  # rhyme / eye / none / "" when not compared
    pattern: str = ""  # stress marks (x / ?) or tones (平仄?)
    expected: str = ""  # the metre or tone template for the line
    pattern_score: float | None = None
    problems: tuple[str, ...] = ()

    @property
    def length_ok(self) -> bool:
        return self.budget is not None and self.budget.admits_range(self.units_low, self.units_high)

    @property
    def units_text(self) -> str:
        if self.units_low == self.units_high:
            return str(self.units)
        return f"{self.units} ({self.units_low}-{self.units_high})"


@dataclass(frozen=True)
class FormReport:
    form: Form
    lines: tuple[LineReport, ...]
    reasons: tuple[str, ...]  # why the text fails; empty when it passes
    notes: tuple[str, ...] = ()  # observations that do not fail it
    pattern_score: float | None = None  # metre (English) or 平仄 (Chinese) agreement, 0..1
    template: str = ""  # the 平仄 template followed best (Chinese)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def summary(self) -> str:
        if self.passed:
            return f"passes as a {self.form.display_name}"
        return f"fails as a {self.form.display_name}: " + "; ".join(self.reasons)


@dataclass
class _Line:
    text: str
    report: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def split_lines(text: str, form: Form) -> tuple[list[str], list[int]]:
    """The poem's non-blank lines, and the line numbers a blank line follows (stanza
    breaks). Chinese lines also end at sentence punctuation (床前明月光，疑是地上霜。)."""
    lines: list[str] = []
    breaks: list[int] = []
    blank = False
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        pieces = _ZH_LINE_SPLIT.split(raw) if form.language == "zh" else [raw]
        pieces = [p.strip() for p in pieces if p.strip()]
        if not pieces:
            blank = True
            continue
        if blank and lines:
            breaks.append(len(lines))
        blank = False
        lines.extend(pieces)
    return lines, breaks


def check(text: str, form: Form | str) -> FormReport:
    """Check `text` against `form` (a `Form` or a name for `get_form`)."""
    form = get_form(form) if isinstance(form, str) else form
    lines, breaks = split_lines(text, form)
    if form.language == "en":
        return _check_english(lines, breaks, form)
    return _check_chinese(lines, form)


def _count_reasons(lines: list[str], form: Form) -> list[str]:
    if not lines:
        return [f"the text is empty; a {form.display_name} has {form.lines} lines"]
    if len(lines) != form.lines:
        return [f"{len(lines)} lines where a {form.display_name} has {form.lines}"]
    return []


def _length_problem(report: LineReport, form: Form) -> str | None:
    if report.budget is None or report.length_ok:
        return None
    unit = form.unit + ("" if report.units == 1 else "s")
    return f"line {report.number} has {report.units_text} {unit}; it should have {report.budget}"


# ------------------------------------------------------------------ English


def _check_english(lines: list[str], breaks: list[int], form: Form) -> FormReport:
    reasons = _count_reasons(lines, form)
    notes: list[str] = []
    reports: list[LineReport] = []
    anchors: dict[str, int] = {}  # rhyme letter -> index of its first line
    end_words: list[str] = []
    scores: list[float] = []
    for i, line in enumerate(lines):
        words = english.words(line)
        sounds = [english.word_sound(w) for w in words]
        end = words[-1] if words else ""
        end_words.append(end)
        budget = form.budgets[i] if i < form.lines else None
        letter = form.rhyme[i] if i < form.lines else ""
        marks = "".join(s.stress for s in sounds)
        expected = ""
        score = None
        if form.stress:
            expected = (form.stress * (len(marks) // len(form.stress) + 1))[: len(marks)]
            score = english.meter_score(marks, form.stress)
            if score is not None:
                scores.append(score)
        problems: list[str] = []
        rhymes_with = None
        kind = ""
        group = english.rhyme_label(end) if end else ""
        upper = form.rhyme_letter(i) if i < form.lines else None
        if upper is not None:
            if not end:
                problems.append(f"line {i + 1} has no word to rhyme")
            elif upper not in anchors:
                anchors[upper] = i
            else:
                j = anchors[upper]
                rhymes_with = j + 1
                kind = english.rhyme(end, end_words[j])
                if kind == "none":
                    problems.append(
                        f"line {i + 1} ends with {end!r}, which does not rhyme with "
                        f"{end_words[j]!r} (line {j + 1}); the scheme is {form.rhyme}"
                    )
                elif kind == "eye":
                    notes.append(
                        f"lines {j + 1} and {i + 1} make an eye rhyme: {end_words[j]} / {end}"
                    )
        report = LineReport(
            number=i + 1,
            text=line,
            units=sum(s.syllables for s in sounds),
            units_low=sum(s.low for s in sounds),
            units_high=sum(s.high for s in sounds),
            budget=budget,
            end=end,
            rhyme_letter=letter,
            rhyme_group=group,
            rhymes_with=rhymes_with,
            rhyme_kind=kind,
            pattern=marks,
            expected=expected,
            pattern_score=score,
        )
        length = _length_problem(report, form)
        if length:
            problems.insert(0, length)
        reports.append(_with_problems(report, problems))
        reasons.extend(problems)
    wrong_breaks = [b for b in breaks if b not in form.stanza_breaks]
    if wrong_breaks:
        allowed = ", ".join(map(str, form.stanza_breaks)) or "none"
        reasons.append(
            f"stanza break after line {', '.join(map(str, wrong_breaks))}; a "
            f"{form.display_name} may break only after lines: {allowed}"
        )
    meter = sum(scores) / len(scores) if scores else None
    if meter is not None:
        notes.append(f"metre: {meter:.0%} of determinate syllables follow {form.stress!r}")
    return FormReport(form, tuple(reports), tuple(reasons), tuple(notes), meter)


def _with_problems(report: LineReport, problems: list[str]) -> LineReport:
    if not problems:
        return report
    return LineReport(**{**report.__dict__, "problems": tuple(problems)})


# ------------------------------------------------------------------ Chinese


def _check_chinese(lines: list[str], form: Form) -> FormReport:
    system = form.rhyme_system
    system_name = "平水韵" if system == "pingshui" else "中华新韵"
    reasons = _count_reasons(lines, form)
    notes: list[str] = []
    sounds = [chinese.line_sounds(chinese.han_chars(line), system) for line in lines]
    tones = ["".join(s.tone for s in line) for line in sounds]
    fit = chinese.fit_template(tones, form.tone_patterns) if form.tone_patterns else None
    template = form.tone_patterns[fit.index] if fit is not None else ()
    misses: dict[int, list[int]] = {}
    if fit is not None:
        for line_index, pos in fit.key_misses:
            misses.setdefault(line_index, []).append(pos)

    # Rhyme: the lines that must rhyme share a group; under strict rules the group is 平.
    # A line marked optional (首句) joins under strict rules when it ends in 平.
    members: dict[str, list[int]] = {}
    optional: dict[str, list[int]] = {}
    for i in range(min(len(lines), form.lines)):
        letter = form.rhyme_letter(i)
        if letter is None or not sounds[i]:
            continue
        ends_level = sounds[i][-1].tone == "平"
        if form.rhyme_required(i) or (form.strict and ends_level):
            members.setdefault(letter, []).append(i)
        else:
            optional.setdefault(letter, []).append(i)
    rhyme_problems: dict[int, list[str]] = {}
    rhymes_with: dict[int, int] = {}
    kinds: dict[int, str] = {}
    for letter, indices in members.items():
        indices.sort(key=lambda i: (not form.rhyme_required(i), i))  # a required line leads
        _rhyme_group(indices, sounds, form, system_name, rhyme_problems, rhymes_with, kinds, notes)
        anchor = sounds[indices[0]][-1]
        for i in optional.get(letter, []):
            if sounds[i][-1].groups & anchor.groups:
                rhymes_with[i], kinds[i] = indices[0] + 1, "rhyme"

    reports: list[LineReport] = []
    for i, line in enumerate(lines):
        line_sounds = sounds[i]
        budget = form.budgets[i] if i < form.lines else None
        problems: list[str] = []
        others = "".join(
            ch for ch in line if not chinese.is_han(ch) and not chinese.is_punctuation(ch)
        )
        if others:
            problems.append(f"line {i + 1} has characters that are not Chinese: {others!r}")
        expected = template[i] if i < len(template) else ""
        score = None
        if expected and len(expected) == len(line_sounds):
            judged = [
                (s.tone, w) for s, w in zip(line_sounds, expected, strict=True) if s.tone != "?"
            ]
            score = sum(a == w for a, w in judged) / len(judged) if judged else None
        if form.strict and i in misses:
            places = "、".join(str(p + 1) for p in misses[i])
            problems.append(
                f"line {i + 1} breaks the 平仄 at character {places}: {tones[i]} against "
                f"{expected} ({template_name(template)})"
            )
        problems.extend(rhyme_problems.get(i, []))
        end = line_sounds[-1] if line_sounds else None
        report = LineReport(
            number=i + 1,
            text=line,
            units=len(line_sounds),
            units_low=len(line_sounds),
            units_high=len(line_sounds),
            budget=budget,
            end=end.char if end else "",
            rhyme_letter=form.rhyme[i] if i < form.lines else "",
            rhyme_group=chinese.group_label(end.groups) if end else "",
            rhymes_with=rhymes_with.get(i),
            rhyme_kind=kinds.get(i, ""),
            pattern=tones[i],
            expected=expected,
            pattern_score=score,
        )
        length = _length_problem(report, form)
        if length:
            problems.insert(0, length)
        reports.append(_with_problems(report, problems))
        reasons.extend(problems)
    name = template_name(template) if template else ""
    if fit is not None:
        notes.append(f"平仄: {fit.score:.0%} of characters follow {name}")
        if fit.key_misses and not form.strict:
            notes.append(
                f"{len(fit.key_misses)} key position(s) break the 平仄 "
                "(enforced only in strict mode)"
            )
    return FormReport(
        form,
        tuple(reports),
        tuple(reasons),
        tuple(notes),
        fit.score if fit is not None else None,
        name,
    )


def _rhyme_group(
    indices: list[int],
    sounds: list[list[chinese.CharSound]],
    form: Form,
    system_name: str,
    problems: dict[int, list[str]],
    rhymes_with: dict[int, int],
    kinds: dict[int, str],
    notes: list[str],
) -> None:
    """Lines `indices` must share a rhyme group (and, strictly, a level-tone one)."""
    ends = [sounds[i][-1] for i in indices]
    if form.rhyme_system == "pingshui" and any(not e.groups for e in ends):
        # Some character is missing from 平水韵: compare these lines by modern finals.
        missing = "".join(e.char for e in ends if not e.groups)
        notes.append(f"{missing} not in 平水韵; lines {_numbers(indices)} compared by 中华新韵")
        ends = [chinese.char_sound(e.char, "xinyun", e.reading) for e in ends]
    for e, i in zip(ends, indices, strict=True):
        if not e.groups:
            problems.setdefault(i, []).append(
                f"line {i + 1} ends with {e.char}, whose rhyme group is unknown"
            )
    anchor = indices[0]
    common = ends[0].groups
    for e, i in zip(ends[1:], indices[1:], strict=True):
        rhymes_with[i] = anchor + 1
        if e.groups and ends[0].groups and not (e.groups & common):
            kinds[i] = "none"
            problems.setdefault(i, []).append(
                f"line {i + 1} ends with {e.char} ({chinese.group_label(e.groups)}), which does "
                f"not rhyme with {ends[0].char} ({chinese.group_label(ends[0].groups)}, line "
                f"{anchor + 1}) under {system_name}"
            )
        else:
            kinds[i] = "rhyme"
            common = common & e.groups if e.groups else common
    if not form.strict:
        return
    modern = all(g in chinese.XINYUN_GROUPS for e in ends for g in e.groups)
    if not modern and common and not any(chinese.is_ping_group(g) for g in common):
        problems.setdefault(indices[-1], []).append(
            f"lines {_numbers(indices)} rhyme in an oblique (仄) group "
            f"{chinese.group_label(common)}; regulated verse rhymes in 平"
        )
    if modern:
        for e, i in zip(ends, indices, strict=True):
            if e.tone == "仄":
                problems.setdefault(i, []).append(
                    f"line {i + 1} ends its rhyme on {e.char} ({e.reading}), an oblique (仄) "
                    "tone; regulated verse rhymes in 平"
                )


def _numbers(indices: list[int]) -> str:
    return ", ".join(str(i + 1) for i in indices)
