"""Music: ABC normalisation, request headers, the bar-keeping grammar (against music21's own
durations) and constrained decoding with small real models, char and BPE."""

from __future__ import annotations

import shutil
import threading
from fractions import Fraction
from pathlib import Path

import music21
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.model import GPT, GPTConfig
from musegpt.music.abc import Header, header_for, normalise_tune, parse_header, split_tunes
from musegpt.music.compose import compose, compose_headers
from musegpt.music.constraint import AbcConstraint
from musegpt.music.evaluate import CopyIndex, bars_right, eval_headers, score_tune
from musegpt.music.grammar import ALPHABET, END, Grammar
from musegpt.music.tune import SOUNDFONT, MissingToolError, Tune, bars_of, parse_abc
from musegpt.tokenizer import CharTokenizer
from musegpt.tokenizer.base import Tokenizer
from musegpt.tokenizer.bpe import BPETokenizer

pytest.importorskip("music21", reason="music tests need music21: pip install music21")

TUNES = """X:1
T:The Kesh
R:jig
M:6/8
L:1/8
K:G
|:GAG GAB|ABA ABd|edd gdd|edB dBA|
GAG GAB|ABA ABd|edd gdB|AGF G3:|
X:1
T:Drowsy Maggie
R:reel
M:4/4
L:1/8
K:Edor
|:E2BE dEBE|E2BE AFDF|E2BE dEBE|BABc dAFD:|
d2fd c2ec|defg afge|d2fd c2ec|BABc dAFA|
X:1
T:Sweet Waltz
R:waltz
M:3/4
L:1/8
K:D
D2F2A2|d4 c2|B2A2F2|A6|(3ABA G2F2|E4 D2|F2E2D2|D6|]
"""


def measures(abc: str) -> list[Fraction]:
    """music21's bar durations in quarter notes."""
    score = parse_abc(abc)
    return [
        Fraction(m.duration.quarterLength).limit_denominator(96)
        for m in score.recurse().getElementsByClass("Measure")
    ]


def assert_valid_tune(tune: Tune, bars: int) -> None:
    bar = Fraction(tune.header.metre) * 4
    durations = measures(tune.abc)
    if len(durations) == bars + 1:  # a pick-up; the last bar is shorter by as much
        pickup, *durations = durations
        assert 0 < pickup <= bar / 2 and durations[-1] == bar - pickup, (tune.abc, pickup)
        durations[-1] = bar
    assert len(durations) == bars, tune.abc
    assert all(d == bar for d in durations), (tune.abc, durations)
    assert tune.body.rstrip().endswith(("|]", ":|")), tune.abc
    assert len(parse_abc(tune.abc).flatten().notes) > 0


# ------------------------------------------------------------------ headers and corpus


@pytest.mark.parametrize(
    ("request_text", "metre", "key", "rhythm"),
    [
        ("a lively jig in D major", "6/8", "D", "jig"),
        ("a reel in A dorian", "4/4", "Ador", "reel"),
        ("a sad waltz in F sharp minor", "3/4", "F#m", "waltz"),
        ("a hornpipe in Bb", "4/4", "Bb", "hornpipe"),
        ("a slip jig in E minor", "9/8", "Em", "slip jig"),
        ("a tune in 3/4 in G", "3/4", "G", None),
    ],
)
def test_header_from_request(request_text: str, metre: str, key: str, rhythm: str | None) -> None:
    header = header_for(request_text)
    assert (header.metre, header.key, header.rhythm) == (metre, key, rhythm)
    parsed, body = parse_header(header.text())
    assert parsed == header and body == ""


def test_header_title_keeps_the_other_words() -> None:
    assert header_for("a lively jig in D major").title == "Lively Jig"
    assert header_for("x", title="My Tune").title == "My Tune"


