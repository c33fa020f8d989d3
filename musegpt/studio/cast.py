"""Checks on a story's cast as a demanding reader judges it: a name that is a name, a
description that agrees with itself and its name, and a cast that is not the hero three
times over.

Each check reads one character line ("Name：description") against the premise and the
characters kept before it (the first of them is the hero) and gives a `CastFault` — what
is wrong, and where in the line it begins — or None. The same function judges a line the
model has finished (`partial=False`) and one it is still writing (`partial=True`: only the
name once its colon is written, and the clauses already closed by punctuation), so
`CastRule` can take back the token that began a fault while the line is drawn, and the
line comes out kept on its first draw.

Chinese is judged on its own terms: a noun phrase ends in its head ("女鬼的侄女" is a niece),
a name is tested against jieba's dictionary (a word or a well-known person is in it, a
made-up name is not), and a surname is a name's first character.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import yaml

from musegpt.forms.english import pronunciations
from musegpt.generation.processors import BanInText
from musegpt.studio.plan_checks import (
    STUTTER,
    STYLE_WORDS,
    keywords,
    name_parts,
    repeated_piece,
    word_tags,
)
from musegpt.studio.text import Lang

# The checks a `CastFault.check` names.
CHECKS = (
    "name", "surname", "alike", "gender", "age", "role", "what", "style", "twice", "self", "word",
)  # fmt: skip


@dataclass(frozen=True)
class CastFault:
    check: str  # which of CHECKS refused
    reason: str  # what a retry is for and what the final error says
    at: int  # where in the line the fault begins (taken back from there while drawing)


@dataclass(frozen=True)
class Cast:
    """What a character line is judged against."""

    lang: Lang
    premise: str
    earlier: Sequence[tuple[str, str]] = ()  # (name, description) kept before; [0] the hero


# -- names ---------------------------------------------------------------------------------


@cache
def famous_names() -> frozenset[tuple[str, ...]]:
    """Well-known characters and people an English cast must not borrow (`data/famous_en.yaml`:
    Gemma handed casts Scarlett O'Hara, Yoda, Anakin Skywalker), each as its lower-case words.
    English has no installed dictionary of names to ask instead, as Chinese has jieba's."""
    spec = yaml.safe_load((files("musegpt.studio") / "data" / "famous_en.yaml").read_text("utf-8"))
    return frozenset(tuple(entry.split()) for entries in spec.values() for entry in entries)


def famous(name: str) -> bool:
    """Whether an English name holds a famous one, whole or as a run of its words: "Anakin
    Skywalker", "Captain Yoda", "Mr. Darcy"."""
    words = [w.strip('.,;:!?"') for w in name.lower().replace("\u2019", "'").split()]
    known = famous_names()
    return any(
        tuple(words[i:j]) in known for i in range(len(words)) for j in range(i + 1, len(words) + 1)
    )


# A surname alone, or one with a word for "the … family / old …" (seen: 杜氏, 薛家, 冯家, 许老,
# 夏小); a name holding 的 is a phrase (seen: 钟表的匠, 钟表匠的).
ZH_NOT_NAME = re.compile(r"^.(?:氏|家|老|小)?$|.[氏家]$|的")


def surname(name: str, lang: Lang) -> str:
    if lang == "zh":
        return name[:1]
    parts = name.split()
    return parts[-1].lower() if len(parts) >= 2 else ""


def given(name: str, lang: Lang) -> str:
    return name if lang == "zh" else name.split()[0].lower()


def edits(a: str, b: str) -> int:
    """Levenshtein distance (names are short)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def alike(name: str, other: str, lang: Lang) -> bool:
    """Whether two names are one name with a character changed or added (郭一月 / 郭二月,
    罗玉 / 罗玉龙; Ella / Ellie): a reader cannot keep them apart."""
    a, b = given(name, lang), given(other, lang)
    if lang == "zh":
        # Two-character names that share a surname differ in their one given character.
        same_length = len(a) == len(b) >= 3 and sum(x != y for x, y in zip(a, b, strict=True)) == 1
        return same_length or (min(len(a), len(b)) >= 2 and (a in b or b in a))
    return len(a) >= 3 and len(b) >= 3 and a[:2] == b[:2] and edits(a, b) <= 2


def name_fault(name: str, cast: Cast) -> CastFault | None:
    """A name a writer would keep: not a word, a surname alone or someone famous; not the
    premise's words; not a third of one surname, nor another's name with a letter changed."""
    lang = cast.lang
    if lang == "zh":
        if ZH_NOT_NAME.search(name):
            return CastFault("name", f"{name!r} is not a person's name", 0)
        words = word_tags()  # jieba's dictionary: a word or a famous name is no made-up name
        # A familiar form (老周, 小雨, 阿青) is a name though the dictionary lists some.
        for end in range(0 if re.match(r"^[老小阿].$", name) else len(name), 1, -1):
            if name[:end] in words:  # 孙悟空, 孙子, 黎明; 杜蕾斯 (a brand) too
                return CastFault("name", f"{name!r} is a word or a famous name", end - 1)
    elif famous(name):
        return CastFault("name", f"{name!r} is a famous character's name", 0)
    hero_is = premise_gender(cast.premise, lang) if not cast.earlier else None
    if hero_is is not None and name_gender(name, lang) not in (None, hero_is):
        # The premise's "her bread" told of a Samuel (seen), and the beats followed the name.
        return CastFault("gender", f"{name!r} is not a name for the premise's {hero_is} hero", 0)
    premise_words = keywords(cast.premise, lang)
    if premise_words & keywords(name.lower(), lang):
        return CastFault("name", f"{name!r} is made of the premise's words", 0)
    family = surname(name, lang)
    if family and sum(surname(n, lang) == family for n, _ in cast.earlier) >= 2:
        return CastFault("surname", f"a third character with the surname {family!r}", 0)
    for other, _ in cast.earlier:
        if alike(name, other, lang):
            return CastFault("alike", f"{name!r} is too like {other!r}", len(name) - 1)
    return None


# -- descriptions --------------------------------------------------------------------------

# The words that say a character is a man or a woman, when they are the head of a clause
# (Chinese: its end; "女鬼的侄女" is a niece) or its subject pronoun.
MALE = {
    "zh": "男孩|男人|男子|男生|男性|丈夫|长子|次子|儿子|父亲|爸爸|哥哥|弟弟|爷爷|外公|叔叔|伯伯|"
    "先生|王子|老头|男",
    "en": "man|boy|husband|son|father|dad|brother|uncle|grandfather|grandson|king|prince|"
    "nephew|gentleman|widower|monk|priest|mr",
}
FEMALE = {
    "zh": "女孩|女人|女子|女生|女性|妻子|女儿|长女|母亲|妈妈|姐姐|妹妹|奶奶|外婆|阿姨|少女|公主|"
    "夫人|太太|小姐|养母|侄女|孙女|女巫|女鬼|老太太|婆婆|女",
    "en": "woman|girl|wife|daughter|mother|mom|sister|aunt|grandmother|granddaughter|queen|"
    "princess|niece|lady|widow|nun|witch|mrs|ms|miss",
}
# A name's own title (曹夫人, 陈阿婆; "Mrs Hale").
NAME_TITLE = {
    "zh": {"male": r"(?:先生|叔|伯|爷|公)$", "female": r"(?:夫人|太太|小姐|女士|阿姨|婆|姐)$"},
    "en": {"male": r"^(?:mr|sir|lord)\b", "female": r"^(?:mrs|ms|miss|lady|madam)\b"},
}
# Roles a working adult holds (not at four: seen "乐手，四岁"); roles of a child (not at
# thirty: seen "一个小女孩，三十岁了", "a boy, thirty").
WORKING = {
    "zh": "警察|警官|侦探|探长|乐手|音乐家|歌手|钢琴家|面包师|农民|工人|矿工|医生|护士|老师|教师|"
    "厨师|司机|船长|士兵|军人|律师|画家|作家|记者|老板|村长|宇航员|科学家|钟表匠|渔夫|管理员|"
    "主持人|商人|工程师|法官|市长|店主",
    "en": "detective|police|policeman|officer|musician|pianist|violinist|singer|baker|"
    "farmer|worker|miner|doctor|nurse|teacher|chef|cook|driver|captain|soldier|lawyer|"
    "painter|writer|journalist|mayor|astronaut|scientist|clockmaker|fisherman|librarian|"
    "host|businessman|engineer|judge|shopkeeper|caretaker|housekeeper|night-watchman",
}
CHILD = {
    "zh": "男孩|女孩|小女孩|小男孩|孩子|小孩|儿童|婴儿|少女|少年|小学生|中学生",
    "en": "boy|girl|child|kid|baby|toddler|teenager|schoolboy|schoolgirl",
}
RETIRED = {"zh": "退休", "en": "retired"}
# A premise whose hero is young or old (its subject, at the premise's start).
ZH_SUBJECT = r"^一[个位只条名](?:[^的，。]*的)?[^的，。]{0,2}?"
EN_SUBJECT = r"(?i)^(?:a|an|the)\s+(?:[\w-]+\s+){0,2}?"
YOUNG_PREMISE = {
    "zh": re.compile(ZH_SUBJECT + r"(?:小(?!偷)|年轻|少年|少女|男孩|女孩)"),
    "en": re.compile(EN_SUBJECT + r"(?:young|little|teenage|teenager|boy|girl|child|kid)\b"),
}
OLD_PREMISE = {
    "zh": re.compile(ZH_SUBJECT + r"(?:老(?!师|板|鼠|虎)|退休)"),
    "en": re.compile(EN_SUBJECT + r"(?:old|elderly|retired|aging)\b"),
}
YOUNG_AT_MOST, OLD_AT_LEAST, WORKING_AT_LEAST, CHILD_AT_MOST = 35, 50, 16, 19

CLAUSE_END = {"zh": "，。；、！？,;!?", "en": ",;.!?"}
ZH_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"两": 2}
EN_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
EN_TENS = "twenty thirty forty fifty sixty seventy eighty ninety"
EN_NUMBERS = {w: i for i, w in enumerate(EN_UNITS.split())} | {
    w: 10 * i for i, w in enumerate(EN_TENS.split(), 2)
}
EN_WORD = "|".join(EN_NUMBERS)
EN_NUMBER = rf"(?:\d{{1,3}}|(?:{EN_WORD})(?:-(?:{EN_WORD}))?)"
EN_AGE = re.compile(
    rf"(?i)^(?:aged\s+)?({EN_NUMBER})(?:\s+years?\s+old)?$|\b({EN_NUMBER})[- ]years?[- ]old\b"
)
ZH_AGE = re.compile(r"([零一二两三四五六七八九十百\d]+)\s*岁")


def chinese_number(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    total, digit = 0, 0
    for ch in text:
        if ch in ZH_DIGITS:
            digit = ZH_DIGITS[ch]
        elif ch == "十":
            total, digit = total + 10 * (digit or 1), 0
        elif ch == "百":
            total, digit = total + 100 * (digit or 1), 0
        else:
            return None
    return total + digit


def english_number(text: str) -> int | None:
    text = text.lower()
    if text.isdigit():
        return int(text)
    return sum(EN_NUMBERS.get(part, 0) for part in text.split("-")) or None


@dataclass(frozen=True)
class Clause:
    text: str
    start: int  # in the description


def clauses(description: str, lang: Lang, partial: bool) -> list[Clause]:
    """The description's clauses (split at punctuation); while `partial`, only those a
    mark of punctuation has closed."""
    found, start = [], 0
    for i, ch in enumerate(description):
        if ch in CLAUSE_END[lang]:
            if description[start:i].strip():
                found.append(Clause(description[start:i], start))
            start = i + 1
    if not partial and description[start:].strip():
        found.append(Clause(description[start:], start))
    return found


def role_words(clause: str, words: str, lang: Lang) -> re.Match[str] | None:
    """The clause's head when it is one of `words` (a `|`-joined list): in Chinese the
    clause's last word, in a clause without 他/她 (a noun phrase, not a sentence); in
    English the first such word before any preposition or relative word, not a
    possessor ("her mother's daughter" is a daughter)."""
    if lang == "zh":
        if re.search(r"[他她]", clause):
            return None
        return re.search(rf"(?:{words})$", clause.strip())
    cut = re.split(r"(?i)\b(?:of|to|with|for|by|from|at|who|whom|which|that|whose|about|than|"
                   r"like|in|on|and|says?|said)\b", clause)[0]  # fmt: skip
    for match in re.finditer(rf"(?i)\b(?:{words})\b(?!['’]s|-)", cut):
        return match
    return None


def subject(clause: str, lang: Lang) -> tuple[str, int] | None:
    """The gender of a clause's subject pronoun, and where it is: "她是家里的公主" (she),
    not "她的妈妈" (her mother); "he tells the soldier", not "his son"."""
    if lang == "zh":
        match = re.match(r"\s*([他她])(?![的们])(?=\S)", clause)
    else:
        match = re.match(r"(?i)\s*(?:and\s+|but\s+)?(he|she)\b", clause)
    if match is None:
        return None
    return ("male" if match.group(1).lower() in ("他", "he") else "female"), match.start(1)


def genders(name: str, parts: list[Clause], lang: Lang) -> list[tuple[str, int]]:
    """Each gender the line gives its character, with where it says it (-1: the name)."""
    said: list[tuple[str, int]] = []
    title = name.lower() if lang == "en" else name
    for gender, pattern in NAME_TITLE[lang].items():
        if re.search(pattern, title):
            said.append((gender, -1))
    for part in parts:
        for gender, words in (("male", MALE[lang]), ("female", FEMALE[lang])):
            found = role_words(part.text, words, lang)
            if found is not None:
                said.append((gender, part.start + found.start()))
        pronoun = subject(part.text, lang)
        if pronoun is not None:
            said.append((pronoun[0], part.start + pronoun[1]))
    return said


# The words of a premise that say whose story it is: its first pronoun or gendered noun
# ("a baker who learns that her bread…", "一个面包师发现她烤的面包…"; "他"/"她" alone in
# Chinese, whose nouns 女/男 are parts of other words too).
PREMISE_GENDER = {
    "zh": {"male": "他", "female": "她"},
    "en": {
        "male": rf"his|he|him|himself|{MALE['en']}",
        "female": rf"her|she|herself|{FEMALE['en']}",
    },
}


@cache  # asked on every token while the hero's line is drawn (`CastRule`)
def premise_gender(premise: str, lang: Lang) -> str | None:
    """The gender the premise gives its hero: that of its first gendered word, if any."""
    found = []
    for gender, words in PREMISE_GENDER[lang].items():
        bound = r"\b" if lang == "en" else ""
        match = re.search(rf"(?i){bound}(?:{words}){bound}", premise)
        if match is not None:
            found.append((match.start(), gender))
    return min(found)[1] if found else None


@cache
def first_name_shares() -> dict[str, dict[str, float]]:
    """English first names from the US census of 1990 (the `names` package's tables), each
    with its share of the male and female population."""
    shares: dict[str, dict[str, float]] = {}
    for gender in ("male", "female"):
        table = files("names").joinpath(f"dist.{gender}.first").read_text(encoding="utf-8")
        for row in table.splitlines():
            name, share, *_ = row.split()
            shares.setdefault(name.lower(), {})[gender] = float(share)
    return shares


@cache
def first_name_genders() -> dict[str, str]:
    """English first names by the gender the US census of 1990 gave them at least four
    times as often (1,099 male and 3,984 female of the tables' 5,163 names; "Jordan" and
    "Casey" are neither)."""
    found = {}
    for name, by in first_name_shares().items():
        male, female = by.get("male", 0.0), by.get("female", 0.0)
        if male >= 4 * female or female >= 4 * male:
            found[name] = "male" if male > female else "female"
    return found


def name_gender(name: str, lang: Lang) -> str | None:
    """The gender an English first name is given to (None: either, unknown, or Chinese)."""
    if lang != "en":
        return None
    return first_name_genders().get(name.split()[0].lower())


def age(clause: str, lang: Lang) -> int | None:
    if lang == "zh":
        match = ZH_AGE.search(clause)
        return chinese_number(match.group(1)) if match else None
    match = EN_AGE.search(clause.strip())
    if match is None:
        return None
    value = english_number(match.group(1) or match.group(2))
    return value if value is not None and value <= 120 else None


def age_fault(description: str, parts: list[Clause], cast: Cast) -> CastFault | None:
    """An age the role cannot have: a working adult under 16, a child over 19, someone
    retired under 50, the hero of a young premise ("一个小女巫") over 35 or of an old one
    ("一个老农民", "a retired detective") under 50."""
    lang = cast.lang
    ages = [(value, p.start) for p in parts if (value := age(p.text, lang)) is not None]
    if not ages:
        return None
    value, at = ages[0]
    texts = [p.text for p in parts]
    if value < WORKING_AT_LEAST and any(role_words(t, WORKING[lang], lang) for t in texts):
        return CastFault("age", f"a working adult aged {value}", at)
    if value > CHILD_AT_MOST and any(role_words(t, CHILD[lang], lang) for t in texts):
        return CastFault("age", f"a child aged {value}", at)
    if value < OLD_AT_LEAST and re.search(RETIRED[lang], description, re.IGNORECASE):
        return CastFault("age", f"retired at {value}", at)
    if not cast.earlier:  # the hero
        if value > YOUNG_AT_MOST and YOUNG_PREMISE[lang].search(cast.premise.strip()):
            return CastFault("age", f"the premise's young hero aged {value}", at)
        if value < OLD_AT_LEAST and OLD_PREMISE[lang].search(cast.premise.strip()):
            return CastFault("age", f"the premise's old hero aged {value}", at)
    return None


def head(description: str, lang: Lang) -> str:
    """A description's first clause's head: Chinese, after its last 的 ("女鬼的侄女" → 侄女);
    English, its words before a preposition or relative word, possessors dropped."""
    first = next(iter(clauses(description, lang, partial=False)), Clause("", 0)).text.strip()
    if lang == "zh":
        return first.rsplit("的", 1)[-1]
    cut = re.split(r"(?i)\b(?:of|to|with|for|by|from|at|who|which|that|whose|in|on)\b", first)[0]
    return re.sub(r"(?i)\b[\w-]+['’]s\b", "", cut).strip().lower()


def role_noun(hero_description: str, cast: Cast) -> str:
    """The hero's role as a noun: Chinese, the longest end of its head the premise names
    (机器人, 天才少女), else the head's last two characters; English, the head's last word."""
    found = head(hero_description, cast.lang)
    if cast.lang == "zh":
        for start in range(len(found) - 1):
            if found[start:] in cast.premise:
                return found[start:]
        return found[-2:] if len(found) >= 2 else (found if found in cast.premise else "")
    words = re.findall(r"[a-z][a-z-]+", found)
    return words[-1] if words else ""


def plural_allowance(noun: str, premise: str, lang: Lang) -> int:
    """How many characters the premise lets take its role noun: "两个…乐手" two, "two rival
    musicians" two, "robots" any; else one (the hero)."""
    if lang == "zh":
        at = premise.find(noun)
        if at < 0:
            return 1
        count_word = r"([两二三四五六七八九十几]|一群|一些|一对|一家)[个位只条名对群些家]?[^，。]*$"
        match = re.search(count_word, premise[:at])
        if match is None:
            return 1
        count = chinese_number(match.group(1))
        return count if count else 99
    match = re.search(
        rf"(?i)\b(?:({EN_NUMBER})\s+)?(?:[\w-]+\s+){{0,2}}?{re.escape(noun)}e?s\b", premise
    )
    if match is None:
        return 1
    return (english_number(match.group(1)) or 99) if match.group(1) else 99


def role_fault(parts: list[Clause], cast: Cast) -> CastFault | None:
    """A later character whose role is the hero's again (seen: three 机器人, three 面包师,
    three night-watchmen), beyond what the premise allows."""
    if not cast.earlier or not parts:
        return None
    noun = role_noun(cast.earlier[0][1], cast)
    if not noun:
        return None
    lang, first = cast.lang, parts[0]
    if lang == "zh":
        own = first.text.rsplit("的", 1)[-1]
        hit = noun in own and not re.search(r"[他她]", first.text)
        at = first.start + len(first.text) - len(own) + own.find(noun)
    else:
        match = role_words(first.text, re.escape(noun) + "s?", lang)
        hit, at = match is not None, first.start + (match.start() if match else 0)
    if not hit:
        return None
    taken = 1 + sum(noun in head(d, lang) for _, d in cast.earlier[1:])
    if taken >= plural_allowance(noun, cast.premise, lang):
        return CastFault("role", f"another {noun!r}: the hero's role again", at)
    return None


# What a Chinese description's first clause must end in: a word for a person or a creature
# (the examples' "机器人，…", "面包师的女儿，…"). Seen in its place: a place ("小河边"), a
# trait ("长相清秀"), a pastime ("爱看电视"), a thing ("第二张婚床"), a sentence ("她自己发明").
ZH_WHO = re.compile(
    r"(?:(?<![在回到老])家|"  # 画家, 作家; not 在家, 回家 (seen: "警察在家")
    r"[人者女男孩子儿母父妈爸哥姐弟妹婆公爷奶叔姨舅婶嫂侄孙师员手生工匠客官王后帝主兵士"
    r"警友伴侣徒民农商贩长妻夫郎娘翁童婴侠盗贼僧尼医将君臣妃仆佣丁鬼神仙妖怪魔精灵猫狗狐兔鸟熊"
    r"狼虎马鱼羊牛猪鼠蛇龙鹰太探察巫丐犯伙授狸蝶]|老板|同学|同事|邻居|司机|领导|保姆|怪物|动物|少年|"
    r"青年|女性|男性|老头|保安|邮差|向导|人工智能)$"
)


def what_fault(parts: list[Clause], lang: Lang) -> CastFault | None:
    """A Chinese description whose first clause is not what the character is (a person's
    role, a creature), once that clause is closed: "她是…" counts as what follows 是."""
    if lang != "zh" or not parts:
        return None
    first = parts[0]
    said = re.sub(r"^\s*[他她它]是", "", first.text).strip()
    if ZH_WHO.search(said.rsplit("的", 1)[-1]):
        return None
    reason = "the description does not begin with what the character is"
    return CastFault("what", reason, first.start)


def no_word(description: str, lang: Lang, partial: bool = False) -> int | None:
    """Where an English description writes a lower-case word the pronouncing dictionary
    lacks (each part of a hyphenated one), if it does: the tail of a word taken back ("a
    robot, ight", "detective, irl" after a refused "girl") or one made up ("witchess").
    While `partial`, the last word may still be growing and is not judged."""
    if lang != "en":
        return None
    for found in re.finditer(r"(?<![\w'’-])[a-z]+(?:-[a-z]+)*(?![\w'’-])", description):
        if partial and found.end() == len(description):
            continue
        if not all(is_word(part) for part in found.group().split("-")):
            return found.start()
    return None


def is_word(word: str) -> bool:
    """In the pronouncing dictionary, or two of its words of four letters or more joined
    ("clockmaker", which it lacks)."""
    if len(word) < 2 or pronunciations(word):
        return True
    return any(
        pronunciations(word[:i]) and pronunciations(word[i:]) for i in range(4, len(word) - 3)
    )


def self_named(name: str, description: str) -> int | None:
    """Where a description names its own character (its whole name, or a part of two
    letters or characters or more), if it does: a description tells who someone is, and
    said of themselves by name it reads as another person."""
    for part in sorted(name_parts(name), key=len, reverse=True):
        edge = r"(?<![A-Za-z])" if part[:1].isascii() else ""
        found = re.search(edge + re.escape(part) + (r"(?![A-Za-z])" if edge else ""), description)
        if found:
            return found.start()
    return None


def description_fault(
    name: str, description: str, cast: Cast, partial: bool = False
) -> CastFault | None:
    """A description that contradicts itself or its name (a man and a woman at once), an
    age its role cannot have, or the hero's role again. Positions are in `description`."""
    parts = clauses(description, cast.lang, partial)
    said = genders(name, parts, cast.lang)
    hero_is = premise_gender(cast.premise, cast.lang) if not cast.earlier else None
    if hero_is is not None:  # the hero is who the premise says ("她烤的面包": not a 丈夫)
        said.insert(0, (hero_is, -1))
    kinds = {g for g, _ in said}
    if len(kinds) == 2:
        first = said[0][0]
        at = next(at for g, at in said if g != first)
        return CastFault("gender", "the description makes the character both sexes", max(at, 0))
    again = repeated_piece([part.text for part in parts])  # "…，三十岁，女。"
    stutter = STUTTER.search(description)  # "an Jedi who lived there, and, and and"
    twice = parts[again].start if again is not None else stutter.start() if stutter else None
    if twice is not None:
        return CastFault("twice", "the description says a thing twice", twice)
    unknown = no_word(description, cast.lang, partial)  # seen: "detective, irl, a smart one."
    if unknown is not None:
        return CastFault("word", "the description holds a word no dictionary has", unknown)
    own = self_named(name, description)  # seen: "姜元：乐手，年少，年长，姜元是个人渣。"
    if own is not None:
        return CastFault("self", "the description names its own character", own)
    style = re.search(STYLE_WORDS[cast.lang], description)
    if style is not None:  # the plan's style carried into the cast (seen: "…，人称化，口语化")
        return CastFault("style", "the description is the story's style", style.start())
    return (
        what_fault(parts, cast.lang)
        or age_fault(description, parts, cast)
        or role_fault(parts, cast)
    )


def line_fault(line: str, cast: Cast, partial: bool = False) -> CastFault | None:
    """A character line ("Name：description") judged whole, or while still written
    (`partial`: the name once its colon is written, the closed clauses); the fault's
    position is in `line`."""
    colon = "：" if cast.lang == "zh" else ":"
    name, sep, description = line.partition(colon)
    if not sep:
        return None
    name = name.strip()
    fault = name_fault(name, cast) if name else None
    if fault is not None:
        return fault
    offset = len(line) - len(description)
    fault = description_fault(name, description, cast, partial)
    if fault is None:
        return None
    return CastFault(fault.check, fault.reason, offset + fault.at)


def cast_faults(cast: Sequence[tuple[str, str]], premise: str, lang: Lang) -> list[CastFault]:
    """The faults of a kept cast ((name, description) in order), each character judged
    against those before it, as it was drawn."""
    colon = "：" if lang == "zh" else ": "
    found = []
    for i, (name, description) in enumerate(cast):
        fault = line_fault(name + colon + description, Cast(lang, premise, tuple(cast[:i])))
        if fault is not None:
            found.append(fault)
    return found


class CastRule(BanInText):
    """`line_fault` while a character line is drawn: the token that began a fault is
    taken back, so the model writes another name, age or role there. `head` is the part
    of the line the program wrote (a standby name), not the model's to take back."""

    def __init__(self, cast: Cast, head: str = "") -> None:
        self.cast, self.head = cast, head
        self.taken_back: dict[str, int] = {}  # take-backs by check (the evaluation counts)

    def banned_at(self, text: str, shown: int) -> int | None:
        fault = line_fault(self.head + text, self.cast, partial=True)
        if fault is None or (at := fault.at - len(self.head)) < shown:
            return None
        self.taken_back[fault.check] = self.taken_back.get(fault.check, 0) + 1
        return at
