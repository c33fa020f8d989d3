"""`story`: continue a text, or write long-form from a premise beyond the context window.

premise → story bible (title, setting, style, characters, synopsis) → outline → scenes.
Each scene's prompt holds the bible's standing facts, only the character entries that the
scene's beat or the recent text mention (a lorebook: entries activate on their names),
a rolling summary of the scenes so far and the end of the previous scene, so a story of any
length fits a small context. A story is a project folder (story.json plus Markdown views),
saved atomically after every step: stopping at any moment loses at most the scene being
written, and running again resumes; `more` extends the outline and keeps writing.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from musegpt.engines.base import Engine
from musegpt.fileio import atomic_write_text
from musegpt.studio.tasks import StudioError, distinct_list
from musegpt.studio.text import SENTENCE_END, Lang, detect_lang, tidy
from musegpt.studio.work import Work
from musegpt.studio.writer import Writer

PROJECT_FILE = "story.json"
RECENT_CHARS = 700  # the end of the previous scene kept verbatim in the next prompt
# The premise is in every planning prompt beside the few-shot plan, the bible and the
# outline; more than this share of the model's context crowds them out (and each of the
# dozen planning calls pays for reading it).
PREMISE_SHARE = 4


@dataclass
class Character:
    name: str
    description: str

    @property
    def keys(self) -> list[str]:
        """Words that activate this entry when they appear near a scene."""
        words = [w for w in re.split(r"[\s·]+", self.name) if len(w) >= 2]
        if re.search(r"[\u4e00-\u9fff]", self.name) and len(self.name) >= 3:
            words.append(self.name[1:])  # a Chinese given name without the surname
        return [self.name, *words]


@dataclass
class StoryBible:
    title: str
    setting: str
    style: str
    synopsis: str
    characters: list[Character] = field(default_factory=list)

    def relevant(self, text: str) -> list[Character]:
        """The lorebook entries `text` mentions, and always the protagonist (listed first)."""
        return [
            c for i, c in enumerate(self.characters)
            if i == 0 or any(k in text for k in c.keys)
        ]  # fmt: skip


@dataclass
class Scene:
    beat: str
    text: str = ""
    summary: str = ""


@dataclass
class StoryProject:
    folder: Path
    premise: str
    lang: Lang
    bible: StoryBible | None = None
    scenes: list[Scene] = field(default_factory=list)
    scene_tokens: int = 450
    chapters: int = 3  # how many the outline should hold (new stories: --chapters; +--more)
    meta: dict[str, Any] = field(default_factory=dict)

    # -- files --------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | Path) -> StoryProject:
        folder = Path(folder)
        file = folder / PROJECT_FILE
        try:
            data = ProjectFile.model_validate_json(file.read_bytes())
        except FileNotFoundError:
            raise StudioError(f"no story project at {folder} (no {PROJECT_FILE})") from None
        except ValidationError as err:
            raise StudioError(
                f"{file} is damaged ({damage(err)}); fix it by hand or start a new project"
            ) from None
        return cls(
            folder=folder,
            premise=data.premise,
            lang=data.lang,
            bible=data.bible,
            scenes=data.scenes,
            scene_tokens=data.scene_tokens,
            chapters=len(data.scenes) if data.chapters is None else data.chapters,
            meta=data.meta,
        )

    def save(self) -> None:
        data = {
            "premise": self.premise,
            "lang": self.lang,
            "bible": asdict(self.bible) if self.bible else None,
            "scenes": [asdict(s) for s in self.scenes],
            "scene_tokens": self.scene_tokens,
            "chapters": self.chapters,
            "meta": self.meta,
        }
        atomic_write_text(
            self.folder / PROJECT_FILE, json.dumps(data, ensure_ascii=False, indent=2)
        )
        atomic_write_text(self.folder / "story.md", self.markdown())
        if self.bible:
            atomic_write_text(self.folder / "bible.md", bible_markdown(self.bible, self.premise))

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.scenes if s.text)

    def markdown(self) -> str:
        title = self.bible.title if self.bible else self.premise
        out = [f"# {title}", "", f"*{self.premise}*", ""]
        label = "第{}章" if self.lang == "zh" else "Chapter {}"
        for i, scene in enumerate(self.scenes, 1):
            if scene.text:
                out += [f"## {label.format(i)}", "", scene.text, ""]
        return "\n".join(out)


class ProjectFile(BaseModel):
    """The shape of story.json: what `StoryProject.save` writes and `load` accepts."""

    model_config = ConfigDict(extra="ignore")

    premise: str
    lang: Lang
    bible: StoryBible | None = None
    scenes: list[Scene] = Field(default_factory=list)
    scene_tokens: int = Field(450, ge=1)
    chapters: int | None = Field(None, ge=0)
    meta: dict[str, Any] = Field(default_factory=dict)


def damage(err: ValidationError) -> str:
    """Where a project file is damaged, in one phrase: the first problem pydantic found."""
    first = err.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    return f"{where}: {first['msg']}"


def premise_limit(context_length: int) -> int:
    """The most tokens a premise may take in a model with this context."""
    return context_length // PREMISE_SHARE


def bible_markdown(bible: StoryBible, premise: str) -> str:
    lines = [f"# {bible.title} — story bible", "", f"**Premise:** {premise}", "",
             f"**Setting:** {bible.setting}", "", f"**Style:** {bible.style}", "",
             "## Characters", ""]  # fmt: skip
    lines += [f"- **{c.name}**: {c.description}" for c in bible.characters]
    lines += ["", "## Synopsis", "", bible.synopsis, ""]
    return "\n".join(lines)


# -- templates ---------------------------------------------------------------------------

LABELS = {
    "en": {"premise": "Premise:", "title": "Title:", "setting": "Setting:", "style": "Style:",
           "characters": "Characters:", "synopsis": "Synopsis:", "outline": "Outline:"},
    "zh": {"premise": "前提：", "title": "标题：", "setting": "背景：", "style": "文风：",
           "characters": "人物：", "synopsis": "梗概：", "outline": "大纲："},
}  # fmt: skip

BIBLE_EXAMPLE = {
    "en": (
        "Story plans.\n\n"
        "Premise: A lighthouse keeper finds a message in a bottle addressed to him.\n"
        "Title: The Keeper's Letter\n"
        "Setting: A storm-beaten island off the coast of Maine, in the autumn of 1923.\n"
        "Style: Quiet and melancholic, third person, past tense.\n"
        "Characters:\n"
        "- Elias Ward: the lighthouse keeper, sixty, careful and lonely.\n"
        "- Mara Ward: his daughter, who left the island twenty years ago.\n"
        "- Tom Bell: the supply-boat captain, talkative, knows every rumour.\n"
        "Synopsis: Elias finds a letter in his daughter's hand. He crosses to the mainland to "
        "find her and learns why she left.\n"
        "Outline:\n"
        "1. After a storm, Elias finds the bottle wedged in the rocks below the lamp.\n"
        "2. Tom Bell tells Elias that Mara was seen in Portland last spring.\n"
        "3. Elias leaves the island for the first time in ten years.\n\n"
    ),
    "zh": (
        "故事设定。\n\n"
        "前提：一个灯塔看守人在漂流瓶里发现了一封写给自己的信。\n"
        "标题：守塔人的信\n"
        "背景：一九二三年秋天，海边一座常年风暴的小岛。\n"
        "文风：安静、忧郁，第三人称，过去时。\n"
        "人物：\n"
        "- 林守义：灯塔看守人，六十岁，谨慎而孤独。\n"
        "- 林小雨：他的女儿，二十年前离开了小岛。\n"
        "- 老周：送补给的船长，爱说话，知道所有传闻。\n"
        "梗概：林守义发现一封女儿笔迹的信，他渡海去寻找她，终于明白她当年为何离开。\n"
        "大纲：\n"
        "1. 风暴过后，林守义在灯塔下的礁石间发现了漂流瓶。\n"
        "2. 老周告诉他，去年春天有人在城里见过小雨。\n"
        "3. 林守义十年来第一次离开小岛。\n\n"
    ),
}
CHAPTER = {"en": "Chapter {n}", "zh": "第{n}章"}
SCENE_NOTES = {
    "en": 'Notes for the novel "{title}". Style: {style}\nSetting: {setting}\nCharacters:\n',
    "zh": "长篇小说《{title}》的写作笔记。文风：{style}\n背景：{setting}\n人物：\n",
}
SO_FAR = {"en": "Story so far: ", "zh": "前情提要："}
NEXT = {"en": "This chapter: ", "zh": "本章内容："}
PREVIOUSLY = {"en": "The previous chapter ended:\n", "zh": "上一章的结尾：\n"}


def _bible_prompt(lang: Lang, premise: str) -> str:
    return BIBLE_EXAMPLE[lang] + f"{LABELS[lang]['premise']} {premise}\n"


def _field(writer: Writer, prompt: str, label: str, tokens: int) -> str:
    text = writer.write(prompt + label, tokens, stop=["\n"], clean_end=False)
    return text.strip()


def plan_bible(writer: Writer, premise: str) -> StoryBible:
    """The story bible, field by field, each in the shape the example shows."""
    labels = LABELS[writer.lang]
    prompt = _bible_prompt(writer.lang, premise)
    values: dict[str, str] = {}
    for key, tokens in (("title", 24), ("setting", 60), ("style", 40)):
        values[key] = _field(writer, prompt, labels[key], tokens) or "—"
        prompt += f"{labels[key]} {values[key]}\n"
    characters = plan_characters(writer, prompt + labels["characters"] + "\n")
    prompt += labels["characters"] + "\n" + character_lines(writer.lang, characters)
    synopsis = _field(writer, prompt, labels["synopsis"], 120)
    return StoryBible(values["title"], values["setting"], values["style"], synopsis, characters)


def character_lines(lang: Lang, characters: list[Character]) -> str:
    colon = "：" if lang == "zh" else ": "
    return "".join(f"- {c.name}{colon}{c.description}\n" for c in characters)


NAME = re.compile(r"^(?:[A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,3}|[\u4e00-\u9fff·]{1,6})$")


CAPITALISED = re.compile(r"\b[A-Z][a-z'-]+(?: [A-Z][a-z'-]+){0,2}\b")
NOT_NAMES = {"The", "A", "An", "He", "She", "They", "His", "Her", "It", "In", "On", "At", "One"}


def parse_character(line: str, lang: Lang) -> Character | None:
    """A character from one line the model wrote: "Name: description" when it kept the
    shape, else the first capitalised name in the line (English) — small models often
    write "28-year-old robot Alice, who ..." instead."""
    line = re.sub(r"<[^>]+>|\*", "", line).strip(" -")
    name, sep, description = line.partition("：" if lang == "zh" else ":")
    name, description = name.strip(), description.strip()
    if sep and NAME.match(name) and description:
        return Character(name, description)
    if lang == "en":
        for match in CAPITALISED.finditer(line):
            words = [w for w in match.group(0).split() if w not in NOT_NAMES]
            if words:
                return Character(" ".join(words), line.rstrip("."))
    return None


def plan_characters(writer: Writer, prompt: str, most: int = 3, tries: int = 8) -> list[Character]:
    """Characters one line at a time, each parsed and checked; at most `tries` calls."""
    characters: list[Character] = []
    for _ in range(tries):
        if len(characters) == most:
            break
        listed = character_lines(writer.lang, characters)
        line = writer.write(prompt + listed + "- ", 40, stop=["\n"], clean_end=False)
        found = parse_character(line, writer.lang)
        if found is not None and all(c.name != found.name for c in characters):
            characters.append(found)
    if not characters:
        raise StudioError("the model named no characters for the story bible; try another --seed")
    return characters


def _plan_prompt(lang: Lang, premise: str, bible: StoryBible) -> str:
    labels = LABELS[lang]
    return (
        _bible_prompt(lang, premise)
        + f"{labels['title']} {bible.title}\n{labels['setting']} {bible.setting}\n"
        + f"{labels['style']} {bible.style}\n{labels['characters']}\n"
        + character_lines(lang, bible.characters)
        + f"{labels['synopsis']} {bible.synopsis}\n{labels['outline']}\n"
    )


def plan_outline(writer: Writer, project: StoryProject, count: int) -> list[str]:
    """`count` more distinct beats, continuing the outline so far."""
    assert project.bible is not None
    template = _plan_prompt(project.lang, project.premise, project.bible)
    planned = [s.beat for s in project.scenes]
    total = len(planned) + count
    beats = distinct_list(writer, template, total, 48, attempts=3 + count, start=planned)
    return beats[len(planned) :]


def scene_prompt(project: StoryProject, index: int) -> str:
    """Everything the model needs for scene `index`, and nothing it does not."""
    assert project.bible is not None
    bible, lang = project.bible, project.lang
    scene = project.scenes[index]
    previous = project.scenes[:index]
    recent = previous[-1].text[-RECENT_CHARS:] if previous else ""
    active = bible.relevant(" ".join([scene.beat, recent, *(s.summary for s in previous[-2:])]))
    prompt = SCENE_NOTES[lang].format(
        title=bible.title, premise=project.premise, style=bible.style, setting=bible.setting
    )
    prompt += character_lines(lang, active)
    if previous:
        prompt += SO_FAR[lang] + " ".join(s.summary for s in previous) + "\n"
    prompt += NEXT[lang] + scene.beat + "\n\n"
    if recent:
        cut = recent.find(" ") + 1 if lang == "en" and len(previous[-1].text) > RECENT_CHARS else 0
        prompt += PREVIOUSLY[lang] + "…" + recent[cut:] + "\n\n"
    return prompt + CHAPTER[lang].format(n=index + 1) + "\n\n"


def summarize(scene: Scene) -> str:
    """A rolling summary line: the planned beat, plus how the scene actually ended."""
    sentences = [m.end() for m in SENTENCE_END.finditer(scene.text)]
    last = scene.text
    if len(sentences) >= 2:
        last = scene.text[sentences[-2] : sentences[-1]]
    return f"{scene.beat} {last.strip()}".strip()


def write_scene(writer: Writer, project: StoryProject, index: int) -> Scene:
    scene = project.scenes[index]
    chapter = CHAPTER[project.lang]
    stops = [f"\n{chapter.format(n=index + 2)}", "\nChapter ", "\nNotes for", "写作笔记", "\n\n\n"]
    labels = ["Chapter ", "This chapter:", "Story so far:", "本章内容：", "前情提要："]
    scene.text = writer.write(
        scene_prompt(project, index), project.scene_tokens, stop=stops, labels=labels, stream=True
    )
    if not scene.text:
        raise StudioError(f"the model wrote nothing for chapter {index + 1}; try another --seed")
    scene.summary = summarize(scene)
    return scene


def write_story(
    writer: Writer,
    premise: str,
    folder: str | Path,
    scenes: int = 3,
    more: int = 0,
    scene_tokens: int = 450,
) -> Work:
    """Start a story of `scenes` chapters in `folder`, or resume the one there, adding
    `more` chapters to its outline."""
    folder = Path(folder)
    if (folder / PROJECT_FILE).is_file():
        project = StoryProject.load(folder)
        writer.lang = project.lang
    else:
        if not premise.strip():
            raise StudioError("a new story needs a premise, e.g. 'a robot who discovers love'")
        check_premise(writer.engine, premise)
        project = StoryProject(folder, premise.strip(), writer.lang, scene_tokens=scene_tokens)
        project.chapters = scenes
        project.meta = {"model": writer.engine.name, "seed": writer.params.seed}
    if project.bible is None:
        writer.say("Planning the story bible…")
        project.bible = plan_bible(writer, project.premise)
        project.save()
    project.chapters += more
    wanted = project.chapters - len(project.scenes)
    if wanted > 0:
        writer.say("Outlining…")
        project.scenes += [Scene(beat) for beat in plan_outline(writer, project, wanted)]
        project.save()
    chapter = CHAPTER[project.lang]
    if all(scene.text for scene in project.scenes):
        writer.say(f"{folder} is complete ({len(project.scenes)} chapters); --more N adds N more")
        writer.show(project.markdown())
    for index, scene in enumerate(project.scenes):
        if scene.text:
            continue
        writer.say(f"Writing {chapter.format(n=index + 1)} of {len(project.scenes)}: {scene.beat}")
        writer.show(f"\n\n## {chapter.format(n=index + 1)}\n\n")
        write_scene(writer, project, index)
        project.save()  # every finished scene is on disk before the next begins
    bible = project.bible
    meta = {**project.meta, "project": str(folder), "chapters": len(project.scenes)}
    return Work(
        "story", bible.title, project.lang, project.text, [s.text for s in project.scenes], meta
    )


def check_premise(engine: Engine, premise: str) -> None:
    """Refuse a premise too long to plan from: it would crowd the planning prompts out of
    the model's context."""
    tokens, most = len(engine.tokenize(premise)), premise_limit(engine.context_length)
    if tokens > most:
        raise StudioError(
            f"the premise is {tokens} tokens; at most {most} fit beside the story plan in "
            f"{engine.name}'s {engine.context_length}-token context. Give a premise of a few "
            "sentences, or continue a long text with --continue FILE"
        )


def continue_text(writer: Writer, text: str, max_new_tokens: int = 400) -> Work:
    """The text, continued in its own voice (the model sees its most recent part)."""
    if not text.strip():
        raise StudioError("nothing to continue: the text is empty")
    writer.lang = detect_lang(text)
    continuation = writer.write(text.rstrip() + ("" if text.endswith((" ", "\n")) else " "),
                                max_new_tokens, stop=["\n\n\n"], stream=True)  # fmt: skip
    first_line = tidy(text.strip().split("\n")[0], clean_end=False)[:60]
    return Work("story", first_line, writer.lang, continuation)
