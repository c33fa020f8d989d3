"""The moderation evaluation: labelled sets written for MuseGPT (everyday and creative
text, fiction and poetry with dark themes, and clear slurs, hate, threats, harassment, sexual
content and self-harm), scored per category and per group.

Two splits per language: `dev` (data/eval_{en,zh}.tsv, written first; the rules were tuned
on it, so its numbers flatter them) and `heldout` (data/heldout_{en,zh}.tsv, written after the
rules were frozen and never used to change them: the honest measure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from musegpt.safety.categories import SCORED
from musegpt.safety.lexicon import DATA, LANGS, Lang
from musegpt.safety.moderator import Moderation, Moderator

SPLITS = {"dev": "eval", "heldout": "heldout"}  # split -> file name stem

BENIGN_GROUPS = ("benign", "dark")
TARGET_GROUPS = ("slur", "threat")  # recall target: clear slurs and threats


@dataclass(frozen=True)
class Example:
    lang: Lang
    group: str
    labels: frozenset[str]
    text: str


def examples(lang: Lang, split: str = "dev") -> list[Example]:
    out = []
    path = DATA / f"{SPLITS[split]}_{lang}.tsv"
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        group, labels, text = line.split("\t")
        found = frozenset() if labels == "-" else frozenset(labels.split(","))
        if not found <= set(SCORED):
            raise ValueError(f"{path.name}:{n}: unknown labels {sorted(found - set(SCORED))}")
        out.append(Example(lang, group, found, text))
    return out


@dataclass(frozen=True)
class Scored:
    example: Example
    result: Moderation


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


def run(moderator: Moderator, split: str = "dev", langs: Sequence[Lang] = LANGS) -> list[Scored]:
    items = [e for lang in langs for e in examples(lang, split)]
    results = moderator.moderate([e.text for e in items])
    return [Scored(e, r) for e, r in zip(items, results, strict=True)]


def category_counts(scored: Sequence[Scored], category: str) -> Counts:
    tp = sum(1 for s in scored if category in s.example.labels and s.result.categories[category])
    fp = sum(
        1 for s in scored if category not in s.example.labels and s.result.categories[category]
    )
    fn = sum(
        1 for s in scored if category in s.example.labels and not s.result.categories[category]
    )
    return Counts(tp, fp, fn)


def flag_counts(scored: Sequence[Scored]) -> Counts:
    """Flagged at all, against labelled harmful at all."""
    tp = sum(1 for s in scored if s.example.labels and s.result.flagged)
    fp = sum(1 for s in scored if not s.example.labels and s.result.flagged)
    fn = sum(1 for s in scored if s.example.labels and not s.result.flagged)
    return Counts(tp, fp, fn)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(scored: Sequence[Scored]) -> str:
    """Per language: flags overall, the two targets, per group and per category."""
    parts = []
    for lang in LANGS:
        mine = [s for s in scored if s.example.lang == lang]
        if not mine:
            continue
        flags = flag_counts(mine)
        benign = [s for s in mine if s.example.group in BENIGN_GROUPS]
        target = [s for s in mine if s.example.group in TARGET_GROUPS]
        passed = sum(1 for s in benign if not s.result.flagged)
        caught = sum(1 for s in target if s.result.flagged)
        lines = [
            f"### {'English' if lang == 'en' else 'Chinese'} ({len(mine)} sentences)",
            "",
            f"- Flagged at all: precision {_pct(flags.precision)}, recall {_pct(flags.recall)}"
            f" ({flags.tp} harmful flagged, {flags.fp} harmless flagged, {flags.fn} harmful"
            " missed).",
            f"- Benign and dark creative text left unflagged: {passed}/{len(benign)}"
            f" ({passed / max(1, len(benign)):.2f}).",
            f"- Clear slurs and threats flagged: {caught}/{len(target)}"
            f" ({caught / max(1, len(target)):.2f}).",
            "",
            "| group | sentences | flagged |",
            "| --- | --- | --- |",
        ]
        for group in sorted({s.example.group for s in mine}):
            rows = [s for s in mine if s.example.group == group]
            lines.append(f"| {group} | {len(rows)} | {sum(s.result.flagged for s in rows)} |")
        lines += ["", "| category | labelled | precision | recall |", "| --- | --- | --- | --- |"]
        for category in SCORED:
            c = category_counts(mine, category)
            lines.append(f"| {category} | {c.tp + c.fn} | {_pct(c.precision)} | {_pct(c.recall)} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def mistakes(scored: Sequence[Scored]) -> list[str]:
    """One line per example whose flag or flagged categories differ from its labels."""
    out = []
    for s in scored:
        got = set(s.result.flagged_categories)
        if got != set(s.example.labels):
            want = ",".join(sorted(s.example.labels)) or "-"
            out.append(
                f"{s.example.lang} {s.example.group}: want {want} got "
                f"{','.join(sorted(got)) or '-'}: {s.example.text}"
            )
    return out
