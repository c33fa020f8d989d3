"""Checks on what a small model writes for a story plan and its chapters.

Each `check_*` returns None for a field worth keeping, else a short reason (what a retry
is for, and what the final error names). `chapter_fit` scores a chapter candidate so the
one that follows its beat best is kept. English counts words; Chinese counts characters
and matches keywords as character pairs (Chinese has no spaces to split words on).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from functools import cache
from importlib import resources

from rapidfuzz import fuzz, process

from musegpt.studio.text import (
    HAN,
    SENTENCE_END,
    Lang,
    distinct_n,
    echo_pattern,
    phrase_loop,
    similarity,
)

STOPWORD_TEXT = """a an the and or but of to in on at by for with from into onto over under
about after before who whom whose which that this these those what when where why how is are
was were be been being has have had do does did not no nor so as if than then there their they
them he she it its his her him we us our you your i me my one two can could would should will
shall may might must all any some each every very just only also up down out off again once
story tale"""
STOPWORDS = frozenset(STOPWORD_TEXT.split())
# Characters that make a Chinese character pair a grammar word rather than a keyword.
HAN_FUNCTION = frozenset("的了是在一个有和与他她它们这那也就都而着过把被从向对给让很又")
NEAR_DUPLICATE = 0.6  # character-trigram similarity above which two beats say the same
LIST_ITEM = re.compile(r"^\s*(?:\d+|[一二三四五六七八九十]+)\s*[.、)）]")
NUMBERED = re.compile(r"^\s*[\d一二三四五六七八九十]+\s*[.、:：)）]?\s*$")
HEADING = re.compile(
    r"^\s*(?:#+\s*)?(?:第\s*[0-9一二三四五六七八九十百零两]+\s*[章节回幕部]|"
    r"(?:chapter|part|scene)\s*\d+|(?:chapter|part|scene)\s+(?:[ivxlc]+|one|two|three|four|"
    r"five|six|seven|eight|nine|ten)\b|【[^】]*】\s*$|"  # "Chapter2" too (seen)
    # A web page's heading, and a numbered section, alone or titled (seen: "<h2>熊巴爱机器人
    # 的经历</h2>", "<strong>3.2章</strong>", a contents list "14章 他的第一眼 2019.11.23").
    r"<h[1-6]\b|\d+(?:[.．]\d+)*\s*[章节回幕](?:\s|$))",
    re.IGNORECASE,
)
# An HTML tag (Gemma read much of the web): never part of a story's prose.
MARKUP = r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>\n]*)?/?>"
# A web page's note on its pictures or links in brackets (seen: "he heard him say
# something again (see picture below)", five times in one story): never prose.
WEB_NOTE = (
    r"[(（][ \t]*(?:(?i:see (?:the |a )?(?:picture|photo|image|figure|video|below|above|"
    r"link)|pictured|photo(?:graph)? (?:by|credit)|image (?:source|credit)|source:|click)|"
    r"(?:详?见|如)?[上下左右]?图(?=[\d）)])|(?:详?见|如)?[上下左右]图|图片来源|点击)"
)
# A paragraph begun with an ellipsis (seen: "…did this, he thought", "…saw this and said",
# eight paragraphs of one English chapter, after the prompt showed the chapter before from
# inside a sentence so): a chapter's paragraph begins with its own words.
OPENING_ELLIPSIS = r"(?:\A|(?<=\n))[ \t\u3000]*(?:…|\.\.\.)"
# A worksheet's blank to fill in (seen: "Hannah Baily woke up at ______.", eight in one
# English chapter; "…on the weekend of January ______ (date) . … for $ ◻"): never prose.
BLANK = r"_{2,}|[◻□☐▢]|[(（]date[)）]"
# Three English words in a row inside a Chinese chapter: the story changing language (seen:
# a Chinese README story whose characters spoke whole English speeches). A brand or a
# name ("iPhone", "OK") is one word and stays.
ENGLISH_RUN = r"[A-Za-z]{2,}(?:[ \t,.'’!?;:…-]+[A-Za-z]+){2}"
SPEAKER = re.compile(r"^\s*[\w\u4e00-\u9fff·]{1,12}\s*[:：]\s*\S")
# A plan's own label inside a field (seen: a synopsis going on "…文风：柔和，平实，平淡。").
PLAN_LABEL = (
    r"(?:前提|标题|背景|文风|人物|梗概|大纲)\s*[:：]|"
    r"\b(?:Premise|Title|Setting|Style|Characters|Synopsis|Outline)\s*:"
)
# The next beat's number inside a beat (seen: "杜鹃，8十岁，勤务。2.彭志敏，八十岁…").
LIST_NUMBER = r"(?:^|[\s。！？!?；;，,：:])\d{1,2}\s*[.、](?!\d)"
# A run said twice in one line (seen: "夜里告别人；夜里告别人", "我们一起上街。 我们一起上街。").
SELF_REPEAT = {
    "zh": r"([\u4e00-\u9fff]{4,}).*?\1",
    "en": r"(?i)\b([a-z']+(?:\W+[a-z']+){3})\b.*?\b\1\b",
}
# A title that is only a number or an ordinal (seen: "第一个").
ORDINAL_TITLE = {
    "zh": re.compile(r"^\W*第?[0-9一二三四五六七八九十百两]+[个次章节回部幕天号]?\W*$"),
    "en": re.compile(
        r"(?i)^\W*(?:the\s+)?(?:first|second|third|fourth|fifth|last|next|\d+(?:st|nd|rd|th)?)"
        r"(?:\s+(?:one|part|chapter|time))?\W*$"
    ),
}
# Sentences about the writing rather than in it: a base model's comments after a story.
CHATTER = {
    # Only what a character's line does not say: "I love you" and "the end of the road"
    # are a story's (both were cut, and banned while decoding, until the seventeenth session).
    "en": re.compile(
        r"\b(?:overall,|i (?:really )?(?:like|liked|love|loved|enjoy|enjoyed) (?:this (?:one|"
        r"story|chapter|book|tale|piece)|the (?:story|chapter|book|ending)|(?:reading|writing) "
        r"(?:this|it))\b|i hope you (?:enjoy|enjoyed|like|liked) (?:this|the story|reading)\b|"
        r"(?:good|great|nice|short|wonderful) (?:story|chapter|read)|"
        r"(?:this|the next|in this|the first|the last) chapter\b|(?:this|the) story (?:is|was)\b|"
        # Seen in first-person chapters: "I love that story.", "What I liked about that book
        # is that it was very different than other books we've read in school".
        r"i (?:really )?(?:like|liked|love|loved|enjoy|enjoyed) (?:that|his|her|their) "
        r"(?:story|chapter|book|tale)\b|what i (?:liked|loved|enjoyed) about\b|"
        r"the (?:author|reader|writer)s?\b|thanks? (?:you )?for reading|"
        r"(?:^|(?<=\n)|(?<=[.!?\"”] ))the end[.!]|to be continued|word count|writing prompt|"
        # Seen mid-chapter: "Rani got a job at Rik's shop, and that was the end of the story."
        # and "At the end of chapter one, Rani and Rik went to see a play."
        r"the end of (?:the|this|my|our) (?:story|tale|chapter)|"
        r"chapter (?:one|two|three|four|five|six|seven|eight|nine|ten)\b)"
        # A byline (seen: "Keith Akins (C) 2010 by Christopher K. M. Lee" opening a chapter).
        r"|\(c\)\s*\d{4}|©|\bcopyright\b|\ball rights reserved",
        re.IGNORECASE,
    ),
    "zh": re.compile(
        r"这个故事|这篇|本章|这一章|下一章|上一章|作者|读者|谢谢阅读|全文完|未完待续|写得|"
        r"（完）|\(完\)|本文|这部小说|版权所有|©"
    ),
}


# A trailer for the next instalment in the narrator's voice (seen: "Next week we will see
# Reuben…"): a sentence so begun, ending without a closing quote. A character's line is
# kept: one begun with a quote is no sentence start here, and one cut from the middle of
# a speech (as `sentences` cuts it) ends with the quote. While a chapter is decoded, such a
# sentence inside a speech is steered off before its closing quote shows it is one.
TRAILER = (
    r"(?:(?<![^\n])|(?<=[.!?…])|(?<=[.!?…][\"”’]))[ \t]*"  # a line's or a sentence's start
    r"(?:(?:next (?:week|time|episode|chapter|instal?ment)|in (?:the|our) next "
    r"(?:chapter|episode|part|instal?ment|story)),? (?:we|you)(?:'ll|’ll| will| shall|"
    r" are going to| get to) (?:see|find out|learn|meet|discover|follow|hear|read)\b|"
    r"(?:let's|let us|we'll|we will) (?:see|find out) what happens (?:next|to)\b|"
    r"stay tuned|(?:tune in|join us) (?:again )?next (?:week|time))"
    r"[^\"“”\n]*?(?:[.!?…](?![\"”’])|\Z)"
)


# A narrator's aside to the reader: the story summed up, a moral, a question put to the
# reader (seen: "这就是他们的故事吧？", "所以我们在谈恋爱的时候，要了解这个年龄的差异").
# Only forms a character's line rarely takes: "你知道吗？" is dialogue, kept.
ASIDE = {
    "en": re.compile(
        r"\b(?:dear reader|as you (?:can|might|may) (?:imagine|guess|see)|"
        r"you (?:might|may) (?:ask|wonder)|that'?s (?:his|her|their) (?:whole )?story|"
        r"(?:and )?so (?:ends|ended) (?:the|this|our|his|her|their)|the moral (?:of|is)\b|"
        # A critic's talk (seen: "Scarlett is one of the characters in \"The Bread of Life\"").
        r"(?:the|a) main character\b|one of the characters\b|(?:is|are|was) portrayed as\b|"
        r"in (?:the|this) novel\b)|" + TRAILER,
        re.IGNORECASE,
    ),
    "zh": re.compile(
        r"这(?:就)?是[^。！？\n“”]{0,12}故事|故事(?:吧|呢|啊|呀|就这样|到这里|到此)|"
        r"(?:我们|大家)(?:都|也)?(?:知道|明白)(?:吗|吧|，)|众所周知|总而言之|由此可见|"
        r"换句话说|不是吗[？?]|说到底|可想而知|不难看出|亲爱的读者|各位(?:读者|朋友|看官)|"
        r"主人公|这个角色|所以(?:我们|人们)(?:要|应该|在)|(?:我们|人们)在[^“”\n。！？]{0,12}的时候[，,]?(?:要|应该)"
    ),
}


# A line begun as a list item inside a chapter (seen: "(1) 读了《纽约时报》…", "K 1. \"I don't
# want…\"", six lines "一、黎春秋在背上吃饼的时候…" to "六、…"): list debris, not prose.
LIST_LINE = (
    r"(?m)^[ \t]*(?:[(（](?:\d{1,2}|[一二三四五六七八九十]{1,2})[)）]|"
    r"[A-Za-z]?[ \t]*\d{1,2}[.、](?!\d)|[一二三四五六七八九十]{1,2}、)"
)
LIST_MARK = re.compile(LIST_LINE + r"[ \t]*")
# A bracketed number inside a line: list or footnote debris, not prose (seen: a Chinese
# chapter of "她知道他是喜欢的人。（3）" lines).
# (Chinese numerals too: "(一) 他的话对她来说是… (二)他回答说…" ended a chapter.)
NUMBER_MARK = r"[(（](?:[0-9０-９]{1,2}|[一二三四五六七八九十]{1,2})[)）]"
# A noun numbered like a list's item in English prose (seen: "the robot 1", "the robot 2",
# "went to the front 3, and then to the back 3" in the README's story, seed 12; 'The house
# 3" Ivy said'); "the kitchen 10 minutes after" goes on and is prose.
NUMBERED_NOUN = r"\b[Tt]he (?:[a-z]+ )?\d{1,2}(?=\s*[,.;:!?\"”])"
# Words said twice over, and a name twice in one list: slips, not prose (seen: "Reuben said
# Reuben said", "Ruben, Mordel, and Ruben were in a forest"); "very very" is one word, and
# "again and again and again" is said so on purpose.
SAID_TWICE = r"(?i)\b((?!(?:and|or)\b)\w+(?: (?!(?:and|or)\b)\w+){1,3}) \1\b"
SAY_VERBS = "said|asked|replied|answered|cried|shouted|whispered|added|called|continued|told"
TAG_NAME = r"[A-Z][\w'.-]*(?: [A-Z][\w'.-]*)?"  # a name, of one or two words ("Mr. Hale")
# A speech tag after a line of speech, ended with a colon before the next (on the same line
# or the next: '," said Reuben: "I', '," he continued:\n\n"when'; group 1 the tag, group 2
# the next speech's first letter).
TAG_COLON = (
    rf'(?<=,")( (?:{SAY_VERBS}) {TAG_NAME}|(?: {TAG_NAME}| he| she| they| we| I| it) '
    rf'(?:{SAY_VERBS})):\s*"(\w)'
)
# A speech closed with a full stop, its tag after it capitalised as a new sentence: '"…worth
# it." She said.', '"…" Tannia said as she glanced back' (8 in 24 chapters); group 1 the
# mark, 2 the speaker, 3 the verb and to whom. "She said that was wrong" is a sentence.
TAG_AFTER_STOP = (
    rf'([.!?])" (He|She|They|We|I|It|{TAG_NAME}) ((?:{SAY_VERBS})'
    rf"(?: (?:to )?(?:him|her|them|me|us|{TAG_NAME}))?)(?=[.,]|\s+(?:as|with|and)\b)"
)
LISTED_TWICE = r"\b([A-Z]\w+), (?:[A-Z]\w+,? )*(?:and )?\1\b"
# A space between Chinese characters or marks: none in Chinese prose (seen: "我想和你 结婚。",
# "为什么会这样？ ”她笑起来。 “如果…"); a space beside a Latin word or a digit stays.
ZH_MARKS = "\u4e00-\u9fff，。！？；：、…“”"
ZH_SPACE = rf"(?<=[{ZH_MARKS}])[ \t]+(?=[{ZH_MARKS}])"
# 第 before anything but a number: a heading the bans broke off, as debris (seen: a
# Chinese chapter whose every line began "第- 邓思…", once "第二章" was banned); 次第, 门第,
# 及第… are words.
BROKEN_ORDINAL = r"(?<![次府门落及宅科])第[^0-9０-９一二三四五六七八九十百千万零两几]"
# A line broken after a comma: a sentence set out clause by clause like verse (seen:
# "乔丹的年龄与男人年龄的关系，\n\n在很多人的生活中，他们都接触过，\n\n…").
COMMA_BREAK = r"[,，、][ \t]*\n"


# A style's words, not a title's (seen: the title "第一人称").
STYLE_WORDS = {
    "zh": r"人称|过去时|现在时|将来时|口语化|书面化",
    "en": r"(?i)\b(?:first|second|third)[ -]person\b|\b(?:past|present|future) tense\b",
}
# Chinese speech after 说： without its quotation marks (seen: "她说：我喜欢你！"): banned in a
# chapter, and quoted in cleaning (`narrate`). 想 is left out: a thought goes unquoted.
UNQUOTED_SPEECH = r"(?<=[说道问答喊叫])[：:][ \t]*[^“\"「\s]"
# A run of words (English: three to six) or Han characters (three to eight) said again
# at once, with nothing between (seen: "I'm not going to I'm not going to go to the sea",
# "他只来过一次过一次"); said again after a comma it may be a character's stress ("It won't
# work, it won't work") and is left.
STUTTER_RUN: dict[Lang, str] = {
    "en": r"(?i)\b((?:[\w'’]+ ){2,5}[\w'’]+) \1\b",
    "zh": r"((?:[\u4e00-\u9fff]){3,8})\1",
}
# English speech after "said:" without its quotation marks (seen: "He said: You can't have
# it. It's a cold case murder…", the narration and the speech then run together): the colon
# is taken back and the model quotes or goes on otherwise.
SPEECH_VERBS = ("said", "says", "asked", "asks", "replied", "answered", "shouted", "cried")
UNQUOTED_SPEECH_EN = (
    "(?:" + "|".join(rf"(?<=\b{v})" for v in SPEECH_VERBS) + r")[ \t]*:[ \t]*[A-Za-z]"
)
QUOTE_SPEECH = re.compile(r"([说道问答喊叫])[：:][ \t]*([^“\"「\s][^\n]*?(?:[。！？!?…]+|$))")
# A Chinese name of three characters or more miswritten after its first two (seen: 黎春秋
# as 黎春性 and 黎春子 ten times in one story, 杜子龙 as 杜子的) or cut there: the pair
# then goes on only as one of the cast's names does. A pair ending in 小, 大, 老 or 阿 is
# left alone: 王小姐 and 彭大哥 are ways to address 王小明 and 彭大林.
ADDRESS_PREFIXES = "小大老阿"


def name_slips(names: Iterable[str]) -> list[str]:
    """Patterns for `names`' Chinese slips: a name's first two characters followed by
    anything but the next character of a name of the cast (a space between them too:
    with "黎春性" banned, the model wrote "黎春 性", then "黎春、黎春。")."""
    thirds: dict[str, set[str]] = {}
    for name in names:
        if len(name) >= 3 and HAN_RUN.fullmatch(name) and name[1] not in ADDRESS_PREFIXES:
            thirds.setdefault(name[:2], set()).add(name[2])
    return [
        f"(?<={pair})[ \\t]*[^{''.join(sorted(ends))} \\t]" for pair, ends in sorted(thirds.items())
    ]


def normal(text: str) -> str:
    return re.sub(r"\W+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def keywords(text: str, lang: Lang) -> set[str]:
    """Content words of `text` (English: lower-case words of 3+ letters, not grammar words;
    Chinese: pairs of adjacent Han characters without a grammar character)."""
    if lang == "zh":
        pairs: set[str] = set()
        for run in re.findall(r"[\u4e00-\u9fff]+", text):
            pairs |= {run[i : i + 2] for i in range(len(run) - 1)}
            # A one-character noun after a grammar character ends a phrase: 害怕火的龙 → 龙.
            if run[-1] not in HAN_FUNCTION and (len(run) == 1 or run[-2] in HAN_FUNCTION):
                pairs.add(run[-1])
        return {p for p in pairs if not set(p) & HAN_FUNCTION}
    found = re.findall(r"[a-z][a-z'-]+", text.lower())
    words = [re.sub(r"'s$", "", w).strip("'-") for w in found]  # the key's: key
    return {w for w in words if len(w) >= 3 and w not in STOPWORDS}


# jieba's parts of speech for what a sentence is about: nouns (n, ns, nz…, not nr: a name),
# places (s), verbal and adjectival nouns (vn, an: 幸福); not verbs (a nudged 回到 began
# every paragraph of a chapter: "周大海回到家…周大海回到这天…"), nor 这下, 已经, 起来.
THING_TAGS = re.compile(r"^(?:n(?!r)|s$|vn|an)")
LONGEST_WORD = 4


@cache
def word_tags() -> dict[str, str]:
    """jieba's dictionary as word -> part of speech, its words of two characters or more:
    common words (孙子, 黎明, 机器人) and well-known people and brands (孙悟空, 乔布斯); read
    once for both its uses (what a sentence is about, and names that are no made-up names)."""
    text = (resources.files("jieba") / "dict.txt").read_text(encoding="utf-8")
    tags = {}
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if len(word) >= 2:
            tags[word] = rest.rpartition(" ")[2]
    return tags


def things(text: str, lang: Lang) -> set[str]:
    """What `text` is about: English, its keywords; Chinese, the nouns and places of
    its words (longest dictionary match; the character pairs of `keywords` hold 这下, 就笑)."""
    if lang != "zh":
        return keywords(text, lang)
    return {word for _, word, tag in dictionary_words(text) if THING_TAGS.match(tag)}


def dictionary_words(text: str) -> Iterator[tuple[int, str, str]]:
    """`text`'s Chinese words of two characters or more, where each begins and its part of
    speech, by longest match against jieba's dictionary."""
    tags = word_tags()
    for match in re.finditer(r"[\u4e00-\u9fff]+", text):
        run, at = match.group(), 0
        while at < len(run):
            size = next(
                (n for n in range(LONGEST_WORD, 1, -1) if run[at : at + n] in tags), 1
            )  # fmt: skip
            if size > 1:
                yield match.start() + at, run[at : at + size], tags[run[at : at + size]]
            at += size


