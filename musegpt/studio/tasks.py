"""The short studio tasks: describe, brainstorm, plot-help, rewrite, lyrics.

Each is a prompt program for small base models: a few-shot template in the writer's
language that shows the exact shape wanted, stop rules that end the call where the shape
ends, and post-processing that enforces the structure (N distinct ideas, a chorus repeated
word for word) instead of hoping the model keeps it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from musegpt.studio.text import Lang, example_phrases, similarity, tidy
from musegpt.studio.work import Work
from musegpt.studio.writer import Writer

LIST_ITEM = re.compile(r"^\s*(?:\d+[.)、．]|[-*•])\s*(.+?)\s*$")
NEAR_DUPLICATE = 0.5  # character-trigram Jaccard above this: the same idea said twice


class StudioError(ValueError):
    """A task that could not produce what was asked within its bounded attempts."""


# -- describe ------------------------------------------------------------------------------

DESCRIBE = {
    "en": (
        "Sensory descriptions: one paragraph each, of what is seen, heard, smelled, felt and "
        "tasted.\n\n"
        "Subject: an old bakery at dawn\n"
        "Description: The ovens breathe before the street wakes. Flour hangs in the lamplight "
        "like fine snow, and the air is thick with butter, yeast and the sweet char of crusts "
        "left a minute too long. Trays clatter; somewhere a radio hums. The wooden counter is "
        "warm under the palm, worn smooth by forty years of elbows.\n\n"
        "Subject: a thunderstorm over the sea\n"
        "Description: The horizon goes the colour of a bruise. Wind tears the tops off the "
        "waves and flings salt into the mouth, and the first thunder arrives as a pressure in "
        "the chest before it is a sound. Rain hisses on the water, then roars, cold and "
        "needle-sharp against the skin.\n\n"
        "Subject: {subject}\n"
        "Description:"
    ),
    "zh": (
        "感官描写：每段写出所见、所闻、所嗅、所触、所尝。\n\n"
        "对象：黎明时的老面包房\n"
        "描写：街道还没醒，烤炉已经开始呼吸。面粉在灯光里飘着，像细雪。空气里满是黄油、"
        "酵母和面包皮微焦的甜香。烤盘叮当作响，收音机在角落里低声哼唱。木柜台被几十年的"
        "手肘磨得光滑，摸上去还是温的。\n\n"
        "对象：海上的雷雨\n"
        "描写：天边变成淤青的颜色。风把浪尖撕碎，咸涩的水沫扑进嘴里。雷声先是压在胸口，"
        "然后才真正响起。雨落在海面上，先是嘶嘶作响，随后轰鸣，冰冷得像针扎在皮肤上。\n\n"
        "对象：{subject}\n"
        "描写："
    ),
}


def describe(writer: Writer, subject: str, max_new_tokens: int = 220) -> Work:
    """A sensory description of a thing, person or place."""
    prompt = DESCRIBE[writer.lang].format(subject=subject.strip())
    labels = ["Subject:", "Description:", "对象：", "描写："]
    avoid = example_phrases(DESCRIBE[writer.lang])
    text = writer.write(
        prompt, max_new_tokens, stop=["\n\n"], labels=labels, stream=True, avoid=avoid
    )
    if not text:
        raise StudioError("the model wrote no description; try another --seed")
    return Work("describe", subject.strip(), writer.lang, text)


# -- lists of distinct ideas: brainstorm and plot-help -------------------------------------

BRAINSTORM = {
    "en": (
        "Lists of fresh, distinct ideas.\n\n"
        "Topic: a haunted lighthouse\n"
        "Kind: story titles\n"
        "1. The Keeper of Drowned Lights\n"
        "2. Salt in the Lamp Room\n"
        "3. What the Fog Remembers\n"
        "4. Nine Steps Down to the Sea\n\n"
        "Topic: a desert city on stilts\n"
        "Kind: design concepts\n"
        "1. Wind towers that cool each street and sing when storms come\n"
        "2. Markets hung from cables that move with the shade through the day\n"
        "3. Sand-coloured sails over every roof that double as water collectors\n\n"
        "Topic: {topic}\n"
        "Kind: {kind}\n"
    ),
    "zh": (
        "新鲜、互不相同的点子清单。\n\n"
        "主题：闹鬼的灯塔\n"
        "类型：故事标题\n"
        "1. 溺水之光的守望者\n"
        "2. 灯室里的盐\n"
        "3. 雾记得什么\n"
        "4. 通往大海的九级台阶\n\n"
        "主题：建在高脚上的沙漠城市\n"
        "类型：设计概念\n"
        "1. 每条街都有风塔降温，风暴来临时会发出歌声\n"
        "2. 悬挂在缆绳上的集市，整天随着阴影移动\n"
        "3. 屋顶上沙色的帆，同时用来收集露水\n\n"
        "主题：{topic}\n"
        "类型：{kind}\n"
    ),
}

PLOT_HELP = {
    "en": (
        "A writer is stuck. Each answer lists distinct ways the story could go next.\n\n"
        "Story so far: Mira, a young locksmith, has been hired to open a safe in a mansion. "
        "Inside she finds a letter addressed to her, dated twenty years ago.\n"
        "Problem: how does she find out who wrote it?\n"
        "Ways forward:\n"
        "1. The handwriting matches the notes her late mother left in recipe books.\n"
        "2. The butler recognises the wax seal and lies about it, so she follows him at night.\n"
        "3. The letter's date is the day a fire destroyed the town archive; she visits the "
        "one survivor of that fire.\n\n"
        "Story so far: {story}\n"
        "Problem: {conflict}\n"
        "Ways forward:\n"
    ),
    "zh": (
        "作者卡住了。每个回答列出故事接下来可以发展的几种不同方向。\n\n"
        "故事梗概：年轻的锁匠米拉受雇打开一座宅邸里的保险箱，却在里面发现一封写给她的信，"
        "日期是二十年前。\n"
        "难题：她怎样查出写信的人？\n"
        "发展方向：\n"
        "1. 信上的笔迹和她已故母亲留在食谱上的字一模一样。\n"
        "2. 管家认出了火漆印却撒了谎，于是她夜里跟踪他。\n"
        "3. 信上的日期正是镇档案馆失火那天，她去找那场火灾唯一的幸存者。\n\n"
        "故事梗概：{story}\n"
        "难题：{conflict}\n"
        "发展方向：\n"
    ),
}


def list_items(text: str) -> list[str]:
    """The items of a numbered or bulleted list, without their numbers."""
    items = []
    for line in text.split("\n"):
        match = LIST_ITEM.match(line)
        if match and len(match.group(1)) > 1:
            items.append(match.group(1).strip())
    return items


@dataclass
class IdeaList:
    """Distinct ideas gathered over several bounded calls; near-duplicates are dropped."""

    count: int
    avoid: list[str]  # the few-shot examples' ideas: never returned as the user's
    ideas: list[str]

    def offer(self, idea: str) -> bool:
        if len(self.ideas) >= self.count:
            return False
        if any(similarity(idea, other) > NEAR_DUPLICATE for other in self.ideas + self.avoid):
            return False
        self.ideas.append(idea)
        return True


def distinct_list(
    writer: Writer,
    template: str,
    count: int,
    per_item_tokens: int,
    attempts: int,
    start: Sequence[str] = (),
) -> list[str]:
    """Exactly `count` distinct items (`start` first) continuing the numbered list that
    `template` opens."""
    found = IdeaList(count, list_items(template), list(start))
    for attempt in range(attempts):
        shown = "".join(f"{i}. {idea}\n" for i, idea in enumerate(found.ideas, 1))
        prompt = template + shown + f"{len(found.ideas) + 1}."
        budget = per_item_tokens * (count - len(found.ideas) + 1)
        heat = min(writer.params.temperature + 0.15 * attempt, 1.5)
        text = writer.write(
            prompt,
            budget,
            stop=["\n\n", "\nTopic:", "\n主题：", "\nStory so far:", "\n故事梗概："],
            clean_end=False,
            temperature=heat if writer.params.temperature > 0 else 0.0,
        )
        for item in list_items(f"{len(found.ideas) + 1}." + text):
            if found.offer(item):
                writer.show(f"{len(found.ideas)}. {item}\n")
        if len(found.ideas) == count:
            return found.ideas
    raise StudioError(
        f"found only {len(found.ideas)} distinct ideas of the {count} asked for in {attempts} "
        "attempts; ask for fewer, or raise --temperature"
    )


def brainstorm(writer: Writer, topic: str, kind: str = "ideas", count: int = 8) -> Work:
    """`count` distinct ideas of a kind (titles, names, plot twists, settings, concepts)."""
    template = BRAINSTORM[writer.lang].format(topic=topic.strip(), kind=kind.strip())
    ideas = distinct_list(writer, template, count, 24, attempts=3 + count)
    title = f"{kind.strip().capitalize()}: {topic.strip()}"
    return Work("brainstorm", title, writer.lang, "\n".join(ideas), ideas)


def plot_help(writer: Writer, story: str, conflict: str, count: int = 4) -> Work:
    """Several distinct ways forward for a story that is stuck."""
    story_text = " ".join(story.split())[-1500:]  # the most recent part matters most
    template = PLOT_HELP[writer.lang].format(story=story_text, conflict=conflict.strip())
    ways = distinct_list(writer, template, count, 60, attempts=3 + count)
    return Work(
        "plot-help", f"Ways forward: {conflict.strip()}", writer.lang, "\n".join(ways), ways
    )


# -- rewrite (style transfer) --------------------------------------------------------------

REWRITE = {
    "en": (
        "Passages rewritten in another style. The meaning stays the same; only the voice "
        "changes.\n\n"
        "Original: The meeting is cancelled because the manager is ill.\n"
        "Style: Shakespearean\n"
        "Rewritten: Hark, our gathering is undone, for he who leads us lies abed with fever.\n\n"
        "Original: I walked home in the rain and my shoes got soaked.\n"
        "Style: hardboiled noir\n"
        "Rewritten: The rain came down like it had a grudge, and by the time I hit my street "
        "my shoes were two cold puddles with laces.\n\n"
        "Original: {text}\n"
        "Style: {style}\n"
        "Rewritten:"
    ),
    "zh": (
        "把段落改写成另一种风格。意思不变，只改变语气和文风。\n\n"
        "原文：会议取消了，因为经理生病了。\n"
        "风格：古风\n"
        "改写：今日之会作罢，只因主事之人抱恙在床。\n\n"
        "原文：我冒雨走回家，鞋子全湿透了。\n"
        "风格：幽默\n"
        "改写：雨下得像跟我有仇，等我到家，脚上那两只鞋已经可以养鱼了。\n\n"
        "原文：{text}\n"
        "风格：{style}\n"
        "改写："
    ),
}
SAMPLE_STYLE = {"en": "the style of this sample: {sample}", "zh": "模仿这段范文的风格：{sample}"}


def rewrite(
    writer: Writer,
    text: str,
    style: str = "",
    sample: str = "",
    alternatives: int = 1,
    max_new_tokens: int | None = None,
) -> Work:
    """`text` in a named style, or in the style of `sample`; several distinct versions."""
    if not style and not sample:
        raise StudioError("rewrite needs a --style (e.g. 'noir') or a --sample of the style")
    flat = " ".join(text.split())
    described = style or SAMPLE_STYLE[writer.lang].format(sample=" ".join(sample.split())[:600])
    prompt = REWRITE[writer.lang].format(text=flat, style=described)
    budget = max_new_tokens or max(64, 2 * len(writer.engine.tokenize(flat)))
    labels = ["Original:", "Style:", "Rewritten:", "原文：", "风格：", "改写："]
    avoid = example_phrases(REWRITE[writer.lang])
    versions: list[str] = []
    for attempt in range(alternatives * 3):
        if attempt and writer.sink is not None:
            writer.show("\n\n")
        version = writer.write(prompt, budget, stop=["\n\n", "\nOriginal:", "\n原文："],
                               labels=labels, stream=True, avoid=avoid)  # fmt: skip
        if version and all(similarity(version, v) <= 0.8 for v in versions):
            versions.append(version)
        if len(versions) == alternatives:
            break
    if not versions:
        raise StudioError("the model wrote no rewrite; try another --seed")
    title = f"Rewrite ({style or 'after a sample'})"
    return Work("rewrite", title, writer.lang, "\n\n".join(versions), versions)


# -- lyrics --------------------------------------------------------------------------------

LYRICS = {
    "en": (
        "Song lyrics with verses and a chorus.\n\n"
        "Title: Paper Boats\n"
        "Topic: childhood summers by the river\n"
        "[Verse 1]\n"
        "We folded all our secrets into paper boats\n"
        "And sent them down the river with our winter coats\n"
        "The water kept the promises we never said\n"
        "The sun went down like honey on the riverbed\n\n"
        "[Chorus]\n"
        "Oh, carry me home, carry me slow\n"
        "Down where the willows and the old lights glow\n"
        "Every summer ends but the river knows\n"
        "Where the paper boats go\n\n"
        "Title: {title}\n"
        "Topic: {topic}\n"
    ),
    "zh": (
        "有主歌和副歌的歌词。\n\n"
        "标题：纸船\n"
        "主题：童年夏天的河边\n"
        "[主歌一]\n"
        "我们把秘密折成一只只纸船\n"
        "顺着河水漂向看不见的对岸\n"
        "河水记得那些没说出口的诺言\n"
        "夕阳像蜂蜜一样落在河面\n\n"
        "[副歌]\n"
        "带我回家，慢慢地走\n"
        "走到柳树和旧灯火的尽头\n"
        "每个夏天都会结束\n"
        "只有河水知道纸船去了哪里\n\n"
        "标题：{title}\n"
        "主题：{topic}\n"
    ),
}
SECTIONS = {
    "en": ["Verse 1", "Chorus", "Verse 2", "Chorus", "Bridge", "Chorus"],
    "zh": ["主歌一", "副歌", "主歌二", "副歌", "桥段", "副歌"],
}
CHORUS = {"en": "Chorus", "zh": "副歌"}
LINES_PER_SECTION = {"Bridge": 2, "桥段": 2}


def _lines(text: str, most: int) -> list[str]:
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return [line for line in lines if not line.startswith("[")][:most]


def lyrics(writer: Writer, topic: str, title: str = "") -> Work:
    """Verses, a chorus that repeats word for word, and a bridge, each labelled."""
    lang: Lang = writer.lang
    title = title.strip() or topic.strip().title()
    song = LYRICS[lang].format(title=title, topic=topic.strip())
    written: dict[str, list[str]] = {}
    parts: list[str] = []
    avoid = example_phrases(LYRICS[lang])
    for name in SECTIONS[lang]:
        header = f"[{name}]\n"
        writer.show(header)
        if name not in written:
            most = LINES_PER_SECTION.get(name, 4)
            for _ in range(3):
                text = writer.write(
                    song + header, 20 * most, stop=["\n[", "\n\n", "\nTitle:", "\n标题："],
                    clean_end=False, avoid=avoid,
                )  # fmt: skip
                lines = _lines(tidy(text, clean_end=False), most)
                if len(lines) >= min(2, most):
                    break
            else:
                raise StudioError(f"the model wrote no lines for the {name}; try another --seed")
            written[name] = lines
        body = "\n".join(written[name])
        writer.show(body + "\n\n")
        song += header + body + "\n\n"
        parts.append(header + body)
    return Work("lyrics", title, lang, "\n\n".join(parts), parts)
