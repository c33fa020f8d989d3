"""`script`: a screenplay scene in Fountain format.

After a Fountain example, the scene is drawn part by part in the order Fountain sets it out
(`staged_scene`): the model's heading, a paragraph of action the program begins with the
first character's name, then speeches under the cues the program writes, the two
characters in turn, each speech checked (no cue, no heading, nothing said again) and the
situation's words nudged up until one is written. `to_fountain` then normalises it into
strict Fountain (blank lines around action, upper-case cues — forced with `@` where the
name has no capitals, as Chinese names don't — and only Fountain's own extensions after a
cue), and `fountain_elements` checks it with a real Fountain parser (`screenplain`). A scene
without a heading and two speeches, or with none of the situation's words, is drawn again.
"""

from __future__ import annotations

import io
import itertools
import random
import re
from collections import Counter
from typing import Any

from musegpt.adapters.choice import AUTO, adapted_engine
from musegpt.engines.base import Engine, EngineError
from musegpt.engines.default_model import DEFAULT_MODEL
from musegpt.generation.processors import LogitsProcessor
from musegpt.studio import plan_checks as checks
from musegpt.studio.plan_rules import Favour
from musegpt.studio.story import STANDBY_NAMES
from musegpt.studio.tasks import StudioError
from musegpt.studio.text import (
    HAN,
    Lang,
    echo_pattern,
    example_phrases,
    resemblance,
)
from musegpt.studio.work import Work
from musegpt.studio.writer import Writer

HEADING = re.compile(r"^(INT|EXT|EST|INT\./EXT|INT/EXT|I/E)[. ]", re.IGNORECASE)
TRANSITION = re.compile(r"^[A-Z ]+TO:$")
PAREN = re.compile(r"^[(（].*[)）]$")
# A cue's extension that Fountain knows (V.O., O.S., CONT'D); any other bracket after a name
# is a description copied from the example's action line ("MARGARET (70s, veiled hat)"),
# seen on every cue of a speaker ("@HER (30s, black T-shirt, jeans and sandals)").
EXTENSION = re.compile(r"[(（](?:V\.O\.|O\.S\.|O\.C\.|CONT'?D|画外音|旁白)[)）]", re.IGNORECASE)
# A pronoun is no character's name (seen: cues "HER" and "MY" in the README's scene).
PRONOUNS = (
    r"(?:HE|SHE|HER|HERS|HIM|HIS|MY|ME|I|YOU|YOUR|WE|US|OUR|THEY|THEM|THEIR|IT|ITS|"
    r"[他她我你它]们?)"
)
PRONOUN = re.compile(PRONOUNS, re.IGNORECASE)
# …written as a cue, while decoding: a line that is a pronoun, alone or before a bracket.
PRONOUN_CUE = rf"(?m)^@?{PRONOUNS}[ \t]*(?:[(（][^)）\n]*[)）][ \t]*)?\n"
# Logits added to the tokens that begin a word of the situation while the scene has not
# written one (seen: "Two strangers miss the last train…" staged in a horse's house).
SITUATION_NUDGE = 2.0

