"""`musegpt eval stories`: whole stories on a fixed premise set, measured for what a reader
notices first — a plan that holds, chapters about their protagonist, their beat and the
premise, no repetition, no leaked scaffolding, no unfinished ending — and for time.

Each story's measures are appended to a JSONL file as soon as it is finished, so a killed
run continues where it stopped; the Markdown table is made from every row in that file.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from musegpt.studio import plan_checks as checks
from musegpt.studio.cast import cast_faults
from musegpt.studio.evaluate import SCAFFOLDING
from musegpt.studio.speech_guard import MOST_BARE, bare_speech
from musegpt.studio.story import (
    CAPITAL_WORD,
    EXAMPLE_MARKS,
    Character,
    NameSlips,
    ProjectFile,
    StoryProject,
    anchors,
    chapter_target,
    check_kept_synopsis,
    example_beats,
    example_field,
    example_names,
    hero,
    premise_anchors,
    spared_words,
    step_things,
    summary_source,
)
from musegpt.studio.studio import Studio
from musegpt.studio.tasks import StudioError
from musegpt.studio.text import Lang, distinct_n

# Scaffolding a chapter must never hold, beyond the studio-wide list.
STORY_SCAFFOLDING = [*SCAFFOLDING, "前提：", "Setting:", "Style:", "Characters:", "人物："]
TABLE_START, TABLE_END = "<!-- eval stories: start -->", "<!-- eval stories: end -->"


def premises() -> dict[str, list[str]]:
    """The fixed premise set (none of them is a few-shot example's)."""
    text = files("musegpt.studio").joinpath("data/story_premises.json").read_text("utf-8")
    data: dict[str, list[str]] = json.loads(text)
    return data


@dataclass
class ChapterScore:
    protagonist: bool  # the protagonist (first character) is named
    premise: bool  # a premise keyword is in it
    beat_relevance: float  # share of the beat's keywords it holds
    repeated_sentences: int  # sentences said before (here or in an earlier chapter)
    distinct_4: float
    scaffolding: bool  # template labels, headings or chatter about the writing
    script_lines: int  # "Name: words" lines (a script's format, not a story's)
    example_leak: bool  # names a thing of the few-shot example the premise does not
    unfinished: bool  # the last sentence is cut off
    size: int  # words (English) or Han characters (Chinese)


@dataclass
class StoryScore:
    lang: Lang
    premise: str
    seed: int
    chapters_asked: int
    chapter_tokens: int
    error: str = ""  # the clear failure, when the story was refused
    bible_first_draw: bool = False  # every bible field passed on its first draw
    outline_first_draw: bool = False  # every beat passed on its first draw
    plan_valid: bool = False  # the kept plan passes every check
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds per stage
    redraws: dict[str, int] = field(default_factory=dict)
    chapters: list[ChapterScore] = field(default_factory=list)
    project: dict[str, Any] = field(default_factory=dict)  # story.json, for samples

    @property
    def key(self) -> str:
        return run_key(self.lang, self.premise, self.seed, self.chapters_asked, self.chapter_tokens)


def run_key(lang: str, premise: str, seed: int, chapters: int, tokens: int) -> str:
    return f"{lang}|{premise}|{seed}|{chapters}|{tokens}"


def repeated_sentences(text: str, earlier: str) -> int:
    """Sentences of `text` said before, in `earlier` or in `text` itself."""
    seen = {checks.normal(s) for s in checks.sentences(earlier) if checks.long_enough(s)}
    count = 0
    for sentence in checks.sentences(text):
        key = checks.normal(sentence)
        if not checks.long_enough(sentence):
            continue
        count += key in seen
        seen.add(key)
    return count


def unfinished(text: str) -> bool:
    return not checks.finished(text)


# A chapter named inside the prose ("这就是第6章。", "the end of chapter 4"): scaffolding.
CHAPTER_NAMED = re.compile(r"(?i)第\s*[0-9一二三四五六七八九十百零两]+\s*章|\bchapter \d+")


def leaked(text: str, lang: Lang) -> bool:
    lines = text.split("\n")
    return (
        any(s in text for s in STORY_SCAFFOLDING)
        or any(checks.HEADING.match(line) for line in lines)
        or CHAPTER_NAMED.search(text) is not None
        or checks.CHATTER[lang].search(text) is not None
        or checks.ASIDE[lang].search(text) is not None
        or re.search(checks.LIST_LINE, text) is not None
        or re.search(checks.MARKUP, text) is not None
    )


def score_chapters(project: StoryProject) -> list[ChapterScore]:
    assert project.bible is not None
    lang, premise = project.lang, project.premise
    protagonist = project.bible.characters[0].keys
    premise_words = checks.keywords(premise, lang)
    out, earlier = [], ""
    for scene in project.scenes:
        text = scene.text
        beat_words = checks.keywords(scene.beat, lang)
        found = checks.mentions(text, beat_words, lang)
        out.append(
            ChapterScore(
                protagonist=any(k in text for k in protagonist),
                premise=bool(checks.mentions(text, premise_words, lang)),
                beat_relevance=round(len(found) / max(len(beat_words), 1), 3),
                repeated_sentences=repeated_sentences(text, earlier),
                distinct_4=round(distinct_n([text], 4), 3),
                scaffolding=leaked(text, lang),
                # Lines the chapter hygiene would narrate ("他说：" is narration already).
                script_lines=sum(checks.narrate(x, lang) != x for x in text.split("\n")),
                example_leak=bool(checks.foreign_words(text, EXAMPLE_MARKS[lang], premise)),
                unfinished=unfinished(text),
                size=checks.size(text, lang),
            )
        )
        earlier += "\n" + text
    return out


def plan_valid(project: StoryProject) -> bool:
    """Whether the kept plan passes every check a plan is drawn under."""
    bible, lang, premise = project.bible, project.lang, project.premise
    if bible is None:
        return False
    known = anchors(premise, lang, bible.characters)
    cast = bible.characters
    beats = [s.beat for s in project.scenes]
    reasons = [
        checks.check_title(bible.title, premise, lang, example_field(lang, "title")),
        checks.check_names([c.name for c in bible.characters], example_names(lang)),
        *(f.reason for f in cast_faults([(c.name, c.description) for c in cast], premise, lang)),
        check_kept_synopsis(bible.synopsis, premise, lang, known),
        *(
            checks.check_beat(
                beat,
                lang,
                known,
                [*beats[:i], *example_beats(lang)],
                premise_anchors(project) if i == 0 else (),
            )
            for i, beat in enumerate(beats)
        ),
    ]
    return all(r is None for r in reasons)


BIBLE_FIELDS = ("title", "setting", "style", "characters", "synopsis")


def evaluate_story(
    studio: Studio, lang: Lang, premise: str, seed: int, chapters: int, tokens: int,
    candidates: int, steps: bool = False,
) -> StoryScore:  # fmt: skip
    """One story from `premise`, written in a fresh project (told in steps with `steps`)
    and measured."""
    score = StoryScore(lang, premise, seed, chapters, tokens)
    studio.lang = lang
    wall, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        try:
            studio.story(premise, folder, chapters, scene_tokens=tokens, candidates=candidates,
                         steps=steps, seed=seed)  # fmt: skip
        except StudioError as err:
            score.error = str(err)
        score.seconds = round(time.perf_counter() - wall, 2)
        score.cpu_seconds = round(time.process_time() - cpu, 2)
        if not (Path(folder) / "story.json").is_file():
            return score
        project = StoryProject.load(folder)
        score.project = json.loads((Path(folder) / "story.json").read_text("utf-8"))
    score.redraws = dict(project.meta.get("redraws", {}))
    score.stages = dict(project.meta.get("seconds", {}))
    score.bible_first_draw = project.bible is not None and not any(
        score.redraws.get(f, 0) for f in BIBLE_FIELDS
    )
    score.outline_first_draw = len(project.scenes) == chapters and not score.redraws.get(
        "outline", 0
    )
    score.plan_valid = not score.error and plan_valid(project)
    if not score.error:
        score.chapters = score_chapters(project)
    return score


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The stories already measured (a line cut short by a killed run is skipped)."""
    if not path.is_file():
        return []
    rows = []
    # Lines end in "\n" only: a chapter may hold U+2028, which `splitlines` breaks at.
    for line in path.read_text("utf-8").split("\n"):
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def evaluate(
    studio: Studio,
    results: Path,
    langs: list[Lang],
    limit: int,
    chapters: int,
    tokens: int,
    candidates: int,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
    steps: bool = False,
) -> Iterator[dict[str, Any]]:
    """Each premise's story not yet in `results` written, measured and appended there;
    yields the new rows."""
    done = {row["key"] for row in load_rows(results)}
    data = premises()
    results.parent.mkdir(parents=True, exist_ok=True)
    for i, lang, premise in premise_order(langs, limit):
        if run_key(lang, premise, seed + i, chapters, tokens) in done:
            continue
        if progress is not None:
            # "en 1/22", not "[en] 1/22": the CLI's console reads brackets as markup.
            progress(f"{lang} {i + 1}/{min(limit, len(data[lang]))}: {premise}")
        score = evaluate_story(studio, lang, premise, seed + i, chapters, tokens, candidates, steps)
        row = {"key": score.key, **asdict(score)}
        with results.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        yield row


def premise_order(langs: list[Lang], limit: int) -> Iterator[tuple[int, Lang, str]]:
    """The first `limit` premises of each language with their place in the set, premise
    by premise with the languages taking turns (a run cut short has both)."""
    data = premises()
    for i in range(limit):
        for lang in langs:
            if i < len(data[lang]):
                yield i, lang, data[lang][i]


def share(values: list[bool]) -> str:
    return f"{sum(values)}/{len(values)}" if values else "–"


def mean(values: list[float], digits: int = 2) -> str:
    return str(round(statistics.mean(values), digits)) if values else "–"


def model_summaries(rows: list[dict[str, Any]]) -> list[bool]:
    """For each chapter summary the stories hold: written by the model (not its beat
    standing in because every draw failed its check)."""
    scenes = [s for r in rows for s in r["project"].get("scenes", []) if s.get("summary")]
    return [s["summary"] != s["beat"] for s in scenes]


def invented_summaries(rows: list[dict[str, Any]]) -> list[bool]:
    """For each summary the model wrote (not a beat standing in): whether it names what
    neither its chapter nor the plan holds (`checks.invented`)."""
    found = []
    for row in rows:
        project = ProjectFile.model_validate(row["project"])
        if project.bible is None:
            continue
        for scene in project.scenes:
            if scene.summary and scene.summary != scene.beat:
                source = summary_source(scene.text, project.premise, project.bible)
                made_up = checks.invented(scene.summary, source, project.lang)
                found.append(bool(made_up))
    return found


def written_chapters(rows: list[dict[str, Any]]) -> Iterator[tuple[str, str, Lang]]:
    """Each chapter written, read from the kept project (so older rows are measured by
    newer checks too): its text, the story's chapters before it, and the language."""
    for row in rows:
        scenes = row["project"].get("scenes", [])[: len(row["chapters"])]
        for i, scene in enumerate(scenes):
            yield scene["text"], "\n".join(s["text"] for s in scenes[:i]), row["lang"]


def circling(rows: list[dict[str, Any]]) -> list[bool]:
    """For each chapter written: whether it says a clause a third time, the same or nearly
    (`checks.circling_clauses`)."""
    return [bool(checks.circling_clauses(text, lang)) for text, _, lang in written_chapters(rows)]


def bare_talk(rows: list[dict[str, Any]]) -> list[bool]:
    """For each chapter written: whether it has more than `MOST_BARE` lines in a row of
    speech alone, with no speaker and no narration (`bare_speech`)."""
    found = []
    for text, _, lang in written_chapters(rows):
        run = longest = 0
        for line in (x for x in text.split("\n") if x.strip()):
            run = run + 1 if bare_speech(line, lang) else 0
            longest = max(longest, run)
        found.append(longest > MOST_BARE)
    return found


def paragraphs_alike(rows: list[dict[str, Any]]) -> list[bool]:
    """For each Chinese chapter written: whether more than `checks.PARAGRAPH_MOST` of its
    paragraphs open with the same `checks.PARAGRAPH_RUN` characters, not a name's
    (`checks.paragraph_openings`: "第一天看见…" four times)."""
    found = []
    for row in rows:
        if row["lang"] != "zh":
            continue
        bible = row["project"].get("bible") or {}
        keys = [k for c in bible.get("characters", []) for k in Character(**c).keys]
        for scene in row["project"].get("scenes", [])[: len(row["chapters"])]:
            said = Counter(o for _, o in checks.paragraph_openings(scene["text"], keys))
            found.append(any(n > checks.PARAGRAPH_MOST for n in said.values()))
    return found


def name_slipped(rows: list[dict[str, Any]]) -> list[bool]:
    """For each chapter written: whether it miswrites a name of the cast: a Chinese one
    after its first two characters (`checks.name_slips`: 黎春秋 as 黎春性), an English one
    as a word no dictionary or census has (`NameSlips`: Rani as Raij)."""
    found = []
    for row in rows:
        bible = row["project"].get("bible") or {}
        names = [c["name"] for c in bible.get("characters", [])]
        slips = [re.compile(p) for p in checks.name_slips(names)]
        plan = "\n".join([row["premise"], json.dumps(bible)])
        english = NameSlips(names, plan)
        for scene in row["project"].get("scenes", [])[: len(row["chapters"])]:
            text = scene["text"]
            words = CAPITAL_WORD.findall(text) if row["lang"] == "en" else []
            found.append(any(p.search(text) for p in slips) or any(map(english.slip, words)))
    return found


def phrase_circling(rows: list[dict[str, Any]]) -> list[bool]:
    """For each chapter written: whether it says a run of `checks.PHRASE_RUN` Han characters
    (English: `checks.PHRASE_WORDS` words) a third time in the story so far
    (`checks.circling_phrases`)."""
    return [
        bool(checks.circling_phrases(text, earlier, lang))
        for text, earlier, lang in written_chapters(rows)
    ]


def echoing(rows: list[dict[str, Any]]) -> list[bool]:
    """For each chapter written: whether a sentence of it echoes one of the story so far (a
    word or two swapped: `checks.echoed_sentences`)."""
    return [
        bool(checks.echoed_sentences(text, lang, earlier))
        for text, earlier, lang in written_chapters(rows)
    ]


def going_round(rows: list[dict[str, Any]]) -> list[bool]:
    """For each chapter written: whether it says a word more than `checks.WORD_MOST` times
    within `checks.WORD_WINDOW` characters (the premise's words and the cast's names aside:
    `checks.words_going_round`)."""
    found = []
    for row, project in planned(rows):
        spared = spared_words(project)
        for scene in project.scenes[: len(row["chapters"])]:
            found.append(bool(checks.words_going_round(scene.text, project.lang, spared)))
    return found


def name_count(text: str, character: Character) -> int:
    """How often `text` names `character` (by the name form it uses most: "Keith Akins"
    and "Keith" are not counted twice)."""
    return max(text.count(key) for key in character.keys)


def hero_beats(rows: list[dict[str, Any]]) -> list[bool]:
    """For each beat of a chapter written: whether it names the hero (`story.hero`)."""
    found = []
    for row, project in planned(rows):
        keys = hero(project).keys
        for scene in project.scenes[: len(row["chapters"])]:
            found.append(any(k in scene.beat for k in keys))
    return found


def hero_focus(rows: list[dict[str, Any]]) -> list[float]:
    """For each chapter written that names the cast: the hero's share of the times it
    names them (1.0: a chapter about the hero alone)."""
    shares = []
    for row, project in planned(rows):
        assert project.bible is not None
        main = hero(project)
        for scene in project.scenes[: len(row["chapters"])]:
            counts = {c.name: name_count(scene.text, c) for c in project.bible.characters}
            if total := sum(counts.values()):
                shares.append(counts[main.name] / total)
    return shares


def planned(rows: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], StoryProject]]:
    """Each row whose story was planned, with its kept project."""
    for row in rows:
        data = ProjectFile.model_validate(row["project"])
        project = StoryProject(Path("."), data.premise, data.lang, data.bible, data.scenes)
        if project.bible is not None:
            yield row, project


