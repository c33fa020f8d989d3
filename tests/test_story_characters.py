"""A story's cast as a demanding reader judges it (issue 14, `musegpt/studio/cast.py`): names
that are names, descriptions that agree with themselves and with their role's age, and a
cast that is not the hero three times over. The refused lines are real: Gemma 3 270M's
casts from the ninth session's evaluation (`docs/stories-eval-plans.jsonl` at 739c290^)."""

from __future__ import annotations

import pytest

from musegpt.engines.base import Engine
from musegpt.studio import Studio
from musegpt.studio.cast import (
    Cast,
    CastFault,
    CastRule,
    cast_faults,
    line_fault,
    name_gender,
    premise_gender,
)
from musegpt.studio.plan_eval import BIBLE_FIELDS, plan_table
from musegpt.studio.story import (
    STANDBY_NAMES,
    Character,
    StoryBible,
    StoryProject,
    example_names,
    plan_bible,
)
from musegpt.studio.story_eval import plan_valid
from musegpt.studio.text import Lang

ROBOT_ZH = "一个发现爱情的机器人"
MUSICIANS_ZH = "两个互相看不顺眼的乐手被暴风雪困在山上的旅馆里"
MUSICIANS_EN = "two rival musicians stranded in a mountain hotel during a blizzard"
WITCH_ZH = "一个小女巫在考试前一天失去了魔法"
POLICE_ZH = "一位退休的老警察被请去寻找自己失踪的哥哥"


def fault(line: str, lang: Lang, premise: str = "", *earlier: tuple[str, str]) -> str | None:
    """The check that refuses `line` (after the `earlier` characters), or None."""
    found = line_fault(line, Cast(lang, premise, earlier))
    return None if found is None else found.check


@pytest.mark.parametrize(
    "line",
    [
        "孙悟空：男孩，四岁，有学识。",  # the Monkey King
        "杜蕾斯：机器人，女孩，性格乖戾。",  # a condom brand
        "姜太公：海的沉溺者，水里深不见底。",
        "孙子：钓鱼的，年长了，头皮痒，脸红。",  # "grandson": a word
        "黎明：村庄的村民，十岁左右。",  # "dawn"
        "杜氏：乐手，十七岁，双眼黑黑的。",  # a surname and 氏
        "薛家：她为了女儿而生。",  # a family
        "许老：她从远方去过许多地方。",
        "夏小：夏小刚七十岁。",
        "钟表的匠：钟表匠，男，五十二岁。",  # a phrase
    ],
)
def test_a_chinese_name_is_a_made_up_name(line: str) -> None:
    assert fault(line, "zh") == "name"


def test_names_a_writer_would_use_are_kept() -> None:
    for name in [*STANDBY_NAMES["zh"], *example_names("zh"), "彭小梅", "郭三月", "乔大青"]:
        assert fault(f"{name}：店主，四十岁，沉默寡言。", "zh") is None, name
    for name in [*STANDBY_NAMES["en"], "Hannah Baily", "Keith Akins"]:
        assert fault(f"{name}: a shopkeeper, forty, quiet.", "en") is None, name
    # A famous character's name (seen twice in 22 English casts), and the premise's words.
    assert fault("Scarlett O'Hara: daughter of the baker.", "en") == "name"
    # The README's story on an AMX machine: Yoda and Anakin Skywalker; a famous name inside.
    for name in ["Yoda", "Anakin Skywalker", "Captain Yoda", "Mr. Darcy", "Luke Skywalker"]:
        assert fault(f"{name}: a robot, a child.", "en") == "name", name
    for name in ["Harry Smith", "Jo Potter", "Bella", "Anna Kerr"]:  # ordinary people's names
        assert fault(f"{name}: a robot, a child.", "en") is None, name
    assert fault("Robot Smith: a robot.", "en", "a robot who discovers love") == "name"


def test_a_description_is_not_the_storys_style() -> None:
    # Seen in the README's Chinese story: the style field's words carried into the cast.
    assert fault("陶云岚：她和丈夫一直一起工作，人称化，口语化。", "zh") == "style"
    assert fault("陶云岚：店主，四十岁，说话口语化。", "zh") == "style"
    assert fault("Lena Hart: a mechanic, told in the first person.", "en") == "style"
    assert fault("陶云岚：店主，四十岁，说话很直。", "zh") is None