# The example scene is unlike any prompt the README gives (a script of the example's own
# situation is a copy, whatever the bans): the model learns the format, not the story.
SCRIPT = {
    "en": (
        "Title: The Honey Harvest\n"
        "Situation: A beekeeper tells her grown son that she has sold the family farm.\n\n"
        "EXT. ORCHARD BEHIND THE FARMHOUSE - DAY\n\n"
        "White hives stand in the long grass. MARGARET (70s, veiled hat, bare hands) lifts a "
        "frame heavy with comb. Her son DANIEL (40s, city suit) keeps his distance.\n\n"
        "DANIEL\n"
        "You said on the phone it was urgent.\n\n"
        "MARGARET\n"
        "(not looking up)\n"
        "The Hendersons signed on Friday. They take the land in spring.\n\n"
        "DANIEL\n"
        "You sold Dad's bees without asking me?\n\n"
        "MARGARET\n"
        "The bees are mine, Daniel. They always were.\n\n"
        "THE END\n\n"
        "Title: {title}\n"
        "Situation: {situation}\n\n"
    ),
    "zh": (
        "标题：饺子馅\n"
        "情境：除夕夜，外婆教孙女包饺子，孙女却说出了自己要出国的决定。\n\n"
        "INT. 外婆家厨房 - 夜\n\n"
        "窗外零星响着鞭炮。面板上撒满白面。外婆（七十多岁，围着旧围裙）擀着饺子皮，"
        "孙女小雪（二十出头，低着头）捏得歪歪扭扭。\n\n"
        "外婆\n"
        "褶子要捏紧，不然一下锅就散了。\n\n"
        "小雪\n"
        "（放下饺子）\n"
        "外婆，我拿到奖学金了，九月去德国。\n\n"
        "外婆\n"
        "德国……那边过年吃饺子吗？\n\n"
        "小雪\n"
        "我自己包。您得先把我教会。\n\n"
        "THE END\n\n"
        "标题：{title}\n"
        "情境：{situation}\n\n"
    ),
}
STOPS = ["THE END", "\nTitle:", "\n标题：", "FADE OUT"]
SCRIPT_ATTEMPTS = 4
# The scene is drawn part by part (heading, action, speeches under cues the program
# writes): left to write the whole scene, the model set out places and sounds as cues
# ("CHAIR IN THE BOX", "THINK", "INTERVIEW"), speeches with no cue and one speaker twice.
SPEECHES = 6  # speeches asked for, the two characters in turn
SPEECH_TOKENS = 60
ACTION_TOKENS = 110
HEADING_TOKENS = 24
SPEECH_TRIES = 2  # draws of one speech before the scene ends where it is
# Who speaks (each scene picks two, by its seed): the names a story stands in with, an
# English one as a cue writes it (a first name in capitals).
CHARACTERS: dict[str, list[str]] = {
    "en": [name.split()[0].upper() for name in STANDBY_NAMES["en"]],
    "zh": STANDBY_NAMES["zh"],
}
STAGE = "stage"  # the shipped adapter for scripts (Shakespeare's scenes), on request
COPIED = 0.3  # resemblance to the example scene above which a draft is its copy


def _is_cue(line: str, following: str) -> bool:
    """A character cue: a short name on its own line with speech right after it (not a
    pronoun, and not a place set out as a heading is: "TENT - BEHIND THE ROAD", seen)."""
    name = cue_name(line)
    if not following.strip() or not name or len(name) > 30 or name.endswith((".", "。", ":", "：")):
        return False
    if PRONOUN.fullmatch(name.lstrip("@")) or re.search(r"\s[-–—]\s|\s[-–—]$", name):
        return False
    if HAN.search(name):
        return len(name) <= 6 and not re.search(r"[，。！？、；,.!?;]", name)
    letters = [c for c in name if c.isalpha()]
    return bool(letters) and name.upper() == name and len(name.split()) <= 4


def cue_name(line: str) -> str:
    """A cue line's name, without its bracket (an extension or a description)."""
    return re.sub(r"\s*[(（][^)）]*[)）]\s*$", "", line.strip())


def cue_line(line: str) -> str:
    """A cue as Fountain writes it: the name, forced with `@` where it is not in capitals,
    and only an extension Fountain knows after it (a description is dropped)."""
    name = cue_name(line)
    extension = EXTENSION.search(line[len(name) :])
    cue = name if name.upper() == name and not HAN.search(name) else f"@{name.lstrip('@')}"
    return f"{cue} {extension.group().replace('（', '(').replace('）', ')')}" if extension else cue


