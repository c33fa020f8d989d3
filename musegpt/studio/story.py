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
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from musegpt.engines.base import Engine
from musegpt.fileio import atomic_write_text
from musegpt.generation.processors import BanInText, BanTokens, LogitsProcessor
from musegpt.studio import plan_checks as checks
from musegpt.studio.cast import Cast, CastRule, first_name_shares, is_word, line_fault, no_word
from musegpt.studio.paragraph_guard import ParagraphFloor
from musegpt.studio.plan_rules import (
    DIGIT,
    EchoedSentences,
    EndWhenReady,
    Favour,
    JudgedWhenEnded,
    LoopTakenBack,
    NameFirst,
    Phrases,
    SaidTwice,
    digit_ids,
    echo_outside,
    phrase_pairs,
    traditional_ids,
    vocab_texts,
    word_nudge,
)
from musegpt.studio.retell_guard import (
    RETOLD_SENTENCES,
    RUN,
    CircleGuard,
    PhraseGuard,
    RetellGuard,
    told_openings,
)
from musegpt.studio.screen import KeptScreen
from musegpt.studio.speech_guard import SpeechRun
from musegpt.studio.tasks import StudioError
from musegpt.studio.text import (
    SENTENCE_END,
    Lang,
    detect_lang,
    echo_pattern,
    end_cleanly,
    similarity,
    tidy,
)
from musegpt.studio.word_guard import WordGuard
from musegpt.studio.work import Work
from musegpt.studio.writer import Writer
from musegpt.tokenizer.base import Tokenizer

PROJECT_FILE = "story.json"
RECENT_CHARS = 700  # the end of the previous scene kept verbatim in the next prompt
# The premise is in every planning prompt beside the few-shot plan, the bible and the
# outline; more than this share of the model's context crowds them out (and each of the
# dozen planning calls pays for reading it).
PREMISE_SHARE = 4
PLAN_TRIES = 6  # draws of one plan field (each with its own derived seed) before giving up
SUMMARY_TRIES = 2
SUMMARY_CHARS = 500  # the end of a chapter the summarising prompt reads
SUMMARY_TOKENS = 56  # one or two sentences
CANDIDATES = 2
# On a backend whose batches are bounded (llama.cpp), only a chapter's opening (this share of
# its tokens) is drawn `candidates` times; enough to see whether it follows the beat.
OPENING_SHARE = 6


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
    # What happens in the chapter, in order: a sentence each, drawn before its text (a
    # story.json written before steps existed has none: its chapters are written without).
    steps: list[str] = field(default_factory=list)


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
    # Chapters told in steps (--steps): opt-in, because the steps' own draws cost a Chinese
    # story ~14 s (53 -> 67 s, quiet machine) and beat relevance fell (eleventh session).
    steps: bool = False

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
            steps=data.steps,
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
            "steps": self.steps,
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
        """The whole work: title, premise, the bible, then each chapter under its heading."""
        title = self.bible.title if self.bible else self.premise
        out = [f"# {title}", "", f"*{self.premise}*", ""]
        if self.bible:
            out += bible_section(self.bible, self.lang)
        for i, scene in enumerate(self.scenes, 1):
            if scene.text:
                # Each line its own paragraph: Markdown joins lines one break apart, and
                # rendered, two speakers' lines of dialogue ran on as one paragraph.
                text = re.sub(r"\n\s*", "\n\n", scene.text)
                out += [f"## {CHAPTER[self.lang].format(n=i)}", "", text, ""]
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
    steps: bool = False


def damage(err: ValidationError) -> str:
    """Where a project file is damaged, in one phrase: the first problem pydantic found."""
    first = err.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    return f"{where}: {first['msg']}"


def premise_limit(context_length: int) -> int:
    """The most tokens a premise may take in a model with this context."""
    return context_length // PREMISE_SHARE


def bible_section(bible: StoryBible, lang: Lang) -> list[str]:
    """The bible as Markdown lines for the head of story.md."""
    labels = LABELS[lang]
    colon = "：" if lang == "zh" else ": "
    lines = [f"**{labels['setting'].rstrip(':：')}**{colon}{bible.setting}", "",
             f"**{labels['style'].rstrip(':：')}**{colon}{bible.style}", "",
             f"**{labels['characters'].rstrip(':：')}**", ""]  # fmt: skip
    lines += [f"- **{c.name}**{colon}{c.description}" for c in bible.characters]
    return [*lines, "", f"**{labels['synopsis'].rstrip(':：')}**{colon}{bible.synopsis}", ""]


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
        "Synopsis: A lighthouse keeper finds a message in a bottle addressed to him: Elias "
        "knows his daughter's hand. He crosses to the mainland to find her and learns why she "
        "left.\n"
        "Outline:\n"
        "1. Elias finds the bottle wedged in the rocks below the lamp after a storm.\n"
        "2. Tom Bell reads the message and tells Elias that Mara was seen in Portland.\n"
        "3. Elias leaves the island with the bottle's message, for the first time in ten "
        "years.\n\n"
        "Premise: A tailor sews a coat that makes whoever wears it tell the truth.\n"
        "Title: Honest Cloth\n"
        "Setting: A street of workshops in Lagos, in the rainy season.\n"
        "Style: Warm and wry, first person, present tense.\n"
        "Characters:\n"
        "- Ruth Okafor: the tailor, forty, proud of her steady hands.\n"
        "- Bayo Adeyemi: the mayor, charming, deep in debt.\n"
        "- Kemi Okafor: Ruth's niece and apprentice, who wants to leave.\n"
        "Synopsis: A tailor sews a coat that makes whoever wears it tell the truth: Ruth "
        "makes it for the mayor's speech, and the whole street hears what he has hidden. "
        "Now everyone wants the coat, or wants it burned.\n"
        "Outline:\n"
        "1. Ruth finishes the truth-telling coat at midnight, from her mother's cloth.\n"
        "2. Bayo Adeyemi wears the coat at the market and confesses his debts.\n"
        "3. Kemi steals the coat to ask Ruth one question.\n\n"
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
        "梗概：一个灯塔看守人在漂流瓶里发现了一封写给自己的信：林守义认出了女儿的笔迹，"
        "他渡海去寻找她，终于明白她当年为何离开。\n"
        "大纲：\n"
        "1. 林守义在风暴过后的礁石间发现了漂流瓶。\n"
        "2. 老周看了那封信，告诉他去年春天有人在城里见过小雨。\n"
        "3. 林守义揣着漂流瓶里的信，十年来第一次离开小岛。\n\n"
        "前提：一个卖馄饨的老太太每晚都给一位从不说话的客人留一碗。\n"
        "标题：最后一碗\n"
        "背景：八十年代末，南方小城老街上的夜市。\n"
        "文风：温暖、平实，第一人称，口语化。\n"
        "人物：\n"
        "- 陈阿婆：卖馄饨的老太太，七十岁，手脚麻利，嘴硬心软。\n"
        "- 哑叔：每晚最后一个来的客人，从不说话，总坐在角落里。\n"
        "- 陈晓光：阿婆的孙子，高中生，放学后帮她收摊。\n"
        "梗概：一个卖馄饨的老太太每晚都给一位从不说话的客人留一碗：陈阿婆知道哑叔的来历，却从来不问。"
        "直到有一晚哑叔没有来，晓光才从奶奶口中听到了三十年前的旧事。\n"
        "大纲：\n"
        "1. 陈阿婆收摊前给哑叔留下最后一碗馄饨，晓光觉得奇怪。\n"
        "2. 哑叔一连三天没有来，陈阿婆每晚照样给他留一碗，坐立不安。\n"
        "3. 晓光端着那碗馄饨，跟着奶奶去河边的棚屋找哑叔。\n\n"
    ),
}
# The examples' own people, places and things: a plan or a chapter that names one the
# premise does not is an example leaking in (seen: 漂流瓶, the captain "爱说话").
EXAMPLE_MARKS = {
    "en": ["lighthouse", "keeper", "bottle", "Maine", "Portland", "supply-boat", "Elias",
           "Mara", "Tom Bell", "Ward", "1923", "tailor", "Lagos", "Okafor", "Adeyemi", "Kemi",
           "truth-telling"],
    "zh": ["灯塔", "守塔", "漂流瓶", "小岛", "船长", "补给", "传闻", "礁石", "林守义", "林小雨",
           "老周", "一九二三", "馄饨", "陈阿婆", "哑叔", "晓光", "夜市", "棚屋"],
}  # fmt: skip
CHAPTER = {"en": "Chapter {n}", "zh": "第{n}章"}
SCENE_NOTES = {
    "en": 'Notes for the novel "{title}".\nPremise: {premise}\nStyle: {style}\n'
    "Setting: {setting}\nCharacters:\n",
    "zh": "长篇小说《{title}》的写作笔记。\n前提：{premise}\n文风：{style}\n"
    "背景：{setting}\n人物：\n",
}
SO_FAR = {"en": "Story so far: ", "zh": "前情提要："}
NEXT = {"en": "This chapter: ", "zh": "本章内容："}
STEP_LABEL = {"en": "This part: ", "zh": "这一段："}
PREVIOUSLY = {"en": "The previous chapter ended:\n", "zh": "上一章的结尾：\n"}


SUMMARY_EXAMPLE = {
    "en": (
        "Each passage is followed by its summary: one sentence saying who did what.\n\n"
        "Passage: The rain had not stopped for three days. Nadia climbed to the attic and "
        "opened her grandfather's trunk. Under the old coats she found a map of the harbour, "
        "with one house circled in red ink. She folded it into her pocket before her brother "
        "could see.\n"
        "Summary: Nadia found her grandfather's map of the harbour and hid it from her "
        "brother.\n\n"
        "Passage: {text}\nSummary:"
    ),
    "zh": (
        "每段文字后面是它的概要：用一句话说清谁做了什么。\n\n"
        "文字：雨下了三天还没有停。阿青爬上阁楼，打开了外公的旧木箱。在几件旧大衣下面，她找到一张"
        "港口的地图，一栋房子被红笔圈了起来。她趁弟弟没看见，把地图折好塞进了口袋。\n"
        "概要：阿青在外公的木箱里找到一张港口地图，并把它藏了起来。\n\n"
        "文字：{text}\n概要："
    ),
}
SUMMARY_MARKS: dict[Lang, list[str]] = {
    "en": ["Nadia", "harbour", "grandfather", "attic", "trunk"],
    "zh": ["阿青", "外公", "港口", "阁楼", "木箱"],
}  # seen: "The night was when Nadia was a girl."
ZH_DIGITS = "一二三四五六七八九"


def chinese_number(n: int) -> str:
    """1..99 in Chinese numerals, as chapter headings write them (第十二章)."""
    tens, ones = divmod(n, 10)
    head = "" if tens == 0 else ("十" if tens == 1 else ZH_DIGITS[tens - 1] + "十")
    return head + (ZH_DIGITS[ones - 1] if ones else "")


# Line starts that mean the model began another chapter or another set of notes.
SCENE_LABELS = [
    "Chapter ", "CHAPTER ", "# ", "## ", "This chapter:", "Story so far:", "Notes for",
    "Premise:", "Setting:", "Style:", "This part:", "本章内容：", "这一段：", "前情提要：",
    "写作笔记", "前提：", "背景：", "文风：",
    *(f"第{chinese_number(n)}章" for n in range(1, 100)), *(f"第{n}章" for n in range(1, 100)),
]  # fmt: skip


def _bible_prompt(lang: Lang, premise: str) -> str:
    return BIBLE_EXAMPLE[lang] + f"{LABELS[lang]['premise']} {premise}\n"


def example_fields(lang: Lang, key: str) -> list[str]:
    """A field of each few-shot example plan (what a plan must not copy)."""
    label = LABELS[lang][key]
    lines = BIBLE_EXAMPLE[lang].split("\n")
    return [line[len(label) :].strip() for line in lines if line.startswith(label)]


def example_field(lang: Lang, key: str) -> str:
    """A field of the first few-shot example plan."""
    return next(iter(example_fields(lang, key)), "")