def opening_circling(rows: list[dict[str, Any]]) -> list[bool]:
    """For each chapter written: whether a sentence of it opens as three of the chapter's
    did already (`checks.repeated_openings`; Chinese openings only)."""
    return [bool(checks.repeated_openings(text)) for text, _, _ in written_chapters(rows)]


def steps_told(
    rows: list[dict[str, Any]], steps_from: list[dict[str, Any]] | None = None
) -> list[bool]:
    """For each step of each chapter written: whether the chapter names one of the step's
    things (`story.step_things`; a step with none is not counted). With `steps_from`
    (rows of another run on the same premises and seeds), its steps are looked for in
    these rows' chapters: how often a chapter written without them says what they say."""
    steps = {r["key"]: r["project"].get("scenes", []) for r in (steps_from or rows)}
    found = []
    for row, project in planned(rows):
        told = steps.get(row["key"], [])
        for scene, other in zip(project.scenes[: len(row["chapters"])], told, strict=False):
            for step in other.get("steps", []):
                if things := step_things(project, step):
                    found.append(bool(checks.mentions(scene.text, things, project.lang)))
    return found


def steps_per_chapter(rows: list[dict[str, Any]]) -> list[float]:
    return [
        float(len(scene.get("steps", [])))
        for row in rows
        for scene in row["project"].get("scenes", [])[: len(row["chapters"])]
    ]