def to_fountain(raw: str, fallback_heading: str) -> str:
    """Strict Fountain from what the model wrote."""
    lines = [line.rstrip() for line in raw.strip().split("\n")]
    blocks: list[str] = []
    if not lines or not HEADING.match(lines[0].strip()):
        blocks.append(fallback_heading)
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if not line:
            i += 1
            continue
        if HEADING.match(line):
            blocks.append(line.upper() if not HAN.search(line) else line)
            i += 1
        elif _is_cue(line, following):
            speech = [cue_line(line)]
            i += 1
            while i < len(lines) and lines[i].strip():
                text = lines[i].strip()
                speech.append(
                    text.replace("（", "(").replace("）", ")") if PAREN.match(text) else text
                )
                i += 1
            if len(speech) > 1 and not PAREN.match(speech[-1]):
                blocks.append("\n".join(speech))
        else:
            action = [line]
            i += 1
            while (
                i < len(lines)
                and lines[i].strip()
                and not _is_cue(lines[i], lines[i + 1] if i + 1 < len(lines) else "")
            ):
                action.append(lines[i].strip())
                i += 1
            text = "\n".join(action)
            # Action in capitals would read as a cue or transition: force it as action.
            blocks.append(f"!{text}" if text.upper() == text and not HAN.search(text) else text)
    return "\n\n".join(blocks) + "\n"


def fountain_elements(text: str) -> Counter[str]:
    """How many of each element a Fountain parser finds (Slug, Action, Dialog, ...)."""
    from screenplain.parsers import fountain

    screenplay = fountain.parse(io.StringIO(text))
    return Counter(type(p).__name__ for p in screenplay.paragraphs)


def learned_format(engine: Engine, lang: str) -> bool:
    """Whether `engine` is the default model with the shipped `stage` adapter, trained on
    English `script_prompt_tail` documents."""
    return lang == "en" and engine.name == f"{DEFAULT_MODEL}:{STAGE}"


def script_prompt_tail(lang: str, title: str, situation: str) -> str:
    """The prompt after its few-shot example: the part a script adapter learns to continue."""
    return SCRIPT[lang].split("THE END\n\n")[-1].format(title=title, situation=situation)


def example_scene(lang: str) -> str:
    """The few-shot example's own title, situation and scene."""
    return SCRIPT[lang].split("{title}")[0]


def example_names(lang: str) -> list[str]:
    """The character cues of the example scene (its speakers' names)."""
    lines = example_scene(lang).split("\n")
    cues = {line for line, nxt in itertools.pairwise(lines) if _is_cue(line, nxt)}
    return sorted(cue for cue in cues if cue != "THE END" and not re.search("[:：]", cue))


def script(
    writer: Writer, situation: str, title: str = "", max_new_tokens: int = 500, adapter: str = AUTO
) -> Work:
    """A screenplay scene in Fountain that a Fountain parser reads as a heading plus
    dialogue; written again (bounded) when the model's draft is not a scene, or is the
    few-shot example handed back (its lines, word runs and speakers' names are banned, and
    a draft that still resembles it is drawn again). `adapter`: on the default model,
    "auto" writes with the shipped adapter for scripts in the language if there is one
    (`TASK_ADAPTERS`: none), "none" without, or an adapter's name ("stage")."""
    try:
        writer.engine = adapted_engine(writer.engine, "script", writer.lang, adapter)
    except EngineError as err:
        raise StudioError(str(err)) from None
    title = title.strip() or situation.strip().split(".")[0][:60].title()
    if learned_format(writer.engine, writer.lang):
        # The shipped script adapter learned the prompt's own tail, without the example
        # before it; with the example in front it writes no scene heading (seen: 7 of 10).
        prompt = script_prompt_tail(writer.lang, title, situation.strip())
    else:
        prompt = SCRIPT[writer.lang].format(title=title, situation=situation.strip())
    fallback = "INT. 某处 - 日" if writer.lang == "zh" else "INT. SOMEWHERE - DAY"
    example = example_scene(writer.lang)
    given = f"{title}\n{situation}"
    names = [n for n in example_names(writer.lang) if n.lower() not in given.lower()]
    avoid_regex = [echo_pattern(example, given), PRONOUN_CUE]
    if names:
        avoid_regex.append(r"(?i)(?<![a-z])(?:" + "|".join(map(re.escape, names)) + r")(?![a-z])")
    why = "did not write a scene with dialogue"
    avoid = example_phrases(example)
    words = checks.keywords(situation, writer.lang)
    for attempt in range(1, SCRIPT_ATTEMPTS + 1):
        scene = staged_scene(writer, prompt, words, fallback, avoid, avoid_regex, max_new_tokens)
        elements = fountain_elements(scene)
        on_topic = bool(checks.mentions(scene, words, writer.lang)) or not words
        if resemblance(scene, example, given) > COPIED:
            why = "kept writing the few-shot example's scene"
        elif not on_topic and attempt < SCRIPT_ATTEMPTS:
            why = "wrote scenes that say nothing of the situation"  # drawn again, but the last
        elif elements["Slug"] >= 1 and elements["Dialog"] >= 2:
            writer.show(scene)
            meta: dict[str, Any] = {"elements": dict(elements), "attempt": attempt}
            if getattr(writer.engine, "adapter", None):
                meta["adapter"] = writer.engine.name
            return Work("script", title, writer.lang, scene, meta=meta)
    raise StudioError(f"the model {why} in {SCRIPT_ATTEMPTS} tries; try another --seed")