def subject_words(text: str, lang: Lang) -> set[str]:
    """The words a subject is made of, each to be named (English: its keywords). Chinese:
    its dictionary words without a grammar character (寂静, 城市, 最后, 面包店), and where no
    dictionary word stands, `keywords`' pairs and last nouns (雨夜); not every pair of
    characters, which asked for 静城, 市里 and 家面 too and drew the subject recited whole."""
    if lang != "zh":
        return keywords(text, lang)
    words: set[str] = set()
    covered: set[int] = set()
    for at, word, _ in dictionary_words(text):
        covered |= set(range(at, at + len(word)))
        if not set(word) & HAN_FUNCTION:
            words.add(word)
    for key in keywords(text, lang):
        spans = [range(m.start(), m.start() + len(key)) for m in re.finditer(key, text)]
        if any(not set(span) & covered for span in spans):
            words.add(key)
    return words


def stem(word: str) -> str:
    """A crude English stem (robot/robots, discover/discovers/discovered share one)."""
    return word[:5] if len(word) > 5 else word.rstrip("s")


def mentions(text: str, words: Iterable[str], lang: Lang) -> set[str]:
    """The `words` that `text` contains (English: by stem, so inflections count)."""
    if lang == "zh":
        return {w for w in words if w in text}
    found = {stem(w) for w in keywords(text, "en")}
    return {w for w in words if stem(w) in found}