def test_no_third_of_one_surname_and_no_name_one_character_from_another() -> None:
    first, second = ("杜若音", "乐手，十七岁。"), ("杜然", "乐手，二十岁。")
    assert fault("杜兰：歌手，三十岁。", "zh", "", first) is None  # two, as the example's 林
    assert fault("杜兰：歌手，三十岁。", "zh", "", first, second) == "surname"
    assert fault("郭一月：面包师，一个刚进店的员工。", "zh", "", ("郭三月", "店主。")) == "alike"
    assert fault("罗玉：她一往无前。", "zh", "", ("罗玉龙", "夜总监。")) == "alike"
    assert fault("孙文：他是渔夫。", "zh", "", ("孙桃", "渔夫。")) is None  # only the surname
    assert fault("Ellie: her sister, twelve.", "en", "", ("Ella", "the witch.")) == "alike"
    assert fault("Mara Ward: a clerk.", "en", "", ("Elias Ward", "a keeper.")) is None
    assert fault("Tom Ward: a clerk.", "en", "", ("Ann Ward", "x"), ("Bo Ward", "y")) == "surname"


@pytest.mark.parametrize(
    ("line", "lang"),
    [
        ("彭小梅：丈夫，长子。她是家里的公主。", "zh"),  # a husband, an eldest son, and she
        ("罗玉婷：长子，她与丈夫。", "zh"),
        ("曹夫人：龙的养母，丈夫，四十年，女装，很漂亮。", "zh"),  # Madame, a husband
        ("Huan: a peasant girl, he tells the soldier what he thought of him.", "en"),
        ("Ester Pinto: her daughter, he is very close to her heart.", "en"),
        ("Ellie: her brother, twelve, her mother's daughter.", "en"),
    ],
)
def test_a_description_is_not_both_sexes(line: str, lang: Lang) -> None:
    assert fault(line, lang) == "gender"


@pytest.mark.parametrize(
    ("line", "lang"),
    [
        ("贾小芳：女鬼的侄女，她喜欢与她玩着石头和草。", "zh"),  # the ghost's niece
        ("袁敏：阿姨的儿子，高年老，家里没人看。", "zh"),  # the aunt's son
        ("乔纳·杜比：机器人，女，二十岁，性格单纯。", "zh"),
        ("罗玉：渔夫的妻子，她一往无前，不肯让女儿回家。", "zh"),  # her daughter
        ("Vito: the ghost's father, a young boy.", "en"),
        ("Eliezer: her mother's daughter, twelve, who has to leave soon.", "en"),
        ("Jade: the wife of a mining company, working on her husband's land.", "en"),
        ("Mona: mother of two, mother of a boy who she never had.", "en"),
    ],
)
def test_possessors_and_objects_are_not_the_character(line: str, lang: Lang) -> None:
    assert fault(line, lang) is None


@pytest.mark.parametrize(
    "line",
    [
        "乔恩·维奇：第二张婚床，人脸红肿，人参熏燎。",  # a thing (the README's story, seed 1)
        "孟春月：小河边，年长一岁，生于1970年代。",  # a place
        "许青莲：长相清秀，身材纤瘦，脸颊红晕。",  # a trait
        "冯红莲：爱跳舞，穿西装，高高起舞",  # a pastime
        "乔姆：他喜欢看电视，睡觉，睡懒觉",  # a sentence about him
        "贺青：这个机器人的能力，让她成为一名科学家。",
        "姜小冬：警察在家。看他弟弟的模样。",  # 家 of 在家 is no 画家
    ],
)
def test_a_chinese_description_begins_with_what_the_character_is(line: str) -> None:
    assert fault(line, "zh") == "what"


@pytest.mark.parametrize(
    "line",
    [
        "林守义：灯塔看守人，六十岁，谨慎而孤独。",
        "陈阿婆：卖馄饨的老太太，七十岁，嘴硬心软。",
        "许希：美国第一位人造自我的妻子。",
        "顾丽：她是一名警察，三十岁。",
        "乔克：机器人的助手，七十岁，有钱。",
        "阿黄：一只流浪的小狗，三岁。",
        "乔纳·杜比：机器人",  # a role alone
    ],
)
def test_a_role_or_a_creature_first_is_kept(line: str) -> None:
    assert fault(line, "zh") is None