def example_names(lang: Lang) -> list[str]:
    colon = "：" if lang == "zh" else ":"
    lines = BIBLE_EXAMPLE[lang].split("\n")
    return [line[2:].partition(colon)[0].strip() for line in lines if line.startswith("- ")]


def example_beats(lang: Lang) -> list[str]:
    lines = BIBLE_EXAMPLE[lang].split("\n")
    return [line.partition(". ")[2] for line in lines if re.match(r"\d+\. ", line)]


# A field's line is never begun with a line break (Gemma often breaks the line after
# "标题：", and each empty draw was a wasted call).
LINE_BREAK_FIRST = r"\A\s*\n"
LIST_NUMBER_FIRST = r"\A\s*\d+\s*[.、)\n]"
# Names a character line begins with when the model's own lines keep failing (none of
# them a few-shot example's); the story's seed picks where in the list to start.
STANDBY_NAMES: dict[Lang, list[str]] = {
    "en": ["Nora Hale", "Tomas Reyes", "Iris Chen", "Owen Marsh", "Lena Brandt",
           "Samir Haddad", "Clara Voss", "Felix Moreau"],
    "zh": ["周晓岚", "沈一舟", "许安", "苏青", "顾远", "唐宁", "韩小北", "叶知秋"],
}  # fmt: skip


def whole_sentence(lang: Lang, least: int) -> Callable[[str], bool]:
    """Whether a text holds at least `least` words (Chinese: characters) and a sentence
    end: until then a plan line may not end (see `plan_rules.EndWhenReady`)."""

    def ready(text: str) -> bool:
        return checks.size(text, lang) >= least and SENTENCE_END.search(text) is not None

    return ready


def draw(
    writer: Writer,
    prompt: str,
    tokens: int,
    check: Callable[[str], str | None],
    what: str,
    tries: int = PLAN_TRIES,
    avoid_regex: Sequence[str] = (),
    redraws: dict[str, int] | None = None,
    lead: str = "",
    lead_from: int | None = None,
    ready: Callable[[str], bool] | None = None,
    last_resort: Callable[[], str] | None = None,
    until_kept: bool = False,
    nudges: Sequence[LogitsProcessor] = (),
    enough: Callable[[str], bool] | None = None,
) -> str:
    """One line the model writes after `prompt` that passes `check` (and never matches
    `avoid_regex`); each retry has its own derived seed (so the same --seed plans the
    same story) and a little more heat. With a `lead`, the draws from `lead_from` on
    (by default the second half) begin with it (the program's words, e.g. the hero's
    name) for the model to go on from. With `ready`, the line cannot end until
    `ready(line so far)` holds (e.g. a whole sentence); `until_kept`, not until the line
    so far passes `check` (a style too near an example's goes on until it is its own).
    `nudges` are further constraints, applied where lines are steered. Decoding stops
    once `enough(text so far)` holds (what the caller keeps is written). When no draw
    passes, the
    `last_resort` (a line the program builds from parts already kept) is kept if it
    passes `check`. Failed draws are counted in `redraws` under the first word of
    `what`, a last resort under "last resort"."""
    reason, value = "", ""
    key = what.split(" ")[0]
    # After an empty line (the model often breaks the line before the field), the next
    # draw reads on to the first line with words, stopping at the plan's next label.
    next_labels = [f"\n{label}" for label in LABELS[writer.lang].values()]
    next_labels += [f"\n{n}." for n in range(1, 10)]
    stop = ["\n"]
    first_lead = tries // 2 if lead_from is None else lead_from
    if until_kept:
        ready = kept_when_ended(check, ready)
    for attempt in range(tries):
        heat = writer.params.temperature + 0.1 * attempt if writer.params.temperature > 0 else 0
        head = lead if lead and attempt >= first_lead else ""
        # After a lead, not a colon ("Kenta Yano: goes fishing" is a script line).
        after = [r"\A\s*[:：]"] if head else []
        rules: list[LogitsProcessor] = [LoopTakenBack()] if writer.steers else []
        if ready is not None and writer.steers:
            rules.append(EndWhenReady(writer.engine.tokenizer, ready, head))
        rules += nudges if writer.steers else []
        text = writer.write(
            prompt + head, tokens, stop=stop, clean_end=False, temperature=heat,
            avoid_regex=[*avoid_regex, *after, LINE_BREAK_FIRST], constraints=rules,
            until=enough,
        )  # fmt: skip
        # The writer's text comes stripped: the space after an English lead is put back.
        spaced = head and writer.lang == "en" and text[:1] not in "',.;:!?’"
        text = head + (" " if spaced else "") + text
        lines = [line for line in text.split("\n") if line.strip()]
        value = lines[0].strip().strip("*").strip() if lines else ""
        if not value:
            stop = ["\n\n", *next_labels]
        found = check(value)
        if found is None:
            return value
        reason = found
        if redraws is not None:
            redraws[key] = redraws.get(key, 0) + 1
    if last_resort is not None and check(built := last_resort()) is None:
        if redraws is not None:
            redraws["last resort"] = redraws.get("last resort", 0) + 1
        return built
    raise StudioError(
        f"the model wrote no usable {what} in {tries} draws (last: {reason}: {value!r}); "
        "try another --seed or a clearer premise"
    )


def kept_when_ended(
    check: Callable[[str], str | None], ready: Callable[[str], bool] | None
) -> Callable[[str], bool]:
    """Whether a line so far (read as `draw` reads the value) passes `check`, and `ready`."""

    def kept(text: str) -> bool:
        value = text.strip().strip("*").strip()
        return (ready is None or ready(text)) and check(value) is None

    return kept


def anchors(premise: str, lang: Lang, characters: list[Character]) -> set[str]:
    """What a plan line may name to be about this story: premise keywords and the names
    (English names lower-cased, as `checks.mentions` compares words)."""
    names = {key for c in characters for key in c.keys}
    return checks.keywords(premise, lang) | (names if lang == "zh" else {n.lower() for n in names})


def foreign_marks(
    lang: Lang, premise: str, examples: dict[Lang, list[str]] | None = None
) -> list[str]:
    """A `banned_regex` for the example's own things (`examples`, by default the plan
    example's) that the premise does not name: never in this story (English: whole words,
    so "Ward" does not ban "toward")."""
    every = (examples or EXAMPLE_MARKS)[lang]
    marks = checks.foreign_words(" ".join(every), every, premise)
    if not marks:
        return []
    words = "|".join(re.escape(m) for m in marks)
    return [f"(?:{words})" if lang == "zh" else rf"(?i)\b(?:{words})\b"]


# Web markup's brackets: no plan field writes them (seen in 4 of 20 English plans:
# "The mountainside in the winter of <i>The White Mountains</i>.").
MARKUP_MARK = re.compile(r"[<>]")
# Letters of no Latin alphabet (Latin, its accents and general punctuation pass), and
# symbols no plan writes (seen, with a year's digits banned: "in the winter of ¤ ¤.").
OTHER_SCRIPT = re.compile(
    r"[^\x20-\x7e\n\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u2000-\u206f]|[#@$%^~|\\{}\[\]=+`]"
)


SPACES_IN_LINE = r"(?<=\S)[ \t]{2,}"


def plan_avoid(lang: Lang, premise: str) -> list[str]:
    """A `banned_regex` for what no field of a plan writes: the example's own things
    (`foreign_marks`) and, unless the premise has one, a digit, as the examples write
    numbers in words (seen: "2006年，美国西部", "1975年生，24岁" carried into the beats), web
    markup's brackets or a worksheet's blank."""
    digits = [] if DIGIT.search(premise) else [DIGIT.pattern]
    markup = [] if MARKUP_MARK.search(premise) else [MARKUP_MARK.pattern]
    # An English plan writes Latin letters (with digits banned, Gemma wrote the age in
    # Thai and then a Cyrillic word: "a robot, ๖ years old", "a robot, щенкий").
    script = [OTHER_SCRIPT.pattern] if lang == "en" and not OTHER_SCRIPT.search(premise) else []
    # Nor a worksheet's blanks (seen: "Curtiss: detective, ______; ______", a cast redrawn).
    blanks = [] if re.search(checks.BLANK, premise) else [checks.BLANK]
    # Nor spaces run together inside a line: where a banned digit was (seen: "The mountainside
    # in the winter of  a small town", "Curtiss: detective,   old, rich, retired.").
    return [*foreign_marks(lang, premise), *digits, *markup, *script, *blanks, SPACES_IN_LINE]


def unborrowed(
    check: Callable[[str], str | None], lang: Lang, premise: str
) -> Callable[[str], str | None]:
    """`check`, and also refuse a field that names the example's own things."""

    def checked(value: str) -> str | None:
        found = checks.foreign_words(value, EXAMPLE_MARKS[lang], premise)
        if found:
            return f"it borrows the example's {found[0]!r}"
        if MARKUP_MARK.search(value) and not MARKUP_MARK.search(premise):
            return "it holds web markup"
        return check(value)

    return checked


def not_the_premise(
    check: Callable[[str], str | None],
    premise: str,
    what: str,
    value: str,
    earlier: Sequence[str] = (),
) -> str | None:
    """`check`, and also refuse a field that only says the premise again (seen: the
    setting "一个发现爱情的机器人") or an `earlier` field (seen: the setting "龙在水里吃火的龙"
    under that title)."""
    if similarity(value, premise) > checks.NEAR_DUPLICATE:
        return f"the {what} is the premise again"
    if any(similarity(value, field) > checks.NEAR_DUPLICATE for field in earlier):
        return f"the {what} says an earlier field again"
    return check(value)


def hero(project: StoryProject) -> Character:
    """The character the premise is about: the first described with a premise keyword,
    else the first listed."""
    assert project.bible is not None
    words = checks.keywords(project.premise, project.lang)
    cast = project.bible.characters
    about = [c for c in cast if checks.mentions(c.description, words, project.lang)]
    return (about or cast)[0]


def premise_anchors(project: StoryProject) -> set[str]:
    """What the first beat may name to start from the premise: a premise keyword, or a
    character the bible describes with one ("Mikaela: ... she is the robot ...")."""
    assert project.bible is not None
    lang = project.lang
    words = checks.keywords(project.premise, lang)
    chosen = [c for c in project.bible.characters if checks.mentions(c.description, words, lang)]
    names = anchors("", lang, chosen)
    return words | names


def title_rule(premise: str, lang: Lang) -> Callable[[str], str | None]:
    """A title's check against the premise and every example's title."""

    def rule(value: str) -> str | None:
        found = [checks.check_title(value, premise, lang, t) for t in example_fields(lang, "title")]
        return next((r for r in found if r is not None), None)

    return rule


def phrase_rule(lang: Lang, key: str) -> Callable[[str], str | None]:
    """A setting's or a style's check against every example's."""

    def rule(value: str) -> str | None:
        found = [checks.check_phrase(value, lang, e, key) for e in example_fields(lang, key)]
        return next((r for r in found if r is not None), None)

    return rule


def example_echo(lang: Lang, given: str) -> str:
    """A `banned_regex` for a run of four of the examples' words (Chinese: characters)
    that `given` (the premise, the plan so far) does not have."""
    return echo_pattern(BIBLE_EXAMPLE[lang], given, words=4, chars=4)


# A title is no sentence (no inner punctuation, nothing after a full stop) and no quote.
TITLE_BANS: dict[Lang, list[str]] = {
    # Nor a caption's year or a bracketed aside (seen: "发现爱情的机器人 1966年",
    # "爱情的机器人（小怪兽）"), nor a second title ("爱情的机器人 变相的温柔").
    "zh": [
        r"[，,；;：:！？!?“”\"「」]",
        r"[。.]",  # nor a full stop at its end (seen: "机器人。")
        checks.STYLE_WORDS["zh"],
        r"[0-9０-９（）()\[\]【】]",
        r"\S[ \t]+\S",
    ],
    # Nor a full stop, even at its end (seen: "A robot discovers love in a forest.")
    "en": [r"[\"“”]", checks.EN_TITLE_STOP, checks.STYLE_WORDS["en"]],
}


def premise_as_title(premise: str, lang: Lang) -> list[str]:
    """A `banned_regex` for a title that begins as the premise does (seen: the premise
    itself as the title)."""
    words = premise.split()[:3] if lang == "en" else [premise[:4]]
    return [r"(?i)\A\W*" + r"\s+".join(re.escape(w) for w in words)] if words else []


