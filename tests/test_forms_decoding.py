"""Constrained decoding: small real models, trained here in seconds, write poems that pass the
checker on every sample, with character and BPE tokenizers, in English and Chinese."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from musegpt.forms import (
    Budget,
    Form,
    FormError,
    PoemFormError,
    check,
    form_constraints,
    get_form,
    model_generate_fn,
    suggested_max_new_tokens,
    write_poem,
)
from musegpt.forms.constraints import FormConstraint
from musegpt.forms.english import cmu_lexicon
from musegpt.generation.decoder import Decoder, GPTLogitsSource
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import DecodeState, LogitsProcessor
from musegpt.model import GPT, GPTConfig
from musegpt.tokenizer.base import EOT, Tokenizer
from musegpt.tokenizer.bpe import BPETokenizer
from musegpt.tokenizer.char import CharTokenizer

ENGLISH = """\
the sea is deep and the night is long
the wind will sing a quiet song
i walk alone upon the sand
the moon is bright above the land
a bird will fly into the light
the stars are cold and white tonight
my heart is full of love and rain
the road is long, i walk again
the day is done, the sun is low
the river sings, the waters flow
"""

CHINESE = """\
床前明月光，疑是地上霜。举头望明月，低头思故乡。
白日依山尽，黄河入海流。欲穷千里目，更上一层楼。
春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。
红豆生南国，春来发几枝。愿君多采撷，此物最相思。
千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。
秦时明月汉时关，万里长征人未还。但使龙城飞将在，不教胡马度阴山。
朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。
"""


class TinyWriter:
    """A trained-in-seconds GPT with the engine-shaped `generate` that forms expect."""

    def __init__(self, text: str, tokenizer: Tokenizer, steps: int = 60) -> None:
        torch.manual_seed(0)
        ids = torch.tensor(tokenizer.encode(text * 3))
        config = GPTConfig(
            vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=48
        )
        model = GPT(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(steps):
            start = torch.randint(0, len(ids) - 33, (16,))
            x = torch.stack([ids[s : s + 32] for s in start.tolist()])
            y = torch.stack([ids[s + 1 : s + 33] for s in start.tolist()])
            loss = model(x, targets=y).loss
            assert loss is not None
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.tokenizer = tokenizer
        self.decoder = Decoder(GPTLogitsSource(model.eval()), tokenizer)

    def generate(
        self,
        prompt: str,
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        **overrides: Any,
    ) -> str:
        base = params.model_dump() if params is not None else {}
        full = SamplingParams(**{**base, **overrides})
        return self.decoder.generate(prompt, full, constraints)[0].text

    def samples(self, form: Form, n: int, seed: int, prompt: str = "") -> list[str]:
        params = SamplingParams(
            n=n, seed=seed, temperature=0.9, max_new_tokens=suggested_max_new_tokens(form)
        )
        constraints = form_constraints(form, self.tokenizer)
        return [c.text for c in self.decoder.generate(prompt, params, constraints)]


@pytest.fixture(scope="module")
def english_char() -> TinyWriter:
    return TinyWriter(ENGLISH, CharTokenizer.train([ENGLISH]))


@pytest.fixture(scope="module")
def english_bpe() -> TinyWriter:
    return TinyWriter(ENGLISH, BPETokenizer.train([ENGLISH], 320))


@pytest.fixture(scope="module")
def chinese_char() -> TinyWriter:
    return TinyWriter(CHINESE, CharTokenizer.train([CHINESE]))


@pytest.fixture(scope="module")
def chinese_bpe() -> TinyWriter:
    # A small byte-level vocabulary: many characters stay split over several tokens.
    return TinyWriter(CHINESE, BPETokenizer.train([CHINESE], 300))


def assert_all_pass(texts: list[str], form: Form) -> None:
    for text in texts:
        report = check(text, form)
        assert report.passed, (text, report.reasons)


ENGLISH_FORMS = ["haiku", "limerick", "quatrain:ABAB", "couplet:AA:8", "free:3"]


@pytest.mark.parametrize("name", ENGLISH_FORMS)
def test_english_char_model_writes_valid_poems(english_char: TinyWriter, name: str) -> None:
    form = get_form(name)
    assert_all_pass(english_char.samples(form, n=3, seed=1), form)


@pytest.mark.parametrize("name", ["haiku", "limerick", "tanka"])
def test_english_bpe_model_writes_valid_poems(english_bpe: TinyWriter, name: str) -> None:
    form = get_form(name)
    assert_all_pass(english_bpe.samples(form, n=3, seed=2), form)


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_sonnets(english_char: TinyWriter, english_bpe: TinyWriter, tokenizer: str) -> None:
    writer = english_char if tokenizer == "char" else english_bpe
    for name in ("shakespearean-sonnet", "petrarchan-sonnet"):
        form = get_form(name)
        texts = writer.samples(form, n=1, seed=3, prompt="the sea\n\n")
        assert_all_pass(texts, form)
        assert len(texts[0].strip().splitlines()) >= 14


CHINESE_FORMS = [
    ("wujue", "pingshui", False),
    ("qijue", "xinyun", False),
    ("wujue", "pingshui", True),
    ("qijue", "xinyun", True),
    ("wulu", "pingshui", True),
    ("qilu", "pingshui", False),
]


@pytest.mark.parametrize(("name", "rhymes", "strict"), CHINESE_FORMS)
def test_chinese_char_model_writes_valid_poems(
    chinese_char: TinyWriter, name: str, rhymes: str, strict: bool
) -> None:
    form = get_form(name, rhyme_system=rhymes, strict=strict)  # type: ignore[arg-type]
    assert_all_pass(chinese_char.samples(form, n=3, seed=4), form)


@pytest.mark.parametrize(("name", "rhymes", "strict"), CHINESE_FORMS)
def test_chinese_bpe_model_writes_valid_poems(
    chinese_bpe: TinyWriter, name: str, rhymes: str, strict: bool
) -> None:
    form = get_form(name, rhyme_system=rhymes, strict=strict)  # type: ignore[arg-type]
    assert_all_pass(chinese_bpe.samples(form, n=3, seed=5), form)


def test_write_poem_returns_only_passing_poems(
    english_bpe: TinyWriter, chinese_char: TinyWriter
) -> None:
    generate = model_generate_fn(english_bpe, max_new_tokens=200, temperature=0.8)
    poem = write_poem(generate, "limerick", "the sea", tokenizer=english_bpe.tokenizer, seed=7)
    assert poem.report.passed and check(poem.text, "limerick").passed
    assert poem.attempt >= 1 and poem.seed == 7 + poem.attempt - 1
    poem = write_poem(
        model_generate_fn(chinese_char, max_new_tokens=80),
        get_form("五言绝句", strict=True),
        "春",
        tokenizer=chinese_char.tokenizer,
    )
    assert check(poem.text, get_form("wujue", strict=True)).passed


def test_write_poem_raises_after_bounded_attempts() -> None:
    seen: list[tuple[str, int, int]] = []

    def unruly(prompt: str, constraints: list[LogitsProcessor], seed: int) -> str:
        seen.append((prompt, len(constraints), seed))
        return "this is not\na haiku at all, sorry\n"

    with pytest.raises(FormError) as err:
        write_poem(unruly, "haiku", "rain", attempts=3, seed=10)
    assert isinstance(err.value, PoemFormError) and len(err.value.attempts) == 3
    assert "no Haiku after 3 attempt(s)" in str(err.value)
    assert "2 lines where a Haiku has 3" in str(err.value)
    assert [s for _, _, s in seen] == [10, 11, 12]
    assert seen[0] == ("rain\n\n", 0, 10)  # no tokenizer: checked, not constrained

    def good(prompt: str, constraints: list[LogitsProcessor], seed: int) -> str:
        return (
            "An old pond sits still\na frog leaps into the pond\nthe water is calm<|endoftext|>junk"
        )

    poem = write_poem(good, "haiku", attempts=1)
    assert poem.text.endswith("calm") and poem.attempt == 1
    with pytest.raises(ValueError, match="attempts"):
        write_poem(good, "haiku", attempts=0)


def test_budget_met_forces_the_line_to_end(english_char: TinyWriter) -> None:
    tok = english_char.tokenizer
    (constraint,) = form_constraints(get_form("haiku"), tok)
    assert isinstance(constraint, FormConstraint)

    def allowed(text: str) -> set[str]:
        mask = constraint.allowed(tok.encode(text))
        return {
            tok.token_bytes(i).decode("utf-8", "replace")
            for i in torch.nonzero(mask).flatten().tolist()
        }

    full = allowed("the sea is deep and")  # five syllables: no room for another word
    assert "\n" in full and " " not in full
    assert all(piece.isalpha() or piece in "\n,.;:!?" for piece in full)  # "ands" is a word
    assert allowed("the sea is deep and,") == {"\n"}
    assert " " in allowed("the sea is") and "\n" not in allowed("the sea is")  # 3 of 5
    last_line = "the sea is deep and\nthe wind will sing a quiet song\nthe stars are so cold,"
    assert allowed(last_line) == {EOT, "\n"}
    assert allowed("a\nb\nc\n") == {EOT}  # after the last line: only the end
    # A seven-syllable line cannot start with a word that would overflow a five-syllable one.
    assert "\n" not in allowed("")


def test_rhyme_is_enforced_at_the_line_end(english_char: TinyWriter) -> None:
    tok = english_char.tokenizer
    form = Form("two", "en", 2, (Budget.exact(1), Budget.exact(1)), "AA")
    (constraint,) = form_constraints(form, tok)
    assert isinstance(constraint, FormConstraint)

    def allowed(text: str) -> set[str]:
        mask = constraint.allowed(tok.encode(text))
        return {
            tok.token_bytes(i).decode("utf-8", "replace")
            for i in torch.nonzero(mask).flatten().tolist()
        }

    after_ha = allowed("cat\nha")
    assert "t" in after_ha  # hat
    assert "d" not in after_ha and EOT not in after_ha  # had, ha: no rhyme
    assert EOT in allowed("cat\nhat")
    assert "q" not in allowed("cat\n")  # no word starting with q rhymes with cat


def test_processor_only_lowers_scores_to_minus_infinity(chinese_bpe: TinyWriter) -> None:
    tok = chinese_bpe.tokenizer
    (constraint,) = form_constraints(get_form("qijue", strict=True), tok)
    prefixes = [[], tok.encode("秦时明月"), tok.encode("秦时明月汉时关，\n万")]
    state = DecodeState([list(p) for p in prefixes], [0] * len(prefixes))
    scores = torch.randn(len(prefixes), tok.vocab_size + 5)  # a model may pad its vocabulary
    out = constraint(state, scores)
    kept = torch.isfinite(out)
    assert torch.equal(out[kept], scores[kept])
    assert bool(torch.isneginf(out[~kept]).all())
    assert not bool(kept[:, tok.vocab_size :].any())
    assert bool(kept.any(dim=1).all())


def test_a_character_split_over_tokens_is_completed(chinese_bpe: TinyWriter) -> None:
    tok = chinese_bpe.tokenizer
    (constraint,) = form_constraints(get_form("wujue"), tok)
    assert isinstance(constraint, FormConstraint)
    ids = tok.encode("床前明月光，\n疑")
    lead = [i for i in range(tok.vocab_size) if tok.token_bytes(i) == "霜".encode()[:1]]
    assert lead, "the byte-level vocabulary has single-byte tokens"
    mask = constraint.allowed([*ids, lead[0]])
    for token in torch.nonzero(mask).flatten().tolist():
        data = tok.token_bytes(token)
        assert 0x80 <= data[0] < 0xC0  # only continuations of the open character


class BigTokenizer(Tokenizer):
    """A synthetic 262,144-token vocabulary: bytes, words with and without a leading space,
    capitalised words, Chinese characters and pairs, punctuation, filler."""

    kind: ClassVar[str] = "big"

    def __init__(self, size: int = 262_144) -> None:
        pieces = [bytes([b]) for b in range(256)] + [EOT.encode()]
        words = cmu_lexicon().words[::2]
        han = [chr(c) for c in range(0x4E00, 0x4E00 + 20_000)]
        candidates = [w.encode() for w in words[:40_000]]
        candidates += [(" " + w).encode() for w in words]
        candidates += [w.capitalize().encode() for w in words[:40_000]]
        candidates += [c.encode() for c in han] + [
            (a + b).encode() for a, b in itertools.pairwise(han)
        ]
        candidates += [b"\n", b".\n", b",", b", ", b"\n\n", "，".encode(), "。\n".encode()]
        seen = set(pieces)
        for piece in candidates:
            if piece not in seen and len(pieces) < size:
                pieces.append(piece)
                seen.add(piece)
        pieces += [f"<unused{i}>".encode() for i in range(size - len(pieces))]
        self.pieces = pieces

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    @property
    def eot_id(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.pieces[token_id]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BigTokenizer:
        return cls()


def test_forms_hold_on_a_262k_token_vocabulary() -> None:
    tok = BigTokenizer()
    assert tok.vocab_size == 262_144
    for name in ("limerick", "qijue"):
        form = get_form(name, strict=name == "qijue")
        (constraint,) = form_constraints(form, tok)
        generator = torch.Generator().manual_seed(0)
        ids: list[int] = []
        for _ in range(60):
            scores = torch.randn(1, tok.vocab_size, generator=generator)
            out = constraint(DecodeState([list(ids)], [0]), scores)
            token = int(torch.multinomial(out.softmax(dim=-1), 1, generator=generator))
            if token == tok.eot_id:
                break
            ids.append(token)
        assert check(tok.decode(ids), form).passed, tok.decode(ids)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_token_history_leaves_some_token_allowed(history: list[int]) -> None:
    tok = CharTokenizer.train([ENGLISH + CHINESE])
    ids = [i % tok.vocab_size for i in history]
    for name in ("haiku", "wujue"):
        (constraint,) = form_constraints(get_form(name, strict=True), tok)
        assert isinstance(constraint, FormConstraint)
        assert bool(constraint.allowed(ids).any())


def test_words_are_cased_as_words() -> None:
    """Gemma spells CMU words from mixed-case pieces ("oCheLtreE", "bEeN"): a word may go
    on only in its own case."""
    from musegpt.forms.constraints import LOWER, MIXED, TITLE, UPPER, cases_after, letter_case

    assert [letter_case(w) for w in ("rain", "Rain", "RAIN", "I", "o'er", "bEeN")] == [
        LOWER, TITLE, UPPER, UPPER, LOWER, MIXED,
    ]  # fmt: skip
    assert cases_after("") == (LOWER, TITLE, UPPER)
    assert cases_after("Hea") == (LOWER,)  # not "Hea" + "Rl"
    assert cases_after("b") == (LOWER,)  # not "b" + "EeN"
    assert cases_after("A") == (LOWER, UPPER)  # "A" + "nd", "A" + "ND"
    assert cases_after("AN") == (UPPER,)
    assert MIXED not in cases_after("") + cases_after("rain") + cases_after("RAIN")