def test_an_age_the_role_can_have() -> None:
    assert fault("杜若音：乐手，六岁，双眼水汪汪的。", "zh") == "age"  # a musician of six
    assert fault("袁大喜：一个小女孩，三十岁了，一直没有她过生日。", "zh") == "age"
    assert fault("Drew: a boy, thirty.", "en") == "age"
    assert fault("Keith Akins: a retired detective, twenty-five, in London.", "en") == "age"
    assert fault("杜小梅：女孩，十五岁，上过五十八次生日。", "zh") is None
    assert fault("Rory: a girl, 17.", "en") is None
    assert fault("Samuel O'Neal: baker, eighteen, good in spite of the cold.", "en") is None
    # The hero of a young premise is young, of an old one old; the others may be any age.
    assert fault("乔梅：女巫，七十岁，气急败坏。", "zh", WITCH_ZH) == "age"
    assert fault("乔梅：女巫，十二岁，气急败坏。", "zh", WITCH_ZH) is None
    assert fault("姜一朝：警察，三十岁。", "zh", POLICE_ZH) == "age"
    assert fault("袁松：画家，七十岁。", "zh", WITCH_ZH, ("乔梅", "女巫，十二岁。")) is None


def test_the_heros_role_is_not_everyones() -> None:
    robot = ("乔纳·杜比", "机器人，女，二十岁，性格单纯。")
    assert fault("莫小拉：机器人，男孩，性格高傲。", "zh", ROBOT_ZH, robot) == "role"
    assert fault("莫小拉：女鬼的侄女，性格高傲。", "zh", ROBOT_ZH, robot) is None
    # "两个…乐手": two musicians, not three.
    first, second = ("黎天", "乐手，二十岁。"), ("姜小雷", "乐手，三十岁。")
    assert fault("姜小雷：乐手，三十岁。", "zh", MUSICIANS_ZH, first) is None
    assert fault("杜然：乐手，四十岁。", "zh", MUSICIANS_ZH, first, second) == "role"
    eben = ("Eben Friedel", "musician, young, shy.")
    assert fault("Bernhard Schramm: musician, wealthy.", "en", MUSICIANS_EN, eben) is None
    watch = ("Ellie", "the night-watchman, thirty, she loves her job.")
    city = "a city where everyone forgets one memory each night"
    assert fault("Mordecai Dowse: the night-watchman, eighteen.", "en", city, watch) == "role"


def test_a_line_is_judged_as_it_is_written() -> None:
    """While drawn, only what is closed: the name once its colon is written, a clause once
    punctuation ends it; the fault's start is where the decoder takes back."""
    rule = CastRule(Cast("zh", MUSICIANS_ZH))
    assert rule.banned_at("杜若音：乐手，六岁", 0) is None  # "六岁" may still be "六岁半…"
    assert rule.banned_at("杜若音：乐手，六岁，", 0) == len("杜若音：乐手，")
    assert rule.banned_at("孙悟", 0) is None
    assert rule.banned_at("孙悟空：", 0) == len("孙悟")  # the name's last character
    assert rule.banned_at("孙悟空：", 3) is None  # already shown: not taken back
    # A name the program wrote (a standby name) is not the model's to take back.
    assert CastRule(Cast("zh", ""), head="杜氏：").banned_at("乐手，", 0) is None


def test_a_plan_with_a_bad_cast_is_not_valid(tmp_path: object) -> None:
    cast = [
        ("乔纳斯", "机器人，女，二十岁。"),
        ("莫拉", "机器人，男孩。"),
        ("杜蕾斯", "机器人，女孩。"),
    ]
    assert [f.check for f in cast_faults(cast, ROBOT_ZH, "zh")] == ["name", "name", "name"]
    bible = StoryBible(
        "铁心", "未来的城市，雨夜里的街道。", "平实，第三人称。",
        f"{ROBOT_ZH}：它第一次懂得了爱，也懂得了离别。",
        [Character(n, d) for n, d in cast],
    )  # fmt: skip
    project = StoryProject(tmp_path, ROBOT_ZH, "zh")  # type: ignore[arg-type]
    project.bible = bible
    assert not plan_valid(project)


BAKER = "a baker who learns that her bread can heal the sick"


