"""Corpora for adapters: documents as JSON Lines ({"text": ...}), in the exact shape the
studio prompts with, so what the adapter learns is what the task asks for.

`tang`: 全唐诗 and 宋词 from npm `chinese-poetry` (simplified with OpenCC, de-duplicated on
their characters), each poem as the studio's poem prompt ("《题》（五言绝句）" then one
verse per line) followed by the poem; the poems of 唐诗三百首 are held out for evaluation.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musegpt.fileio import atomic_write_text

if TYPE_CHECKING:
    from musegpt.adapters.stage import Scene
    from musegpt.adapters.verse import VersePoem

TRAIN_FILE = "train.jsonl"
HELDOUT_FILE = "heldout.jsonl"
MANIFEST = "manifest.json"
ADAPTER_CORPORA = {
    "tang": "全唐诗 + 宋词 in the studio's poem format; 唐诗三百首 held out",
    "stage": "Shakespeare's scenes in Fountain in the studio's script format; 4 plays held out",
    "verse-en": "Shakespeare's sonnets + poems rebuilt from the Gutenberg Poetry Corpus; "
    "a tenth of each form held out",
}

# A verse ends at one of these (kept with it, as the poems are printed).
VERSE_END = re.compile(r"(?<=[，。！？；])")
HAN = re.compile(r"[\u4e00-\u9fff]")
# The studio's regular forms, by (verses, characters per verse).
REGULAR_FORMS = {(4, 5): "五言绝句", (4, 7): "七言绝句", (8, 5): "五言律诗", (8, 7): "七言律诗"}
MIN_CI_VERSES = 4
NOTE = re.compile(r"[（(【\[].*?[）)】\]]|[□■]")  # editors' notes and lacunae in the sources


@dataclass(frozen=True)
class Poem:
    title: str
    verses: list[str]
    kind: str  # the form's name, or 宋词's tune

    @property
    def key(self) -> str:
        """Its characters alone: the same poem with other punctuation is a duplicate."""
        return "".join(HAN.findall("".join(self.verses)))

    def document(self) -> str:
        from musegpt.studio.poem import POEM_PROMPT

        return POEM_PROMPT["zh"].format(topic=self.title, form=self.kind) + "\n".join(self.verses)


def verses_of(paragraphs: Iterable[str]) -> list[str]:
    """One verse per line: the sources print a couplet per paragraph."""
    verses = []
    for paragraph in paragraphs:
        for verse in VERSE_END.split(NOTE.sub("", str(paragraph)).strip()):
            if verse.strip():
                verses.append(verse.strip())
    return verses


def regular_form(verses: list[str]) -> str | None:
    """五言/七言 绝句/律诗 when every verse has the same count of 5 or 7 characters."""
    counts = {len(HAN.findall(v)) for v in verses}
    if len(counts) != 1 or any(len(HAN.findall(v)) != len(v) - 1 for v in verses):
        return None  # uneven, or a verse with more than its closing mark
    return REGULAR_FORMS.get((len(verses), counts.pop()))


def _poems(records: Iterable[dict[str, Any]], title_key: str, to_simplified: Any) -> Iterator[Poem]:
    for record in records:
        verses = verses_of(to_simplified.convert(p) for p in record.get("paragraphs") or [])
        title = to_simplified.convert(NOTE.sub("", str(record.get(title_key) or "")).strip())
        if not verses or not title:
            continue
        if title_key == "rhythmic":  # a ci is named by its tune; fragments are left out
            if len(verses) >= MIN_CI_VERSES:
                yield Poem(title, verses, "宋词")
        elif (form := regular_form(verses)) is not None:
            yield Poem(title, verses, form)


def tang_poems() -> tuple[list[Poem], list[Poem]]:
    """(training poems, held-out poems): de-duplicated, 唐诗三百首 out of training."""
    from opencc import OpenCC

    from musegpt.data.builtin import TANG_300, fetch_chinese_poetry, get_builtin

    to_simplified = OpenCC("t2s")
    root = fetch_chinese_poetry()
    three_hundred = root / TANG_300
    if not three_hundred.is_file():
        raise FileNotFoundError(
            f"{three_hundred} is missing (an older download of chinese-poetry): delete "
            f"{root} and run again to fetch it"
        )
    heldout = list(
        _poems(json.loads(three_hundred.read_text(encoding="utf-8")), "title", to_simplified)
    )
    seen = {poem.key for poem in heldout}
    training: list[Poem] = []
    for corpus, title_key in (("tang-poems", "title"), ("song-ci", "rhythmic")):
        data = get_builtin(corpus).locate()
        for file in data.files:
            records = json.loads(file.read_text(encoding="utf-8"))
            for poem in _poems(records, title_key, to_simplified):
                if poem.key and poem.key not in seen:
                    seen.add(poem.key)
                    training.append(poem)
    unique_heldout = list({poem.key: poem for poem in heldout}.values())
    return training, unique_heldout


def write_jsonl(path: Path, texts: Iterable[str]) -> int:
    lines = [json.dumps({"text": text}, ensure_ascii=False) for text in texts]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(lines)


def prepare_adapter_corpus(name: str, out: Path, seed: int = 1337) -> dict[str, Any]:
    """Write `out`/train.jsonl, heldout.jsonl and manifest.json for the adapter corpus `name`."""
    if name not in ADAPTER_CORPORA:
        raise ValueError(f"unknown adapter corpus {name!r}; known: {', '.join(ADAPTER_CORPORA)}")
    training: list[Poem] | list[Scene] | list[VersePoem]
    heldout: list[Poem] | list[Scene] | list[VersePoem]
    if name == "stage":
        from musegpt.adapters.stage import stage_scenes

        training, heldout = stage_scenes()
    elif name == "verse-en":  # musegpt/adapters/verse.py
        from musegpt.adapters.verse import verse_poems

        training, heldout = verse_poems(seed=seed)
    else:
        training, heldout = tang_poems()
    random.Random(seed).shuffle(training)  # training reads it in order: mix the sources
    out.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, int] = {}
    for poem in training:
        kinds[poem.kind] = kinds.get(poem.kind, 0) + 1
    manifest = {
        "corpus": name,
        "description": ADAPTER_CORPORA[name],
        "train_documents": write_jsonl(out / TRAIN_FILE, (p.document() for p in training)),
        "heldout_documents": write_jsonl(out / HELDOUT_FILE, (p.document() for p in heldout)),
        "train_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "seed": seed,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return manifest


def read_documents(path: Path) -> list[str]:
    """Documents of a .jsonl file ("text" fields) or a .txt/.md file (cut at blank lines)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        documents = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                documents.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f'{path} line {number} is not a JSON object with "text"') from None
        return documents
    return [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]