def plan_bible(writer: Writer, premise: str, redraws: dict[str, int] | None = None) -> StoryBible:
    """The story bible, field by field, each checked before it is kept (and re-drawn when
    it fails, a bounded number of times); the synopsis must say something of the premise."""
    lang, labels = writer.lang, LABELS[writer.lang]
    prompt = _bible_prompt(lang, premise)
    avoid = plan_avoid(lang, premise)
    echo = example_echo(lang, premise)
    values: dict[str, str] = {}
    for key in ("title", "setting", "style"):
        values[key] = bible_field(writer, prompt, key, premise, redraws, list(values.values()))
        prompt += f"{labels[key]} {values[key]}\n"
    characters = plan_characters(
        writer, prompt + labels["characters"] + "\n", avoid_regex=[*avoid, echo],
        redraws=redraws, premise=premise,
    )  # fmt: skip
    prompt += labels["characters"] + "\n" + character_lines(lang, characters)
    known = anchors(premise, lang, characters)
    # The program writes the synopsis's head (the premise, as the example does) and the
    # model the rest: the plan cannot lose its premise (seen: six synopses in a row
    # about someone else when the model began from nothing).
    frame = synopsis_frame(premise, lang)
    examples = example_fields(lang, "synopsis")

    def synopsis_rule(value: str) -> str | None:
        found = [checks.check_synopsis(value, lang, known, e, frame=frame) for e in examples]
        return next((r for r in found if r is not None), None)

    first, second = characters[0].name, characters[1].name
    # The synopsis tells the story, not the cast's descriptions again (seen: "黎明对姜玉明在
    # 四十二岁，三十九岁，还有八十岁，长得有型").
    names = [key for c in characters for key in c.keys]
    described_again = echo_outside([c.description for c in characters], premise, names, 4, 4)
    rest = draw(
        writer,
        f"{prompt}{labels['synopsis']} {frame.rstrip()}",  # the model writes the space
        160,
        unborrowed(synopsis_rule, lang, premise),
        "synopsis",
        avoid_regex=[*avoid, echo, checks.PLAN_LABEL, described_again],
        redraws=redraws,
        # A whole sentence, not a list of names (seen: "Rachel and Sophie").
        ready=whole_sentence(lang, SYNOPSIS_LEAST[lang]),
        last_resort=lambda: SYNOPSIS_LAST_RESORT[lang].format(first=first, second=second),
    )
    synopsis = frame + rest
    return StoryBible(values["title"], values["setting"], values["style"], synopsis, characters)


FIELD_TOKENS = {"title": 24, "setting": 60, "style": 40}
# A Chinese setting is a time and a place, not someone's doings or words (seen: "传说中的少年，
# 他看到有人叫他爱上了女孩。", "我靠，她烤的！一整天都吃得慌！", "男孩坐在家里边，看到门打开，
# 好奇地问：", 6 of 20 plans).
SETTING_BANS: dict[Lang, list[str]] = {"en": [], "zh": [checks.ZH_SETTING_FAULT.pattern]}
# A style is one phrase: nothing after its full stop, no aside in brackets (seen: a style
# near the example's went on until it was not: "Quiet and melancholy, first person, past
# tense. (the robot is a racteated by the sounds of water…)"). Chinese: `Phrases`.
STYLE_BANS: dict[Lang, list[str]] = {"en": [r"[()]", r"[.!?;][\"”’]?\s+\S"], "zh": []}
# What a Chinese style is written in (`Phrases`): a tone, a person, a way of telling, as a
# writer names them. Left free, Gemma wrote words that are none ("前人称", "人称物",
# "二元代", "逻辑化") in 12 of 20 plans, or no style ("感情，情感，故事，开头").
ZH_STYLE_WORDS = (
    "安静", "忧郁", "温暖", "平实", "幽默", "冷峻", "抒情", "诗意", "悬疑", "紧张", "轻快",
    "细腻", "克制", "朴素", "简洁", "温柔", "明快", "浪漫", "魔幻", "荒诞", "淡雅", "平静",
    "含蓄", "写实", "伤感", "温馨", "诙谐", "冷静", "质朴", "清新", "凝练", "讽刺", "深情",
    "哀婉", "热烈", "古典", "神秘", "阴郁", "童趣", "奇幻", "苍凉", "恬淡", "灵动", "沉静",
    "粗犷", "婉约", "辛辣", "黑色幽默", "现实主义", "童话般", "寓言式", "散文化", "口语化",
    "白描", "第一人称", "第三人称", "过去时", "现在时", "倒叙", "顺叙",
    "短句为主", "对话多", "节奏缓慢", "节奏明快", "意识流", "书信体", "日记体", "多视角",
)  # fmt: skip
ZH_STYLE_ONE_OF = (("第一人称", "第三人称"), ("过去时", "现在时"), ("倒叙", "顺叙"))


def example_openings(examples: Sequence[str]) -> list[str]:
    """A `banned_regex` for a line begun with an example's first phrase, or a word of it
    changed at its end (seen: "Quiet and melancholy, …" after the example's "Quiet and
    melancholic, …", refused as the example's, went on to escape it: "…, past tense, ict.")."""
    firsts = [re.split(r"[,，、;；.。]", example, maxsplit=1)[0].strip() for example in examples]
    cut = [first[:-2] if len(first.split()[-1]) >= 6 else first for first in firsts if first]
    return [r"(?i)\A\W*" + re.escape(opening) for opening in cut if len(opening) >= 6]


class RealWords(BanInText):
    """An English setting, style or summary writes dictionary words (`cast.no_word`): one
    that is none is taken back once written, its first token blocked there. Seen: a style
    too near the example's, going on until it was its own, ended "…, first person, past
    tense, ict."; a summary, "Jair aj had a lot of fun…"."""

    def banned_at(self, text: str, shown: int) -> int | None:
        at = no_word(text, "en", partial=True)
        return at if at is not None and at >= shown else None


def cast_spelling(project: StoryProject) -> NameSlips:
    """The English cast's names kept as the plan writes them (`NameSlips`)."""
    assert project.bible is not None
    names = [c.name for c in project.bible.characters]
    return NameSlips(names, summary_source("", project.premise, project.bible))


class NameSlips(BanInText):
    """English: a capitalised word begun as a name of the cast is (its first two letters),
    that is none of the cast's names, no dictionary word, no first name of the census and
    nothing the plan says, is a name miswritten (seen: "Raij" for Rani, seven times in
    one story): taken back from its start once the word is whole."""

    def __init__(self, names: Iterable[str], plan: str) -> None:
        words = [w for name in names for w in name.split()]
        self.heads = {w[:2] for w in words if len(w) >= 3}
        self.known = {*words, *checks.ENGLISH_WORD.findall(plan)}

    def slip(self, word: str) -> bool:
        return (
            word[:2] in self.heads
            and word not in self.known
            and not is_word(word.lower())
            and word.lower() not in first_name_shares()
        )

    def banned_at(self, text: str, shown: int) -> int | None:
        for found in CAPITAL_WORD.finditer(text, shown):
            # A word at the very end may still be growing; one begun in streamed text stays.
            whole = shown <= found.start() and found.end() < len(text)
            if whole and self.slip(found.group()):
                return found.start()
        return None


CAPITAL_WORD = re.compile(r"(?<![\w'’-])[A-Z][a-z]+(?![\w'’-])")  # one word, as a name's


def bible_field(
    writer: Writer,
    prompt: str,
    key: str,
    premise: str,
    redraws: dict[str, int] | None = None,
    earlier: Sequence[str] = (),
) -> str:
    """The title, setting or style after `prompt` (the plan so far, its fields `earlier`),
    drawn under its check: the line goes on until the check passes."""
    lang = writer.lang
    rules = {
        "title": title_rule(premise, lang),
        "setting": phrase_rule(lang, "setting"),
        "style": phrase_rule(lang, "style"),
    }
    avoid = plan_avoid(lang, premise)
    # Runs of the examples' words the premise lacks: never in a setting, a character or
    # the synopsis (seen: the examples' "八十年代末" in a setting and three descriptions).
    # Titles and styles are short and their words common ("第三人称"); a style takes no two
    # phrases in a row from an example's (seen: "幽默，平实，第一人称，口语化").
    # Nor a run of the fields before it that the premise lacks (refused alone, the title
    # "龙在水里吃火的龙" went on as the setting "龙在水里吃火的龙，是传说中的小龙。").
    said = [echo_pattern("\n".join(earlier), premise, words=4, chars=6)] if earlier else []
    bans = {
        "title": [*avoid, *premise_as_title(premise, lang), *TITLE_BANS[lang]],
        "setting": [*avoid, example_echo(lang, premise), *said, *SETTING_BANS[lang]],
        "style": [
            *avoid,
            phrase_pairs(example_fields(lang, "style")),
            *said,
            *STYLE_BANS[lang],
            *example_openings(example_fields(lang, "style")),
        ],
    }
    again = partial(not_the_premise, rules[key], premise, key, earlier=earlier)
    rule = unborrowed(again, lang, premise)
    # A clause said again is taken back as it ends, not refused with the whole line.
    steers: list[LogitsProcessor] = [SaidTwice()] if key != "title" else []
    steers += [RealWords()] if key != "title" and lang == "en" else []
    if key == "style" and lang == "zh":
        steers.append(Phrases(writer.engine.tokenizer, ZH_STYLE_WORDS, exclusive=ZH_STYLE_ONE_OF))
    value = draw(
        writer, prompt + LABELS[lang][key], FIELD_TOKENS[key], rule, key,
        avoid_regex=bans[key], redraws=redraws, until_kept=True, nudges=steers,
    )  # fmt: skip
    # As the examples' (seen: "a city, in the middle of a town." under "Setting:").
    return value[:1].upper() + value[1:] if lang == "en" else value


SYNOPSIS_LEAST: dict[Lang, int] = {"en": 8, "zh": 14}  # words or characters: the checks' 6, 10
SYNOPSIS_LAST_RESORT = {
    "en": "{first} and {second} are at the heart of it, and neither will be the same.",
    "zh": "{first}和{second}的故事由此展开，两个人都将因此改变。",
}


def synopsis_frame(premise: str, lang: Lang) -> str:
    """The head of a synopsis: the premise itself, then a colon for the model to go on."""
    premise = premise.strip().rstrip(".。!！")
    if lang == "zh":
        return premise + "："
    return premise[:1].upper() + premise[1:] + ": "  # the model's words follow the space


def check_kept_synopsis(synopsis: str, premise: str, lang: Lang, known: set[str]) -> str | None:
    """A saved synopsis (the program's frame and the model's words) checked again, as it
    was drawn, and for the premise."""
    frame = synopsis_frame(premise, lang)
    own = synopsis[len(frame) :] if synopsis.startswith(frame) else synopsis
    head = synopsis[: len(synopsis) - len(own)]
    example = example_field(lang, "synopsis")
    return checks.check_synopsis(own, lang, known, example, checks.keywords(premise, lang), head)


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
    name = re.sub(r"['’]s$", "", name)  # "Jukka's" is Jukka (seen as a third character)
    if sep and NAME.match(name) and description:
        return Character(name, description)
    if lang == "en":
        for match in CAPITALISED.finditer(line):
            words = [re.sub(r"['’]s$", "", w) for w in match.group(0).split()]
            words = [w for w in words if w not in NOT_NAMES]
            if words:
                return Character(" ".join(words), line.rstrip("."))
    return None


def described(lang: Lang, head: str = "", about: Collection[str] = ()) -> Callable[[str], bool]:
    """Whether a character line (after `head`) has its name, a colon and a description of
    a few words naming one of `about` (when given): until then it may not end."""
    colon = "：" if lang == "zh" else ":"

    def ready(text: str) -> bool:
        name, sep, description = (head + text).partition(colon)
        return (
            bool(sep and name.strip())
            # Chinese: a role and a trait, as the examples' (seen: "女的，19岁，女").
            and checks.size(description, lang) >= (8 if lang == "zh" else 3)
            and (not about or bool(checks.mentions(description, about, lang)))
        )

    return ready