def staged_scene(
    writer: Writer,
    prompt: str,
    words: set[str],
    fallback: str,
    avoid: list[str],
    avoid_regex: list[str],
    budget: int = 500,
) -> str:
    """A scene in Fountain, drawn in the order it is set out: the model's first line as its
    heading (where it is one, else `fallback`), a paragraph of action that the program
    begins with the first character's name, then `SPEECHES` speeches, each under the cue
    the program writes (the two characters in turn: the second is the one the action
    names, else another of `CHARACTERS`). A speech that is empty, a cue or a heading, or
    says an earlier one again, is drawn again; after `SPEECH_TRIES` the scene ends there,
    as it does once its draws have decoded `budget` tokens."""
    lang = writer.lang
    head = writer.write(prompt, HEADING_TOKENS, stop=["\n", *STOPS], clean_end=False,
                        constraints=situation_nudge(writer, words), avoid=avoid,
                        avoid_regex=avoid_regex).strip()  # fmt: skip
    heading = head if is_heading(head) else fallback
    heading = heading if HAN.search(heading) else heading.upper()
    first, second = random.Random(writer.params.seed).sample(CHARACTERS[lang], 2)
    # The character is introduced as the example introduces its own: name, then a bracket
    # the model fills (age, look) before the action goes on.
    introduced = f"{first}（" if lang == "zh" else f"{first} ("
    scene = f"{heading}\n\n{introduced}"
    action = writer.write(prompt + scene, ACTION_TOKENS, stop=["\n", *STOPS],
                          constraints=situation_nudge(writer, words), avoid=avoid,
                          avoid_regex=avoid_regex)  # fmt: skip
    action = introduced + action.strip()
    # What follows the bracket on its line, if it says nothing (seen: "4:00 AM - 10:00 AM -",
    # "2nd Floor"), is dropped, and the action goes on after the bracket.
    bracket = re.search(r"[)）]", action)
    if bracket and not says_something(action[bracket.end() :]):
        action = action[: bracket.end()]
    if re.search(r"[)）]\s*$", action):
        joint = "" if lang == "zh" else " "
        more = writer.write(prompt + f"{heading}\n\n{action}{joint}", ACTION_TOKENS,
                            stop=["\n", *STOPS], avoid=avoid,
                            avoid_regex=[*avoid_regex, r"\A\s*\n"])  # fmt: skip
        action += joint + more.strip() if says_something(more) else ""
    scene = f"{heading}\n\n{action}\n\n"
    spent = writer.decoded
    named = [n for n in action_names(action, lang) if n != first]
    cast = [first, named[0] if named else second]
    speeches: list[str] = []
    for turn in range(SPEECHES):
        if spent >= budget:
            break
        cue = cast[turn % 2]
        speech = ""
        for _ in range(SPEECH_TRIES):
            # No bracket before the words: the model's were notes, not directions (seen:
            # "(10.30 am)", "（我）" before every speech).
            drawn = writer.write(prompt + scene + cue + "\n", SPEECH_TOKENS,
                                 stop=["\n\n", *STOPS], avoid=avoid,
                                 avoid_regex=[*avoid_regex, r"\A\s*[(（]"]).strip()  # fmt: skip
            spent += writer.decoded
            if speech_fault(drawn, speeches, lang) is None:
                speech = drawn
                break
        if not speech:
            break
        for name in cast if lang == "en" else ():  # a name in a speech as prose writes it
            speech = re.sub(rf"\b{re.escape(name)}\b", name.title(), speech)  # not "NORA"
        speeches.append(speech)
        scene += f"{cue}\n{speech}\n\n"
    return to_fountain(scene, fallback)


