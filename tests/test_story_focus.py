"""Chapters that stay on the premise, dialogue that does not go round, summaries that say
what the chapter said (issue 14, ninth session): the premise's words nudged up while a
chapter is decoded until one is written, a clause said a third time (nearly) taken back
while decoding, and a summary naming what neither its chapter nor the plan holds redrawn."""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from test_story_chapters import PLANS

from musegpt.engines.base import Engine
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import DecodeState
from musegpt.studio import Studio
from musegpt.studio import plan_checks as checks
from musegpt.studio.plan_checks import says_any
from musegpt.studio.plan_rules import Favour, vocab_texts
from musegpt.studio.story import CirclingLines, Scene, StoryProject, write_scene
from musegpt.studio.story_eval import circling, invented_summaries

# The README's Chinese story in the eighth session (docs/stories-eval.md), chapter 2's end:
# "莫拉笑了，“…”" for every line, "你为什么会这样？" again and again.
CIRCLING_ZH = (
    "“我不是你在想我。”\n"
    "莫拉笑了，笑起来的时候，“我为什么会这样？你为什么要告诉我？”\n"
    "她说：“我在想你的眼睛看着我不舒服。”\n"
    "莫拉笑了，“那你为什么在心里想我？你要是因为我吗？”\n"
    "“我是在想你想说的话。”\n"
    "莫拉笑了，“你觉得你想的话听得懂吗？”\n"
    "“对……我不听得懂。”\n"
    "她说：“你为什么会这样？”\n"
    "“我在想你……你为什么会这样？我到底有什么原因？”\n"
)
# A chapter of the eval's rows (docs/stories-eval.jsonl, 一个能看见过去的盲人, seed 1 run):
# the same line of speech three times, each in a sentence of its own words.
SEEN_ZH = "“我看见了火。”他说。\n她问：“你看见了什么？”\n“我看见了火。”\n他又说：“我看见了火。”\n"


def test_a_clause_said_a_third_time_nearly_is_circling() -> None:
    found = checks.circling_clauses(CIRCLING_ZH, "zh")
    said = [CIRCLING_ZH[at : at + 4] for at in found]
    assert said == ["莫拉笑了", "你为什么"], said  # the third of each, not the first two
    assert checks.circling_clauses(SEEN_ZH, "zh") == [SEEN_ZH.rindex("我看见了火")]
    # One character changed is the same line ("我为什么会这样" / "你为什么会这样")…
    assert checks.circling_clauses("我为什么会这样？你为什么会这样？他为什么会这样？", "zh")
    # …a long line said again after other words too (its last eight characters)…
    tears = "莫拉发现她的眼睛里流淌着她的泪水。她的眼睛里流淌着她的泪水。" * 2
    assert checks.circling_clauses(tears, "zh")
    # …but two different lines, or one not yet ended, are not.
    assert not checks.circling_clauses("他看见了海。他看见了船。他看见了鸟。", "zh")
    assert not checks.circling_clauses("她说：“我爱你。”她说：“我爱你。”她说：“我爱你", "zh")
    # What the chapter said before the draft counts, but is not the draft's to take back.
    assert checks.circling_clauses("莫拉笑了。", "zh", before="莫拉笑了。莫拉笑了。") == [0]
    assert not checks.circling_clauses("好的。", "zh", before="莫拉笑了。莫拉笑了。莫拉笑了。")


def test_the_eval_counts_circling_chapters_and_invented_summaries() -> None:
    premise, bible, beat = PLANS["zh"]
    first = Scene(beat, CIRCLING_ZH, "周大海给莫拉讲了一座海岛上的豪华客车。")
    scenes = [first, Scene(beat, "周大海天不亮就出海，对着鱼唱歌。")]
    project = {"premise": premise, "lang": "zh", "bible": asdict(bible), "scenes": scenes}
    row = {
        "lang": "zh",
        "chapters": [{}, {}],
        "project": json.loads(json.dumps(project, default=asdict)),
    }
    assert circling([row]) == [True, False]
    assert invented_summaries([row]) == [True]
    first.summary = "莫拉笑了，问周大海为什么会这样。"
    row["project"] = json.loads(json.dumps(project, default=asdict))
    assert invented_summaries([row]) == [False]


def test_the_decoder_takes_back_a_line_said_a_third_time(gemma: Engine) -> None:
    prompt = "她说：“我爱你。”\n他说：“我爱你。”\n"
    params = SamplingParams(temperature=0.0, max_new_tokens=40)
    plain = gemma.generate(prompt, params)
    assert checks.circling_clauses(plain, "zh", before=prompt)  # greedy says it again…
    kept = gemma.generate(prompt, params, [CirclingLines("zh", prompt)])
    assert not checks.circling_clauses(kept, "zh", before=prompt), kept  # …and cannot here


