"""The decoding loop: every SamplingParams field does what its name says."""

from __future__ import annotations

import itertools
import threading
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from musegpt.api import MuseModel
from musegpt.generation.decoder import Decoder, GPTLogitsSource, _complete_utf8, draw
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import DecodeState
from musegpt.model import GPT, GPTConfig
from musegpt.tokenizer.char import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,\n"


@pytest.fixture(scope="module")
def muse() -> MuseModel:
    torch.manual_seed(0)
    tokenizer = CharTokenizer(ALPHABET)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=24, n_layer=2, n_head=2, n_embd=32
    )
    model = GPT(config).eval()
    # Make this random model favour the alphabet: byte-fallback tokens make odd text.
    with torch.no_grad():
        model.wte.weight[len(ALPHABET) + 1 :] *= 0.1
    return MuseModel(model, tokenizer)


def greedy(**kw: object) -> SamplingParams:
    return SamplingParams(temperature=0, **kw)  # type: ignore[arg-type]


def manual_greedy(muse: MuseModel, prompt: str, steps: int) -> list[int]:
    ids = muse.tokenizer.encode(prompt)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(muse.model(torch.tensor([ids[-23:]])).logits[0, -1].argmax())
            ids.append(nxt)
            out.append(nxt)
    return out


def test_greedy_equals_argmax_of_a_full_forward_each_step(muse: MuseModel) -> None:
    completion = muse.complete("the cat", greedy(max_new_tokens=12))[0]
    assert completion.token_ids == manual_greedy(muse, "the cat", 12)
    assert completion.finish_reason == "length"


def test_same_seed_same_text_and_other_seed_other_text(muse: MuseModel) -> None:
    a = muse.generate("once", max_new_tokens=30, seed=7)
    b = muse.generate("once", max_new_tokens=30, seed=7)
    c = muse.generate("once", max_new_tokens=30, seed=8)
    assert a == b and a != c


def test_lower_temperature_concentrates_on_the_likeliest_tokens(muse: MuseModel) -> None:
    def agreement(t: float) -> int:
        best = muse.complete("the", greedy(max_new_tokens=40))[0].token_ids
        runs = muse.complete("the", SamplingParams(temperature=t, n=8, seed=3, max_new_tokens=1))
        return sum(r.token_ids[0] == best[0] for r in runs)

    assert agreement(0.01) == 8
    assert agreement(5.0) < 8


@pytest.mark.parametrize(
    "truncation", [{"top_k": 1}, {"top_p": 1e-6}, {"min_p": 0.999}, {"typical_p": 1e-6}]
)
def test_extreme_truncation_leaves_a_single_choice(
    muse: MuseModel, truncation: dict[str, float]
) -> None:
    texts = {muse.generate("so", max_new_tokens=15, seed=s, **truncation) for s in range(4)}
    assert len(texts) == 1
    if "typical_p" not in truncation:  # typical keeps the most *typical* token, not the likeliest
        assert texts == {muse.generate("so", greedy(max_new_tokens=15))}


def test_top_k_limits_each_choice_to_the_k_best(muse: MuseModel) -> None:
    runs = muse.complete(
        "x", SamplingParams(top_k=3, n=40, seed=0, max_new_tokens=1, temperature=5)
    )
    with torch.no_grad():
        logits = muse.model(torch.tensor([muse.tokenizer.encode("x")])).logits[0, -1]
    allowed = set(torch.topk(logits, 3).indices.tolist())
    chosen = {r.token_ids[0] for r in runs}
    assert chosen <= allowed and len(chosen) > 1


def test_max_and_min_new_tokens(muse: MuseModel) -> None:
    eot = muse.tokenizer.eot_id
    eager_to_end = {eot: 50.0}
    assert muse.complete("a", greedy(max_new_tokens=5, logit_bias=eager_to_end))[0].token_ids == []
    c = muse.complete("a", greedy(max_new_tokens=9, min_new_tokens=6, logit_bias=eager_to_end))[0]
    assert len(c.token_ids) == 6 and c.finish_reason == "stop"
    assert len(muse.complete("a", greedy(max_new_tokens=7))[0].token_ids) == 7