def says_any(words: Collection[str], lang: Lang, text: str) -> bool:
    """Whether `text` names one of `words` (argument order for `functools.partial`)."""
    return bool(mentions(text, words, lang))


def size(text: str, lang: Lang) -> int:
    """Words (English) or Han characters (Chinese)."""
    return len(HAN.findall(text)) if lang == "zh" else len(text.split())


def is_sentence(text: str, lang: Lang) -> bool:
    return size(text, lang) >= (8 if lang == "zh" else 4) and not NUMBERED.match(text)


# A full stop or semicolon anywhere in an English title, its end too.
EN_TITLE_STOP = r"[.;]"


def check_title(title: str, premise: str, lang: Lang, example_title: str) -> str | None:
    key, whole = normal(title), normal(premise)
    if not key or NUMBERED.match(title):
        return "the title is empty"
    longest = 14 if lang == "zh" else 12
    if size(title, lang) > longest or (lang == "zh" and not HAN.search(title)):
        return "the title is not a title"
    if re.search(r"[.。;；]\s*\S", title.strip()) or re.search(
        r"[，,；：:！？。]" if lang == "zh" else EN_TITLE_STOP, title
    ):
        return "the title is a sentence, not a title"
    if lang == "zh" and re.search(r"\S\s+\S", title.strip()):
        # Two titles side by side (seen: "爱情的机器人 变相的温柔", "渔夫钓到一条会说话的鱼 钓的鱼")
        return "the title is two titles"
    if SPEAKER.match(title) or re.search(r"[\"“”「」]", title):
        return "the title is a line of dialogue"
    if ORDINAL_TITLE[lang].match(title):
        return "the title is a number, not a title"
    if re.search(STYLE_WORDS[lang], title):
        return "the title is a style, not a title"
    if key == normal(example_title):
        return "the title is the example's"
    if (key in whole and len(key) >= len(whole) / 2) or similarity(key, whole) > NEAR_DUPLICATE:
        return "the title is a piece cut from the premise"
    return None


def fragmented(text: str, lang: Lang, most: int = 1) -> bool:
    """Whether `text` is a string of bare words for sentences: two or more sentences, more
    than `most` of them under five characters (English: two words) or one said twice
    (seen: "爱情。 机器人。 爱情。", "柳春。 蔡嘉。 儿子。 一天都看在她脸上。", "电视局。电视局。
    电台。"). One may be short: "东北小村。女巫是教孩子读书的老师。", "钟匠造钟。钱一站在墙上…".
    """
    # A full stop after a title (Mr. Hale) ends no sentence.
    ends = r"[。！？!?；;][”」’\"]*|(?<!Mr)(?<!Ms)(?<!Dr)(?<!St)(?<!Mrs)\.[”’\"]*(?:\s|$)"
    pieces = [p for p in re.split(ends, text) if size(p, lang)]  # a closing mark is none
    least = 5 if lang == "zh" else 2  # "林小雪哭了。" is a sentence
    if len(pieces) < 2:
        return False
    said = [p.strip().lower() for p in pieces]
    return len(set(said)) < len(said) or sum(size(p, lang) < least for p in pieces) > most


# A person or a speech in a Chinese setting: it tells of someone, not where and when.
ZH_SETTING_FAULT = re.compile(r"[他她我你]|[：:！!？?“”\"]")
# Two of a kind a style names once: a person, a tense (seen: "first person, past tense,
# present tense", "…, first person, past tense, third person omniscient").
ONE_OF = (
    re.compile(r"(?i)\b(?:first|second|third)[ -]person\b"),
    re.compile(r"(?i)\b(?:past|present|future) tense\b"),
)
# An English phrase that ends on a word that needs another after it (seen: the setting
# "The mountainside in the winter of", its markup refused).
DANGLING = re.compile(
    r"(?i)\b(?:of|in|at|on|to|for|from|with|by|into|onto|about|the|a|an|and|or|but|his|her|"
    r"their|its|my|our|your)\W*\Z"
)
# An English word said twice in a row ("and, and and"), "had had" and "that that" aside.
STUTTER = re.compile(r"(?i)\b(?!had\b|that\b)([a-z]+)[\s,]+\1\b")


def repeated_piece(pieces: Sequence[str]) -> int | None:
    """The index of the first of `pieces` (a field's clauses) that an earlier one already
    said, if any (seen: "First person, first person, past tense.", "机器人，女，三十岁，女。")."""
    seen: set[str] = set()
    for i, piece in enumerate(pieces):
        key = piece.strip(" 。.").lower().replace("-", " ")  # "first person, first-person"
        if key in seen:
            return i
        seen.add(key)
    return None


FIELD_CLAUSE = re.compile(r"[^,，、;；。.!?！？]+")  # a plan field's clause, between its marks


def said_again(text: str) -> list[tuple[int, int]]:
    """Where a plan field says something again: the first clause an earlier one said, and
    the second word of an English word written twice in a row (spans, in order)."""
    clauses = [m for m in FIELD_CLAUSE.finditer(text) if m.group().strip(" 。.")]
    found = [(m.end() - len(m.group(1)), m.end()) for m in STUTTER.finditer(text)]
    again = repeated_piece([m.group() for m in clauses])
    if again is not None:
        clause = clauses[again]
        found.append((clause.end() - len(clause.group().lstrip()), clause.end()))
    return sorted(found)


def says_twice(text: str) -> bool:
    """Whether a plan field says a clause twice, or an English word twice in a row."""
    return bool(said_again(text))


