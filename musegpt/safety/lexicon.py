"""Word lists from the PyPI packages glin-profanity and safetext, sorted into categories by
data/lexicon.yaml, and the text normalisation both they and the text go through.

English is matched as whole words (a list entry never matches inside another word:
"Scunthorpe" holds no slur); Chinese has no spaces, so it is matched as substrings of the
text converted to simplified characters (OpenCC) with spaces and punctuation removed (傻 逼,
傻*逼 and 傻屄 are found alike), and the `allow` strings undo matches inside ordinary words
(其他妈妈 holds 他妈)."""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

DATA = Path(__file__).resolve().parent / "data"
Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")
Kind = Literal["profanity", "hate", "sexual", "sexual-weak"]
KINDS: tuple[Kind, ...] = ("hate", "sexual", "sexual-weak")

# (package, file inside it, language); glin-profanity's files are JSON {"words": [...]}.
SOURCES: tuple[tuple[str, str, Lang], ...] = (
    ("glin_profanity", "data/dictionaries/english.json", "en"),
    ("glin_profanity", "data/dictionaries/chinese.json", "zh"),
    ("safetext", "languages/en/words.txt", "en"),
    ("safetext", "languages/zh/words.txt", "zh"),
)
INSTALL_HINT = "pip install -e . (it installs glin-profanity and safetext)"

_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_EN_DROP = re.compile(r"[^a-z0-9$@*!+']+")  # hyphens too: "twelve-year-old" is three words
_EN_EDGE = "!*'"  # punctuation stripped from a word's ends ("idiot!" is "idiot")
_ZH_DROP = re.compile(r"[^0-9a-z\u3400-\u9fff\uf900-\ufaff]+")
_TEMPLATE_META = re.compile(r"[.*()\[\]]")  # regex-like list entries (中.*國.*狗) are skipped


class WordListsMissing(RuntimeError):
    """A package that holds a word list is not installed."""


def package_dir(package: str) -> Path:
    """Where `package` is installed, found without importing it (safetext's own import
    loads a language detector we do not need)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WordListsMissing(
            f"the word-list package {package!r} is not installed: {INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def package_words(lang: Lang) -> list[str]:
    """Every entry of the packages' lists for `lang`, as the packages spell them."""
    words: list[str] = []
    for package, name, source_lang in SOURCES:
        if source_lang != lang:
            continue
        path = package_dir(package) / name
        text = path.read_text(encoding="utf-8")
        words += json.loads(text)["words"] if path.suffix == ".json" else text.splitlines()
    return [w.strip() for w in words if w.strip()]


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def normalise(text: str, lang: Lang) -> str:
    """The form both the lists and the text are matched in.

    English: lower case, words separated by single spaces with the text padded by one on
    each side (so " word " matches whole words only); Chinese: simplified, lower case,
    nothing but Han characters, Latin letters and digits."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    if lang == "zh":
        return _ZH_DROP.sub("", _t2s().convert(text))
    words = [w.strip(_EN_EDGE) for w in _EN_DROP.sub(" ", text).split()]
    return " " + " ".join(w for w in words if w) + " "


def key(phrase: str, lang: Lang) -> str:
    """The string a phrase is looked for as in normalised text."""
    return normalise(phrase, lang)


@dataclass
class Lexicon:
    """One language's terms by kind (profanity is every package entry not sorted
    elsewhere), and the allowed strings that undo matches inside them."""

    lang: Lang
    terms: dict[str, Kind] = field(default_factory=dict)  # normalised key -> kind
    allow: list[str] = field(default_factory=list)  # normalised keys

    def of_kind(self, *kinds: Kind) -> list[str]:
        return sorted(k for k, kind in self.terms.items() if kind in kinds)


def _keys(words: Iterable[str], lang: Lang, plurals: bool) -> set[str]:
    out = set()
    for word in words:
        k = key(str(word), lang)
        if not k.strip():
            continue
        out.add(k)
        if plurals and lang == "en" and " " not in k.strip() and not k.endswith("s "):
            out.add(k[:-1] + "s ")
    return out


@lru_cache(maxsize=2)
def lexicon(lang: Lang) -> Lexicon:
    spec: dict[str, list[Any]] = yaml.safe_load((DATA / "lexicon.yaml").read_text("utf-8"))[lang]
    ignore = _keys(spec.get("ignore", []), lang, plurals=False)
    result = Lexicon(lang, allow=sorted(_keys(spec.get("allow", []), lang, plurals=False)))
    for word in package_words(lang):
        if _TEMPLATE_META.search(word) and lang == "zh":
            continue
        if lang == "zh" and (not _HAN.search(word) or len(normalise(word, lang)) < 2):
            continue  # romanised Cantonese, and single characters (乳, 干, 鸡): too common
        for k in _keys([word], lang, plurals=True):
            if k not in ignore:
                result.terms[k] = "profanity"
    for kind in KINDS:  # the sorted kinds win over the default and over ignore
        for k in _keys(spec.get(kind, []), lang, plurals=kind != "sexual-weak"):
            result.terms[k] = kind
    return result