def says_something(text: str) -> bool:
    """Whether `text` holds a word of prose: a lower-case English word or a Han character
    (not "4:00 AM - 10:00 AM -", "2nd Floor")."""
    return re.search(r"[a-z]{3,}|[\u4e00-\u9fff]", text) is not None


def is_heading(line: str) -> bool:
    """A scene heading: INT./EXT., a place of a few words, and no sentence (seen: "INT. 31
    岁两名老人开车，三辆出租车同时离着家。")."""
    size = len(HAN.findall(line)) if HAN.search(line) else len(line.split())
    place = HEADING.sub("", line, count=1).strip(" .-–—")
    sentence = re.search(r"[，。,!?！？;；]", line)
    return bool(HEADING.match(line) and place) and size <= 12 and not sentence


def action_names(action: str, lang: str) -> list[str]:
    """Who the action introduces, as the example does: a name in capitals (Chinese: a short
    name before a bracket, "外婆（七十多岁…）"), pronouns and headings' words aside."""
    if lang == "zh":
        found = re.findall(r"(?:^|[和与跟、，。\s])([\u4e00-\u9fff]{2,3})[（(]", action)
    else:
        found = re.findall(r"\b([A-Z][A-Z'-]+)\b", action)
        found = [n for n in found if len(n) >= 3 and n not in HEADING_WORDS]
    return list(dict.fromkeys(n for n in found if not PRONOUN.fullmatch(n)))


HEADING_WORDS = {"INT", "EXT", "DAY", "NIGHT", "DAWN", "DUSK", "MORNING", "EVENING", "THE", "END"}


def speech_fault(speech: str, earlier: list[str], lang: str = "en") -> str | None:
    """Why a drawn speech is not kept: nothing said, a cue or a heading, a sentence said
    twice, or a sentence of an earlier speech said again (nearly the same, or held whole in
    it: seen, "你俩坐在一起。" after "顾远，你俩坐在一起。", and "2nd thing we do is just let
    the dogs and cats inside." after "1st thing …")."""
    lines = [line.strip() for line in speech.split("\n") if line.strip()]
    said = [line for line in lines if not PAREN.match(line)]
    if not said or not any(c.isalpha() for c in " ".join(said)):
        return "nothing said"
    if any(HEADING.match(line) or _is_cue(line, "x") for line in said):
        return "a cue or a heading"
    text_lang: Lang = "zh" if lang == "zh" else "en"
    pieces = [p for p in checks.sentences(" ".join(said)) if checks.sentence_key(p, text_lang)]
    keys = [checks.sentence_key(p, text_lang) for p in pieces]
    if len(set(keys)) < len(keys):
        return "a sentence said twice"  # seen: "It's real. It's real.\nIt's real."
    before = [
        checks.sentence_key(piece, text_lang)
        for other in earlier
        for piece in checks.sentences(other.replace("\n", " "))
    ]
    for piece, key in zip(pieces, keys, strict=True):
        held = any(min(len(key), len(o)) >= 4 and (key in o or o in key) for o in before)
        if held or checks.is_repeat(piece, key, set(before), before, text_lang):
            return "an earlier speech again"
    return None


def situation_nudge(writer: Writer, words: set[str]) -> list[LogitsProcessor]:
    """The situation's words raised while the scene has not written one (a whole word:
    a nudged first piece that never became the word was written again and again)."""
    if not writer.steers or not words:
        return []
    lang = writer.lang

    def written(text: str) -> bool:
        return bool(checks.mentions(text, words, lang))

    return [Favour(writer.engine.tokenizer, words, lang, written, bias=SITUATION_NUDGE, whole=True)]