def check_phrase(value: str, lang: Lang, example: str, what: str) -> str | None:
    """A setting or a style: a phrase of a few words, not the example's."""
    # A Chinese setting names a time and a place, as the examples' (seen: "1975年秋天，纽约。").
    least = 2 if lang == "en" else (8 if what == "setting" else 4)
    if not least <= size(value, lang) <= (60 if lang == "en" else 90):
        return f"the {what} is not a phrase"
    if lang == "zh" and len(HAN.findall(value)) < len(normal(value).replace(" ", "")) / 2:
        return f"the {what} is not in Chinese"
    if fragmented(value, lang):
        return f"the {what} is a list of bare words"
    if says_twice(value):
        return f"the {what} says a thing twice"
    if any(len(kind.findall(value)) > 1 for kind in ONE_OF):
        return f"the {what} names two persons or two tenses"
    if lang == "zh" and what == "setting" and ZH_SETTING_FAULT.search(value):
        return "the setting tells of someone, not a time and a place"
    if lang == "en" and DANGLING.search(value):
        return f"the {what} stops in the middle"
    if similarity(value, example) > NEAR_DUPLICATE or (
        what == "setting" and borrows(value, example, lang)
    ):
        return f"the {what} is the example's"
    return None


def name_parts(name: str) -> set[str]:
    parts = {p for p in re.split(r"[\s·]+", name) if len(p) >= 2}
    return parts | ({name[1:]} if HAN.search(name) and len(name) >= 3 else set()) | {name}


def is_copied(name: str, example_names: Sequence[str]) -> bool:
    """Whether `name` shares a name (first, last or whole) with one of the example's."""
    return any(name_parts(name) & name_parts(other) for other in example_names)


def check_names(names: Sequence[str], example_names: Sequence[str]) -> str | None:
    """At least two distinct named characters, none of the example's."""
    if len({normal(n) for n in names}) < 2:
        return "the plan names fewer than two characters"
    for name in names:
        if is_copied(name, example_names):
            return f"the character {name!r} is copied from the example"
    return None


def check_description(
    description: str, lang: Lang, others: Sequence[str], premise: str = ""
) -> str | None:
    """A character's own description: a few words, not another character's again (seen:
    three characters all "一个无尽的爱"), nor one with a word changed: no run of four of
    another's words (Chinese: three characters) that the premise lacks (seen: "听见树木的
    女孩，六十岁，自私而无奈" and "听见树木的女孩，六十岁，善良而不强干")."""
    if size(description, lang) < (4 if lang == "zh" else 2):
        return "the character's description is too short"
    if any(similarity(description, other) > NEAR_DUPLICATE for other in others):
        return "the description repeats another character's"
    if others and re.search(description_echo(others, premise), description):
        return "the description copies another character's words"
    return None


def description_echo(others: Sequence[str], premise: str) -> str:
    """A `banned_regex` for a run of four words (Chinese: three characters) of the
    `others`' descriptions that the premise lacks: what `check_description` refuses."""
    return echo_pattern("\n".join(others), premise, words=4, chars=3)


def check_synopsis(
    synopsis: str,
    lang: Lang,
    anchors: Iterable[str],
    example: str,
    premise_words: Collection[str] = (),
    frame: str = "",
) -> str | None:
    """At least one whole sentence that names a character or a premise keyword, and one of
    `premise_words` when they are given (the story must be about its premise). With a
    `frame` (the head the program wrote before the model's `synopsis`), what is named is
    looked for in both, the rest in the model's part only."""
    if not SENTENCE_END.search(synopsis) or size(synopsis, lang) < (10 if lang == "zh" else 6):
        return "the synopsis is not a sentence"
    if SPEAKER.match(synopsis):
        return "the synopsis reads as a line of a script"
    if LIST_ITEM.match(synopsis):
        return "the synopsis begins a list"
    if re.search(PLAN_LABEL, synopsis):
        return "the synopsis runs on into the plan's next field"
    if repeats_itself(synopsis, lang):
        return "the synopsis repeats itself"
    if fragmented(synopsis, lang):
        return "the synopsis is a list of bare words"
    if similarity(synopsis, example) > NEAR_DUPLICATE:
        return "the synopsis is the example's"
    if not mentions(frame + synopsis, anchors, lang):
        return "the synopsis names no character and nothing of the premise"
    if premise_words and not mentions(frame + synopsis, premise_words, lang):
        return "the synopsis says nothing of the premise"
    return None


def repeats_itself(text: str, lang: Lang) -> bool:
    """Whether a short field says the same run twice ("蓝芽的爱人： 蓝芽的爱人：")."""
    n = 3 if lang == "zh" else 2
    return distinct_n([text], n) < 0.8


# A beat numbering itself as a telling (seen, all three beats of a Chinese outline:
# "乔梅和戴蒙发现爱情。这是故事的第二轮。", "…这是一个第三轮的故事。", "…这是最后一次的讲述。").
PLAN_TALK = {
    "en": re.compile(r"(?i)\b(?:the (?:first|second|third|next|last|final) (?:part|round|telling)"
                     r" of (?:the|this|our) story)\b"),
    "zh": re.compile(r"这是[^。！？\n“”]{0,12}(?:讲述|轮)"),
}  # fmt: skip


# A character's line in place of a beat: a colon, an age or a sex as an item of a list
# (seen: "乔纳·格雷发现爱情的机器人：男，1987年毕业，30岁，女。").
DESCRIBED: dict[Lang, re.Pattern[str]] = {
    "zh": re.compile(
        r"[:：]|(?:^|[，、])(?:[0-9]+|[零一二三四五六七八九十]+)岁[，、。]|(?:^|[，、])[男女]人?[，、。]"
    ),
    "en": re.compile(r"[:：]|(?:^|, )(?:aged )?\w+(?:-| )years?(?:-| )old[,.]"),
}


def check_beat(
    beat: str,
    lang: Lang,
    anchors: Iterable[str],
    earlier: Sequence[str],
    premise_words: Collection[str] = (),
) -> str | None:
    """A sentence naming a character or a premise keyword, unlike the beats before it; it
    must name one of `premise_words` when they are given (the first beat: the story starts
    from its premise)."""
    if not is_sentence(beat, lang):
        return "the beat is not a sentence"
    if HEADING.match(beat):
        return "the beat is a heading"
    if SPEAKER.match(beat):
        return "the beat reads as a line of a script"
    if re.search(PLAN_LABEL, beat) or re.search(LIST_NUMBER, beat):
        return "the beat runs on into the plan's next field"
    if DESCRIBED[lang].search(beat):
        return "the beat describes a character instead of telling what happens"
    if re.search(SELF_REPEAT[lang], beat):
        return "the beat says the same words twice"
    if CHATTER[lang].search(beat) or ASIDE[lang].search(beat) or PLAN_TALK[lang].search(beat):
        return "the beat talks about the story instead of telling it"
    if fragmented(beat, lang):
        return "the beat is a list of bare words"
    if not mentions(beat, anchors, lang):
        return "the beat names no character and nothing of the premise"
    if premise_words and not mentions(beat, premise_words, lang):
        return "the first beat says nothing of the premise"
    if any(says_again(beat, other, lang) for other in earlier):
        return "the beat repeats an earlier one"
    return None


def check_step(
    step: str,
    lang: Lang,
    anchors: Iterable[str],
    earlier: Sequence[str],
    premise_words: Collection[str] = (),
) -> str | None:
    """A chapter's step is checked as a beat is: a sentence naming a character, the premise
    or the beat's things, unlike the steps before it (and the example's); the first names
    one of the `premise_words`."""
    reason = check_beat(step, lang, anchors, earlier, premise_words)
    return None if reason is None else reason.replace("beat", "step")


def says_again(text: str, other: str, lang: Lang) -> bool:
    """Whether two short lines say the same thing. Chinese lines are short and a changed
    character moves three trigrams, so they are compared by character pairs, more strictly
    (seen: "机器人追回她的情人", "柯南追回她的情人", "柯南追回他的情人" as three beats)."""
    if lang == "zh":
        return similarity(text, other, n=2) > 0.45
    return similarity(text, other) > NEAR_DUPLICATE


def borrows(text: str, example: str, lang: Lang) -> bool:
    """Whether `text` repeats a run of four of the example's words (Chinese: characters)."""
    n = 4
    pieces = list(normal(text).replace(" ", "")) if lang == "zh" else normal(text).split()
    source = list(normal(example).replace(" ", "")) if lang == "zh" else normal(example).split()
    grams = {tuple(source[i : i + n]) for i in range(len(source) - n + 1)}
    return any(tuple(pieces[i : i + n]) in grams for i in range(len(pieces) - n + 1))


def check_summary(summary: str, lang: Lang, anchors: Iterable[str], example: str) -> str | None:
    """One or two whole sentences of narration naming who did what."""
    reason = check_synopsis(summary, lang, anchors, example)
    if reason:
        return reason.replace("synopsis", "summary")
    if len([s for s in sentences(summary) if s.strip()]) > 2:
        return "the summary is longer than two sentences"
    if re.search(r"[\"“”「」『』]", summary):
        return "the summary quotes dialogue instead of saying what happened"
    if borrows(summary, example, lang):
        return "the summary borrows the example's words"
    if re.search(FIRST_PERSON[lang], summary):
        return "the summary speaks as I or we instead of naming who did what"
    return None