def test_logit_bias_forces_and_forbids_tokens(muse: MuseModel) -> None:
    z = muse.tokenizer.encode("z")[0]
    assert muse.generate("a", greedy(max_new_tokens=6, logit_bias={z: 100.0})) == "zzzzzz"
    base = muse.complete("a", greedy(max_new_tokens=20))[0].token_ids
    top = Counter(base).most_common(1)[0][0]
    banned = muse.complete("a", greedy(max_new_tokens=20, logit_bias={top: -100.0}))[0].token_ids
    assert top not in banned


def repeats(ids: list[int]) -> int:
    return len(ids) - len(set(ids))


def test_repetition_presence_and_frequency_penalties_reduce_repeats(muse: MuseModel) -> None:
    base = muse.complete("the", greedy(max_new_tokens=30))[0].token_ids
    assert repeats(base) > 15  # a random model loops
    for extra in (
        {"repetition_penalty": 5.0},
        {"presence_penalty": 2.0},
        {"frequency_penalty": 2.0},
    ):
        ids = muse.complete("the", greedy(max_new_tokens=30, **extra))[0].token_ids
        assert repeats(ids) < repeats(base), extra


def test_no_repeat_ngram_size_means_no_repeated_ngram(muse: MuseModel) -> None:
    for n in (2, 3):
        ids = muse.complete("the", greedy(max_new_tokens=40, no_repeat_ngram_size=n))[0].token_ids
        prompt = muse.tokenizer.encode("the")
        seq = prompt + ids
        grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
        assert len(grams) == len(set(grams))


def test_stop_strings_end_the_text_before_them(muse: MuseModel) -> None:
    base = muse.generate("the", greedy(max_new_tokens=30))
    stop = base[5:7]
    c = muse.complete("the", greedy(max_new_tokens=30, stop=[stop]))[0]
    assert c.finish_reason == "stop"
    assert c.text == base[: base.index(stop)]
    streamed = "".join(muse.stream("the", greedy(max_new_tokens=30, stop=[stop])))
    assert streamed == c.text


def test_banned_phrases_never_appear_even_across_tokens(muse: MuseModel) -> None:
    base = muse.generate("the", greedy(max_new_tokens=40))
    phrase = base[3:6]  # three characters = three tokens
    out = muse.generate("the", greedy(max_new_tokens=40, banned=[phrase]))
    assert phrase in base and phrase not in out
    assert len(out) == 40
    for seed in range(5):
        sampled = muse.generate("the", max_new_tokens=60, seed=seed, temperature=1.5,
                                banned=["e", "th"], banned_regex=[r"[aeiou]{2}"])  # fmt: skip
        assert "e" not in sampled and "th" not in sampled
        assert not any(a in "aeiou" and b in "aeiou" for a, b in itertools.pairwise(sampled))


def test_banned_text_is_never_streamed_then_taken_back(muse: MuseModel) -> None:
    params = SamplingParams(max_new_tokens=60, seed=2, temperature=1.5, banned=["ab", "the"])
    pieces = list(muse.stream("x", params))
    assert "".join(pieces) == muse.generate("x", params)


def test_n_samples_and_batches_of_prompts(muse: MuseModel) -> None:
    params = SamplingParams(n=3, seed=5, max_new_tokens=10)
    out = muse.complete(["a", "a longer prompt"], params)
    assert [c.index for c in out] == [0, 1, 2, 3, 4, 5]
    assert [c.prompt_index for c in out] == [0, 0, 0, 1, 1, 1]
    assert len({c.text for c in out[:3]}) > 1


def test_batched_prompts_give_what_each_prompt_gives_alone(muse: MuseModel) -> None:
    prompts = ["a", "the cat sat", "on the mat, quietly"]
    batched = muse.complete(prompts, greedy(max_new_tokens=30))
    for prompt, completion in zip(prompts, batched, strict=True):
        assert completion.text == muse.generate(prompt, greedy(max_new_tokens=30))


