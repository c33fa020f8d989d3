"""Poetic forms and the checker: real poems pass, broken ones fail for the right reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musegpt.forms import (
    Budget,
    Form,
    UnknownFormError,
    builtin_forms,
    check,
    chinese,
    english,
    form_from_yaml,
    get_form,
)
from musegpt.forms.form import regulated_templates, template_name

# Public-domain poems (Shakespeare, Edward Lear, Tang poets).
SONNET_18 = """\
Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall Death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
   So long as men can breathe or eyes can see,
   So long lives this, and this gives life to thee.
"""

SONNET_130 = """\
My mistress' eyes are nothing like the sun;
Coral is far more red than her lips' red;
If snow be white, why then her breasts are dun;
If hairs be wires, black wires grow on her head.
I have seen roses damask'd, red and white,
But no such roses see I in her cheeks;
And in some perfumes is there more delight
Than in the breath that from my mistress reeks.
I love to hear her speak, yet well I know
That music hath a far more pleasing sound;
I grant I never saw a goddess go;
My mistress, when she walks, treads on the ground:
And yet, by heaven, I think my love as rare
As any she belied with false compare.
"""

LEAR = """\
There was an Old Man with a beard,
Who said, "It is just as I feared!—
Two Owls and a Hen,
Four Larks and a Wren,
Have all built their nests in my beard!"
"""

HAIKU = """\
An old pond sits still
a green frog leaps in the pond
the water is calm
"""

JING_YE_SI = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"  # 李白 静夜思
DENG_GUAN_QUE_LOU = "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。"  # 王之涣
CHUN_XIAO = "春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。"  # 孟浩然 春晓
CHU_SAI = "秦时明月汉时关，万里长征人未还。\n但使龙城飞将在，不教胡马度阴山。"  # 王昌龄
SHAN_XING = "远上寒山石径斜，白云生处有人家。\n停车坐爱枫林晚，霜叶红于二月花。"  # 杜牧
CHUN_WANG = (  # 杜甫 春望
    "国破山河在，城春草木深。\n感时花溅泪，恨别鸟惊心。\n"
    "烽火连三月，家书抵万金。\n白头搔更短，浑欲不胜簪。"
)
DENG_GAO = (  # 杜甫 登高
    "风急天高猿啸哀，渚清沙白鸟飞回。\n无边落木萧萧下，不尽长江滚滚来。\n"
    "万里悲秋常作客，百年多病独登台。\n艰难苦恨繁霜鬓，潦倒新停浊酒杯。"
)


def said(reasons: tuple[str, ...]) -> str:
    return " | ".join(reasons)


# ------------------------------------------------------------------ forms as data


def test_builtin_forms_have_the_documented_shapes() -> None:
    haiku = get_form("haiku")
    assert [str(b) for b in haiku.budgets] == ["5", "7", "5"] and haiku.language == "en"
    assert [b.low for b in get_form("tanka").budgets] == [5, 7, 5, 7, 7]
    limerick = get_form("limerick")
    assert limerick.rhyme == "AABBA"
    assert [(b.low, b.high) for b in limerick.budgets] == [(7, 10)] * 2 + [(4, 7)] * 2 + [(7, 10)]
    sonnet = get_form("shakespearean-sonnet")
    assert sonnet.lines == 14 and sonnet.rhyme == "ABABCDCDEFEFGG" and sonnet.stress == "x/"
    assert all((b.low, b.high) == (9, 11) for b in sonnet.budgets)
    assert get_form("petrarchan-sonnet").rhyme == "ABBAABBACDECDE"
    for name, chars, lines in (("wujue", 5, 4), ("qijue", 7, 4), ("wulu", 5, 8), ("qilu", 7, 8)):
        form = get_form(name)
        assert form.language == "zh" and form.lines == lines
        assert all(b.low == b.high == chars for b in form.budgets)
        assert len(form.tone_patterns) == 4
        assert all(form.rhyme_required(i) for i in range(1, lines, 2))
        assert not form.rhyme_required(0)  # 首句可入韵


def test_names_resolve_in_english_and_chinese() -> None:
    for alias, name in [
        ("wujue", "wujue"),
        ("五言绝句", "wujue"),
        ("五绝", "wujue"),
        ("七言绝句", "qijue"),
        ("七言律詩", "qilu"),
        ("wulv", "wulu"),
        ("五言律诗", "wulu"),
        ("Shakespearean Sonnet", "shakespearean-sonnet"),
        ("sonnet", "shakespearean-sonnet"),
        ("十四行诗", "shakespearean-sonnet"),
        ("italian_sonnet", "petrarchan-sonnet"),
        ("俳句", "haiku"),
        ("HAIKU", "haiku"),
    ]:
        assert get_form(alias).name == name, alias
    for form in builtin_forms():  # every listed alias works
        for alias in (form.name, *form.aliases):
            assert get_form(alias) == form


def test_parametric_forms() -> None:
    quatrain = get_form("quatrain:abab")
    assert quatrain.rhyme == "ABAB" and quatrain.lines == 4
    assert get_form("quatrain:XAXA").rhyme == "xAxA"
    couplet = get_form("couplet:AA:8")
    assert couplet.lines == 2 and str(couplet.budgets[0]) == "8±1"
    free = get_form("free:12")
    assert free.lines == 12 and free.rhyme == "x" * 12 and free.budgets[0].high is None
    assert get_form("自由诗：3").lines == 3
    for bad in ("quatrain:ABA", "free:none", "free:0", "couplet:A1"):
        with pytest.raises(UnknownFormError):
            get_form(bad)


def test_unknown_form_lists_the_known_ones() -> None:
    with pytest.raises(UnknownFormError) as err:
        get_form("villanelle")
    message = str(err.value)
    assert "villanelle" in message and "haiku" in message and "wujue" in message


def test_rhyme_system_and_strictness_are_options() -> None:
    form = get_form("五言绝句", rhyme_system="xinyun", strict=True)
    assert form.rhyme_system == "xinyun" and form.strict and form.name == "wujue"
    assert get_form("wujue").rhyme_system == "pingshui" and not get_form("wujue").strict
    with pytest.raises(ValueError, match="rhyme system"):
        get_form("wujue", rhyme_system="guangyun")  # type: ignore[arg-type]


def test_regulated_templates() -> None:
    five = regulated_templates(5, 4)
    assert five[0] == ("仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平")
    assert template_name(five[0]) == "仄起首句不入韵"
    assert {template_name(t) for t in five} == {
        "仄起首句不入韵",
        "仄起首句入韵",
        "平起首句不入韵",
        "平起首句入韵",
    }
    seven = regulated_templates(7, 8)
    assert all(len(t) == 8 and all(len(line) == 7 for line in t) for t in seven)
    assert seven[0][0] == "平平仄仄平平仄" and seven[0][4:] == seven[0][:4]


def test_form_validation() -> None:
    with pytest.raises(ValueError, match="rhyme scheme"):
        Form("bad", "en", 2, (Budget.exact(5),) * 2, "ABA")
    with pytest.raises(ValueError, match="lengths"):
        Form("bad", "en", 2, (Budget.exact(5),), "AA")
    assert Budget.around(10, 1).admits(11) and not Budget.around(10, 1).admits(12)
    assert Budget.free().admits(40) and str(Budget(7, 10)) == "7-10"


def test_user_defined_yaml_forms(tmp_path: Path) -> None:
    cinquain = tmp_path / "cinquain.yaml"
    cinquain.write_text(
        "name: cinquain\naliases: [五行诗]\nlines: 5\nsyllables: [2, 4, 6, 8, 2]\nrhyme: xxxxx\n",
        encoding="utf-8",
    )
    form = get_form(str(cinquain))
    assert form.name == "cinquain" and [b.low for b in form.budgets] == [2, 4, 6, 8, 2]
    poem = (  # Adelaide Crapsey, November Night (1915)
        "Listen\nwith faint dry sound\nlike steps of passing ghosts\n"
        "the leaves frost crisp'd break from the trees\nand fall\n"
    )
    assert check(poem, form).passed, check(poem, form).reasons

    ballad = tmp_path / "ballad.yml"
    ballad.write_text("lines: 4\nsyllables: ['7-9', 6, '7-9', 6]\nrhyme: XAXA\n")
    form = form_from_yaml(ballad)
    assert form.name == "ballad" and form.rhyme == "xAxA" and form.budgets[0] == Budget(7, 9)

    zh = tmp_path / "wuyan.yaml"
    zh.write_text(
        "name: 五言四句\nlanguage: zh\nlines: 4\ncharacters: 5\nrhyme: xAxA\nrhymes: xinyun\n",
        encoding="utf-8",
    )
    form = form_from_yaml(zh)
    assert form.unit == "character" and form.rhyme_system == "xinyun"
    assert check(DENG_GUAN_QUE_LOU, form).passed

    for text, message in [
        ("lines: 2\nsyllables: [5, 5, 5]\n", "3 line lengths given for 2 lines"),
        ("lines: 2\n", "give 'syllables'"),
        ("lines: two\nsyllables: 5\n", "'lines' must be a number of lines from 1 to 200"),
        ("lines: 1000000000\nsyllables: 5\n", "'lines' must be a number of lines from 1 to 200"),
        ("lines: 2\nsyllables: 5\nmeter: iambic\n", "unknown key(s) meter"),
        ("lines: 2\nsyllables: 5\nrhyme: ABC\n", "rhyme scheme"),
        ("- just\n- a list\n", "a YAML mapping"),
        ("lines: [\n", "not a readable YAML file"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            get_form(str(bad))
    with pytest.raises(FileNotFoundError):
        get_form(str(tmp_path / "missing.yaml"))


# ------------------------------------------------------------------ English sound


def test_syllables_stress_and_rhyme_of_words() -> None:
    assert english.word_sound("temperate").syllables in (2, 3)
    assert english.word_sound("beautiful").syllables == 3
    fire = english.word_sound("fire")
    assert (fire.low, fire.high) == (1, 2)  # either pronunciation is accepted
    assert english.word_sound("summer's").syllables == 2  # possessive of a known word
    assert english.word_sound("untrimm'd").syllables == 2  # not in the dictionary: estimated
    assert english.estimate_syllables("flibbertigibbet") == 5
    assert english.estimate_syllables("quoth") == 1
    assert english.word_sound("complexion").stress == "x/x"
    assert english.rhyme("day", "May") == "rhyme"
    assert english.rhyme("shines", "declines") == "rhyme"
    assert english.rhyme("temperate", "date") == "eye"  # rhymed in Shakespeare's day
    assert english.rhyme("love", "prove") == "eye"
    assert english.rhyme("cat", "dog") == "none"
    assert english.count_syllables("Shall I compare thee to a summer's day?") == 10


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_syllable_counting_never_fails(text: str) -> None:
    n = english.count_syllables(text)
    assert n >= 0
    assert english.count_syllables(f"{text} {text}") == 2 * n


# ------------------------------------------------------------------ English poems


def test_shakespeare_sonnets_pass() -> None:
    for poem in (SONNET_18, SONNET_130):
        report = check(poem, "shakespearean-sonnet")
        assert report.passed, report.reasons
        assert len(report.lines) == 14
        assert report.pattern_score is not None and report.pattern_score > 0.75  # iambic
    report = check(SONNET_18, "sonnet")
    assert report.lines[2].rhymes_with == 1 and report.lines[2].rhyme_kind == "rhyme"
    assert report.lines[3].rhyme_kind == "eye"  # temperate / date
    assert any("eye rhyme" in n for n in report.notes)
    with_breaks = SONNET_18.replace("date;\n", "date;\n\n").replace(
        "untrimm'd;\n", "untrimm'd;\n\n"
    )
    assert check(with_breaks, "sonnet").passed  # quatrains may stand apart


def test_lear_limerick_and_a_haiku_pass() -> None:
    report = check(LEAR, "limerick")
    assert report.passed, report.reasons
    assert [line.units for line in report.lines] == [8, 8, 5, 5, 8]
    assert check(HAIKU, "haiku").passed
    assert check(HAIKU, "free:3").passed


def test_english_counterexamples_fail_with_the_right_reason() -> None:
    long_first = HAIKU.replace("An old pond", "An ancient pond")
    report = check(long_first, "haiku")
    assert not report.passed
    assert said(report.reasons) == "line 1 has 6 syllables; it should have 5"
    assert report.lines[0].problems and not report.lines[1].problems

    assert "4 lines where a Haiku has 3" in said(check(HAIKU + "and more\n", "haiku").reasons)
    assert "the text is empty" in said(check("  \n\n", "haiku").reasons)

    unrhymed = LEAR.replace("feared", "thought")
    reasons = said(check(unrhymed, "limerick").reasons)
    assert "line 2 ends with 'thought', which does not rhyme with 'beard' (line 1)" in reasons

    short = SONNET_18.replace("Rough winds do shake the darling buds of May", "Winds shake May")
    assert "line 3 has 3 syllables; it should have 10±1" in said(check(short, "sonnet").reasons)

    wrong_break = SONNET_18.replace("shines,\n", "shines,\n\n")
    assert "stanza break after line 5" in said(check(wrong_break, "sonnet").reasons)

    quatrain = (
        "The cat sat on the mat\nthe dog ran in the fog\n"
        "the bat flew to the hat\nthe frog sat on a log\n"
    )
    assert check(quatrain, "quatrain:ABAB").passed
    reasons = said(check(quatrain, "quatrain:AABB").reasons)
    assert "line 2 ends with 'fog', which does not rhyme with 'mat' (line 1)" in reasons


# ------------------------------------------------------------------ Chinese poems


def test_tang_quatrains_pass_and_irregular_ones_fail_strict_rules() -> None:
    for poem in (JING_YE_SI, DENG_GUAN_QUE_LOU, CHUN_XIAO):
        for system in ("pingshui", "xinyun"):
            report = check(poem, get_form("wujue", rhyme_system=system))
            assert report.passed, (poem, system, report.reasons)
    assert check(DENG_GUAN_QUE_LOU, get_form("wujue", strict=True)).passed
    report = check(DENG_GUAN_QUE_LOU, "wujue")
    assert report.template == "仄起首句不入韵" and report.pattern_score is not None
    assert [line.rhyme_group for line in report.lines][1::2] == ["下平聲十一尤"] * 2

    # 静夜思 ignores the 平仄 of regulated verse: lenient passes, strict names the places.
    report = check(JING_YE_SI, get_form("wujue", strict=True))
    assert not report.passed
    assert "line 2 breaks the 平仄 at character 4" in said(report.reasons)
    # 春晓 rhymes in an oblique tone (晓 鸟 少, 上聲十七篠): an old-style quatrain.
    report = check(CHUN_XIAO, get_form("wujue", strict=True))
    assert "rhyme in an oblique (仄) group 上聲十七篠" in said(report.reasons)
    assert check(CHU_SAI, get_form("qijue", strict=True)).passed


def test_regulated_octaves_pass() -> None:
    assert check(CHUN_WANG, "wulu").passed, check(CHUN_WANG, "wulu").reasons
    assert check(DENG_GAO, "qilu").passed, check(DENG_GAO, "qilu").reasons
    report = check(DENG_GAO, get_form("七律", strict=True))
    assert report.passed, report.reasons
    assert [line.rhymes_with for line in report.lines][1::2] == [None, 2, 2, 2]


def test_rhyme_systems_differ_where_modern_finals_moved() -> None:
    # 斜 rhymed with 家/花 (六麻) in Tang times; in modern Mandarin it reads xié (皆).
    strict_old = check(SHAN_XING, get_form("qijue", strict=True))
    assert strict_old.passed, strict_old.reasons
    strict_new = check(SHAN_XING, get_form("qijue", rhyme_system="xinyun", strict=True))
    assert said(strict_new.reasons) == (
        "line 1 ends with 斜 (皆), which does not rhyme with 家 (麻, line 2) under 中华新韵"
    )
    assert check(SHAN_XING, get_form("qijue", rhyme_system="xinyun")).passed  # line 1 may
    # 东 (一東) and 冬 (二冬) are different 平水韵 groups but one modern group (庚).
    poem = "白日照城东，\n春风入我宫。\n山高云不尽，\n夜雪满天冬。"
    assert check(poem, get_form("wujue", rhyme_system="xinyun")).passed
    report = check(poem, "wujue")
    assert "line 4 ends with 冬 (上平聲二冬), which does not rhyme with 宫 (上平聲一東" in said(
        report.reasons
    )


def test_chinese_counterexamples_fail_with_the_right_reason() -> None:
    report = check("白日依山尽，黄河入大海流。\n欲穷千里目，更上一层楼。", "wujue")
    assert said(report.reasons) == "line 2 has 6 characters; it should have 5"
    report = check("白日依山尽，黄河入海流。\n欲穷千里目，更上一层台。", "wujue")
    assert said(report.reasons).startswith("line 4 ends with 台 (上平聲十灰/上平聲四支), which")
    assert "does not rhyme with 流 (下平聲十一尤, line 2) under 平水韵" in said(report.reasons)
    assert "3 lines where a 五言绝句 has 4" in said(
        check("白日依山尽\n黄河入海流\n欲穷千里目", "wujue").reasons
    )
    report = check("白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼ok。", "wujue")
    assert "line 4 has characters that are not Chinese: 'ok'" in said(report.reasons)


HAN_TEXT = st.text(
    alphabet=st.sampled_from(list("床前明月光疑是地上霜白日依山尽黄河入海流𠀀豈，。！？、 \nabc1")),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(HAN_TEXT)
def test_character_counts_are_the_han_characters(text: str) -> None:
    for name in ("wujue", "qilu"):
        report = check(text, get_form(name, strict=True))
        assert sum(line.units for line in report.lines) == len(chinese.han_chars(text))
        for line in report.lines:
            assert line.units == len(chinese.han_chars(line.text))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["haiku", "limerick", "sonnet", "wujue", "qijue"]))
def test_checker_never_fails_on_any_text(text: str, name: str) -> None:
    report = check(text, name)
    assert report.passed == (not report.reasons)
    verdict = "passes as a " if report.passed else "fails as a "
    assert report.summary().startswith(verdict + report.form.display_name)
    assert all(reason in report.summary() for reason in report.reasons)


def test_xinyun_groups_from_pinyin() -> None:
    expected = {
        "ma1": "麻",
        "guo2": "波",
        "ge1": "波",
        "xie2": "皆",
        "yue4": "皆",
        "lai2": "开",
        "gui1": "微",
        "wei2": "微",
        "gao1": "豪",
        "liu2": "尤",
        "you3": "尤",
        "shan1": "寒",
        "yuan2": "寒",
        "xuan1": "寒",
        "ren2": "文",
        "yun2": "文",
        "jun1": "文",
        "xiang1": "唐",
        "wang4": "唐",
        "feng1": "庚",
        "dong1": "庚",
        "xiong2": "庚",
        "qi2": "齐",
        "yu2": "齐",
        "ju1": "齐",
        "er2": "齐",
        "shi1": "支",
        "zi4": "支",
        "ri4": "支",
        "hu2": "姑",
        "wu3": "姑",
    }
    for reading, group in expected.items():
        assert chinese.xinyun_group(reading) == group, reading
    assert chinese.xinyun_group("m2") is None