# A style that tells in the first person: its chapters may say "I" outside speech.
FIRST_PERSON_STYLE = re.compile(r"(?i)first[ -]person|第一人称")
# I and we: a summary told by someone inside the chapter (seen: "Hank thought about what he
# should do if I asked him. He wanted to go up with me") is refused, for it names who did
# what or the next chapter is planned on "I"; a third-person chapter's narration says none.
FIRST_PERSON: dict[Lang, str] = {
    "en": r"\b(?:I|[Mm]e|[Mm]y|[Mm]ine|[Ww]e|[Uu]s|[Oo]ur)\b",
    "zh": r"[我咱]",
}


def sentences(text: str) -> list[str]:
    """The text split after each sentence end and each line end (a trailing fragment is
    its own piece)."""
    pieces: list[str] = []
    for line in text.splitlines(keepends=True):
        start = 0
        for match in SENTENCE_END.finditer(line):
            pieces.append(line[start : match.end()])
            start = match.end()
        if line[start:]:
            pieces.append(line[start:])
    return pieces


def finished(text: str) -> bool:
    """Whether the text ends at a sentence end."""
    return SENTENCE_END.search(text.rstrip()[-3:]) is not None


def long_enough(sentence: str) -> bool:
    return len(normal(sentence).replace(" ", "")) >= 6


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


# "Name: words" at a line start: a script's format. A story writes it as narrated speech.
# In English the label may also be a description before a quotation (seen: 'The robot of
# love: "Thank you!"' in the README's story).
# A sentence whose verb comes before its colon is prose ('The sign read: "Closed."').
EN_LABEL = (
    r"(?:The|A|An|My|His|Her|Their|Our|Your) "
    r"(?![\w' -]*\b(?:said|says|read|reads|was|is|were|are|asked|replied|wrote|answered)\b)"
    r"[a-z][\w' -]{0,30}?(?=\s*:\s*[\"“])"
)
SPEAKER_LINE = re.compile(
    r"^\s*([\u4e00-\u9fff·]{1,6}|[A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,2}|"
    + EN_LABEL
    + r")\s*[:：]\s*(\S.*)$"
)
SAYS_ZH = re.compile(r"[说道问答喊叫想]$")
# The same as patterns for `banned_regex`, so a chapter is not written that way at all.
SPEAKER_BAN = {
    "zh": r"(?m)^[\u4e00-\u9fff·]{1,6}(?<![说道问答喊叫想])\s*[：:]",
    "en": r"(?m)^(?:[A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,2}|" + EN_LABEL + "):",
}
# An empty pair of quotation marks in a Chinese chapter (seen: "“”我是你的女儿。”").
EMPTY_QUOTE = r"“[ \t]*”"


def drop_empty_quotes(text: str) -> str:
    """`text` without empty pairs of quotation marks, and no space inside an opening one."""
    return re.sub(r"(?<=“)[ \t]+", "", re.sub(EMPTY_QUOTE, "", text))


# Similarity (character pairs, trigrams) above which a sentence says an earlier one again.
NEAR_REPEAT_AT = {2: 0.6, 3: 0.7}
BULLET = re.compile(r"^\s*[-*•·]\s")
LOOP_RUN = 3  # repeated sentences in a row: the model is looping, the rest is cut


def narrate(line: str, lang: Lang) -> str:
    """A script-style line ("琳娜：我没有带她去。") as a story writes it
    (琳娜说：“我没有带她去。”); other lines unchanged."""
    match = SPEAKER_LINE.match(line)
    if lang == "zh":
        line = QUOTE_SPEECH.sub(lambda m: f"{m.group(1)}：“{m.group(2)}”", line)
    if match is None or (lang == "zh" and SAYS_ZH.search(match.group(1))):
        return line
    name, words = match.group(1), match.group(2).strip().strip('"“”「」 ')
    if not words or SPEAKER_LINE.match(words):
        return ""  # nothing said, or labels stacked on labels: debris
    return f"{name}说：“{words}”" if lang == "zh" else f'{name} said, "{words}"'


def sentence_key(sentence: str, lang: Lang) -> str:
    """What two sentences share when they say the same (Chinese: without the spaces that
    stand for punctuation, as "玩吗" and "，玩吗" are one sentence)."""
    key = normal(sentence)
    return key.replace(" ", "") if lang == "zh" else key


def is_repeat(sentence: str, key: str, seen: set[str], said: list[str], lang: Lang) -> bool:
    """Whether a sentence says again what was said: the same words (any length, once it
    has two letters), or nearly the same (a long sentence with a word or two changed)."""
    if letters(sentence) < 2:
        return False
    if key in seen or phrase_loop(sentence) is not None:
        return True
    n = 2 if lang == "zh" else 3  # Chinese by character pairs, as `says_again`
    return len(key) >= 8 and any(similarity(key, other, n) > NEAR_REPEAT_AT[n] for other in said)


# A speech's comma or full stop set after its closing mark ('"I love you", said his
# mother', '"…that, Reuben". Eva said "but…"': 25 times in 4 of an eval run's 24 English
# chapters).
MARK_OUTSIDE = re.compile(r'"([^"\n]*[^"\n.,!?\s])"([.,])(?=[ \t]|$)')
# A speech tag's verb followed by the speech without its comma ('Eva said "but…': 22 times
# in 6 of those chapters).
TAG_WITHOUT_COMMA = re.compile(rf'\b({SAY_VERBS}) "(\w?)')


def speech_marks_inside(line: str) -> str:
    """An English line's speech punctuated as prose punctuates it: the comma or full stop
    inside the closing mark, and a comma between a tag's verb and the speech it opens. A
    line whose marks do not pair is left as it is."""
    if line.count('"') % 2:
        return line
    line = MARK_OUTSIDE.sub(r'"\1\2"', line)

    def comma(m: re.Match[str]) -> str:
        # A speech the tag opens begins with a capital ('He said, "My…'); one it goes on
        # with after a tag inside it does not ('"…," Eva said, "but…').
        goes_on = re.search(r'[.,!?]"\s+(?:[\w.\'-]+\s+){0,2}$', line[: m.start()])
        return f'{m.group(1)}, "' + (m.group(2) if goes_on else m.group(2).upper())

    return TAG_WITHOUT_COMMA.sub(comma, line)


def tag_after_speech(m: re.Match[str]) -> str:
    """A `TAG_AFTER_STOP` set as prose sets it: '"…worth it," she said.'."""
    mark, speaker, verb = m.groups()
    pronoun = speaker in ("He", "She", "They", "We", "It")
    return f'{"," if mark == "." else mark}" {speaker.lower() if pronoun else speaker} {verb}'


# An ASCII mark after a Han character or a closing quote, in Chinese prose (seen in 4 of 24
# chapters: "要不要卖一些房产,还有希望去过村子,在村子里有钱的人来跟他住."): set full width.
# An ellipsis of full stops ("他说...") and a number's point stay.
HAN_ASCII_MARK = r"(?<=[\u4e00-\u9fff”」])[ \t]*([,.;:?!])(?![.\d])[ \t]*"
FULL_WIDTH = {",": "，", ".": "。", ";": "；", ":": "：", "?": "？", "!": "！"}