RAW = """% a file header comment
X: 12
T:The Old Favourite -- Jig
T:Second title
M:6/8
L:1/8
N:a note
Z:someone
K:G Major % trailing comment
"G"!trill!d2B {c}BAG|(AB)c "D"d2A|\\
TB2G ~A2F|G3 G2:|
P:B
|:g2e f2d|e2c d2B|]

X:13
T:No metre
M:none
K:C
CDE|
"""


def test_normalise_tune() -> None:
    raws = split_tunes(RAW)
    assert len(raws) == 2
    assert normalise_tune(raws[0]) == (
        "X:1\nT:The Old Favourite -- Jig\nR:jig\nM:6/8\nL:1/8\nK:G\n"
        "d2B BAG|ABc d2A|B2G A2F|G3 G2:|\n|:g2e f2d|e2c d2B|]"
    )
    assert normalise_tune(raws[1]) is None  # no metre: cannot be normalised


def test_abc_folk_cleans_music21_files() -> None:
    from musegpt.data.builtin import get_builtin
    from musegpt.music.corpus import clean, raw_tunes

    corpus = get_builtin("abc-folk")
    data = corpus.locate()
    assert len(data.files) > 100
    ryan = [f for f in data.files if "ryansMammoth" in str(f)][:5]
    cleaned = [t for t in (clean(raw) for raw in raw_tunes(ryan)) if t is not None]
    assert cleaned
    for tune in cleaned:
        _header, body = parse_header(tune)
        assert tune.startswith("X:1\nT:") and "%" not in tune and '"' not in body


# ------------------------------------------------------------------ the grammar


def random_body(data: st.DataObject, grammar: Grammar) -> str:
    """A body the grammar accepts, each character drawn by hypothesis among those allowed."""
    state = grammar.start()
    chars = sorted(ALPHABET)
    text = ""
    while state.phase != END:
        allowed = [c for c in chars if grammar.step(state, c) is not None]
        assert allowed, f"dead end after {text!r}"
        ch = data.draw(st.sampled_from(allowed))
        text += ch
        next_state = grammar.step(state, ch)
        assert next_state is not None
        state = next_state
    return text


# No shrinking: every example is a music21 parse, and a failure prints its body anyway.
@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data(), metre=st.sampled_from(["6/8", "4/4", "3/4", "2/4", "9/8"]))
def test_grammar_bars_match_music21(data: st.DataObject, metre: str) -> None:
    header = Header("Random", None, metre, "1/8", "D")
    bars = data.draw(st.integers(min_value=3, max_value=6))
    tonic = data.draw(st.sampled_from([None, "D"]))
    grammar = Grammar(header.bar_units, bars, tonic)
    body = random_body(data, grammar)
    end = grammar.feed(grammar.start(), body)
    assert end is not None
    abc = header.text() + body
    bar = Fraction(metre) * 4
    notes = parse_abc(abc).flatten().notesAndRests
    total = sum(Fraction(n.duration.quarterLength).limit_denominator(96) for n in notes)
    assert total == bar * bars, abc  # a pick-up and the last bar make one bar together
    # music21 makes measures only from two plain "|" on; when it does, each is one bar, or
    # the pick-up (at most half a bar) first and the last bar shorter by as much.
    durations = measures(abc)
    pickup = end.pickup_len * Fraction(header.unit) * 4  # in quarter notes
    assert 0 <= pickup <= bar / 2
    expected = [pickup, *[bar] * (bars - 1), bar - pickup] if pickup else [bar] * bars
    assert durations in ([], expected), (abc, durations)
    if tonic is not None:  # the last note is the tonic, D natural in D major
        assert notes[-1].isNote and notes[-1].pitch.name == "D", abc


