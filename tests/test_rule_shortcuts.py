"""The per-token shortcuts of the chapter rules and the logits pipeline give what the plain
code gives: the same text gets the same verdict, character by character as a decode writes
it, and the same scores bit for bit (issue 14: these run on every token of a story, so they
skip work whose answer cannot have changed, and copies of the vocabulary's scores)."""

from __future__ import annotations

import pytest
import torch

from musegpt.engines.base import Engine
from musegpt.engines.llama import LlamaTokenizer
from musegpt.generation.decoder import _best_k_tempered, _drop_kth_plus_one, best_k
from musegpt.generation.processors import (
    NEG_INF,
    BanTokens,
    BlockTakenBack,
    DecodeState,
    LogitsProcessor,
    PresenceFrequencyPenalty,
    Temperature,
    apply_pipeline,
)
from musegpt.studio import plan_checks as checks
from musegpt.studio.plan_rules import Favour, vocab_bytes
from musegpt.studio.story import CirclingLines
from musegpt.studio.text import HAN, WORD, cut_ngram_loops, strip_labels
from musegpt.tokenizer.char import CharTokenizer

# Dialogue going round (the README story's), with other lines between and a take-back's
# worth of text after each clause.
ZH = (
    "莫拉笑了，她说：“你为什么会这样？”\n乔纳斯看着她。“我为什么会这样？”\n"
    "她问：“你看见了什么？”他为什么会这样？莫拉笑了，她说：“你为什么会这样？”\n"
    "她走到窗前，看着外面的雨。你为什么会这样？"
)


def plain_verdict(text: str, shown: int, before: str) -> int | None:
    """`CirclingLines.banned_at` as written before the shortcut: every clause judged."""
    if not checks.CLAUSE_MARK.search(text, max(len(text) - CirclingLines.LOOK_BACK, 0)):
        return None
    for start in checks.circling_clauses(text, "zh", before):
        clause = checks.CLAUSE.match(text, start)
        if clause is not None and clause.end() >= shown:
            return start
    return None


@pytest.mark.parametrize("before", ["", "你为什么会这样？莫拉笑了。"])
def test_circling_lines_judges_each_prefix_as_the_plain_rule(before: str) -> None:
    rule = CirclingLines("zh", before)
    verdicts = []
    for end in range(1, len(ZH) + 1):
        for shown in (0, max(end - 6, 0)):
            got = rule.banned_at(ZH[:end], shown)
            assert got == plain_verdict(ZH[:end], shown, before), (end, shown)
            verdicts.append(got)
    assert any(v is not None for v in verdicts)  # the rule did fire on this text


def test_circling_lines_two_rows_taking_turns() -> None:
    """One rule serves both rows of a batch: alternating texts get their own verdicts."""
    rule = CirclingLines("zh")
    other = "她走到窗前。" * 3
    for end in range(1, len(ZH) + 1):
        assert rule.banned_at(ZH[:end], 0) == plain_verdict(ZH[:end], 0, "")
        short = other[: min(end, len(other))]
        assert rule.banned_at(short, 0) == plain_verdict(short, 0, "")


def plain_loops(text: str, size: int = 4, runs: int = 3) -> str:
    """`cut_ngram_loops` without its first-unit check (the definition)."""
    spans = [(m.start(), m.group(0).lower()) for m in WORD.finditer(text)]
    tokens: list[tuple[int, str]] = []
    for start, token in spans:
        chars = [(start + i, ch) for i, ch in enumerate(token)]
        tokens += chars if HAN.search(token) else [(start, token)]
    words = [t for _, t in tokens]
    for i in range(len(words)):
        for n in range(1, size + 1):
            if i + n * runs > len(words):
                break
            gram = words[i : i + n]
            if n == 1 and not gram[0].isalnum():
                continue
            if all(words[i + k * n : i + (k + 1) * n] == gram for k in range(1, runs)):
                return text[: tokens[i + n][0]].rstrip()
    return text