def clean_chapter(text: str, lang: Lang, earlier: str) -> str:
    """The chapter without what does not belong in it: cut at a chapter heading or at the
    first sentence about the writing; script-style speaker lines narrated; sentences said
    before (here or in earlier chapters) dropped, and the rest cut where they repeat
    several in a row (a loop)."""
    text = re.sub(r"</?(?:i|b|u|em|strong)>", "", text)  # Gemma's HTML emphasis
    if lang == "zh":
        text = re.sub(HEADLESS_WHEN, r"\1\2", chinese_quotes(text))
        # The indent of Chinese print inside a line is a paragraph break (seen: "…爱看电视。
        # \u3000\u3000在电视里…"), and at a line's start nothing.
        text = re.sub(r"(?<=[。！？”」…])[ \t]*\u3000+[ \t]*", "\n\n", text)
        text = re.sub(r"(?m)^[ \t\u3000]+", "", text)
        text = re.sub(HAN_ASCII_MARK, lambda m: FULL_WIDTH[m.group(1)], text)
    else:
        # Straight quotes (chapters mixed the kinds: '“I don't have to."', which pairing
        # by kind made '“I don't have to."”"'; made straight only where mixed, a chapter's
        # lines would change kind once a later one brought a straight mark); and a line
        # broken before a lower-case word goes on (a speech set out on two lines, seen:
        # '"It's true that my love for\nit is …'), before quotes are paired line by line.
        text = re.sub("[“”]", '"', re.sub("[‘’]", "'", text))
        text = re.sub(r"(?<=[A-Za-z])[ \t]*\n+[ \t]*(?=[a-z])", " ", text)
        # A speech tag closed with a colon ('"No," said Reuben: "I can't."', 11 in 68
        # chapters): a full stop where the speech goes on with a new sentence, else a comma
        # (before repeats are dropped: the tag may now end a sentence said before).
        text = re.sub(
            TAG_COLON, lambda m: m.group(1) + (". " if m.group(2).isupper() else ", ") + '"'
            + m.group(2), text,
        )  # fmt: skip
        text = "\n".join(speech_marks_inside(line) for line in text.split("\n"))
        text = re.sub(TAG_AFTER_STOP, tag_after_speech, text)
    # An empty pair dropped (its line's other mark is given back its partner below), and
    # no space inside an opening mark.
    text = drop_empty_quotes(text)
    text = re.sub(rf"(?<=\S)[ \t]*{NUMBER_MARK}(?:[、，,][ \t]*{NUMBER_MARK})*", "", text)
    text = re.sub(r"(?m)^[ \t]*第[-–—.、·:：]+[ \t]*", "", text) if lang == "zh" else text
    joint = "" if lang == "zh" else " "
    text = re.sub(COMMA_BREAK + r"\s*", lambda m: m.group(0)[0] + joint, text)
    lines = text.split("\n")
    while lines and (HEADING.match(lines[0]) or not lines[0].strip()):
        lines.pop(0)  # a heading the model opened with: the story adds its own
    for i, line in enumerate(lines):
        if HEADING.match(line):
            lines = lines[:i]
            break
    lines = [re.sub(MARKUP, "", line) for line in lines]  # any other tag
    lines = [re.sub(r"[ \t]*(?:" + BLANK + ")", "", line) for line in lines]
    lines = [re.sub(r"[ \t]*" + WEB_NOTE + r"[^()（）\n]{0,40}[)）]", "", line) for line in lines]
    # Lines without two letters ("【3】", "（）") and bulleted lines are list debris, not prose.
    lines = [
        narrate(LIST_MARK.sub("", line), lang) for line in lines
        if not line.strip() or (letters(line) >= 2 and not BULLET.match(line))
    ]  # fmt: skip
    text = "\n".join(lines)
    narrated = "\n".join(narrate(line, lang) for line in earlier.split("\n"))
    told = [sentence_key(s, lang) for s in sentences(earlier + "\n" + narrated)]
    before = {key for key in told if len(key) >= 6}
    seen: set[str] = set()
    said: list[str] = []
    kept: list[str] = []
    repeats = 0
    for sentence in sentences(text):
        if CHATTER[lang].search(sentence):
            break
        if ASIDE[lang].search(sentence):
            continue  # a narrator's aside: the story goes on without it
        if lang == "zh" and in_english(sentence):
            continue  # a sentence in the wrong language
        key = sentence_key(sentence, lang)
        if key in before or is_repeat(sentence, key, set(), list(before), lang):
            continue  # the previous chapter retold: dropped, but no loop of this one
        if is_repeat(sentence, key, seen, said, lang):
            repeats += 1
            if repeats >= LOOP_RUN:
                break
            continue
        repeats = 0 if letters(sentence) >= 2 else repeats
        if key:
            seen.add(key)
            said.append(key)
        kept.append(sentence)
    # A line left without a letter (a quotation mark alone, which balancing would pair
    # into "“”") is debris; a line whose first sentence was dropped begins at the next.
    lines = [
        balance_quotes(line.lstrip(" \t")) for line in "".join(kept).split("\n")
        if letters(line) or not line.strip()
    ]  # fmt: skip
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    text = re.sub(ZH_SPACE, "", text) if lang == "zh" else text  # after headings are cut
    if lang == "en":
        # Words left twice over where a sentence between them was dropped (seen: '"That's
        # what I wanted," Reuben said Reuben said, "I'm glad…"'): said once.
        text = re.sub(SAID_TWICE, r"\1", text)
        # A line left without its full stop (one going on in lower case was joined to the
        # next above) is ended (seen: '"…in time," he said \nReuben said, …').
        text = re.sub(r"(?<=[A-Za-z])[ \t]*\n", ".\n", text)
    # The previous chapter's last words carried on (seen: '.."' opening chapter 2).
    return re.sub(r"^(?:[^\w“\"'「(（]+|[\"”]\s+)+", "", text)


def without_repeats(text: str, lang: Lang) -> str:
    """`text` without the sentences that say an earlier one of it again (`is_repeat`): for
    a short piece, a description, that has no chapter's cleaning (seen: "水滴落在了雨夜的
    小吃街上。" three times in one description)."""
    seen: set[str] = set()
    said: list[str] = []
    kept = []
    for sentence in sentences(text):
        key = sentence_key(sentence, lang)
        if key and is_repeat(sentence, key, seen, said, lang):
            continue
        if key:
            seen.add(key)
            said.append(key)
        kept.append(sentence)
    return "".join(kept).strip()


# A sentence begun "当…说：“…”" and ended with the speech, its "when" never answered (seen:
# "当父亲说：“我今天出去了，你今天晚上去。”" as a whole sentence, six times in 24 chapters
# of README length): told without the 当. One that goes on "…”时" keeps it.
HEADLESS_WHEN = (
    r"(?m)(?:^|(?<=[。！？]))([ \t“]*)当(?![然地])([^“”\n。！？，]{1,14}[说问道喊叫][：:]“[^”\n]*”)"
    r"(?![ \t]*[时的后之])"
)


def chinese_quotes(text: str) -> str:
    """Straight double quotes as Chinese ones, paired within each line (a line's odd one
    opens), with no space inside them (seen: a Chinese story whose every line of dialogue
    was '她说：" 你好！"', carried from chapter to chapter by the prompts)."""
    lines = []
    for line in text.split("\n"):
        first, *rest = line.split('"')
        lines.append(first + "".join("“”"[i % 2] + part for i, part in enumerate(rest)))
    return re.sub(r"“[ \t]+", "“", re.sub(r"[ \t]+”", "”", "\n".join(lines)))


def in_english(sentence: str) -> bool:
    """A sentence of a Chinese chapter written in English: a run of English words, and
    more Latin letters than Han characters."""
    latin = len(re.findall(r"[A-Za-z]", sentence))
    return latin > len(HAN.findall(sentence)) and re.search(ENGLISH_RUN, sentence) is not None


def balance_quotes(line: str) -> str:
    """A line whose quotation marks lost their partner (a repeated sentence inside a
    quote was dropped, or the chapter stopped inside one) given it back. Before that, what
    the model got wrong about the marks themselves: an opening mark that ends the line
    opens nothing ("他叫我——“", else paired into "——“”"); a closing mark right after
    another, with text and a closing mark after it, opens ("“我想和你”。” 你的意思是？”");
    an empty pair left by a sentence dropped from inside it goes; a line that begins with
    a closing mark meant it to open ("” 你的意思是？”", else "“” 你的意思是？”": the README's
    story, seed 11)."""
    line = re.sub(r"“\s*$", "", line)
    line = re.sub(r"(”[^“”]*?)”(?=[^“”]*”)", r"\1“", line)
    line = drop_empty_quotes(line)
    opened, closed = line.count("“"), line.count("”")
    if closed > opened and not line.lstrip().startswith("“"):
        body = line.lstrip()  # one that begins with a closing mark meant it to open
        return "“" + (body[1:].lstrip() if body.startswith("”") else body)
    if opened > closed and not line.rstrip().endswith("”"):
        return line + "”"
    if line.count('"') % 2 and not line.rstrip().endswith('"'):
        return line.rstrip() + '"'
    return line


def chapter_fit(
    text: str,
    lang: Lang,
    protagonist: Iterable[str],
    beat: str,
    premise: str,
    target: int,
    foreign: Iterable[str] = (),
    raw: str | None = None,
) -> float:
    """How well a (cleaned) chapter candidate follows its plan: its protagonist present,
    a premise keyword present, the beat's and the premise's keywords present, length near
    the target, little repetition, none of the few-shot example's own things (`foreign`),
    no script-style lines in the `raw` draft (before cleaning narrated them). Higher is
    better."""
    if not text:
        return -1.0
    present = any(name in text for name in protagonist)
    beat_words, premise_words = keywords(beat, lang), keywords(premise, lang)
    beat_share = len(mentions(text, beat_words, lang)) / max(len(beat_words), 1)
    premise_share = len(mentions(text, premise_words, lang)) / max(len(premise_words), 1)
    length = min(size(text, lang) / max(target, 1), 1.0)
    variety = distinct_n([text], 4)
    lines = [line for line in (text if raw is None else raw).split("\n") if line.strip()]
    # "Name: words" lines are a script's format, not a chapter's prose.
    scripted = sum(bool(SPEAKER.match(line)) for line in lines) / max(len(lines), 1)
    # The premise weighs as much as the protagonist: with the beat's own things counted
    # in the choice (story.py), chapters naming the premise fell from 16/16 to 13/16.
    premise_named = premise_share > 0
    borrowed = bool(foreign_words(text, foreign, premise))
    return (
        2.0 * present + 2.0 * premise_named + beat_share + premise_share + length + variety
        - 2.0 * scripted - 1.0 * borrowed
    )  # fmt: skip


def foreign_words(text: str, marks: Iterable[str], premise: str) -> list[str]:
    """The few-shot example's own things (`marks`: its names, places, objects) that `text`
    holds and the user's premise does not: the example leaking into the story."""

    def holds(words: str, mark: str) -> bool:
        if HAN.search(mark):
            return mark in words
        return re.search(rf"(?i)\b{re.escape(mark)}\b", words) is not None

    return [m for m in marks if holds(text, m) and not holds(premise, m)]


