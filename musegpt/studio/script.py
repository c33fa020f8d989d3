"""`script`: a screenplay scene in Fountain format.

The model writes the scene after a Fountain example; `to_fountain` then normalises what it
wrote into strict Fountain (a scene heading, blank lines around action, upper-case character
cues — forced with `@` where the name has no capitals, as Chinese names don't — and
parentheticals in brackets), and `fountain_elements` checks it with a real Fountain parser
(`screenplain`). A scene without a heading and two speeches is written again.
"""

from __future__ import annotations

import io
import itertools
import re
from collections import Counter
from typing import Any

from musegpt.adapters.choice import AUTO, adapted_engine
from musegpt.engines.base import Engine, EngineError
from musegpt.engines.default_model import DEFAULT_MODEL
from musegpt.studio.tasks import StudioError
from musegpt.studio.text import HAN, echo_pattern, example_phrases, resemblance
from musegpt.studio.work import Work
from musegpt.studio.writer import Writer

HEADING = re.compile(r"^(INT|EXT|EST|INT\./EXT|INT/EXT|I/E)[. ]", re.IGNORECASE)
TRANSITION = re.compile(r"^[A-Z ]+TO:$")
PAREN = re.compile(r"^[(（].*[)）]$")

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
STAGE = "stage"  # the shipped adapter for scripts (Shakespeare's scenes), on request
COPIED = 0.3  # resemblance to the example scene above which a draft is its copy


def _is_cue(line: str, following: str) -> bool:
    """A character cue: a short name on its own line with speech right after it."""
    name = re.sub(r"\s*[(（][^)）]*[)）]\s*$", "", line.strip())  # (V.O.), (CONT'D)
    if not following.strip() or not name or len(name) > 30 or name.endswith((".", "。", ":", "：")):
        return False
    if HAN.search(name):
        return len(name) <= 6 and not re.search(r"[，。！？、；,.!?;]", name)
    letters = [c for c in name if c.isalpha()]
    return bool(letters) and name.upper() == name and len(name.split()) <= 4


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
            cue = line if line.upper() == line and not HAN.search(line) else f"@{line}"
            speech = [cue]
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
    avoid_regex = [echo_pattern(example, given)]
    if names:
        avoid_regex.append(r"(?i)(?<![a-z])(?:" + "|".join(map(re.escape, names)) + r")(?![a-z])")
    why = "did not write a scene with dialogue"
    avoid = example_phrases(example)
    for attempt in range(1, SCRIPT_ATTEMPTS + 1):
        raw = writer.write(prompt, max_new_tokens, stop=STOPS, clean_end=False,
                           avoid=avoid, avoid_regex=avoid_regex)  # fmt: skip
        scene = to_fountain(raw, fallback)
        elements = fountain_elements(scene)
        if elements["Slug"] >= 1 and elements["Dialog"] < 2:
            # The model often ends the scene as the example does ("THE END") after its
            # first paragraph of action, before anyone speaks: go on from there, once, with
            # that ending banned, instead of throwing the heading and action away.
            raw = raw.rstrip() + "\n\n"
            raw += writer.write(prompt + raw, max_new_tokens // 2, stop=STOPS[1:],
                                clean_end=False, avoid=[*avoid, STOPS[0]],
                                avoid_regex=avoid_regex)  # fmt: skip
            scene = to_fountain(raw, fallback)
            elements = fountain_elements(scene)
        if resemblance(scene, example, given) > COPIED:
            why = "kept writing the few-shot example's scene"
        elif elements["Slug"] >= 1 and elements["Dialog"] >= 2:
            writer.show(scene)
            meta: dict[str, Any] = {"elements": dict(elements), "attempt": attempt}
            if getattr(writer.engine, "adapter", None):
                meta["adapter"] = writer.engine.name
            return Work("script", title, writer.lang, scene, meta=meta)
    raise StudioError(f"the model {why} in {SCRIPT_ATTEMPTS} tries; try another --seed")