def test_the_chapter_nudge_raises_only_whole_premise_words(gemma: Engine) -> None:
    words = checks.keywords("一个发现爱情的机器人", "zh")
    nudge = Favour(gemma.tokenizer, words, "zh", partial(says_any, words, "zh"), whole=True)
    texts = {vocab_texts(gemma.tokenizer)[i] for i in nudge.ids.tolist()}
    assert {"爱情", "机器人"} <= texts
    # A lone 爱 never became 爱情 and was written again and again ("爱自己，爱自己的爱人").
    assert "爱" not in texts and "机" not in texts


def test_the_chapter_nudge_waits_while_the_premise_was_just_written(gemma: Engine) -> None:
    words = checks.keywords("一个发现爱情的机器人", "zh")

    def nudged(context: str) -> bool:
        nudge = Favour(
            gemma.tokenizer, words, "zh", partial(says_any, words, "zh"),
            whole=True, context=context, window=20,
        )  # fmt: skip
        state = DecodeState([gemma.tokenizer.encode("他走了。")], [0])
        return bool(nudge(state, torch.zeros(1, gemma.tokenizer.vocab_size)).max() > 0)

    assert not nudged("它是一个机器人。")  # said just before this call: no nudge
    assert nudged("它是一个机器人。" + "他在海边走了很久。" * 3)  # far behind: nudged again
    assert nudged("")


def test_a_chapter_about_something_else_still_names_the_premise(
    gemma: Engine, tmp_path: Path
) -> None:
    # A beat about the fisherman's singing: unnudged, the chapters of seeds 1, 2 and 4 named
    # neither the robot nor love (measured); nudged until one is written, all did.
    premise, bible, beat = PLANS["zh"]
    project = StoryProject(tmp_path, premise, "zh", bible, [Scene(beat)], scene_tokens=120)
    writer = Studio(gemma).writer(premise, seed=4)
    text = write_scene(writer, project, 0, candidates=1).text
    assert checks.mentions(text, checks.keywords(premise, "zh"), "zh"), text


# The README's Chinese story in the eighth session: its first chapter (abridged: the
# lines the summary could have drawn on) and the two summaries the model wrote of it.
CHAPTER_ZH = (
    "乔纳斯是第一次看到莫拉。她坐在正中央，正在一旁盯着自己。莫拉在看到乔纳斯的眼睛的时候，"
    "被压抑了很久。看着乔纳斯，莫拉想说几句话，但是乔纳斯却说：“我还没有发现你。”"
    "莫拉愣了一下，然后就跟乔纳斯说了一句话。她没有回答，因为她不知道自己为什么会这样。"
    "最后，莫拉也笑了起来。她笑起来的时候，“原来我一直在想你。”"
)
PLAN_ZH = (
    "一个发现爱情的机器人\n乔纳斯 机器人，女，二十岁，性格单纯。\n莫拉 机器人，男孩，性格高傲。"
)


def test_a_summary_naming_what_the_chapter_does_not_is_invented() -> None:
    source = CHAPTER_ZH + "\n" + PLAN_ZH
    island = "乔纳斯把海岛的岛屿全部留了下来。他带了一辆豪华的豪华客车在海上往陆地旅行。"
    assert checks.invented(island, source, "zh")
    assert checks.invented(
        "莫拉说起一个叫莫拉的男孩。 他是个活泼的男孩，他很喜欢妈妈。", source, "zh"
    )
    assert not checks.invented("乔纳斯第一次看到莫拉，莫拉想起自己一直在想他。", source, "zh")
    chapter = "Ada fixed the lamp in the harbour office. The fisherman's song made her stop."
    plan = "a robot who discovers love\nAda a repair robot\nJonah Reed an old fisherman"
    assert not checks.invented("Ada fixed the lamp and stopped at the song.", chapter + plan, "en")
    # A name neither the chapter nor the plan has (seen: "…at the New York City War-torn
    # Headquarters") is invented even among words the chapter has.
    assert checks.invented("Ada fixed the lamp for Mordred in the office.", chapter + plan, "en")


def test_a_circling_line_already_streamed_is_not_taken_back() -> None:
    rule = CirclingLines("zh", "莫拉笑了。莫拉笑了。")
    assert rule.banned_at("莫拉笑了。好的。", 0) == 0
    assert rule.banned_at("莫拉笑了。好的。", len("莫拉笑了。")) is None