def test_grammar_refuses_overfull_bars_and_early_ends() -> None:
    grammar = Grammar(Fraction(6), 2)  # 6/8 with L:1/8
    assert grammar.feed(grammar.start(), "ABc def|") is not None
    assert grammar.feed(grammar.start(), "ABc de|") is None  # short bar
    assert grammar.feed(grammar.start(), "ABc def2") is None  # overfull
    assert grammar.feed(grammar.start(), "ABc def|]") is None  # too early to end
    assert grammar.feed(grammar.start(), "(3ABc d4|") is not None  # triplet of 2 + 4
    assert grammar.feed(grammar.start(), "(3AB2") is None  # triplet notes of equal length
    assert grammar.feed(grammar.start(), "ABc de-f") is None  # a tie repeats the pitch
    # broken rhythm: A>B is A3/2 B1/2; the pair's notes share a written length of 1 or 2
    assert grammar.feed(grammar.start(), "A>Bc d>ef|") is not None
    assert grammar.feed(grammar.start(), "A2<B2 c2|") is not None
    assert grammar.feed(grammar.start(), "A>B2") is None
    assert grammar.feed(grammar.start(), "z>B") is None  # notes only, no rests
    assert grammar.feed(grammar.start(), "A> B") is None
    assert grammar.feed(grammar.start(), "ABc de>f|") is not None
    assert grammar.feed(grammar.start(), "ABc def>") is None  # the pair would overfill the bar
    # a pick-up of at most half a bar, once, not counted among the bars
    pickup = grammar.feed(grammar.start(), "A|ABc def|")
    assert pickup is not None and pickup.pickup and pickup.bars == 1
    assert grammar.feed(pickup, "ABc de|]") is not None  # the last bar is one unit short
    assert grammar.feed(pickup, "ABc def|]") is None
    assert grammar.feed(grammar.start(), "ABcd|") is None  # more than half a bar
    assert grammar.feed(grammar.start(), "A|B|") is None  # only one pick-up
    # given the tonic, the last note is the tonic: a letter D without an accidental
    tonic = Grammar(Fraction(6), 1, "D")
    assert tonic.feed(tonic.start(), "ABc ded|]") is not None
    assert tonic.feed(tonic.start(), "ABc def|") is None
    assert tonic.feed(tonic.start(), "ABc de^d|") is None  # an accidental: not the key's tonic
    assert tonic.feed(tonic.start(), "ABc dez|") is None  # a rest never ends the tune
    assert tonic.feed(tonic.start(), "ABc dez/D/|]") is not None  # a shorter one leaves room
    assert tonic.feed(tonic.start(), "ABc de^d/D/|]") is not None
    assert tonic.feed(tonic.start(), "ABc de-e/D/|]") is not None
    assert tonic.feed(tonic.start(), "ABc d2e/-") is None  # the tied e would have to end it
    end = grammar.feed(grammar.start(), "|:ABc de-e|f6:|")
    assert end is not None and end.ended


# ------------------------------------------------------------------ models


def tiny_engine(tokenizer: Tokenizer, steps: int = 80) -> MuseGPTEngine:
    """A GPT trained for a few seconds on the three tunes."""
    torch.manual_seed(0)
    text = "<|endoftext|>".join(TUNES.split("X:1\n")[1:])
    ids = torch.tensor(tokenizer.encode(("X:1\n" + text) * 4))
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=48
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        start = torch.randint(0, len(ids) - 65, (16,))
        x = torch.stack([ids[s : s + 64] for s in start.tolist()])
        y = torch.stack([ids[s + 1 : s + 65] for s in start.tolist()])
        loss = model(x, targets=y).loss
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return MuseGPTEngine(model.eval(), tokenizer, name="tiny-abc")


@pytest.fixture(scope="module")
def char_engine() -> MuseGPTEngine:
    return tiny_engine(CharTokenizer.train([TUNES]))


@pytest.fixture(scope="module")
def bpe_engine() -> MuseGPTEngine:
    return tiny_engine(BPETokenizer.train([TUNES * 3], 300), steps=60)


def test_constrained_char_model_writes_valid_tunes(char_engine: MuseGPTEngine) -> None:
    headers = eval_headers(6)
    tunes = compose_headers(char_engine, headers, bars=4, seed=1)
    for tune in tunes:
        assert_valid_tune(tune, 4)