def first_sentence(text: str, lang: Lang) -> str:
    """The text up to its first sentence end once that holds a few words (else all)."""
    for end in SENTENCE_END.finditer(text):
        if checks.size(text[: end.end()], lang) >= (5 if lang == "zh" else 3):
            return text[: end.end()]
    return text


def standby_names(writer: Writer, premise: str) -> list[str]:
    """`STANDBY_NAMES` that the premise does not use, from a place the seed picks."""
    names = [
        n for n in STANDBY_NAMES[writer.lang]
        if not any(part in premise for part in checks.name_parts(n))
    ]  # fmt: skip
    start = (writer.params.seed or 0) % len(names)
    return names[start:] + names[:start]


def plan_characters(
    writer: Writer,
    prompt: str,
    most: int = 3,
    tries: int = 10,
    avoid_regex: Sequence[str] = (),
    redraws: dict[str, int] | None = None,
    premise: str = "",
) -> list[Character]:
    """Characters one line at a time, each parsed and checked (none of the example's, each
    described in its own words); at most `tries` calls, and at least two named ones or a
    clear failure. The model's line must be a name (capitalised words; Chinese: a surname
    and a few characters), a colon and a description of a few words; when the model's lines
    keep failing, the later ones begin with a name from a standby list."""
    lang = writer.lang
    characters: list[Character] = []
    copied = example_names(lang)
    colon = "：" if lang == "zh" else ":"
    standby = standby_names(writer, premise)
    name_first = NameFirst(writer.engine.tokenizer, lang) if writer.steers else None
    calls = 0
    for attempt in range(tries):
        if len(characters) == most or (len(characters) >= 2 and attempt > most):
            break  # two named characters are enough once draws start to fail
        calls = attempt + 1
        listed = character_lines(lang, characters)
        # Names already taken (the example's, and those listed) cannot begin the line again.
        taken = [*copied, *(p for n in copied for p in checks.name_parts(n))]
        taken += [c.name + colon for c in characters]
        # Nor anywhere in it (seen: "Hannah" listed, then "30-year-old Hannah"), and the
        # line is not begun with a break or a list number ("1. The baker: ...").
        again = [re.escape(k) for c in characters for k in c.keys]
        if again and lang == "en":
            again = [rf"\b(?:{'|'.join(again)})\b"]
        if characters:  # nor another's description with a word changed
            again.append(checks.description_echo([c.description for c in characters], premise))
        heat = writer.params.temperature + 0.1 * attempt if writer.params.temperature > 0 else 0
        head = ""
        if attempt >= tries // 2 and len(characters) < 2:
            names = [n for n in standby if all(checks.normal(n) != checks.normal(c.name)
                                                for c in characters)]  # fmt: skip
            head = f"{names[0]}{colon}" + ("" if lang == "zh" else " ")
        # A cast a writer would keep (cast.py): a name that is a name, a description that
        # agrees with itself, not the hero's role again; a fault is taken back while drawn.
        cast = Cast(lang, premise, tuple((c.name, c.description) for c in characters))
        steer = CastRule(cast, head)
        rules: list[LogitsProcessor] = []
        if name_first is not None:
            rules.append(steer)
            # The first is the premise's hero, described with a premise word in its first
            # sentence (as the examples' keeper), so the first beat, which begins with the
            # hero's name, starts from the premise (seen: "乔丹: 男人，穿长裤" and six first
            # beats about anything but the robot).
            about = checks.keywords(premise, lang) if not characters else set()
            ready = described(lang, head, about)
            rules.append(EndWhenReady(writer.engine.tokenizer, ready, sentences=bool(about)))
            rules += [] if head else [name_first]
            if about:
                rules.append(
                    Favour(
                        writer.engine.tokenizer, about, lang, partial(checks.says_any, about, lang),
                        after="" if head else colon,
                    )
                )  # fmt: skip
        line = writer.write(
            prompt + listed + "- " + head,
            40,
            stop=["\n"],
            clean_end=False,
            avoid=taken,
            avoid_regex=[*avoid_regex, *again, LINE_BREAK_FIRST, LIST_NUMBER_FIRST],
            temperature=heat,
            constraints=rules,
        )
        if redraws is not None:  # take-backs by check: the cast checks at work while drawn
            for check, times in steer.taken_back.items():
                key = f"cast taken back: {check}"
                redraws[key] = redraws.get(key, 0) + times
        found = parse_character(head + line, lang)
        if found is not None:  # one sentence, as the examples' (seen: five, cut mid-way)
            found.description = first_sentence(found.description, lang)
        if found is None or checks.is_copied(found.name, copied):
            continue
        if (
            checks.check_description(
                found.description, lang, [c.description for c in characters], premise
            )
            is not None
        ):
            continue
        fault = line_fault(f"{found.name}{colon} {found.description}", cast)
        if fault is not None:
            if redraws is not None:  # counted by check: what the steering misses
                redraws[f"cast: {fault.check}"] = redraws.get(f"cast: {fault.check}", 0) + 1
            continue
        if all(checks.normal(c.name) != checks.normal(found.name) for c in characters):
            characters.append(found)
    if redraws is not None:  # lines drawn and not kept
        redraws["characters"] = redraws.get("characters", 0) + calls - len(characters)
    reason = checks.check_names([c.name for c in characters], copied)
    if reason is not None:
        raise StudioError(
            f"the story bible is not usable: {reason} after {tries} draws; try another --seed"
        )
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


# Beats for when no draw passed: the first tells the premise of the hero; the later ones
# (taken in turn) move the story on without claiming what the model did not plan. A beat
# another character leads names the hero too.
BEAT_LAST_RESORT = {
    "en": ["{premise} — this is where {name}'s story begins.",
           "{name} is drawn deeper into the story of {premise}.",
           "{name} must face what has changed since it all began.",
           "{name} makes a choice that cannot be undone."],
    "zh": ["{premise}——{name}的故事从这里开始。",
           "{name}被卷进了{premise}的故事里，越陷越深。",
           "{name}不得不面对一切开始以来发生的变化。",
           "{name}做出了一个再也无法回头的决定。"],
}  # fmt: skip
BEAT_BESIDE_LAST_RESORT = {
    "en": ["{name} is drawn into {hero}'s story of {premise}.",
           "{name} finds {hero} again, and nothing is as it was."],
    "zh": ["{name}也被卷进了{premise}的故事，站到了{hero}身边。",
           "{name}再次找到{hero}，一切都已经不同了。"],
}  # fmt: skip