def test_logprobs_report_the_choice_and_alternatives(muse: MuseModel) -> None:
    c = muse.complete("the", greedy(max_new_tokens=8, logprobs=3))[0]
    assert c.logprobs is not None and len(c.logprobs) == 8
    for step, token_id in zip(c.logprobs, c.token_ids, strict=True):
        assert step.token_id == token_id and step.logprob <= 0
        values = [alt.logprob for alt in step.top]
        assert values == sorted(values, reverse=True) and len(values) == 3
        best = step.top[0]
        assert best.token_id == token_id and best.logprob == pytest.approx(step.logprob)
        assert step.bytes == muse.tokenizer.token_bytes(token_id) == best.bytes
    assert muse.complete("the", greedy(max_new_tokens=3))[0].logprobs is None


def test_echo_puts_the_prompt_in_front(muse: MuseModel) -> None:
    plain = muse.generate("the", greedy(max_new_tokens=5))
    assert muse.generate("the", greedy(max_new_tokens=5, echo=True)) == "the" + plain


def test_prompts_longer_than_the_context_slide_or_fail_clearly(muse: MuseModel) -> None:
    long_prompt = "the quick brown fox jumps over the lazy dog " * 3
    out = muse.complete(long_prompt, greedy(max_new_tokens=50))[0]
    assert len(out.token_ids) == 50 and out.prompt_tokens == len(long_prompt)
    strict = Decoder(GPTLogitsSource(muse.model), muse.tokenizer, overflow="error")
    with pytest.raises(ValueError, match="context holds 24"):
        strict.generate(long_prompt, greedy(max_new_tokens=5))


def test_cancelling_a_stream_stops_it(muse: MuseModel) -> None:
    cancel = threading.Event()
    deltas = []
    for delta in muse.stream_deltas("the", greedy(max_new_tokens=200), cancel=cancel):
        deltas.append(delta)
        if len(deltas) == 3:
            cancel.set()
    assert deltas[-1].finish_reason == "cancelled"
    assert len("".join(d.text for d in deltas)) < 10


class ForceSequence:
    """A constraint that forces given tokens in order: shows constraints plug in as processors."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        forced = torch.full_like(scores, float("-inf"))
        for row in range(scores.shape[0]):
            step = len(state.generated(row))
            forced[row, self.tokens[step % len(self.tokens)]] = 0.0
        return forced


def test_streams_never_split_a_character(muse: MuseModel) -> None:
    text = "你好，世界🎨"
    byte_ids = muse.tokenizer.encode(text)  # unseen characters: one token per UTF-8 byte
    assert len(byte_ids) == len(text.encode("utf-8"))
    params = SamplingParams(max_new_tokens=len(byte_ids), seed=0)
    deltas = list(muse.stream("a", params, constraints=[ForceSequence(byte_ids)]))
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    assert deltas == list(text)  # each character appears as soon as its last byte arrives


def test_complete_utf8_keeps_incomplete_tails() -> None:
    data = "é你".encode()
    assert _complete_utf8(data[:-1]) == ("é", data[2:-1])
    assert _complete_utf8(data) == ("é你", b"")
    assert _complete_utf8(b"\xff") == ("\ufffd", b"")


@settings(max_examples=50, deadline=None)
@given(
    weights=st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=1, max_size=40).filter(
        lambda w: sum(w) > 0
    ),
    seed=st.integers(0, 2**31 - 1),
)
def test_draw_never_picks_a_token_of_probability_zero(weights: list[float], seed: int) -> None:
    probs = torch.tensor([weights, weights[::-1]])
    probs = probs / probs.sum(dim=-1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(20):
        tokens = draw(probs, generator)
        assert probs[0, tokens[0]] > 0 and probs[1, tokens[1]] > 0


def test_draw_follows_the_probabilities() -> None:
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 0.0, 1.0]])
    generator = torch.Generator().manual_seed(0)
    counts = Counter(tuple(draw(probs, generator).tolist()) for _ in range(4000))
    first = Counter[int]()
    for (a, b), c in counts.items():
        assert b == 3
        first[a] += c
    assert first[1] == 0
    assert abs(first[0] / 4000 - 0.5) < 0.03
    assert abs(first[2] / 4000 - 0.3) < 0.03
    assert abs(first[3] / 4000 - 0.2) < 0.03


@pytest.mark.parametrize("bad", [[0.0, 0.0, 0.0], [float("nan")] * 3])
def test_draw_refuses_a_row_with_nothing_to_draw(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="no token with a positive probability"):
        draw(torch.tensor([[0.2, 0.8, 0.0], bad]))