def test_constrained_bpe_model_writes_valid_tunes(bpe_engine: MuseGPTEngine) -> None:
    multi = [t for t in range(bpe_engine.tokenizer.vocab_size)
             if len(bpe_engine.tokenizer.token_bytes(t)) > 2]  # fmt: skip
    assert multi  # the vocabulary really has multi-character tokens
    headers = [header_for("a jig in G"), header_for("a reel in E dorian")]
    for tune in compose_headers(bpe_engine, headers, bars=3, seed=2):
        assert_valid_tune(tune, 3)


def test_a_cancelled_compose_stops_decoding(char_engine: MuseGPTEngine) -> None:
    """The server cancels a compose whose client left: the decode stops, whatever is asked."""
    cancel = threading.Event()
    cancel.set()
    tune = compose_headers(char_engine, [header_for("a reel in D")], bars=64, cancel=cancel)[0]
    assert len(tune.bars()) == 0
    assert len(compose_headers(char_engine, [header_for("a reel in D")], bars=2)[0].bars()) >= 2


def test_unconstrained_is_available(char_engine: MuseGPTEngine) -> None:
    tune = compose("a jig in G", bars=4, seed=0, engine=char_engine, constrained=False)
    assert not tune.constrained and tune.abc.startswith("X:1\nT:Jig\nR:jig\nM:6/8")


def test_constraint_rejects_prompt_without_header(char_engine: MuseGPTEngine) -> None:
    with pytest.raises(ValueError, match="header ending with K:"):
        char_engine.complete("ABC", constraints=[AbcConstraint(char_engine.tokenizer, 2)])


def test_midi_output(char_engine: MuseGPTEngine, tmp_path: Path) -> None:
    tune = compose("a waltz in D", bars=4, seed=3, engine=char_engine)
    midi = tune.to_midi(tmp_path / "t.mid")
    assert midi.read_bytes().startswith(b"MThd")
    # the file holds this tune: its pitches, in order (music21 reads the MIDI back)
    heard = music21.converter.parse(midi).flatten().notes
    assert [n.pitch.midi for n in heard] == [
        n.pitch.midi for n in parse_abc(tune.abc).flatten().notes
    ]


def test_svg_output(char_engine: MuseGPTEngine, tmp_path: Path) -> None:
    if shutil.which("abcm2ps") is None:
        pytest.skip("abcm2ps is not installed (Debian: apt-get install abcm2ps)")
    tune = compose("a waltz in D", bars=4, seed=3, engine=char_engine)
    svg = tune.to_svg(tmp_path / "t.svg").read_text(encoding="utf-8")
    assert svg.count("<svg") == 1 and f">{tune.header.title}</text>" in svg  # this tune's score


def test_wav_output(char_engine: MuseGPTEngine, tmp_path: Path) -> None:
    tune = compose("a reel in G", bars=2, seed=4, engine=char_engine)
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        with pytest.raises(MissingToolError, match="fluid-soundfont-gm"):
            tune.to_wav(tmp_path / "t.wav")
        pytest.skip(
            "fluidsynth or its SoundFont is missing (Debian: fluidsynth fluid-soundfont-gm)"
        )
    assert tune.to_wav(tmp_path / "t.wav").read_bytes()[:4] == b"RIFF"


def test_evaluation_measures() -> None:
    index = CopyIndex([TUNES.split("X:1\n")[1].join(["X:1\n", ""])])
    kesh = "GAG GAB|ABA ABd|edd gdd|xyz|"
    assert index.longest(bars_of(kesh)) == 3
    assert bars_right([Fraction(1), Fraction(3), Fraction(3), Fraction(2)], Fraction(3)) == 4
    assert bars_right([Fraction(3), Fraction(2), Fraction(3)], Fraction(3)) == 2
    header, body = parse_header(TUNES.split("X:1\n")[3].join(["X:1\n", ""]))
    score = score_tune(Tune(header, body), index.longest)
    assert score.parses and score.metre_ok and score.bars == score.bars_right == 8
    assert score.in_key == 1.0 and score.ends_on_tonic
