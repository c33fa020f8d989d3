"""`script`: a screenplay scene in Fountain format.

The model writes the scene after a Fountain example; `to_fountain` then normalises what it
wrote into strict Fountain (a scene heading, blank lines around action, upper-case character
cues — forced with `@` where the name has no capitals, as Chinese names don't — and
parentheticals in brackets), and `fountain_elements` checks it with a real Fountain parser
(`screenplain`). A scene without a heading and two speeches is written again.
"""

from __future__ import annotations

import io
import re
from collections import Counter

from musegpt.studio.tasks import StudioError
from musegpt.studio.text import HAN
from musegpt.studio.work import Work
from musegpt.studio.writer import Writer

HEADING = re.compile(r"^(INT|EXT|EST|INT\./EXT|INT/EXT|I/E)[. ]", re.IGNORECASE)
TRANSITION = re.compile(r"^[A-Z ]+TO:$")
PAREN = re.compile(r"^[(（].*[)）]$")

SCRIPT = {
    "en": (
        "Title: The Last Train\n"
        "Situation: Two strangers miss the last train home and must share a bench till dawn.\n\n"
        "INT. TRAIN STATION - NIGHT\n\n"
        "An empty platform. Rain drums on the glass roof. ANNA (30s, soaked, furious) watches "
        "the red lights of the train vanish.\n\n"
        "ANNA\n"
        "It's gone. It's really gone.\n\n"
        "Behind her, LEO (60s, calm) unwraps a sandwich.\n\n"
        "LEO\n"
        "(offering half)\n"
        "Then we have all night to be polite to each other.\n\n"
        "ANNA\n"
        "I don't eat with strangers.\n\n"
        "LEO\n"
        "By morning we won't be.\n\n"
        "THE END\n\n"
        "Title: {title}\n"
        "Situation: {situation}\n\n"
    ),
    "zh": (
        "标题：末班车\n"
        "情境：两个陌生人错过了末班车，只能在长椅上一起等到天亮。\n\n"
        "INT. 火车站 - 夜\n\n"
        "空荡荡的站台。雨点敲打着玻璃顶棚。安娜（三十多岁，浑身湿透，满脸怒气）看着列车的"
        "红灯消失在远处。\n\n"
        "安娜\n"
        "走了。真的走了。\n\n"
        "她身后，老李（六十多岁，神情平静）打开一个三明治。\n\n"
        "老李\n"
        "（递过去一半）\n"
        "那我们有一整夜的时间互相客气了。\n\n"
        "安娜\n"
        "我不和陌生人一起吃东西。\n\n"
        "老李\n"
        "到了早上，我们就不是陌生人了。\n\n"
        "THE END\n\n"
        "标题：{title}\n"
        "情境：{situation}\n\n"
    ),
}
STOPS = ["THE END", "\nTitle:", "\n标题：", "FADE OUT"]


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


def script(writer: Writer, situation: str, title: str = "", max_new_tokens: int = 500) -> Work:
    """A screenplay scene in Fountain that a Fountain parser reads as a heading plus
    dialogue; written again (bounded) when the model's draft is not a scene."""
    title = title.strip() or situation.strip().split(".")[0][:60].title()
    prompt = SCRIPT[writer.lang].format(title=title, situation=situation.strip())
    fallback = "INT. 某处 - 日" if writer.lang == "zh" else "INT. SOMEWHERE - DAY"
    for _ in range(4):
        raw = writer.write(prompt, max_new_tokens, stop=STOPS, clean_end=False)
        scene = to_fountain(raw, fallback)
        elements = fountain_elements(scene)
        if elements["Slug"] >= 1 and elements["Dialog"] >= 2:
            writer.show(scene)
            return Work("script", title, writer.lang, scene, meta={"elements": dict(elements)})
    raise StudioError(
        "the model did not write a scene with dialogue in 4 tries; try another --seed"
    )