@pytest.mark.parametrize(
    "text",
    [
        "and then and then and then she left",
        "He ran. He ran. He ran home!!! and so on",
        "她哭了她哭了她哭了。",
        "好好好的，……………… 他说",
        ZH,
        "a b a b a c a b a b a b",
    ],
)
def test_ngram_loops_cut_where_the_definition_does(text: str) -> None:
    assert cut_ngram_loops(text) == plain_loops(text)
    assert cut_ngram_loops(text, runs=1) == plain_loops(text, runs=1)


def test_strip_labels_with_several_labels() -> None:
    text = "She left.\nNote: none\nChapter 2: more\n  Premise: again"
    assert strip_labels(text, ["Premise:", "Chapter"]) == "She left.\nNote: none"
    assert strip_labels(text, []) == text
    assert strip_labels("Premise: first line stays", ["Premise:"]) == "Premise: first line stays"


def test_pipeline_in_place_gives_each_steps_own_scores() -> None:
    """After the first step copies the scores, `InPlace` steps change that copy: the same
    scores, bit for bit, as each step's own copy, and the model's logits untouched."""
    tokenizer = CharTokenizer.train(["机器人发现了爱情。她说：好。Mara went home.\n"])
    vocab = tokenizer.vocab_size
    nudge = Favour(tokenizer, ["机器"], "zh", lambda text: "机器" in text, bias=2.0)
    steps: list[LogitsProcessor] = [
        PresenceFrequencyPenalty(0.1, 0.3),
        BanTokens([1, 2]),
        nudge,
        BlockTakenBack(),
        Temperature(0.7),
    ]
    prompt = tokenizer.encode("她说：")
    rows = [prompt + tokenizer.encode("好。好。"), prompt + tokenizer.encode("机器人")]
    state = DecodeState(rows, [len(prompt)] * 2, blocked=[(), (3,)])
    raw = torch.randn(2, vocab, generator=torch.Generator().manual_seed(0))
    kept = raw.clone()
    expected = raw
    for step in steps:
        expected = step(state, expected)
    assert torch.equal(apply_pipeline(steps, state, raw), expected)
    assert torch.equal(raw, kept)
    assert nudge.nudged(state) == [0]  # row 1 has written the word: only row 0 is raised
    ids = nudge.ids.tolist()
    assert ids and bool((expected[0, ids] > (raw[0, ids] - 1) / 0.7).all())


def torch_best_k_tempered(
    scores: torch.Tensor, k: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`_best_k_tempered` without its numpy step (the reference): the torch step always."""
    found = best_k(scores, k + 1)
    return None if found is None else _drop_kth_plus_one(*found, k, temperature)


@pytest.mark.parametrize("seed", range(6))
def test_best_k_tempered_as_the_torch_reference(seed: int) -> None:
    """The same survivors and scores, bit for bit, or None alike: random scores, ties at
    the k-th (rounded scores), near-ties only a temperature tells apart, ruled-out ones."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 64 * 300, generator=generator) * 4
    if seed % 3 == 1:
        scores = scores.round()  # many equal scores: ties decide
    if seed % 3 == 2:
        scores[:, :18000] = NEG_INF  # fewer than k + 1 finite in the blocks looked at
    for k, temperature in [(64, 0.8), (40, 1.3), (5, 0.07)]:
        got = _best_k_tempered(scores, k, temperature)
        want = torch_best_k_tempered(scores, k, temperature)
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    near = torch.zeros(1, 64 * 300)
    near[0, :65] = torch.linspace(5.0, 6.0, 65)
    near[0, 0] = torch.nextafter(near[0, 1], torch.tensor(-10.0))  # one ulp below the k-th
    assert (_best_k_tempered(near, 64, 3.0) is None) == (
        torch_best_k_tempered(near, 64, 3.0) is None
    )


def test_llama_reads_the_whole_vocabulary_as_token_bytes_does(gemma: Engine) -> None:
    """The vocabulary tables' one-loop read gives each token's bytes as `token_bytes` does
    (Gemma: the beginning and end tokens empty, pieces of characters as raw bytes)."""
    tokenizer = gemma.tokenizer
    assert isinstance(tokenizer, LlamaTokenizer)
    every = tokenizer.all_token_bytes()
    assert every == [tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)]
    assert vocab_bytes(tokenizer) == every
    assert every[tokenizer.eot_id] == b"" and any(len(piece) > 8 for piece in every)