# A clause: the words between two marks of punctuation (quotation marks included, so
# "莫拉笑了，“…”" gives 莫拉笑了 and the words quoted, each its own clause).
CLAUSE_MARKS = '，。！？；：、,.!?;:“”"「」『』…—\n()（）'
CLAUSE = re.compile(f"[^{re.escape(CLAUSE_MARKS)}]+")
CLAUSE_MARK = re.compile(f"[{re.escape(CLAUSE_MARKS)}]")
# A clause is judged from this many words (Chinese: characters): shorter ones ("她说",
# "he said") recur in any story; "我爱你" said on every line of a chapter is going round.
CLAUSE_LEAST: dict[Lang, int] = {"en": 4, "zh": 3}
# From this many units a clause is the same as another with one unit changed, added or
# dropped ("我为什么会这样" / "你为什么会这样"); a shorter one only when said word for word
# ("他看见了海。他看见了船。" are two lines); and from `CLAUSE_CORE` units, one that opens or
# ends with the same so many (seen: "她的眼睛里流淌着她的泪水" three times, twice after
# other words).
CLAUSE_NEAR = 6
CLAUSE_CORE = 8
# A clause said this many times already (the same, or one word or character changed,
# added or dropped) is dialogue going round: "你为什么会这样？" three times in a chapter,
# "莫拉笑了，“…”" for every line of speech (the README's Chinese story, eighth session).
CLAUSE_MOST = 2


def clause_units(clause: str, lang: Lang) -> tuple[str, ...]:
    """A clause's Han characters (Chinese) or lower-case words (English)."""
    if lang == "zh":
        return tuple(HAN.findall(clause))
    return tuple(re.findall(r"[a-z0-9']+", clause.lower()))