def test_the_hero_is_who_the_premise_says() -> None:
    hero = Cast("en", BAKER)
    # Seen: the eval's baker was "Samuel O'Neal", and its beats told of "his bread".
    assert line_fault("Samuel O'Neal: baker, eighteen.", hero) == CastFault(
        "gender", "\"Samuel O'Neal\" is not a name for the premise's female hero", 0
    )
    assert line_fault("Sarah O'Neal: baker, eighteen.", hero) is None
    assert line_fault("Casey Lee: the baker, a girl of ten.", hero) is None  # either
    fault = line_fault("Sam Kerr: the baker, a widower.", hero)
    assert fault is not None and fault.check == "gender"
    # Only the hero: a later character may be a man; a premise with no gender says nothing.
    assert line_fault("Samuel Hale: her brother.", Cast("en", BAKER, (("Sarah", "x"),))) is None
    assert line_fault("Samuel Hale: a robot.", Cast("en", "a robot who discovers love")) is None
    assert premise_gender("a detective who must find his brother", "en") == "male"
    assert premise_gender("a girl who saves her brother", "en") == "female"  # the first
    assert name_gender("Tannia", "en") is None and name_gender("Keith Akins", "en") == "male"
    baker_zh = Cast("zh", "一个面包师发现她烤的面包能治病")
    fault = line_fault("郭三月：面包师，一个老实的男人。", baker_zh)
    assert fault is not None and fault.check == "gender"
    assert line_fault("郭三月：面包师，一个老实的女人。", baker_zh) is None


@pytest.mark.parametrize("premise", [ROBOT_ZH, MUSICIANS_ZH])
def test_the_model_writes_a_cast_that_is_kept_on_its_first_draw(
    gemma: Engine, premise: str
) -> None:
    """The evaluation's plans: unsteered, the drawn casts held a famous name and a third of
    one surname (robot, seed 1), two dictionary words as names (musicians, seed 5), and
    were refused and redrawn; steered, the cast is kept as drawn on two seeds of three at
    least (which seed misses depends on the CPU's numbers: 9 of 10 were kept on one
    machine, all on another)."""
    kept = 0
    for seed in (1, 2, 3):
        writer = Studio(gemma).writer(premise, seed=seed)
        writer.lang = "zh"
        redraws: dict[str, int] = {}
        cast = plan_bible(writer, premise, redraws).characters
        assert cast_faults([(c.name, c.description) for c in cast], premise, "zh") == []
        kept += not redraws.get("characters")
    assert kept >= 2


def test_the_plan_table_counts_the_cast_checks() -> None:
    first = dict.fromkeys((*BIBLE_FIELDS, "outline"), True)
    row = {"lang": "zh", "first_draw": first, "error": "", "plan_valid": True, "calls": 9,
           "seconds": 10.0, "cpu_seconds": 9.0}  # fmt: skip
    rows = [
        {**row, "redraws": {"cast taken back: name": 3, "cast: age": 1}},
        {**row, "redraws": {"cast taken back: name": 2, "cast taken back: role": 4}},
    ]
    table = plan_table(rows)
    assert "|   cast name: taken back / lines refused | 5 / 0 |" in table
    assert "|   cast age: taken back / lines refused | 0 / 1 |" in table
    assert "|   cast role: taken back / lines refused | 4 / 0 |" in table


def test_a_description_says_each_thing_once() -> None:
    assert fault("乔纳：机器人，女，三十岁，女。", "zh", ROBOT_ZH) == "twice"  # seen, seed 4
    assert fault("Ada: a robot, kind, kind.", "en", "a robot who discovers love") == "twice"
    assert fault("乔纳：机器人，女，三十岁，爱笑。", "zh", ROBOT_ZH) is None
    seen = "Ana Rook: a pilot who lived there, and, and and"  # a word twice in a row (seen)
    assert fault(seen, "en", "a robot who discovers love") == "twice"
    assert fault("Ada: a robot who had had enough.", "en", "a robot who discovers love") is None


def test_a_description_does_not_name_its_own_character() -> None:
    assert fault("姜元：乐手，年少，年长，姜元是个人渣。", "zh", MUSICIANS_ZH) == "self"  # seen
    seen = "Bey: a child. She keeps her promise to Catten, and turns down Bey."  # seen
    assert fault(seen, "en", "a robot who discovers love") == "self"
    assert fault("姜元：乐手，年少，爱说话。", "zh", MUSICIANS_ZH) is None
    assert fault("Al: a robot, always alone.", "en", "a robot who discovers love") is None


def test_an_english_description_writes_words() -> None:
    premise = "a retired detective who is asked to find his own missing brother"
    seen = "Curtiss: detective, irl, a smart one."  # the tail of a refused "girl"
    assert fault(seen, "en", premise) == "word"
    assert fault("Ivo: a robot, ight, smart and curious.", "en", "a robot") == "word"
    kept = "Hank Evans: a retired detective, sixty-two, long-lost and self-confident."
    assert fault(kept, "en", premise) is None
    clock = "a clockmaker who builds a clock that can stop time"
    assert fault("Scarlett: clockmaker, thirty, kind.", "en", clock) is None  # two words
