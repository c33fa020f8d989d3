"""The short studio tasks: describe, brainstorm, plot-help, rewrite, lyrics.

Each is a prompt program for small base models: a few-shot template in the writer's
language that shows the exact shape wanted, stop rules that end the call where the shape
ends, and post-processing that enforces the structure (N distinct ideas, a chorus repeated
word for word) instead of hoping the model keeps it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from musegpt.generation.processors import LogitsProcessor
from musegpt.studio.plan_checks import (
    keywords,
    mentions,
    normal,
    says_any,
    size,
    subject_words,
    without_repeats,
)
from musegpt.studio.plan_rules import EchoedSentences, EndWhenReady, FavourUnsaid, word_nudge
from musegpt.studio.screen import KeptScreen
from musegpt.studio.text import (
    HAN,
    Lang,
    echo_pattern,
    example_phrases,
    phrase_loop,
    similarity,
    tidy,
    units,
)
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


# A description holds this many words (Chinese: characters) before it may end, as the
# examples do (about 70 words): left to end where it would, it gave two or three sentences.
DESCRIBE_LEAST: dict[Lang, int] = {"en": 45, "zh": 80}


def describe(writer: Writer, subject: str, max_new_tokens: int = 220) -> Work:
    """A sensory description of a thing, person or place: each of the subject's words
    nudged up until it is written (unnudged, "a night market in the rain" was described
    with neither night, market nor rain in 2 of 2 seeds: 9 of 31 subject words named over
    16 descriptions), and no end before `DESCRIBE_LEAST` words or characters."""
    lang = writer.lang
    prompt = DESCRIBE[lang].format(subject=subject.strip())
    labels = ["Subject:", "Description:", "对象：", "描写："]
    avoid = example_phrases(DESCRIBE[lang])
    rules: list[LogitsProcessor] = []
    if writer.steers:
        tokenizer = writer.engine.tokenizer
        least = DESCRIBE_LEAST[lang]
        rules.append(EndWhenReady(tokenizer, lambda text: size(text, lang) >= least))
        rules.append(EchoedSentences(lang, ""))  # a sentence said again is written anew
        for word in subject_words(subject, lang):
            said = partial(says_any, {word}, lang)
            rules.append(word_nudge(tokenizer, {word}, lang, said))
    # Nor the examples' words with a word changed (seen: "The air is thick with butter,
    # yeast and the sweet scent of crusts…" in a train station).
    copied = echo_pattern(DESCRIBE[lang].split("{subject}")[0], subject, words=4, chars=4)
    # Nor the subject said back as the first sentence (seen, 2 of 3 seeds: "A night market
    # in the rain. The lights are low…"): a description begins with what is seen.
    words = re.findall(r"\w+", subject)
    restated = r"(?i)\A\W*(?:(?:a|an|the)\s+)?" + r"\W+".join(map(re.escape, words))
    restated += r"\W*[.!?。！？]"
    # Chinese: nor six characters of the subject running anywhere (nudged to name each of
    # its words, seven of eight subjects opened reciting it: "两位互相竞争的天文学家，看着…").
    recited = echo_pattern(subject, chars=6) if lang == "zh" else r"(?!)"
    keep = partial(without_repeats, lang=lang)
    screen = KeptScreen(writer.show, keep)  # shown as kept: a repeat is never on screen
    text = writer.write(
        prompt, max_new_tokens, stop=["\n\n"], labels=labels, view=screen.update,
        avoid=avoid, avoid_regex=[copied, restated, recited], constraints=rules,
    )  # fmt: skip
    text = keep(text)
    screen.finish(text)
    if not text:
        raise StudioError("the model wrote no description; try another --seed")
    return Work("describe", subject.strip(), writer.lang, text)


# -- lists of distinct ideas: brainstorm and plot-help -------------------------------------

# Each list opens with a line that names its kind and topic again, so the model is told
# both right where it starts writing; each example item names its topic's words (the
# keyword test every item must pass).
BRAINSTORM = {
    "en": (
        "Lists of fresh, distinct ideas.\n\n"
        "Topic: a haunted lighthouse\n"
        "Kind: story titles\n"
        "Story titles about a haunted lighthouse:\n"
        "1. The Keeper of Drowned Lights\n"
        "2. Salt in the Lighthouse Lamp\n"
        "3. What the Haunted Fog Remembers\n"
        "4. Nine Steps Down from the Lighthouse\n\n"
        "Topic: a travelling circus\n"
        "Kind: plot twists\n"
        "Plot twists about a travelling circus:\n"
        "1. It turns out that the circus never moves at all: each town is built around it.\n"
        "2. Nobody knows that the cruel ringmaster is paying every clown's debts.\n"
        "3. Everyone believes the circus travels for money, but it flees the last town.\n"
        "4. Secretly, the lion everyone fears is the circus owner's lost brother.\n\n"
        "Topic: {topic}\n"
        "Kind: {kind}\n"
        "{Kind} about {topic}:\n"
    ),
    "zh": (
        "新鲜、互不相同的点子清单。\n\n"
        "主题：闹鬼的灯塔\n"
        "类型：故事标题\n"
        "关于闹鬼的灯塔的故事标题：\n"
        "1. 灯塔里的溺水之光\n"
        "2. 闹鬼灯室里的盐\n"
        "3. 灯塔的雾记得什么\n"
        "4. 通往灯塔的九级台阶\n\n"
        "主题：流浪马戏团\n"
        "类型：情节反转\n"
        "关于流浪马戏团的情节反转：\n"
        "1. 原来马戏团根本没有移动过，是每座小镇围着它建起来的。\n"
        "2. 谁也不知道，看起来很凶的团长一直在偷偷替每个小丑还债。\n"
        "3. 人人都以为马戏团为了赚钱四处流浪，其实它是在逃离上一个小镇。\n"
        "4. 其实人人害怕的那头狮子，是马戏团老板失散多年的哥哥。\n\n"
        "主题：{topic}\n"
        "类型：{kind}\n"
        "关于{topic}的{kind}：\n"
    ),
}
# Kinds whose items are sentences (a twist is an event), and kinds whose items are short.
SENTENCE_KINDS = re.compile(
    r"twist|plot|scene|conflict|premise|ending|opening|反转|情节|冲突|结局|开头"
)
SHORT_KINDS = re.compile(r"title|name|标题|名字|名称")
# A title or a name ends without a full stop or a colon (seen: "Sea-faring city: a strange
# sea:", "All that remains is a violin."): the mark is dropped.
TITLE_END = re.compile(r"\s*[.:;。：；]+\s*$")
# A twist turns what was believed around: it says so with one of these. Each twist is
# begun with one of TWIST_OPENERS, a frame that a small model completes as a twist.
TWIST_OPENERS = {
    "en": ["It turns out that", "Nobody knows that", "Everyone believes", "Secretly,"],
    "zh": ["原来", "谁也不知道，", "人人都以为", "其实"],
}
TWIST_KINDS = re.compile(r"twist|反转")
TWIST = re.compile(
    r"\b(?:actually|secretly|secret|really|turns? out|all along|never|not|isn't|wasn't|"
    r"aren't|weren't|but|instead|only|fake|lie[sd]?|disguised?|nobody|no one|none|"
    r"in fact|revealed?|hidden|hides?|believes?|knows)\b|其实|原来|以为|谁也不知道|竟然|"
    r"根本|却|并不|并非|不是|没有|从没|"
    r"从未|假|秘密|真相|真正|隐藏",
    re.IGNORECASE,
)

PLOT_HELP = {
    "en": (
        "A writer is stuck. Each answer lists distinct ways the story could go next.\n\n"
        "Story so far: Mira, a young locksmith, has been hired to open a safe in a mansion. "
        "Inside she finds a letter addressed to her, dated twenty years ago.\n"
        "Problem: how does she find out who wrote the letter?\n"
        "Ways forward that solve it:\n"
        "1. The letter's handwriting matches the notes her late mother left in recipe books.\n"
        "2. The butler recognises the letter's wax seal and lies about it, so she follows him "
        "at night.\n"
        "3. The letter is dated the day a fire destroyed the town archive; she visits the "
        "one survivor of that fire to learn who wrote it.\n\n"
        "Story so far: {story}\n"
        "Problem: {conflict}\n"
        "Ways forward that solve it:\n"
    ),
    "zh": (
        "作者卡住了。每个回答列出故事接下来可以发展的几种不同方向。\n\n"
        "故事梗概：年轻的锁匠米拉受雇打开一座宅邸里的保险箱，却在里面发现一封写给她的信，"
        "日期是二十年前。\n"
        "难题：她怎样查出写信的人？\n"
        "解决难题的发展方向：\n"
        "1. 信上的笔迹和她已故母亲留在食谱上的字一模一样，写信的人原来是母亲。\n"
        "2. 管家认出了信上的火漆印却撒了谎，于是她夜里跟踪他，查出写信的人。\n"
        "3. 信上的日期正是镇档案馆失火那天，她去找那场火灾唯一的幸存者打听写信的人。\n\n"
        "故事梗概：{story}\n"
        "难题：{conflict}\n"
        "解决难题的发展方向：\n"
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


ItemCheck = Callable[[str], str | None]  # None for an item worth keeping, else why not


@dataclass
class IdeaList:
    """Distinct ideas gathered over several bounded calls; near-duplicates, and items that
    fail `check` (off-topic, not of the kind asked for), are dropped and drawn again."""

    count: int
    avoid: list[str]  # the few-shot examples' ideas: never returned as the user's
    ideas: list[str]
    check: ItemCheck | None = None
    refused: int = 0  # items dropped by `check`
    opening: Callable[[str], str] | None = None  # items that begin alike are one item twice

    def offer(self, idea: str) -> bool:
        if len(self.ideas) >= self.count:
            return False
        if any(similarity(idea, other) > NEAR_DUPLICATE for other in self.ideas + self.avoid):
            return False
        if self.opening is not None and self.opening(idea) in map(self.opening, self.ideas):
            return False
        if self.check is not None and self.check(idea) is not None:
            self.refused += 1
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
    check: ItemCheck | None = None,
    openers: Sequence[str] = (),
    opening: Callable[[str], str] | None = None,
    trim: Callable[[str], str] | None = None,
) -> list[str]:
    """Exactly `count` distinct items (`start` first) continuing the numbered list that
    `template` opens, each passing `check` and, with `opening`, beginning unlike the items
    before it; `trim` tidies each item first. With `openers`, each call writes one item that
    begins with the next of them (a frame the model completes, e.g. a twist's "it turns out
    that")."""
    found = IdeaList(count, list_items(template), list(start), check, opening=opening)
    for attempt in range(attempts):
        shown = "".join(f"{i}. {idea}\n" for i, idea in enumerate(found.ideas, 1))
        opener = openers[attempt % len(openers)] if openers else ""
        head = f"{len(found.ideas) + 1}." + (f" {opener}" if opener else "")
        prompt = template + shown + head
        budget = per_item_tokens * (1 if openers else count - len(found.ideas) + 1)
        heat = min(writer.params.temperature + 0.1 * attempt, 1.1)  # hotter: more garbage
        text = writer.write(
            prompt,
            budget,
            stop=["\n\n", "\nTopic:", "\n主题：", "\nStory so far:", "\n故事梗概："],
            clean_end=False,
            temperature=heat if writer.params.temperature > 0 else 0.0,
        )
        joint = " " if opener and not HAN.search(opener) else ""  # the text comes stripped
        for item in list_items(head + joint + text)[: 1 if openers else None]:
            item = trim(item) if trim is not None else item
            if item and found.offer(item):
                writer.show(f"{len(found.ideas)}. {item}\n")
        if len(found.ideas) == count:
            return found.ideas
    off = (
        f" ({found.refused} more were off the topic or not of the kind asked)"
        if found.refused
        else ""
    )
    raise StudioError(
        f"found only {len(found.ideas)} distinct ideas of the {count} asked for in {attempts} "
        f"attempts{off if found.refused else ''}; ask for fewer, or raise --temperature"
    )


def item_check(lang: Lang, topic: str, kind: str = "", example: str = "") -> ItemCheck:
    """The test every brainstorm or plot-help item passes: it names a keyword of `topic`
    (the same keyword test as a story's beats) and none of the few-shot `example`'s own
    topic, and has the shape of `kind` (a plot twist is a sentence; a title is short)."""
    anchors = keywords(topic, lang)
    borrowed = keywords(example, lang) - anchors
    sentence = bool(SENTENCE_KINDS.search(kind.lower()))
    short = bool(SHORT_KINDS.search(kind.lower()))

    def check(item: str) -> str | None:
        length = size(item, lang)
        if sentence and length < (8 if lang == "zh" else 5):
            return f"not a sentence, as {kind} are"
        if sentence and length > (60 if lang == "zh" else 35):
            return f"rambles on, longer than {kind} are"
        if short and length > (15 if lang == "zh" else 8):
            return f"too long for {kind}"
        if TWIST_KINDS.search(kind.lower()) and not TWIST.search(item):
            return "turns nothing around, as a twist does"
        plain = re.sub(r"ies\b", "y", item)  # cities: city
        if anchors and not short_names(kind) and not mentions(plain, anchors, lang):
            return "off the topic (names none of its words)"
        if mentions(plain, borrowed, lang):
            return "about the example's topic, not the one asked"
        return None

    return check


def title_opening(lang: Lang) -> Callable[[str], str]:
    """How a title begins: its first two words (English) or three Han characters. Four
    titles that begin alike ("Sea-faring people: …", "Sea-faring women: …"; "100个世界，…")
    read as one title four times."""
    if lang == "zh":
        return lambda item: "".join(HAN.findall(item)[:3])
    return lambda item: " ".join(re.findall(r"[\w'’-]+", item.lower())[:2])


def trim_title(item: str) -> str:
    return TITLE_END.sub("", item)


def short_names(kind: str) -> bool:
    """Names of people or places need not repeat the topic's words."""
    return bool(re.search(r"\bnames?\b|名字|人名|地名", kind.lower()))


def brainstorm(writer: Writer, topic: str, kind: str = "ideas", count: int = 8) -> Work:
    """`count` distinct ideas of a kind (titles, names, plot twists, settings, concepts),
    each on the topic and of the kind asked (drawn again when not)."""
    topic, kind = topic.strip(), kind.strip() or "ideas"
    template = BRAINSTORM[writer.lang].format(topic=topic, kind=kind, Kind=kind.capitalize())
    per_item = 36 if SENTENCE_KINDS.search(kind.lower()) else 24
    topics = re.findall(r"^(?:Topic: |主题：)(.+)$", BRAINSTORM[writer.lang], re.MULTILINE)
    check = item_check(writer.lang, topic, kind, " ".join(t for t in topics if "{" not in t))
    openers = TWIST_OPENERS[writer.lang] if TWIST_KINDS.search(kind.lower()) else []
    titles = bool(SHORT_KINDS.search(kind.lower()))
    ideas = distinct_list(
        writer, template, count, per_item, 3 + 3 * count, check=check, openers=openers,
        opening=title_opening(writer.lang) if titles else None,
        trim=trim_title if titles else None,
    )  # fmt: skip
    title = f"{kind.capitalize()}: {topic}"
    return Work("brainstorm", title, writer.lang, "\n".join(ideas), ideas)


def plot_help(writer: Writer, story: str, conflict: str, count: int = 4) -> Work:
    """Several distinct ways forward for a story that is stuck, each about `conflict`."""
    story_text = " ".join(story.split())[-1500:]  # the most recent part matters most
    template = PLOT_HELP[writer.lang].format(story=story_text, conflict=conflict.strip())
    told = re.findall(r"^(?:Problem: |难题：)(.+)$", PLOT_HELP[writer.lang], re.MULTILINE)
    check = item_check(writer.lang, conflict, "plot", " ".join(t for t in told if "{" not in t))
    ways = distinct_list(writer, template, count, 60, 3 + 2 * count, check=check)
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
# A style sample is shown apart from the passage, before the examples, and named in the
# Style line: inside that line the model took it for the text and handed it back.
SAMPLE_STYLE = {
    "en": ("A sample of the style to write in:\n{sample}\n\n", "the style of the sample above"),
    "zh": ("要模仿的文风范文：\n{sample}\n\n", "上面范文的文风"),
}
REWRITE_ATTEMPTS = 5  # draws per version asked for
LENGTH_RANGE = (0.4, 3.5)  # a rewrite's length over the original's


LOST = "does not keep the passage's meaning (too few of its words)"


def keeps_meaning(version: str, original: str, lang: Lang) -> bool:
    """Whether `version` keeps enough of `original`'s content words: a quarter of them (a
    sixth of Chinese character pairs, half of which straddle two words), two at least."""
    words = keywords(original, lang)
    share = 6 if lang == "zh" else 4
    return not words or len(mentions(version, words, lang)) >= max(
        min(2, len(words)), len(words) / share
    )


def rewrite_fault(version: str, original: str, lang: Lang, sample: str = "") -> str | None:
    """None when `version` is `original` rewritten: it keeps its content words (a quarter
    of them, a sixth of Chinese character pairs, and two at least), a length within
    `LENGTH_RANGE`, is not the original as it was, and takes no more words from the style
    `sample` than from the original; else why not."""
    words = keywords(original, lang)
    kept = mentions(version, words, lang)
    if not keeps_meaning(version, original, lang):
        return LOST
    ratio = len(units(version)) / max(len(units(original)), 1)
    if not LENGTH_RANGE[0] <= ratio <= LENGTH_RANGE[1]:
        return f"is {ratio:.1f} times the passage's length"
    if similarity(version, original) > 0.85:
        return "is the passage itself"
    lent = mentions(version, keywords(sample, lang) - words, lang) if sample else set()
    if len(lent) > max(len(kept), 2):
        return "retells the style sample instead of the passage"
    return None


def rewrite(
    writer: Writer,
    text: str,
    style: str = "",
    sample: str = "",
    alternatives: int = 1,
    max_new_tokens: int | None = None,
) -> Work:
    """`text` in a named style, or in the style of `sample`; several distinct versions,
    each checked to be the passage rewritten (`rewrite_fault`) and drawn again when not.
    Only kept versions are shown."""
    if not style and not sample:
        raise StudioError("rewrite needs a --style (e.g. 'noir') or a --sample of the style")
    lang = writer.lang
    flat = " ".join(text.split())
    shown_sample, described = "", style
    if sample:
        lead, named = SAMPLE_STYLE[lang]
        shown_sample = lead.format(sample=" ".join(sample.split())[:600])
        described = style or named
    prompt = shown_sample + REWRITE[lang].format(text=flat, style=described)
    budget = max_new_tokens or max(64, 2 * len(writer.engine.tokenize(flat)))
    labels = ["Original:", "Style:", "Rewritten:", "原文：", "风格：", "改写："]
    labels += ["A sample", "要模仿"]
    examples = REWRITE[lang].split("{text}")[0]
    # The examples' word runs, and the passage's own of four words (five characters): a
    # rewrite says it anew rather than handing the passage back.
    avoid_regex = [echo_pattern(examples, flat), echo_pattern(flat, words=4, chars=5)]
    if sample:  # the sample's own word runs (five words, six characters) are not the rewrite
        avoid_regex.append(echo_pattern(sample, flat, words=5, chars=6))
    # After a draw that lost the passage, the next is steered to keep its words, raised
    # until enough are written (`FavourUnsaid`); a free draw comes first, as steered ones
    # read stiffer ("It was late and home and we walked home.").
    steered: list[LogitsProcessor] = []
    if writer.steers:
        steered.append(
            FavourUnsaid(writer.engine.tokenizer, subject_words(flat, lang), lang,
                         partial(keeps_meaning, original=flat, lang=lang), bias=2.5)
        )  # fmt: skip
    versions: list[str] = []
    why = "wrote nothing"
    rules: list[LogitsProcessor] = []
    for _ in range(alternatives * REWRITE_ATTEMPTS):
        # One line, as the passage is flattened to one ("…as soon as possible.\nThe train
        # arrived, so we went home." was one version of two lines)
        version = writer.write(prompt, budget, stop=["\n"],
                               labels=labels, avoid=example_phrases(examples),
                               avoid_regex=avoid_regex, constraints=rules)  # fmt: skip
        if lang == "en":  # a sentence begins with a capital ("the owner was a smart guy")
            version = version[:1].upper() + version[1:]
        fault = rewrite_fault(version, flat, lang, sample) if version else "is empty"
        if fault is None and any(similarity(version, v) > 0.8 for v in versions):
            fault = "repeats an earlier version"
        rules = steered if fault == LOST else []
        if fault is not None:
            why = fault
            continue
        writer.show(("\n\n" if versions else "") + version)
        versions.append(version)
        if len(versions) == alternatives:
            break
    if len(versions) < alternatives:
        raise StudioError(
            f"only {len(versions)} of {alternatives} rewrites kept the passage's meaning in "
            f"{alternatives * REWRITE_ATTEMPTS} tries (the last {why}); try another --seed"
        )
    title = f"Rewrite ({style or 'after a sample'})"
    return Work("rewrite", title, lang, "\n\n".join(versions), versions)


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


# The example song's own images: a song on another topic that borrows them is the example
# again (banned unless the user's topic or title names them).
IMAGES = {
    "en": ["paper boat", "river", "willow", "honey", "winter coat", "old lights", "secrets"],
    "zh": ["纸船", "河水", "河面", "河边", "柳树", "蜂蜜", "灯火", "对岸", "秘密"],
}
LYRICS_ATTEMPTS = 4  # draws per section
STRAYED = "strayed from the topic"
SAID_AGAIN = "said a line again"
# Faults a section is still kept with after its last draw (the song around it names the
# topic; a line said again is poor, not broken): one that loops or has no lines never is.
SOFT_FAULTS = (STRAYED, SAID_AGAIN)


def lyric_fault(
    lines: list[str], most: int, anchors: set[str], lang: Lang, earlier: Sequence[str] = ()
) -> str | None:
    """None for a section worth keeping, else why not: too few lines, a line that loops on
    a phrase, a line said twice in a row or said in an `earlier` section (seen: "走着火车\n走着
    火车", "在城市里\n在城市里", a first chorus that was the first verse again), or no word
    of the topic anywhere in it."""
    if len(lines) < min(2, most):
        return "wrote too few lines"
    looping = next((p for line in lines if (p := phrase_loop(line))), None)
    if looping:
        return f"looped on {looping!r}"
    keys = [normal(line) for line in lines]
    before = {normal(line) for line in earlier}
    if any(a == b for a, b in itertools.pairwise(keys)) or before & set(keys):
        return SAID_AGAIN
    if anchors and not mentions("\n".join(lines), anchors, lang):
        return STRAYED
    return None


def lyrics(writer: Writer, topic: str, title: str = "") -> Work:
    """Verses, a chorus that repeats word for word, and a bridge, each labelled; a section
    that loops on a phrase, strays from the topic or borrows the example's images is drawn
    again (bounded)."""
    lang: Lang = writer.lang
    title = title.strip() or topic.strip().title()
    song = LYRICS[lang].format(title=title, topic=topic.strip())
    written: dict[str, list[str]] = {}
    parts: list[str] = []
    example = LYRICS[lang].split("{title}")[0]
    given = f"{title} {topic}"
    images = [i for i in IMAGES[lang] if i not in given.lower()]
    avoid_regex = [echo_pattern(example, given)]
    if images:
        avoid_regex.append(r"(?i)(?<![a-z])(?:" + "|".join(map(re.escape, images)) + ")")
    anchors = keywords(given, lang)
    for name in SECTIONS[lang]:
        header = f"[{name}]\n"
        writer.show(header)
        if name not in written:
            most = LINES_PER_SECTION.get(name, 4)
            why, stray = "wrote no lines", None
            sung = [line for lines in written.values() for line in lines]
            for _ in range(LYRICS_ATTEMPTS):
                text = writer.write(
                    song + header, 20 * most, stop=["\n[", "\n\n", "\nTitle:", "\n标题："],
                    clean_end=False, avoid=example_phrases(example), avoid_regex=avoid_regex,
                )  # fmt: skip
                lines = _lines(tidy(text, clean_end=False), most)
                fault = lyric_fault(lines, most, anchors, lang, sung)
                if fault is None:
                    break
                why = fault
                if fault in SOFT_FAULTS:
                    stray = stray or lines
            else:
                # A section with only a soft fault is kept after the last try.
                if stray is None:
                    raise StudioError(
                        f"the {name} {why} in {LYRICS_ATTEMPTS} tries; try another --seed"
                    )
                lines = stray
            written[name] = lines
        body = "\n".join(written[name])
        writer.show(body + "\n\n")
        song += header + body + "\n\n"
        parts.append(header + body)
    return Work("lyrics", title, lang, "\n\n".join(parts), parts)
