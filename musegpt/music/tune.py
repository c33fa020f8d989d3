"""A written tune and what it becomes: ABC text, MIDI (music21), WAV (FluidSynth with the
General MIDI SoundFont) and a score as SVG (abcm2ps)."""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musegpt.external import ToolLimits, run_tool
from musegpt.fileio import atomic_write_text
from musegpt.music.abc import Header

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm
_BAR_SPLIT = re.compile(r":?\|[\]:|]?|\[\d")
# Generous for any tune the server accepts (abcm2ps takes well under a second, FluidSynth
# about one per 16 bars); past these the tool is stopped (see musegpt.external).
ABCM2PS_LIMITS = ToolLimits(timeout_s=30.0, max_output_bytes=20_000_000)
FLUIDSYNTH_LIMITS = ToolLimits(timeout_s=120.0, max_output_bytes=200_000_000)


class MissingToolError(RuntimeError):
    """A program (or data file) a conversion needs is not installed."""


@dataclass(frozen=True)
class Tune:
    header: Header
    body: str  # the ABC body as written (bar lines, newlines, final bar line)
    constrained: bool = True

    @property
    def abc(self) -> str:
        return self.header.text() + self.body.rstrip("\n") + "\n"

    def bars(self) -> list[str]:
        """The body's bars as written, spaces removed (bar lines and repeats are not part of
        a bar): what copying from the corpus is measured on."""
        return bars_of(self.body)

    def score(self) -> Any:
        """The tune as a music21 score (raises what music21 raises on invalid ABC)."""
        return parse_abc(self.abc)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, self.abc)
        return path

    def to_midi(self, path: str | Path) -> Path:
        """A MIDI file written by music21."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.score().write("midi", fp=str(path))
        return path

    def to_wav(self, path: str | Path, soundfont: Path = SOUNDFONT) -> Path:
        """Audio rendered from the MIDI with FluidSynth and a General MIDI SoundFont."""
        fluidsynth = shutil.which("fluidsynth")
        if fluidsynth is None or not soundfont.is_file():
            missing = "fluidsynth" if fluidsynth is None else f"the SoundFont {soundfont}"
            raise MissingToolError(
                f"WAV needs {missing}: on Debian/Ubuntu `sudo apt-get install fluidsynth "
                "fluid-soundfont-gm` (MIDI and ABC do not need it)"
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            midi = self.to_midi(Path(tmp) / "tune.mid").read_bytes()
        command = [fluidsynth, "-ni", "-q", "-F", "tune.wav", "-r", "44100", str(soundfont),
                   "tune.mid"]  # fmt: skip
        with run_tool(command, FLUIDSYNTH_LIMITS, {"tune.mid": midi}) as out:
            shutil.copyfile(out / "tune.wav", path)
        return path

    def to_svg(self, path: str | Path) -> Path:
        """The score engraved by abcm2ps as one SVG page."""
        abcm2ps = shutil.which("abcm2ps")
        if abcm2ps is None:
            raise MissingToolError(
                "sheet music needs abcm2ps: on Debian/Ubuntu `sudo apt-get install abcm2ps`"
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # -g: SVG, one file per page (tune001.svg...); a 16-bar tune fits one page.
        command = [abcm2ps, "-g", "-O", "tune", "tune.abc"]
        with run_tool(command, ABCM2PS_LIMITS, {"tune.abc": self.abc.encode()}) as out:
            pages = sorted(out.glob("tune*.svg"))
            if not pages:
                raise MissingToolError("abcm2ps wrote no SVG")
            shutil.copyfile(pages[0], path)
        return path


def parse_abc(text: str) -> Any:
    """music21's score of one ABC tune, its warnings silenced."""
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.parse(text, format="abc")


def bars_of(body: str) -> list[str]:
    """The non-empty bars of an ABC body, spaces and newlines removed."""
    flat = re.sub(r"\s+", "", body)
    return [bar for bar in _BAR_SPLIT.split(flat) if bar]