def far_below(rows: list[dict[str, Any]]) -> list[bool]:
    """For each chapter: whether it holds less than a third of its target length."""
    return [
        c["size"] < chapter_target(r["chapter_tokens"], r["lang"]) / 3
        for r in rows
        for c in r["chapters"]
    ]


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table with one column per language: the measures over its stories."""
    langs = sorted({r["lang"] for r in rows}, key=["en", "zh"].index)
    table: dict[str, list[str]] = {}
    for lang in langs:
        mine = [r for r in rows if r["lang"] == lang]
        chapters = [c for r in mine for c in r["chapters"]]
        planned = [r for r in mine if r["project"].get("bible")]
        stages = ["plan", "outline", "chapters", "summaries"]
        column = {
            "stories": str(len(mine)),
            "refused with a clear error": share([bool(r["error"]) for r in mine]),
            "bible valid on the first draw": share([r["bible_first_draw"] for r in planned]),
            "outline valid on the first draw": share([r["outline_first_draw"] for r in mine]),
            "plan valid after retries": share([r["plan_valid"] for r in mine]),
            "chapters": str(len(chapters)),
            "protagonist in the chapter": share([c["protagonist"] for c in chapters]),
            "a premise keyword in the chapter": share([c["premise"] for c in chapters]),
            "beats naming the hero": share(hero_beats(mine)),
            "the hero's share of the names a chapter says": mean(hero_focus(mine)),
            "beat relevance (share of beat keywords)": mean(
                [c["beat_relevance"] for c in chapters]
            ),
            "steps per chapter": mean(steps_per_chapter(mine), 1),
            "steps told (a step's things in its chapter)": share(steps_told(mine)),
            "chapters repeating a sentence": share([c["repeated_sentences"] > 0 for c in chapters]),
            "chapters with near-repeated lines (a clause a third time)": share(circling(mine)),
            "chapters saying a run a third time in the story (8 characters, 5 words)": share(
                phrase_circling(mine)
            ),
            "chapters opening a sentence as three of theirs did (zh)": share(
                opening_circling(mine)
            ),
            "chapters echoing a sentence of the story (a word or two swapped)": share(
                echoing(mine)
            ),
            "chapters saying a word a fourth time within a paragraph or two": share(
                going_round(mine)
            ),
            "chapters with three bare speech lines in a row (no speaker, no narration)": share(
                bare_talk(mine)
            ),
            "chapters opening three paragraphs alike (zh, a name aside: 第一天…)": share(
                paragraphs_alike(mine)
            ),
            "chapters miswriting a name (黎春秋 as 黎春性, Rani as Raij)": share(
                name_slipped(mine)
            ),
            "distinct-4": mean([c["distinct_4"] for c in chapters], 3),
            "leaked scaffolding": share([c["scaffolding"] for c in chapters]),
            "script-style lines (Name: …)": share([c["script_lines"] > 0 for c in chapters]),
            "the example's things leaked": share([c["example_leak"] for c in chapters]),
            "unfinished endings": share([c["unfinished"] for c in chapters]),
            "words (en) or characters (zh) per chapter": mean([c["size"] for c in chapters], 0),
            "chapters under a third of their target length": share(far_below(mine)),
            "summaries written by the model (not the beat)": share(model_summaries(mine)),
            "  of which naming what the chapter and plan do not": share(invented_summaries(mine)),
            "seconds per story (wall, busy machine)": mean([r["seconds"] for r in mine], 1),
            "CPU seconds per story": mean([r["cpu_seconds"] for r in mine], 1),
            "  of which plan / outline / chapters / summaries (wall)": " / ".join(
                mean([r["stages"].get(s, 0.0) for r in mine], 1) for s in stages
            ),
        }
        for name, value in column.items():
            table.setdefault(name, []).append(value)
    head = "| measure | " + " | ".join(langs) + " |\n|---|" + "---|" * len(langs) + "\n"
    return head + "".join(f"| {k} | " + " | ".join(v) + " |\n" for k, v in table.items())


def write_table(page: Path, rows: list[dict[str, Any]], command: str) -> str:
    """The table put between the markers of `page` (the rest of the page is kept), or a
    new page holding only the table; returns the page's text."""
    return page_with_table(page, TABLE_START, TABLE_END, summary_table(rows), command)


def page_with_table(
    page: Path, start: str, end: str, table: str, command: str, heading: str = ""
) -> str:
    """`page`'s text with `table` (and the command that made it) between the markers
    `start` and `end`, the rest kept; appended (under `heading`) when the page has none."""
    block = f"{start}\nCommand: `{command}`.\n\n{table}{end}"
    text = page.read_text("utf-8") if page.is_file() else "# Story evaluation\n\n"
    if start in text and end in text:
        head, _, rest = text.partition(start)
        return head + block + rest.partition(end)[2]
    return text.rstrip("\n") + "\n\n" + heading + block + "\n"