def near_keys(units: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The clause and (from `CLAUSE_NEAR` units) the clause without each one of its units:
    two clauses within one unit changed, added or dropped share one of these; a long
    clause also by its first and
    its last `CLAUSE_CORE` units (marked apart from a clause that is only those)."""
    keys = {units}
    if len(units) >= CLAUSE_NEAR:
        keys |= {units[:i] + units[i + 1 :] for i in range(len(units))}
    if len(units) >= CLAUSE_CORE:
        keys |= {("<", *units[:CLAUSE_CORE]), (">", *units[-CLAUSE_CORE:])}
    return keys


def circling_clauses(text: str, lang: Lang, before: str = "") -> list[int]:
    """Where `text`'s whole clauses begin that say a clause of `before` + `text` again, near
    enough, for at least the `CLAUSE_MOST` + 1-th time (a clause still being written, with
    no punctuation after it yet, is not judged)."""
    whole = before + text
    seen: dict[tuple[str, ...], set[int]] = {}
    found: list[int] = []
    for match in CLAUSE.finditer(whole):
        if match.end() == len(whole):
            break  # not ended yet: it may still become a clause of its own
        units = clause_units(match.group(), lang)
        if len(units) < CLAUSE_LEAST[lang]:
            continue
        keys = near_keys(units)
        said = set().union(*(seen.get(key, set()) for key in keys))
        if len(said) >= CLAUSE_MOST and match.start() >= len(before):
            found.append(match.start() - len(before))
        for key in keys:
            seen.setdefault(key, set()).add(match.start())
    return found


# A run of this many Han characters said `PHRASE_MOST` times in a story is not said again:
# the clause rule above compares whole clauses, so a phrase going round inside different
# ones passed it (seen: "长达八十厘米的高个子" in six clauses over three chapters of the
# README's Chinese story: "她是一个…女", "他是一个…女的孩子", "她戴上了一个…机器人的衣服").
PHRASE_RUN = 8
PHRASE_MOST = 2
HAN_RUN = re.compile(f"(?:{HAN.pattern})+")
# English: a run of this many words inside a clause (seen: "took out a big box of toy
# cars" three times in the README's story, "money or time left for him" in another).
PHRASE_WORDS = 5
EN_CLAUSE = re.compile(r"[^.!?;:,\"“”\n]+")
EN_WORD = re.compile(r"[A-Za-z0-9']+")


def phrase_runs(text: str, lang: Lang = "zh") -> Iterator[tuple[int, int, str]]:
    """Each window of `PHRASE_RUN` characters of `text`'s runs of Han characters
    (punctuation, a name's "·" or a Latin word ends a run), or in English of `PHRASE_WORDS`
    words of a clause (lower-cased), with where it begins and ends."""
    if lang == "zh":
        for match in HAN_RUN.finditer(text):
            run, at = match.group(), match.start()
            for i in range(len(run) - PHRASE_RUN + 1):
                yield at + i, at + i + PHRASE_RUN, run[i : i + PHRASE_RUN]
        return
    for clause in EN_CLAUSE.finditer(text):
        words = list(EN_WORD.finditer(text, clause.start(), clause.end()))
        for i in range(len(words) - PHRASE_WORDS + 1):
            window = words[i : i + PHRASE_WORDS]
            key = " ".join(w.group().lower() for w in window)
            yield window[0].start(), window[-1].end(), key


def said_phrases(text: str, lang: Lang = "zh") -> Counter[str]:
    """How many times each run (`phrase_runs`) is in `text`."""
    return Counter(run for _, _, run in phrase_runs(text, lang))


def circling_phrases(
    text: str, before: str | Counter[str] = "", lang: Lang = "zh"
) -> list[tuple[int, int]]:
    """Where `text` says a run (`phrase_runs`) for at least the `PHRASE_MOST` + 1-th time,
    counting `before` (the story so far, or its `said_phrases`): each such run's span."""
    said = before if isinstance(before, Counter) else said_phrases(before, lang)
    own: Counter[str] = Counter()
    found: list[tuple[int, int]] = []
    for start, end, run in phrase_runs(text, lang):
        if said[run] + own[run] >= PHRASE_MOST:
            found.append((start, end))
        own[run] += 1
    return found


# A word said `WORD_MOST` times within the last `WORD_WINDOW` characters of a Chinese
# chapter is not said there again (`word_guard.WordGuard`): with no sentence, clause or run
# said again, a word went round instead (seen: 答应 twelve times in 257 characters of the
# README story, "我答应你的，你会答应"). English is guarded at a looser bound (see the
# guard's `ENGLISH_MOST` for why), and counted here for the eval's row. Counted:
# Chinese nouns (not names), verbs, adjectives, places and set phrases, without a grammar
# character and not a complement (not 没有, 看着, 这样, 一个, 起来); English words of four
# letters or more that are neither grammar nor a speech verb (dialogue says "said" in
# every line).
WORD_MOST = 3
WORD_WINDOW: dict[Lang, int] = {"zh": 400, "en": 1200}  # about 330 characters, 220 words
WORD_TAGS = re.compile(r"^(?:n(?!r)|v|a|s$|l$|i$)")
PLAIN_TEXT = """said says asked asks replied told tells tell say ask because something anything
nothing everything really though still even much more most never always well back just like
into than then other another"""
PLAIN_WORDS = STOPWORDS | frozenset(PLAIN_TEXT.split())
# Verbs' complements, grammar rather than words (笑起来, 走出来).
COMPLEMENTS = frozenset({"起来", "出来", "下来", "上来", "下去", "上去"})
ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
NAME_AFTER = re.compile(r"[A-Za-z,;]\s*$")  # a capital after these begins a name, not a sentence


def counted_words(text: str, lang: Lang) -> Iterator[tuple[int, str]]:
    """The words of `text` that `WORD_MOST` counts, with where each begins (English: by
    `stem`; a name, a word written with a capital inside a sentence or never without one,
    is not counted, nor a contraction: don't, she'd)."""
    if lang == "zh":
        for start, word, tag in dictionary_words(text):
            if set(word) & HAN_FUNCTION:
                part = counted_part(word)
                if part is not None:
                    yield start + part[0], part[1]
            elif WORD_TAGS.match(tag) and word not in COMPLEMENTS:
                yield start, word
        return
    found = list(ENGLISH_WORD.finditer(text))
    names = {
        m.group().lower() for m in found
        if m.group()[0].isupper() and NAME_AFTER.search(text, max(m.start() - 4, 0), m.start())
    }  # fmt: skip
    # A word never written in lower case is a name too ("Kei-O" beginning every sentence).
    names |= {m.group().lower() for m in found} - {m.group() for m in found}
    skipped = PLAIN_WORDS | names
    for match in found:
        word = re.sub(r"'s$", "", match.group().lower())
        if len(word) >= 4 and "'" not in word and word not in skipped:
            yield match.start(), stem(word)


def counted_part(word: str) -> tuple[int, str] | None:
    """The longest counted word inside a dictionary word with a grammar character, and
    where it begins (很漂亮: 漂亮; longest match took 很漂亮 for one word, never counted, and a
    chapter said it six times in five lines)."""
    tags = word_tags()
    for size in range(len(word) - 1, 1, -1):
        for at in range(len(word) - size + 1):
            part = word[at : at + size]
            tag = tags.get(part)
            grammar = set(part) & HAN_FUNCTION or part in COMPLEMENTS
            if tag and WORD_TAGS.match(tag) and not grammar:
                return at, part
    return None


def overused_words(
    text: str, lang: Lang, spared: Callable[[str], bool], most: int = WORD_MOST
) -> set[str]:
    """The words (English: stems) said `most` times in the last `WORD_WINDOW` characters
    of `text`, but those `spared` (the premise's words and the cast's names): what
    `word_guard.WordGuard` keeps a chapter from writing next."""
    said = Counter(word for _, word in counted_words(text[-WORD_WINDOW[lang] :], lang))
    return {word for word, times in said.items() if times >= most and not spared(word)}


def words_going_round(text: str, lang: Lang, spared: Callable[[str], bool]) -> set[str]:
    """The words (English: stems) `text` says more than `WORD_MOST` times within
    `WORD_WINDOW` characters, but those `spared`: what the guard is there to prevent."""
    where: dict[str, list[int]] = {}
    for start, word in counted_words(text, lang):
        where.setdefault(word, []).append(start)
    window = WORD_WINDOW[lang]
    return {
        word for word, starts in where.items()
        if not spared(word)
        and any(b - a < window for a, b in zip(starts, starts[WORD_MOST:], strict=False))
    }  # fmt: skip


# A sentence may not open with the same `OPENING_RUN` Han characters as `OPENING_MOST`
# sentences of its chapter already (seen: "乔纳多发现…" ten times in one chapter, once the
# phrase rule above kept the model from its runs: it went round its openings instead).
OPENING_RUN = 4
OPENING_MOST = 3
OPENING = re.compile(rf"[\s“”\"「」『』‘’]*((?:{HAN.pattern}){{{OPENING_RUN}}})")
# A sentence opened with 当 ("when …") counts as an opening of its own: chapters of README
# length opened 54 of 543 sentences so, up to nine in one chapter ("当他说起自己的遭遇的时候…",
# "当她听到自己的名字时…"), each with other characters after it.
OPENING_WORD = re.compile(r"[\s“”\"「」『』‘’]*(当)(?![然地])")


def sentence_openings(text: str) -> Iterator[tuple[int, str]]:
    """Each sentence of `text` that opens with `OPENING_RUN` Han characters (its leading
    quotation marks and spaces aside), and each that opens with `OPENING_WORD`: where they
    begin, and them."""
    at = 0
    for piece in sentences(text):
        for pattern in (OPENING, OPENING_WORD):
            match = pattern.match(piece)
            if match is not None:
                yield at + match.start(1), match.group(1)
        at += len(piece)


def said_openings(text: str) -> Counter[str]:
    """How many of `text`'s sentences open with each `OPENING_RUN` Han characters."""
    return Counter(opening for _, opening in sentence_openings(text))


def repeated_openings(text: str, before: str | Counter[str] = "") -> list[int]:
    """Where `text`'s sentences open as `OPENING_MOST` sentences of `before` (or its
    `said_openings`) and `text` did already."""
    said = before if isinstance(before, Counter) else said_openings(before)
    own: Counter[str] = Counter()
    found: list[int] = []
    for start, opening in sentence_openings(text):
        if said[opening] + own[opening] >= OPENING_MOST:
            found.append(start)
        own[opening] += 1
    return found


# A Chinese paragraph may not open with the same `PARAGRAPH_RUN` Han characters as
# `PARAGRAPH_MOST` earlier paragraphs of its chapter (seen: "第一天看见…" four times in one
# chapter, "第四天见到…" three, "后来地父…" three; 12 of 24 chapters), unless they begin a
# name of the cast: a chapter goes back to its people. The sentence rule above counts four
# characters and passed "第一天见" beside "第一天看".
PARAGRAPH_RUN = 3
PARAGRAPH_MOST = 2
PARAGRAPH_OPENING = re.compile(rf"(?m)^[ \t“”\"「」『』‘’]*((?:{HAN.pattern}){{{PARAGRAPH_RUN}}})")


def paragraph_openings(
    text: str, names: Iterable[str], whole: bool = True
) -> Iterator[tuple[int, str]]:
    """Each line of `text` that opens with `PARAGRAPH_RUN` Han characters (quotation
    marks aside) not beginning a name of `names`: where they begin, and them. Unless
    `whole`, `text` may begin inside a paragraph and its first line is not one."""
    heads = tuple(name[:2] for name in names if name)
    for match in PARAGRAPH_OPENING.finditer(text):
        if (whole or match.start() > 0) and not match.group(1).startswith(heads):
            yield match.start(1), match.group(1)


def repeated_paragraphs(
    text: str, before: Counter[str], names: Iterable[str], whole: bool = False
) -> list[int]:
    """Where `text`'s paragraphs open as `PARAGRAPH_MOST` of `before`'s (its openings
    counted) and `text`'s did already (`whole`: `text` begins a paragraph)."""
    own: Counter[str] = Counter()
    found: list[int] = []
    for start, opening in paragraph_openings(text, names, whole):
        if before[opening] + own[opening] >= PARAGRAPH_MOST:
            found.append(start)
        own[opening] += 1
    return found


# A sentence this close to an earlier one of its story (rapidfuzz's ratio, 0-100, of their
# Han characters, or in English of their words) is that sentence told again with a word or
# two swapped: the rules above compare clauses, runs and openings, and a template going
# round passed them all (seen: "当他的眼睛越来越亮的时候，当他看见了她的声音时，…" in ten
# variants over three chapters of the README's Chinese story; pairs scoring 70 or more
# were such variants, those of 60-69 mostly two sentences about one thing).
ECHO_SIMILARITY = 70
ECHO_LEAST: dict[Lang, int] = {"en": 6, "zh": 8}  # units: a shorter sentence may recur
# A sentence that holds an earlier one nearly whole (rapidfuzz's partial ratio, the best
# alignment of the shorter in the longer, 90 or more), or is held in one, echoes it too
# when the shorter has this many units (seen: "当邓思把这个视频放在床头的时候，当他睁眼的时候，
# 看见了她，他都笑了笑。" after "当他睁眼的时候，看见了她，他都笑了笑。": ratio 68).
ECHO_HELD: dict[Lang, int] = {"en": 8, "zh": 10}
ECHO_HELD_SIMILARITY = 90
SENTENCE_OR_LINE_END = re.compile(rf"{SENTENCE_END.pattern}|\n")
ENDED = re.compile(rf"(?:{SENTENCE_OR_LINE_END.pattern})\s*\Z")  # a sentence's last piece, whole


def sentence_units(sentence: str, lang: Lang) -> str | tuple[str, ...]:
    """What two sentences are compared by: the Han characters, or the lower-case words."""
    return "".join(HAN.findall(sentence)) if lang == "zh" else clause_units(sentence, lang)


def said_sentences(text: str, lang: Lang) -> list[str | tuple[str, ...]]:
    """The units of `text`'s sentences long enough to be echoed."""
    return [
        units
        for sentence in sentences(text)
        if len(units := sentence_units(sentence, lang)) >= ECHO_LEAST[lang]
    ]


def echoed_sentences(
    text: str, lang: Lang, before: str | list[str | tuple[str, ...]] = ""
) -> list[tuple[int, int]]:
    """Where `text`'s whole sentences begin and end (their spans) that echo an earlier
    sentence of `before` (the story so far, or its `said_sentences`) or of `text`: at least
    `ECHO_SIMILARITY` alike, or (from `ECHO_HELD` units) holding one or held in one. A
    sentence not yet ended is not judged."""
    said = list(before) if isinstance(before, list) else said_sentences(before, lang)
    held = [units for units in said if len(units) >= ECHO_HELD[lang]]
    found: list[tuple[int, int]] = []
    at = 0
    pieces = sentences(text)
    for i, sentence in enumerate(pieces):
        start, at = at, at + len(sentence)
        if i == len(pieces) - 1 and not ENDED.search(sentence):
            break  # the one being written
        units = sentence_units(sentence, lang)
        if len(units) < ECHO_LEAST[lang]:
            continue
        long = len(units) >= ECHO_HELD[lang]
        if process.extractOne(units, said, scorer=fuzz.ratio, score_cutoff=ECHO_SIMILARITY) or (
            long
            and process.extractOne(
                units, held, scorer=fuzz.partial_ratio, score_cutoff=ECHO_HELD_SIMILARITY
            )
        ):
            found.append((start + len(sentence) - len(sentence.lstrip()), at))
        said.append(units)
        held += [units] if long else []
    return found


# A summary is invented when fewer than this share of its keywords (English words,
# Chinese character pairs) are in the chapter or the plan (seen: "乔纳斯把海岛的岛屿全部留
# 了下来。他带了一辆豪华的豪华客车…" for a chapter with no island and no coach).
SUMMARY_GROUNDED = 0.5


def invented(summary: str, source: str, lang: Lang) -> list[str]:
    """What `summary` names that `source` (the chapter and the plan) does not: its
    keywords missing from the source when they are the greater part of them, and
    (English) any capitalised name the source never writes."""
    words = keywords(summary, lang)
    missing = sorted(words - mentions(source, words, lang))
    names: list[str] = []
    if lang == "en":
        for sentence in sentences(summary):
            for name in re.findall(r"(?<=[\s,;(])[A-Z][a-z'-]+", sentence.strip()):
                if name != "I" and not re.search(rf"\b{re.escape(name)}\b", source):
                    names.append(name)
    if len(missing) > (1 - SUMMARY_GROUNDED) * len(words):
        return [*dict.fromkeys(names), *missing]
    return list(dict.fromkeys(names))