def last_resort_beat(project: StoryProject, number: int, name: str) -> str:
    """A beat the program builds from parts already kept (the premise and a character's
    name), for when no draw passed: plain, but about this story."""
    first, *later = BEAT_LAST_RESORT[project.lang]
    premise = project.premise.strip().rstrip(".。!！")
    if number == 1 and project.lang == "en":
        premise = premise[:1].upper() + premise[1:]
    main = hero(project).name
    chosen = first if number == 1 else later[(number - 2) % len(later)]
    if name != main:
        beside = BEAT_BESIDE_LAST_RESORT[project.lang]
        chosen = beside[(number // 2 - 1) % len(beside)]
    return chosen.format(premise=premise, name=name, hero=main)


def plan_outline(writer: Writer, project: StoryProject, count: int) -> None:
    """`count` more beats, one at a time, each checked (a sentence naming a character or the
    premise, unlike the beats before it; the first names the premise or its hero) and
    saved as soon as it is kept, so stopping mid-outline loses nothing already planned.
    Each beat begins with a character's name (the hero's on odd beats, the rest of the
    cast between: `outline_lead`) and cannot end before a whole sentence."""
    assert project.bible is not None
    lang = project.lang
    template = _plan_prompt(lang, project.premise, project.bible)
    known = anchors(project.premise, lang, project.bible.characters)
    # Nor the examples' beats again (seen: "乔大雄收摊前给邻居留下最后一碗小食"), nor the
    # next beat's number inside this one (a beat that may not end yet ran on: "… 2. 熊宝玉…"),
    # nor the built beats' pattern (seen: "陆上天的故事从这里开始。" after a built first beat).
    avoid = [
        *plan_avoid(lang, project.premise),
        # A beat is an event, not a character's line again: no colon, no age or sex as an
        # item of a list (seen: "乔纳·格雷发现爱情的机器人：男，三十岁，女。" after the cast
        # line "乔纳·格雷：机器人，女，三十岁，女。").
        checks.DESCRIBED[lang].pattern,
        example_echo(lang, template[len(BIBLE_EXAMPLE[lang]) :]),
        checks.LIST_NUMBER,
        checks.SELF_REPEAT[lang],
        checks.PLAN_LABEL,
        echo_pattern(
            "\n".join([*BEAT_LAST_RESORT[lang], *BEAT_BESIDE_LAST_RESORT[lang]]),
            project.premise,
            words=4,
            chars=4,
        ),
    ]
    cast = project.bible.characters
    main = hero(project)
    names = [key for c in cast for key in c.keys]
    # A beat is nudged towards the premise's words until it names one (it may not end
    # before: `beat_ready`); built once, for every beat (a pass over the vocabulary).
    words = checks.keywords(project.premise, lang)
    nudge = Favour(writer.engine.tokenizer, words, lang, partial(checks.says_any, words, lang))
    # A beat tells what happens, not the cast's descriptions or the synopsis again (seen:
    # "黎大在店里，她从五十二岁到九十岁…" from a description, a first beat that was the
    # synopsis word for word): no run of four of their words (characters) the premise lacks.
    bible_texts = [project.bible.setting, project.bible.synopsis, *(c.description for c in cast)]
    avoid.append(echo_outside(bible_texts, project.premise, names, 4, 4))
    for _ in range(count):
        beats = [s.beat for s in project.scenes]
        # Each beat its own words: no run of an earlier beat's (names and premise aside).
        told = [echo_outside(beats, project.premise, names, *BEAT_RUN[lang])] if beats else []
        # Nor the premise word for word after the first (seen: every beat opening
        # "乔丽发现爱情的机器人。"): its words, yes, in a sentence of the beat's own.
        told += [echo_pattern(project.premise, words=5, chars=8)] if beats else []
        shown = "".join(f"{i}. {beat}\n" for i, beat in enumerate(beats, 1))
        number = len(beats) + 1

        lead = outline_lead(project, number)
        # A beat another character leads is theirs and the hero's: "Drew and Reuben…" (left
        # to name the hero when it would, the model ran on until it did, past the budget).
        name = lead.name if lead is main else f"{lead.name}{AND[lang]}{main.name}"

        def check(value: str, number: int = number, beats: list[str] = beats) -> str | None:
            fault = checks.check_beat(
                value, lang, known, [*beats, *example_beats(lang)],
                premise_anchors(project) if number == 1 else (),
            )  # fmt: skip
            if fault is None and not ENDS_SENTENCE.search(value):
                return "the beat is cut off"  # it ran out of tokens mid-sentence
            return fault

        beat = draw(
            writer,
            template + shown + f"{number}.",
            48,
            unborrowed(check, lang, project.premise),
            f"outline beat for {CHAPTER[lang].format(n=number)}",
            avoid_regex=[*avoid, *told],
            redraws=project.meta.setdefault("redraws", {}),
            lead=" " + name,  # as the example's "1. Elias finds…"
            lead_from=0,
            ready=beat_ready(project, number),
            last_resort=partial(last_resort_beat, project, number, lead.name),
            until_kept=True,
            nudges=[nudge],
        )
        project.scenes.append(Scene(beat))
        project.save()
        writer.say(f"  {number}. {beat}")


# Words or characters (the check's 4, 8); Chinese beats of 9 were fragments ("乔丹的年龄和男人。").
BEAT_LEAST: dict[Lang, int] = {"en": 5, "zh": 12}
# The runs (words, Chinese characters) of an earlier beat a beat may not say again: Chinese
# beats are compared by character pairs (`checks.says_again`), so shorter runs.
BEAT_RUN: dict[Lang, tuple[int, int]] = {"en": (4, 4), "zh": (4, 3)}


def beat_ready(project: StoryProject, number: int) -> Callable[[str], bool]:
    """When a beat may end: after a whole sentence that names a premise keyword (seen: five
    first beats in a row about "顾冬清" and nothing of the dragon of "一条害怕火的龙"; the
    hero's name alone was not enough: a chapter follows its beat, and beats about a crush,
    a first job or a dream gave chapters without the witch's magic or the robot)."""
    sentence = whole_sentence(project.lang, BEAT_LEAST[project.lang])
    about = checks.keywords(project.premise, project.lang)

    def ready(text: str) -> bool:  # the lead (a name) counts as part of the line
        return sentence(text) and bool(checks.mentions(text, about, project.lang))

    return ready


AND: dict[Lang, str] = {"en": " and ", "zh": "和"}
ENDS_SENTENCE = re.compile(rf"(?:{SENTENCE_END.pattern})\s*\Z")


def outline_lead(project: StoryProject, number: int) -> Character:
    """Who beat `number` begins with: the hero on odd beats, the rest of the cast in turn
    between them (with the hero: "Drew and Reuben…"), as the examples' outlines go ("Elias
    finds…", "Tom Bell… tells Elias…", "Elias leaves…"). With the whole cast in turn, the
    second and third chapters each began a story of their own ("Dexter finds a place in
    the village, where he is working.") and the hero's share of the names fell to 0.71."""
    main = hero(project)
    others = [c for c in project.bible.characters if c is not main] if project.bible else []
    if number % 2 == 1 or not others:
        return main
    return others[(number // 2 - 1) % len(others)]


# -- steps: a chapter's beat told in two or three things that happen ------------------------

# Written for each language (not translated), about a story of its own: none of the plan
# example's people or things, nor the premise set's. One example: a second cost each
# chapter about 200 more tokens of prompt.
STEP_EXAMPLE = {
    "en": (
        "A novelist's notes: how each chapter goes on from its start, step by step, one "
        "short sentence each, naming who acts.\n\n"
        "Story: a baker who can taste people's memories\n"
        "Characters: Ines Moreno, Paul Gray\n"
        "Chapter: Ines opens the bakery before dawn and finds the widower Paul at the door.\n"
        "Then:\n"
        "1. Paul eats a crumb of the warm loaf, and Ines tastes rain and wedding cake.\n"
        "2. Ines sees his young wife laughing under an umbrella and has to sit down.\n\n"
    ),
    "zh": (
        "小说家的写作笔记：每一章开头之后，按先后写清接下来发生什么，每步一句话，写明是谁在做。\n\n"
        "故事：一个能尝出别人回忆的面包师\n"
        "人物：何小满、老邱\n"
        "本章：何小满天没亮就开了店门，看见丧妻的老邱已经等在门口。\n"
        "接着：\n"
        "1. 老邱掰下一块热面包，何小满嘴里忽然有了雨水和喜糖的味道。\n"
        "2. 何小满看见年轻的新娘在伞下笑，手一软坐在了面粉袋上。\n\n"
    ),
}
STEP_LABELS = {
    "en": {"story": "Story:", "characters": "Characters:", "chapter": "Chapter:",
           "steps": "Then:"},
    "zh": {"story": "故事：", "characters": "人物：", "chapter": "本章：", "steps": "接着："},
}  # fmt: skip
# The step examples' own things: a step that names one the story does not is the example.
STEP_MARKS: dict[Lang, list[str]] = {
    "en": ["Ines", "Moreno", "Paul Gray", "baker", "bakery", "widower", "wedding", "crumb",
           "loaf", "umbrella"],
    "zh": ["何小满", "老邱", "面包", "喜糖", "新娘", "面粉"],
}  # fmt: skip
STEP_TOKENS = 40
STEP_TRIES = 3  # a step is a help: a chapter whose steps all fail is written from its beat
# Words (Chinese: characters) a step holds at least before it may end.
STEP_LEAST: dict[Lang, int] = {"en": 6, "zh": 10}
# The runs of the beat's words (Chinese: characters) a step may not copy, names and the
# premise's words aside: its clauses, not its words (at three, steps left the beat's words
# and chapters followed them away from it: Chinese beat relevance fell).
STEP_RUN: dict[Lang, tuple[int, int]] = {"en": (5, 5), "zh": (5, 5)}
# Tokens a chapter takes per round: the README's 450-token chapters are told in three (their
# beat, then two steps), the eval's 160-token ones in two (the beat, then one step).
STEP_EVERY = 150
MOST_STEPS = 2


def step_count(tokens: int) -> int:
    """How many steps a chapter of `tokens` tokens goes on in after its beat: one or two."""
    return max(1, min(MOST_STEPS, tokens // STEP_EVERY - 1))


def example_steps(lang: Lang) -> list[str]:
    lines = STEP_EXAMPLE[lang].split("\n")
    return [line.partition(". ")[2] for line in lines if re.match(r"\d+\. ", line)]


def step_prompt(project: StoryProject, scene: Scene) -> str:
    """The few-shot prompt a chapter's steps are drawn after (the steps so far included)."""
    assert project.bible is not None
    lang, labels = project.lang, STEP_LABELS[project.lang]
    comma = "、" if lang == "zh" else ", "
    names = comma.join(c.name for c in project.bible.relevant(scene.beat))
    space = "" if lang == "zh" else " "
    shown = "".join(f"{i}. {step}\n" for i, step in enumerate(scene.steps, 1))
    return (
        STEP_EXAMPLE[lang]
        + f"{labels['story']}{space}{project.premise}\n{labels['characters']}{space}{names}\n"
        + f"{labels['chapter']}{space}{scene.beat}\n{labels['steps']}\n{shown}"
    )


def step_leads(project: StoryProject, beat: str) -> list[str]:
    """The names the steps begin with, in turn: the characters the beat names, in its
    order (the protagonist when it names none)."""
    assert project.bible is not None
    said = []
    for character in project.bible.characters:
        found = [(beat.find(key), -len(key), key) for key in character.keys if key in beat]
        said += [min(found)] if found else []
    return [key for _, _, key in sorted(said)] or [protagonist_lead(project)]


def plan_steps(writer: Writer, project: StoryProject, index: int) -> None:
    """Chapter `index`'s steps, drawn one at a time after a few-shot prompt and checked
    like beats (a sentence naming a character, the premise or the beat's things, unlike
    the steps before it and the examples'), each saved as soon as it is kept. A step that
    no draw passes ends the list: the chapter is told in the steps kept (none: from its
    beat, as before steps)."""
    assert project.bible is not None
    scene, lang = project.scenes[index], project.lang
    known = anchors(project.premise, lang, project.bible.characters)
    known |= beat_things(project, scene.beat)
    leads = step_leads(project, scene.beat)
    avoid = [
        *foreign_marks(lang, f"{project.premise}\n{scene.beat}", STEP_MARKS),
        *foreign_marks(lang, project.premise),
        checks.LIST_NUMBER, checks.SELF_REPEAT[lang], checks.PLAN_LABEL,
    ]  # fmt: skip
    names = [key for c in project.bible.characters for key in c.keys]
    # A step tells something the beat does not say yet, in its own words (seen: "周大海回到家，
    # 看见阿铁在海里上天不亮" from the beat's "天不亮就出海"), and not an earlier step again.
    copied = echo_outside([scene.beat], project.premise, names, *STEP_RUN[lang])
    sentence = whole_sentence(lang, STEP_LEAST[lang])
    for number in range(len(scene.steps) + 1, step_count(project.scene_tokens) + 1):
        told = [echo_outside(scene.steps, project.premise, names, *BEAT_RUN[lang])]
        earlier = [*scene.steps, *example_steps(lang)]
        check = partial(checks.check_step, lang=lang, anchors=known, earlier=earlier)
        lead = leads[number % len(leads)]  # the beat is the first's
        try:
            step = draw(
                writer,
                step_prompt(project, scene) + f"{number}.",
                STEP_TOKENS,
                check,
                f"step {number} of {CHAPTER[lang].format(n=index + 1)}",
                tries=STEP_TRIES,
                avoid_regex=[*avoid, copied, *(told if scene.steps else [])],
                redraws=project.meta.setdefault("redraws", {}),
                lead=" " + lead,
                lead_from=0,
                ready=sentence,
                until_kept=True,
            )
        except StudioError:
            break
        scene.steps.append(step)
        project.save()
        writer.say(f"  {index + 1}.{number} {step}")


def recent_end(text: str) -> str:
    """The end of a chapter the next one is shown (about `RECENT_CHARS`), from a sentence's
    start: shown from inside a sentence after an ellipsis ("…did this, he thought"), the
    model began its own paragraphs so, eight in one chapter of the README's story."""
    if len(text) <= RECENT_CHARS:
        return text
    tail = text[-RECENT_CHARS:]
    end = SENTENCE_END.search(tail)
    if end and tail[end.end() :].strip():
        return tail[end.end() :].lstrip()
    return tail[tail.find(" ") + 1 :]  # no sentence ends in it: from a word's start


def scene_prompt(project: StoryProject, index: int, step: str = "") -> str:
    """Everything the model needs for scene `index` (with the `step` the text to come
    tells), and nothing it does not."""
    assert project.bible is not None
    bible, lang = project.bible, project.lang
    scene = project.scenes[index]
    previous = project.scenes[:index]
    recent = recent_end(previous[-1].text) if previous else ""
    active = bible.relevant(" ".join([scene.beat, recent, *(s.summary for s in previous[-2:])]))
    prompt = SCENE_NOTES[lang].format(
        title=bible.title, premise=project.premise, style=bible.style, setting=bible.setting
    )
    prompt += character_lines(lang, active)
    if previous:
        prompt += SO_FAR[lang] + " ".join(s.summary for s in previous) + "\n"
    prompt += NEXT[lang] + scene.beat + "\n\n"
    if recent:
        prompt += PREVIOUSLY[lang] + recent + "\n\n"
    # Last, so the rounds of a chapter share the prompt before it (the engine's cache).
    prompt += STEP_LABEL[lang] + step + "\n\n" if step else ""
    return prompt + CHAPTER[lang].format(n=index + 1) + "\n\n"


def summarize(writer: Writer, project: StoryProject, scene: Scene) -> str:
    """The rolling summary of a written chapter, by the model from a few-shot summarising
    prompt: one sentence naming who did what, checked like a plan field. The program
    writes its first word, the name the chapter is about, and it cannot end before a whole
    sentence (most refused drafts named no one: "He is a simple boy living with his
    family."). When no draw passes, the chapter's beat (a checked sentence) stands in."""
    assert project.bible is not None
    lang = project.lang
    passage = " ".join(scene.text.split())[-SUMMARY_CHARS:]
    name = beat_lead(project, scene.beat)
    prompt = SUMMARY_EXAMPLE[lang].format(text=passage)
    known = anchors(project.premise, lang, project.bible.characters)
    example = SUMMARY_EXAMPLE[lang].split("\n")[3].partition("：" if lang == "zh" else ": ")[2]
    refusals: dict[str, int] = project.meta.setdefault("summary_refusals", {})
    source = summary_source(scene.text, project.premise, project.bible)

    def check(value: str) -> str | None:  # counted by reason: what the prompt gets wrong
        reason = checks.check_summary(two_sentences(value), lang, known, example)
        if reason is None and checks.invented(two_sentences(value), source, lang):
            reason = "the summary names what the chapter and the plan do not"
        if reason is not None:
            refusals[reason] = refusals.get(reason, 0) + 1
        return reason

    try:
        summary = draw(
            writer,
            prompt + ("" if lang == "zh" else " "),
            SUMMARY_TOKENS,
            check,
            "summary",
            tries=SUMMARY_TRIES,
            # The summarising example's own things, unless the chapter has them, and no
            # quotation marks (a summary quoting dialogue is refused: the commonest refusal
            # left in English).
            avoid_regex=[
                *foreign_marks(lang, f"{project.premise}\n{scene.text}", SUMMARY_MARKS),
                r"[\"“”「」『』]",
                checks.FIRST_PERSON[lang],
                *checks.name_slips(c.name for c in project.bible.characters),
            ],
            # English words and the cast's names as written (seen: "Jair aj had a lot of fun…").
            nudges=[RealWords(), cast_spelling(project)] if lang == "en" else [],
            redraws=project.meta.setdefault("redraws", {}),
            lead=name,
            lead_from=0,
            ready=whole_sentence(lang, SUMMARY_LEAST[lang]),
            enough=past_two_sentences,
        )
    except StudioError:
        return scene.beat
    return two_sentences(summary)


def summary_source(chapter: str, premise: str, bible: StoryBible) -> str:
    """What a chapter's summary may name: the chapter, the premise and the bible, as one text."""
    cast = [f"{c.name} {c.description}" for c in bible.characters]
    return "\n".join([chapter, premise, bible.title, bible.setting, bible.synopsis, *cast])


def two_sentences(text: str) -> str:
    """The first two whole sentences of `text` (a summary that runs on is cut, not
    refused: seen in most Chinese summaries refused)."""
    return "".join([s for s in checks.sentences(end_cleanly(text)) if s.strip()][:2]).strip()


def past_two_sentences(text: str) -> bool:
    """Whether `text` holds two whole sentences and the start of a third: all that
    `two_sentences` keeps of it is written, so a summary's draw stops there (summaries ran
    on to their token limit, a third of their tokens cut away)."""
    return sum(1 for piece in checks.sentences(text) if piece.strip()) > 2


SUMMARY_LEAST: dict[Lang, int] = {"en": 8, "zh": 12}  # words / characters in a summary


def summarize_before(writer: Writer, project: StoryProject, index: int) -> None:
    """The summaries chapter `index`'s prompt needs, written now if missing: a chapter's
    summary is written when a next chapter needs it, so the last one of a story costs
    nothing until the story is extended."""
    for scene in project.scenes[:index]:
        if scene.text and not scene.summary:
            scene.summary = summarize(writer, project, scene)
            project.save()


def chapter_lead(project: StoryProject, index: int) -> str:
    """The name a chapter begins with: see `beat_lead`."""
    return beat_lead(project, project.scenes[index].beat)


def beat_lead(project: StoryProject, beat: str) -> str:
    """The first character's name `beat` says (as the beat says it), else the
    protagonist's (English: the first name)."""
    assert project.bible is not None
    cast = project.bible.characters
    said = [(beat.find(key), -len(key), key) for c in cast for key in c.keys if key in beat]
    if said:
        return min(said)[2]
    return protagonist_lead(project)


def protagonist_lead(project: StoryProject) -> str:
    """The protagonist's name as a paragraph begins with it (English: the first name)."""
    assert project.bible is not None
    name = project.bible.characters[0].name
    return name.split()[0] if project.lang == "en" else name


def glue(head: str, text: str, lang: Lang) -> str:
    """The model's `text` after the program's `head` (a name the prompt ended with): a space
    between them in English, unless the text begins with punctuation ("Mara's")."""
    space = lang == "en" and not head.endswith((" ", "\n")) and text[:1] not in "',.;:!?’"
    return head + (" " if space else "") + text


def chapter_target(tokens: int, lang: Lang) -> int:
    """Words (English) or characters (Chinese) a chapter of `tokens` tokens should hold."""
    return int(tokens * (0.9 if lang == "zh" else 0.6))


def chapter_steps(tokens: int, lang: Lang) -> tuple[int, int]:
    """The decode steps a chapter of `tokens` tokens may take (every token chosen counts,
    kept or taken back; a batch's step once), and the most it may take when what was kept
    is under a third of its target. Counted so, a story's time is bounded whatever the
    take-backs (seen: a Chinese README story whose chapters took back 500 tokens and filled
    on for 760 more, 63 s for a 60 s target). A Chinese chapter may take as many steps as
    its target has characters, and no more: about one character a step when little is
    taken back, so a chapter that is not retelling itself reaches near its target."""
    if lang == "zh":
        steps = chapter_target(tokens, lang)
        return steps, steps
    return tokens, tokens * 5 // 4


# A chapter draft that decodes this many characters without one more kept has gone astray
# (retelling the previous chapter, talking about the writing, looping): decoding stops
# there and the tokens go to a fresh continuation of what was kept (seen: 300 of a
# chapter's 375 tokens cleaned away after "This chapter is a flashback…").
STALL_CHARS: dict[Lang, int] = {"en": 300, "zh": 110}
STALL_EVERY: dict[Lang, int] = {"en": 100, "zh": 40}  # characters between two looks
# A chapter under half its target is continued from what was kept while its steps last,
# and in English under a third of it even past them (`chapter_steps`: a Chinese story took
# 119 CPU-s with half again), in at most this many rounds (seen: "Riv's first
# love story:", 4 words kept of 450 tokens).
FILL_ROUNDS = 3
FILL_LEAST = 48  # tokens: a shorter continuation is not worth a call
# The first words of an earlier chapter's sentence (Chinese: characters): a chapter that
# writes them again is retelling it, and is steered away at the first of them.
RETELL_RUN: dict[Lang, int] = {"en": 7, "zh": RUN}
# A short line ending in a colon, or without any punctuation: a label or a heading
# (seen: "Riv's first love story:", "钱小白和钱云娇的婚礼").
LABEL_LINES: dict[Lang, list[str]] = {
    "en": [
        r"(?m)^[^\n.!?\"“:]{1,50}:[ \t]*\n",
        r"(?m)^[ \t]*[^\s.,;:!?\"“”][^\n.,;:!?\"“”]{0,39}\n",
    ],
    "zh": [
        r"(?m)^[^\n。！？“]{1,20}[：:][ \t]*\n",
        r"(?m)^[ \t\u3000]*[^\s，。；：:！？“”][^\n，。；：:！？“”]{0,15}\n",
    ],
}


SENTENCE_DONE = re.compile(f"(?:{SENTENCE_END.pattern})\\s*\\Z")  # text ending a sentence
DONE_TAIL = 16  # characters of a draft's end looked at for it (it runs after every token)


class Stall:
    """`Writer.write`'s `until` for a chapter draft: whether the last `STALL_CHARS` decoded
    added nothing to what cleaning keeps (`keep`), or (with `full`) whether what is kept
    holds the chapter's target size and a sentence has just ended: the chapter is as long
    as asked, and decoding on would only make it longer than asked (seen: Chinese chapters
    of 650 characters for a target of 405, 72 s for the README's story)."""

    def __init__(self, keep: Callable[[str], str], lang: Lang, full: int | None = None) -> None:
        self.keep, self.lang, self.full = keep, lang, full
        self.kept = self.grown_at = self.looked_at = 0

    def __call__(self, raw: str) -> bool:
        full = self.full is not None and self.kept >= self.full
        if full and SENTENCE_DONE.search(raw[-DONE_TAIL:]):
            return True
        if len(raw) - self.looked_at < STALL_EVERY[self.lang]:
            return False
        self.looked_at = len(raw)
        kept = checks.size(self.keep(raw), self.lang)
        if kept > self.kept:
            self.kept, self.grown_at = kept, len(raw)
        return len(raw) - self.grown_at > STALL_CHARS[self.lang]


def beat_things(project: StoryProject, beat: str) -> set[str]:
    """The beat's keywords that are neither a character's name nor the premise's: what this
    chapter in particular is about ("Ruben goes to the museum to buy a suit": museum, suit)."""
    assert project.bible is not None
    keys = sorted((k for c in project.bible.characters for k in c.keys), key=len, reverse=True)
    for key in keys:  # longest first: "Jonah Reed" before "Jonah"
        beat = beat.replace(key, "，")
    return checks.keywords(beat, project.lang) - checks.keywords(project.premise, project.lang)


def step_things(project: StoryProject, step: str) -> set[str]:
    """What a step in particular is about: its things (`checks.things`) that name no
    character and no premise word ("周大海把阿铁的帽子扔在地上": 帽子, 扔, 地上)."""
    assert project.bible is not None
    lang = project.lang
    names = [key for c in project.bible.characters for key in c.keys]
    premise = checks.keywords(project.premise, lang)
    found = checks.things(step, lang)
    return {
        t for t in found
        if not any(t in n or n in t for n in names) and not checks.mentions(t, premise, lang)
    }  # fmt: skip


# A reader's or reviewer's talk inside a chapter, beyond what cleaning cuts (seen: "Now this
# story has been turned into the movie…", "one of my favorite movies ever made!").
READER_TALK: dict[Lang, str] = {
    "en": r"(?i)\b(?:this (?:is a )?(?:story|book|novel)|"
    r"my fav(?:ou)?rite (?:book|movie|film|story)|"
    r"I think this (?:is|will be) (?:the|a|one)|chapter \d+|"
    r"(?:book|movie|film|story|novel)s? (?:ever (?:made|written)|of all time)|"
    r"(?:first|second|third)[- ]person (?:narrat\w*|point of view|perspective|voice)|"
    r"(?:past|present) tense|"
    # The story told as a film's plot (seen: "In the movie, we learn that the robot 3…").
    r"in the (?:movie|film|episode|book),? we (?:learn|see|find out|discover)|"
    # A reader's verdict and the premise retold as a story's (seen: "It was hard for me to
    # relate to the story, but I think I will read this again and again...", "The story of
    # a robot girl, like her parents, in love with a man, is a story of how…").
    r"relate to (?:the|this) (?:story|book|characters?)|read this (?:again|over)|"
    r"(?:is|was) a (?:\w+ )?story (?:of|about)|(?:^|(?<=\n))the story of)\b",
    "zh": r"这本书|这部(?:电影|小说|作品)|小说里|我最喜欢的(?:书|电影|小说)|"
    r"第\s*[0-9一二三四五六七八九十百零两]+\s*[章节回]|这章|章的结尾|"  # 这就是第6章。(seen)
    r"(?m:^)[ \t]*\d{1,3}[ \t]*[章节回]|"  # a contents line, "14章 他的第一眼" (seen)
    # The style's terms taken for words of the story (seen: "她的第二人称是，是她自己的
    # 第二人称。" through a chapter whose style said 第二人称).
    r"第[一二三]人称|"
    # A critic's talk about chapters, plots and screens (seen: "在最后几章中，我们看到了一部电影
    # 《寻找警察的哥哥》。", "在故事中，…", "在电视剧中也经常看到这样的情节。").
    r"(?:最后|前|后|这|那)几章|在(?:故事|小说|电视剧|电影)[中里]|(?:这样|类似)的情节|故事情节|"
    # A chapter named inside one (seen: "一整章都不知道自己喜欢她。", "最后一章是乔恩和女朋友…").
    r"(?:一整|最后一)章",
}


def chapter_bans(lang: Lang, earlier: str) -> list[str]:
    """`banned_regex` for what a chapter must not write: talk about the writing ("This
    chapter is a flashback…"), a label line ("Riv's first love story:"), and the opening
    words of an earlier chapter's sentences (a retelling, dropped by cleaning anyway)."""
    flags = "(?i)" if lang == "en" else ""
    chatter = [flags + checks.CHATTER[lang].pattern, READER_TALK[lang]]
    # Asides to the reader, list items, a line broken after a comma, unquoted speech.
    chatter += [flags + checks.ASIDE[lang].pattern, checks.LIST_LINE, checks.COMMA_BREAK]
    chatter += (
        [checks.UNQUOTED_SPEECH, checks.ENGLISH_RUN, checks.EMPTY_QUOTE, checks.BROKEN_ORDINAL]
        if lang == "zh"
        else [checks.UNQUOTED_SPEECH_EN]
    )
    # Web markup, notes on pictures, numbers as list debris and a worksheet's blanks
    # (seen: "<h2>…</h2>", "<strong>3.2章</strong>", "(see picture below)", "（3）", "the
    # robot 3,", "woke up at ______.").
    chatter += [checks.MARKUP, checks.NUMBER_MARK, checks.WEB_NOTE, checks.BLANK]
    chatter += [checks.OPENING_ELLIPSIS, checks.STUTTER_RUN[lang]]
    slips = [checks.NUMBERED_NOUN, checks.SAID_TWICE, checks.LISTED_TWICE]
    chatter += slips if lang == "en" else []
    return [*chatter, *LABEL_LINES[lang], *retold(lang, earlier)]


def lowered_names(tokenizer: Tokenizer, lang: Lang, characters: Sequence[Character]) -> list[str]:
    """`banned_regex` for a character's English name written in lower case (seen: "…the
    Master said that he should go outside in yoda started to go outside"). A name whose
    lower-case form is one of the model's tokens may be a word ("will", "rose", "hunter"
    are; "yoda", "elena" are not) and may be written either way: the pronouncing
    dictionary lists most names and cannot tell."""
    if lang != "en":
        return []
    texts = vocab_texts(tokenizer)
    words = {w.lower() for c in characters for w in c.name.split() if w[:1].isupper()}
    return [
        rf"\b{re.escape(w)}\b"
        for w in sorted(words)
        if len(w) >= 2 and f" {w}" not in {texts[i] for i in tokenizer.encode(f" {w}")}
    ]


def retold(lang: Lang, text: str) -> list[str]:
    """`banned_regex` for the opening words (Chinese: characters) of `text`'s recent
    sentences: what a chapter writes when it tells them again."""
    if lang == "zh":
        return [re.escape(opening) for opening in told_openings(text)]
    run = RETELL_RUN[lang]
    openings: dict[str, None] = {}
    for sentence in checks.sentences(text)[-RETOLD_SENTENCES:]:
        if len(words := sentence.split()) >= run + 2:
            openings[r"\s+".join(re.escape(w) for w in words[:run])] = None
    return list(openings)


class OwnRetelling(BanInText):
    """A draft's sentence may not begin as one of its own earlier sentences did (their first
    `RETELL_RUN` words or characters, or the whole of a shorter one): cleaning drops such
    a sentence, so decoding it is waste, and in Chinese it was the commonest ("他想离开爸爸
    的怀抱。" four times in a paragraph). `retold` bans the sentences before the draft."""

    SHORTEST: ClassVar[dict[Lang, int]] = {"en": 3, "zh": 5}  # a shorter sentence may recur

    def __init__(self, lang: Lang) -> None:
        self.lang = lang

    def key(self, body: str) -> tuple[str, bool]:
        """The opening that two sentences may not share, and whether it is a whole run."""
        run = RETELL_RUN[self.lang]
        if self.lang == "zh":
            return body[:run], len(body) >= run
        words = body.split()
        return " ".join(words[:run]), len(words) >= run

    def banned_at(self, text: str, shown: int) -> int | None:
        seen: set[str] = set()
        pieces = checks.sentences(text)
        at = 0
        for i, piece in enumerate(pieces):
            body = piece.strip()
            start, at = at + len(piece) - len(piece.lstrip()), at + len(piece)
            whole = (
                i < len(pieces) - 1 or piece.endswith("\n") or bool(SENTENCE_END.search(body[-2:]))
            )
            key, long = self.key(body)
            if not (long or whole) or not body:
                continue  # a short sentence not yet ended: it may still differ
            if key in seen and start + len(key) > shown:
                return start
            units = len(key) if self.lang == "zh" else len(key.split())
            if whole and units >= self.SHORTEST[self.lang]:
                seen.add(key)
        return None


class ThirdPerson(BanInText):
    """A chapter narrated in the third person, as its style says and its first word (a
    character's name) begins it: "I" and "we" (我) only inside a character's quoted speech.
    Seen: the Chinese README story, its style "第三人称", went over to a narrator 我 in its
    first chapter and ended in "他说我。他爱你，她说她和我。"."""

    def __init__(self, lang: Lang) -> None:
        self.pronoun = re.compile(checks.FIRST_PERSON[lang])

    def banned_at(self, text: str, shown: int) -> int | None:
        start = text.rfind("\n", 0, shown) + 1  # the paragraph being written, from its start
        for paragraph in re.finditer(r"[^\n]+", text[start:]):
            body = paragraph.group()
            for found in self.pronoun.finditer(body):
                before = body[: found.start()]
                quoted = before.count("“") > before.count("”") or before.count('"') % 2 == 1
                at = start + paragraph.start() + found.start()
                if not quoted and at >= shown:
                    return at
        return None


class CirclingLines(JudgedWhenEnded):
    """A draft may not say a clause a third time, the same or nearly (one character or word
    changed: `checks.circling_clauses`), counting the chapter so far (`before`, in the
    prompt): Chinese dialogue went round "你为什么会这样？" and "莫拉笑了，“…”" through two
    chapters of the README's story, each line new enough for the sentence filter."""

    END = checks.CLAUSE_MARK

    def __init__(self, lang: Lang, before: str = "") -> None:
        super().__init__()
        self.lang, self.before = lang, before

    def spans(self, ended: str) -> list[tuple[int, int]]:
        starts = checks.circling_clauses(ended, self.lang, self.before)
        clauses = (checks.CLAUSE.match(ended, start) for start in starts)
        return [(m.start(), m.end()) for m in clauses if m is not None]


class StretchBan(BanInText):
    """Takes back from the first banned stretch of `LENGTH` characters (`starts` says where
    they begin) whose end is not yet streamed."""

    LENGTH: ClassVar[int]

    def starts(self, text: str) -> list[int]:
        raise NotImplementedError

    def banned_at(self, text: str, shown: int) -> int | None:
        return next((s for s in self.starts(text) if s + self.LENGTH > shown), None)


class CirclingPhrases(BanInText):
    """A draft may not say a run of `checks.PHRASE_RUN` Han characters (English:
    `checks.PHRASE_WORDS` words) a third time in the story (counting `before`: the earlier
    chapters and the chapter so far); the run is taken back from its start. In Chinese
    `retell_guard.PhraseGuard` steers off most before they are written."""

    def __init__(self, before: str, lang: Lang = "zh") -> None:
        self.lang = lang
        self.before = checks.said_phrases(before, lang)

    def banned_at(self, text: str, shown: int) -> int | None:
        spans = checks.circling_phrases(text, self.before, self.lang)
        return next((start for start, end in spans if end > shown), None)


class RepeatedOpenings(StretchBan):
    """A draft's sentence may not open as `checks.OPENING_MOST` sentences of the chapter
    (`before`, the chapter so far, and the draft) did already: taken back from its start,
    its first token is then blocked there and the sentence begins otherwise."""

    LENGTH = checks.OPENING_RUN

    def __init__(self, before: str) -> None:
        self.before = checks.said_openings(before)  # counted once, not on every token

    def starts(self, text: str) -> list[int]:
        return checks.repeated_openings(text, self.before)


class RepeatedParagraphs(StretchBan):
    """A draft's Chinese paragraph may not open as `checks.PARAGRAPH_MOST` paragraphs of
    the chapter (`before`, and the draft) did already, a name of the cast aside: taken back
    from its start, the paragraph begins otherwise."""

    LENGTH = checks.PARAGRAPH_RUN

    def __init__(self, before: str, names: Sequence[str]) -> None:
        self.names = names
        self.before = Counter(o for _, o in checks.paragraph_openings(before, names))
        self.whole = not before.strip() or before.endswith("\n")  # the draft opens one

    def starts(self, text: str) -> list[int]:
        return checks.repeated_paragraphs(text, self.before, self.names, self.whole)


def chapter_rules(
    writer: Writer, project: StoryProject, head: str, earlier: str = ""
) -> list[LogitsProcessor]:
    """The rules a chapter's text is decoded with after `head` (the chapter so far; the
    chapters before it: `earlier`): no sentence begun as an earlier one or echoing one of
    the story's, no run of five words said a third time in the story (English) or of eight
    characters, no circling lines and no sentence opened as three of the chapter's
    (Chinese, where they were seen; there mostly steered off before they are written:
    `RetellGuard`, `CircleGuard`, `PhraseGuard`), no word said a fourth time within a
    paragraph or two (English: a sixth) and no traditional character (Chinese:
    `WordGuard`, `traditional_ids`), no digit (`digit_ids`), and the premise's
    words nudged up while none is in the last `PREMISE_WINDOW` characters (the nudge the
    beats get: Chinese chapters left their premise within a paragraph, 12 of 16 named
    it)."""
    if not writer.steers:
        return []
    lang = project.lang
    words = checks.keywords(project.premise, lang)
    story = earlier + "\n" + head
    rules: list[LogitsProcessor] = [OwnRetelling(lang), EchoedSentences(lang, story)]
    rules.append(SpeechRun(writer.engine.tokenizer, head, lang))  # talk broken by narration
    if not checks.FIRST_PERSON_STYLE.search(project.bible.style if project.bible else ""):
        rules.append(ThirdPerson(lang))
    if not DIGIT.search(project.premise):  # numbers written in words, as fiction writes them
        rules.append(BanTokens(digit_ids(writer.engine.tokenizer)))
    if lang == "en":
        guard = WordGuard(writer.engine.tokenizer, head, spared_words(project), lang)
        rules += [CirclingPhrases(story, lang), guard, cast_spelling(project)]
    if lang == "zh":
        tokenizer = writer.engine.tokenizer
        cast_keys = [k for c in project.bible.characters for k in c.keys] if project.bible else []
        guards = [
            RetellGuard(tokenizer, [earlier, head]), CircleGuard(tokenizer, head),
            PhraseGuard(tokenizer, story),
        ]  # fmt: skip
        rules += [
            CirclingLines(lang, head), CirclingPhrases(story), RepeatedOpenings(head), *guards,
            RepeatedParagraphs(head, cast_keys),
            WordGuard(tokenizer, head, spared_words(project)),
            BanTokens(traditional_ids(tokenizer)), ParagraphFloor(tokenizer, head),
        ]  # fmt: skip
    nudge = Favour(
        writer.engine.tokenizer, words, lang, partial(checks.says_any, words, lang),
        bias=CHAPTER_NUDGE, whole=True, context=head, window=PREMISE_WINDOW[lang],
    )  # fmt: skip
    return [*rules, nudge]


def spared_words(project: StoryProject) -> Callable[[str], bool]:
    """Whether a word (English: a stem) is the premise's or a character's name: what the
    story is about recurs as its subject does, and `WordGuard` lets it (the eval does not
    count it). Not a beat's words: a beat's "你喜欢我吗？" spared 喜欢, said seven times in
    its chapter."""
    assert project.bible is not None
    names = [key for c in project.bible.characters for key in c.keys]
    subject = "\n".join([project.premise, *names])
    if project.lang == "zh":
        return subject.__contains__
    return {checks.stem(w.lower()) for w in checks.ENGLISH_WORD.findall(subject)}.__contains__


# Logits added to the tokens that begin a premise word while a chapter has not written one:
# milder than a beat's 4 (a chapter has hundreds of tokens to find its place for it).
CHAPTER_NUDGE = 2.0
# …written one within this many characters (about a paragraph; the eval's 160-token
# chapters are about this long, the README's 450-token ones two to three times).
PREMISE_WINDOW: dict[Lang, int] = {"en": 600, "zh": 200}


def clean_draft(draft: str, lang: Lang, earlier: str) -> str:
    """What of a chapter draft is kept: `clean_chapter` after the writer's tidying, without
    stray replacement characters, Unicode line separators and full-width indents (seen:
    "\u3000\u3000“我穿…", "�", '"What is your brother's name?" \u2028\u2028')."""
    draft = re.sub(r"[\ufffd\u2028\u2029]", "", draft)
    draft = re.sub(r"(?m)^[\u3000 \t]+|[ \t]+$", "", draft)
    return checks.clean_chapter(tidy(draft, SCENE_LABELS), lang, earlier)


def step_rules(
    writer: Writer, project: StoryProject, step: str, head: str = "", start: int = 0
) -> list[LogitsProcessor]:
    """The nudge a chapter's round gets from its step: the step's own things (its keywords
    that are no name and no premise word: "帽子", "letter") raised until one is written in
    the round (the text from `start` of the chapter so far, `head`, on)."""
    things = step_things(project, step) if step and writer.steers else set()
    if not things:
        return []
    lang = project.lang
    done = partial(round_done, things, lang, start)
    written = partial(checks.says_any, things, lang)
    window = len(head) + ROUND_WINDOW
    return [
        word_nudge(writer.engine.tokenizer, things, lang, written, bias=STEP_NUDGE,
                   context=head, window=window, enough=done)
    ]  # fmt: skip


def round_done(things: Collection[str], lang: Lang, start: int, text: str) -> bool:
    """Whether a round's step nudge rests: one of the step's `things` written since `start`
    (one is enough: asked for two, a round went back to the same words to reach its second,
    "周大海回到…" in every paragraph)."""
    return checks.says_any(things, lang, text[start:])


# Logits added to the tokens that write one of a step's things while its round has not
# written one: more than the premise's (`CHAPTER_NUDGE`: at 2.0 a round of 150 tokens named
# none of "帽子, 地上, 摸到"; at 3.0 a round after the beat's named neither 码头 nor 收音机).
STEP_NUDGE = 5.0
ROUND_WINDOW = 10_000  # characters: more than a round writes (a round is nudged once)
# The runs of a step's words (Chinese: characters), or its beat's, a round may not copy.
STEP_COPY: dict[Lang, tuple[int, int]] = {"en": (6, 6), "zh": (6, 6)}


def write_scene(writer: Writer, project: StoryProject, index: int, candidates: int = 1) -> Scene:
    """Chapter `index`, told in rounds: its beat, then each of its steps (drawn first and
    kept in story.json). A step's round is shown the step, begins a paragraph with the
    step's character and is nudged to its things; each round ends at the first sentence end
    once the chapter holds its share of the target size. With `candidates` > 1, several
    drafts of the opening (of the whole first round where the backend decodes them in one
    batch) are drawn and the one that best follows the beat and the premise is kept and
    continued. A draft stops when it has gone on too long with nothing
    kept; a chapter left far below its target is continued from what was kept (bounded
    rounds, each call with its own derived seed). Every call's decode steps, tokens taken
    back included, count against the chapter's budget (`chapter_steps`)."""
    assert project.bible is not None
    summarize_before(writer, project, index)
    scene, lang, tokens = project.scenes[index], project.lang, project.scene_tokens
    if project.steps and not scene.steps:
        plan_steps(writer, project, index)
    target = chapter_target(tokens, lang)  # its size: decoding stops at a sentence end past it
    steps, most = chapter_steps(tokens, lang)
    chapter = CHAPTER[lang]
    stops = [f"\n{chapter.format(n=index + 2)}", "\nChapter", "\nNotes for", "写作笔记", "\n\n\n"]
    # The program writes the chapter's first word: the name of the character its beat
    # is about (else the protagonist), so the chapter starts from its plan.
    lead = chapter_lead(project, index)
    earlier = "\n".join(s.text for s in project.scenes[:index])
    # No script-style "Name: words" lines, none of the example's own things, no talk
    # about the writing and no retelling.
    bans = [
        checks.SPEAKER_BAN[lang], *foreign_marks(lang, project.premise),
        *chapter_bans(lang, earlier),
        *lowered_names(writer.engine.tokenizer, lang, project.bible.characters),
        *checks.name_slips(c.name for c in project.bible.characters),
    ]  # fmt: skip
    # After a name the program wrote: no colon (a script line) and no line break (seen:
    # "Jonah Reed\n\nAs he was…", the name left standing as a heading).
    after_name = [*bans, r"\A\s*[:：]", r"\A[ \t]*\n"]
    rest_bans = [*bans, r"\A\s*[:：]"]
    protagonist = project.bible.characters[0].keys
    names = [key for c in project.bible.characters for key in c.keys]
    # The first round tells the beat (as a chapter did before steps: "" shows no step), each
    # later one a step (seen, with the first step in place of the beat: chapters that
    # followed their steps away from the beat, Chinese beat relevance 0.85 -> 0.54).
    rounds = ["", *scene.steps]

    def clean(draft: str) -> str:
        return clean_draft(draft, lang, earlier)

    # The reader sees the chapter as cleaning keeps it, never a line the draft had.
    screen = KeptScreen(writer.show, clean)

    def copied(step: str) -> list[str]:
        """A round tells its step, the first its beat, in its own words: no long run of
        theirs (names and the premise aside; seen: a chapter that copied its steps one after
        the other, and a quarter of Chinese chapters opening with their beat word for word,
        "杜小梅的生日那天，听见树木的心声。")."""
        told = step or scene.beat
        return [echo_outside([told], project.premise, names, *STEP_COPY[lang])] if told else []

    def go_on(
        head: str, budget: int, avoid: list[str], step: int, start: int = 0
    ) -> tuple[str, int]:
        """`head` continued (streamed) until `budget` decode steps, a stall, or a sentence
        end once the chapter holds round `step`'s share of its target; the whole draft and
        the steps taken."""
        full = target * (step + 1) // len(rounds)
        stall = Stall(lambda r: clean(glue(head, r, lang)), lang, full=full)
        # Nor the chapter's own sentences again (seen: a Chinese chapter going back to
        # its first sentence, the beat, after every paragraph).
        rest = writer.write(
            scene_prompt(project, index, rounds[step]) + head, budget, stop=stops,
            labels=SCENE_LABELS, until=stall, most_steps=budget,
            view=lambda r: screen.update(glue(head, r, lang)),
            avoid_regex=[*avoid, *retold(lang, head), *copied(rounds[step])],
            constraints=[
                *chapter_rules(writer, project, head, earlier),
                *step_rules(writer, project, rounds[step], head, start),
            ],
        )  # fmt: skip
        return glue(head, rest, lang), writer.stepped

    first = steps // len(rounds)  # the first round's steps
    if candidates <= 1:
        raw, spent = go_on(lead, first, after_name, 0)
    else:
        # Whole rounds are drawn several times only where a batch of rows costs about one
        # row (a MuseGPT model: no bound on its batch). On llama.cpp a 2-row step costs
        # 1.35x a 1-row one (measured), so only the openings are drawn (in one batch of
        # `candidates` rows where it takes them): a chapter of 2 candidates costs about
        # 1.06x one draw, where whole chapters would cost 1.35x.
        batches = writer.engine.max_batch is None
        opening = first if batches else min(max(tokens // OPENING_SHARE, 32), first)
        drafts = writer.write_many(
            scene_prompt(project, index, rounds[0]) + lead,
            opening,
            candidates,
            stop=stops,
            labels=SCENE_LABELS,
            banned_regex=[*writer.params.banned_regex, *after_name, *copied(rounds[0])],
            constraints=[
                *chapter_rules(writer, project, lead, earlier),
                *step_rules(writer, project, rounds[0]),
            ],
        )
        drafts = [glue(lead, draft, lang) for draft in drafts]
        # The beat's own things count once more: a draft that names the protagonist and
        # the premise but not the beat's suit or museum has drifted from it.
        things = beat_things(project, scene.beat) | step_things(project, rounds[0])

        def fit(draft: str) -> float:
            text = clean(draft)
            found = len(checks.mentions(text, things, lang)) / max(len(things), 1)
            return found + checks.chapter_fit(
                text, lang, protagonist, scene.beat, project.premise,
                chapter_target(opening, lang), EXAMPLE_MARKS[lang], raw=draft,
            )  # fmt: skip

        raw = max(drafts, key=fit)
        spent = writer.stepped
        hero_named = any(k in clean(raw) for k in protagonist)
        if opening < first and raw and not hero_named and checks.finished(end_cleanly(raw)):
            # The chapter goes on with a paragraph the protagonist begins (the program
            # writes the name): an opening led by the beat's other character rarely came
            # back to them (seen: 7 of 36 chapters without the protagonist).
            raw = end_cleanly(raw) + "\n\n" + protagonist_lead(project)
            joint, avoid = "", after_name
        else:
            joint = "" if lang == "zh" or raw.endswith((" ", "\n")) else " "
            avoid = rest_bans
        screen.update(raw)
        if first > spent and raw:
            raw, more = go_on(raw + joint, first - spent, avoid, 0)
            spent += more
    text = clean(raw)
    for step in range(1, len(rounds)):
        left = steps - spent
        if left < FILL_LEAST:
            break
        # The round begins a paragraph with its step's character (the protagonist's name
        # while the chapter has not said it), from what was kept to its last whole sentence.
        hero_named = any(k in text for k in protagonist)
        name = beat_lead(project, rounds[step]) if hero_named else protagonist_lead(project)
        head = end_cleanly(text) + "\n\n" + name if text else lead
        begun = len(head) - len(name) if text else 0  # where this round's text begins
        raw, more = go_on(head, left // (len(rounds) - step), after_name, step, begun)
        spent += more
        text = clean(raw)
    for _ in range(FILL_ROUNDS):
        size, left = checks.size(text, lang), steps - spent
        spare = most - spent  # past its steps (English: a quarter again at most)
        far_below = size < target // 3 and spare >= FILL_LEAST
        if size >= target // 2 or (left < FILL_LEAST and not far_below):
            break
        # What was kept, to its last whole sentence, goes on in a new paragraph (with
        # nothing kept, the chapter is begun again from its lead).
        head = end_cleanly(text) + "\n\n" if text else lead
        budget = max(left, min(steps // 4, spare), FILL_LEAST)
        last = len(rounds) - 1
        draft, more = go_on(head, budget, rest_bans if text else after_name, last, len(head))
        spent += more
        text = clean(draft)
    scene.text = end_cleanly(text)
    screen.finish(scene.text)
    if not scene.text:
        raise StudioError(f"the model wrote nothing for chapter {index + 1}; try another --seed")
    return scene


def write_story(
    writer: Writer,
    premise: str,
    folder: str | Path,
    scenes: int = 3,
    more: int = 0,
    scene_tokens: int = 450,
    candidates: int = CANDIDATES,
    steps: bool = False,
) -> Work:
    """Start a story of `scenes` chapters in `folder`, or resume the one there, adding
    `more` chapters to its outline; each chapter is the best of `candidates` drafts and,
    with `steps` (a new story's choice, kept in its project), told in steps."""
    folder = Path(folder)
    if (folder / PROJECT_FILE).is_file():
        project = StoryProject.load(folder)
        writer.lang = project.lang
        writer.keep_to(project.premise)
    else:
        if not premise.strip():
            raise StudioError("a new story needs a premise, e.g. 'a robot who discovers love'")
        check_premise(writer.engine, premise)
        project = StoryProject(folder, premise.strip(), writer.lang, scene_tokens=scene_tokens)
        project.chapters = scenes
        project.steps = steps
        project.meta = {"model": writer.engine.name, "seed": writer.params.seed}
    if project.bible is None:
        writer.say("Planning the story bible…")
        with timed(project, "plan"):
            project.bible = plan_bible(
                writer, project.premise, project.meta.setdefault("redraws", {})
            )
        project.save()
    project.chapters += more
    wanted = project.chapters - len(project.scenes)
    if wanted > 0:
        writer.say("Outlining…")
        with timed(project, "outline"):
            plan_outline(writer, project, wanted)
    chapter = CHAPTER[project.lang]
    if all(scene.text for scene in project.scenes):
        writer.say(f"{folder} is complete ({len(project.scenes)} chapters); --more N adds N more")
        writer.show(project.markdown())
    for index, scene in enumerate(project.scenes):
        if scene.text:
            continue
        with timed(project, "summaries"):
            summarize_before(writer, project, index)
        writer.say(f"Writing {chapter.format(n=index + 1)} of {len(project.scenes)}: {scene.beat}")
        writer.show(f"\n\n## {chapter.format(n=index + 1)}\n\n")
        with timed(project, "chapters"):
            write_scene(writer, project, index, candidates)
        project.save()  # every finished scene is on disk before the next begins
    bible = project.bible
    meta = {**project.meta, "project": str(folder), "chapters": len(project.scenes)}
    texts = [s.text for s in project.scenes]
    return Work("story", bible.title, project.lang, project.text, texts, meta, project.markdown())


@contextmanager
def timed(project: StoryProject, stage: str) -> Iterator[None]:
    """Add the wall-clock and CPU seconds (all threads) spent in `stage` to the project's
    record (meta "seconds" and "cpu_seconds"): where a story's time goes."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        for key, spent in (("seconds", time.perf_counter() - wall),
                           ("cpu_seconds", time.process_time() - cpu)):  # fmt: skip
            record = project.meta.setdefault(key, {})
            record[stage] = round(record.get(stage, 0.0) + spent, 2)


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
