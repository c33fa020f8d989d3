"""llama.cpp's samplers in MuseGPT (DRY, XTC, Mirostat 1/2, dynamic temperature, top-n-sigma,
repeat_last_n): each gives what llama.cpp's own sampler gives on identical logits (run
through llama-cpp-python's low-level bindings), and each is reachable from the decoder,
the CLI, the server and the studio."""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import llama_cpp
import pytest
import torch
import typer
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from musegpt.cli.options import SAMPLER_FIELDS, sampler_options
from musegpt.engines.default_model import default_model_path
from musegpt.engines.llama import LlamaTokenizer
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.generation.decoder import shortlist_scores
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import (
    DecodeState,
    RepetitionPenalty,
    apply_pipeline,
    build_pipeline,
)
from musegpt.generation.samplers import (
    DRY,
    XTC,
    DynamicTemperature,
    Mirostat,
    TopNSigma,
    sequence_breakers,
)
from musegpt.model.config import GPTConfig
from musegpt.model.gpt import GPT
from musegpt.server import ServerSettings, create_app
from musegpt.studio import Studio
from musegpt.studio.registry import TASKS, task_request
from musegpt.studio.studio import TASK_SAMPLING
from musegpt.tokenizer.char import CharTokenizer

NEG_INF = float("-inf")
LOGITS = st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=2, max_size=48).map(
    lambda values: torch.tensor(values, dtype=torch.float32)
)


def llama_apply(
    sampler: Any, logits: torch.Tensor, ids: Sequence[int] | None = None
) -> tuple[dict[int, float], int]:
    """Run llama.cpp's `sampler` over `logits` (for token `ids`, default 0..n-1): the tokens
    it leaves (removed ones, or set to -inf, are gone) with their logits, and the index of
    the token it selected (-1: none)."""
    ids = list(range(len(logits))) if ids is None else list(ids)
    data = (llama_cpp.llama_token_data * len(ids))(
        *[llama_cpp.llama_token_data(t, v, 0.0) for t, v in zip(ids, logits.tolist(), strict=True)]
    )
    array = llama_cpp.llama_token_data_array(
        data=ctypes.cast(data, llama_cpp.llama_token_data_p), size=len(ids), selected=-1
    )
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
    kept = {int(array.data[i].id): array.data[i].logit for i in range(array.size)}
    selected = int(array.data[array.selected].id) if array.selected >= 0 else -1
    return {t: v for t, v in kept.items() if v != NEG_INF}, selected


def ours(processor: Any, logits: torch.Tensor, sequences: list[list[int]] | None = None) -> Any:
    state = DecodeState(sequences or [[]], [0])
    return processor(state, logits.view(1, -1)).view(-1)


def finite(scores: torch.Tensor) -> dict[int, float]:
    return {i: v for i, v in enumerate(scores.tolist()) if v != NEG_INF}


def same_distribution(a: dict[int, float], b: dict[int, float]) -> None:
    assert a.keys() == b.keys()
    ids = sorted(a)
    pa = torch.tensor([a[i] for i in ids], dtype=torch.float64).softmax(-1)
    pb = torch.tensor([b[i] for i in ids], dtype=torch.float64).softmax(-1)
    assert torch.allclose(pa, pb, atol=1e-5), (pa, pb)


@pytest.fixture
def sampler_cleanup() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for sampler in made:
        llama_cpp.llama_sampler_free(sampler)


# -- top-n-sigma, dynamic temperature, XTC, Mirostat: against llama.cpp ---------------------


@settings(max_examples=60, deadline=None)
@given(logits=LOGITS, n=st.sampled_from([0.5, 1.0, 2.0, 3.0]))
def test_top_n_sigma_keeps_what_llama_cpp_keeps(logits: torch.Tensor, n: float) -> None:
    values = logits.double()
    threshold = float(values.max() - n * values.std(unbiased=False))
    assume(bool(((values - threshold).abs() > 1e-3).all()))  # no token on the boundary
    sampler = llama_cpp.llama_sampler_init_top_n_sigma(n)
    try:
        theirs, _ = llama_apply(sampler, logits)
    finally:
        llama_cpp.llama_sampler_free(sampler)
    assert finite(ours(TopNSigma(n), logits)) == theirs


@settings(max_examples=60, deadline=None)
@given(
    logits=LOGITS,
    temperature=st.sampled_from([0.5, 0.8, 1.0, 1.5]),
    spread=st.sampled_from([0.25, 0.5, 1.0]),
    exponent=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_dynamic_temperature_scales_as_llama_cpp(
    logits: torch.Tensor, temperature: float, spread: float, exponent: float
) -> None:
    sampler = llama_cpp.llama_sampler_init_temp_ext(temperature, spread, exponent)
    try:
        theirs, _ = llama_apply(sampler, logits)
    finally:
        llama_cpp.llama_sampler_free(sampler)
    mine = finite(ours(DynamicTemperature(temperature, spread, exponent), logits))
    # The same distribution (logits divided by a temperature near 0 differ in float noise).
    same_distribution(mine, theirs)


@settings(max_examples=60, deadline=None)
@given(logits=LOGITS, threshold=st.sampled_from([0.05, 0.1, 0.2, 0.3]))
def test_xtc_that_fires_keeps_what_llama_cpp_keeps(logits: torch.Tensor, threshold: float) -> None:
    probs = logits.double().softmax(-1)
    assume(bool(((probs - threshold).abs() > 1e-5).all()))
    sampler = llama_cpp.llama_sampler_init_xtc(1.0, threshold, 0, 1)  # probability 1: it fires
    try:
        theirs, _ = llama_apply(sampler, logits)
    finally:
        llama_cpp.llama_sampler_free(sampler)
    mine = finite(ours(XTC(1.0, threshold, seed=0), logits))
    # Among tokens of equal probability either may be the one kept: compare the values.
    assert sorted(mine.values()) == pytest.approx(sorted(theirs.values()), abs=1e-6)


def test_xtc_fires_as_often_as_llama_cpps() -> None:
    logits = torch.tensor([3.0, 2.9, 2.8, 0.0, -1.0])  # three tokens above the threshold
    steps = 2000
    sampler = llama_cpp.llama_sampler_init_xtc(0.3, 0.1, 0, 7)
    try:
        theirs = sum(len(llama_apply(sampler, logits)[0]) < len(logits) for _ in range(steps))
    finally:
        llama_cpp.llama_sampler_free(sampler)
    scores = XTC(0.3, 0.1, seed=7)(DecodeState([[]] * steps, [0] * steps), logits.repeat(steps, 1))
    mine = int(((scores == NEG_INF).sum(-1) > 0).sum())
    # Binomial(2000, 0.3): a standard deviation of 20.5; both within 4 of them of 600.
    assert abs(mine - 600) < 82 and abs(theirs - 600) < 82
    fired = scores[(scores == NEG_INF).any(-1)]
    assert bool((fired[:, :2] == NEG_INF).all()) and bool((fired[:, 2:] > NEG_INF).all())


@pytest.mark.parametrize("version", [1, 2])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=8))
def test_mirostat_keeps_and_learns_as_llama_cpp(version: int, steps: list[int]) -> None:
    """Step after step on varied logits, llama.cpp's Mirostat keeps the same tokens as ours;
    told the token llama.cpp drew, ours moves its target the same way."""
    vocab, tau, eta = 300, 5.0, 0.1
    if version == 1:
        sampler = llama_cpp.llama_sampler_init_mirostat(vocab, 3, tau, eta, 100)
    else:
        sampler = llama_cpp.llama_sampler_init_mirostat_v2(3, tau, eta)
    mirostat = Mirostat(version, tau, eta)
    state = DecodeState([[]], [0], keys=[4])
    try:
        for seed in steps:
            g = torch.Generator().manual_seed(seed)
            logits = torch.randn(vocab, generator=g) * float(torch.rand(1, generator=g) * 6 + 0.5)
            theirs, chosen = llama_apply(sampler, logits)
            probs = (logits / 1.0).softmax(-1)
            k = mirostat.estimate_k(probs, mirostat.row_mu(state, 0)) if version == 1 else 0
            scores = mirostat(state, logits.view(1, -1))
            mine = finite(scores.view(-1))
            if k >= 2**31:  # llama.cpp's int conversion overflows (1 token); we keep all
                assert len(theirs) == 1 and len(mine) == vocab
                break  # the targets part ways here
            if version == 1:  # k is rounded down from a float: one more or less on a tie
                assert abs(len(mine) - len(theirs)) <= 1
                assert chosen in mine or len(mine) < len(theirs)
            else:
                assert mine.keys() == theirs.keys()
            mirostat.chosen(state, scores, torch.tensor([chosen]))
    finally:
        llama_cpp.llama_sampler_free(sampler)
    assert set(mirostat.mu) == {4}  # kept under the row's key


# -- DRY: against llama.cpp on the default model's vocabulary ----------------------------------


@pytest.fixture(scope="module")
def gemma_vocab() -> Iterator[tuple[Any, LlamaTokenizer]]:
    llama = llama_cpp.Llama(
        model_path=str(default_model_path(verbose=False)), vocab_only=True, verbose=False
    )
    yield llama, LlamaTokenizer(llama)


def _dry_alphabet(tokenizer: LlamaTokenizer) -> list[list[int]]:
    """Chunks the texts are built from: words, the default breakers, and a multi-token
    breaker ("[END]") whose tokens must come together to break."""
    words = ["the", " sea", " and", " the", " wind", ",", " rain", " came", " in", " again"]
    chunks = [tokenizer.encode(w)[1:] for w in [*words, "\n", ":", '"', "*"]]
    return [*chunks, tokenizer.encode("[END]")[1:]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.integers(0, 14), min_size=1, max_size=60),
    multiplier=st.sampled_from([0.8, 2.0]),
    base=st.sampled_from([1.0, 1.75, 3.0]),
    allowed=st.sampled_from([0, 2, 3]),
    last_n=st.sampled_from([16, 64]),
    custom=st.booleans(),
)
def test_dry_penalises_as_llama_cpp(
    gemma_vocab: tuple[Any, LlamaTokenizer],
    picks: list[int],
    multiplier: float,
    base: float,
    allowed: int,
    last_n: int,
    custom: bool,
) -> None:
    llama, tokenizer = gemma_vocab
    chunks = _dry_alphabet(tokenizer)
    history = [t for i in picks for t in chunks[i]]
    breakers = ["\n", ":", '"', "*", "[END]"] if custom else ["\n", ":", '"', "*"]
    candidates = sorted({t for chunk in chunks for t in chunk} | {2, 3})
    logits = torch.linspace(-3, 3, len(candidates))
    encoded = [b.encode() for b in breakers]
    c_breakers = (ctypes.c_char_p * len(encoded))(*encoded)
    sampler = llama_cpp.llama_sampler_init_dry(
        llama._model.vocab, multiplier, base, allowed, last_n, c_breakers, len(encoded)
    )
    try:
        for token in history:
            llama_cpp.llama_sampler_accept(sampler, token)
        theirs, _ = llama_apply(sampler, logits, candidates)
    finally:
        llama_cpp.llama_sampler_free(sampler)
    scores = torch.zeros(tokenizer.vocab_size)
    scores[candidates] = logits
    dry = DRY(multiplier, base, allowed, last_n, sequence_breakers(tokenizer, breakers))
    mine = ours(dry, scores, [history])
    for token in candidates:
        assert math.isclose(float(mine[token]), theirs[token], rel_tol=1e-5, abs_tol=1e-4), token


def test_dry_breakers_stop_a_repeat_and_whole_context_window(
    gemma_vocab: tuple[Any, LlamaTokenizer],
) -> None:
    _, tokenizer = gemma_vocab
    breakers = sequence_breakers(tokenizer, ["\n"])
    newline = tokenizer.encode("\n")[1]
    assert breakers.is_whole_breaker(newline)
    a, b, c = (tokenizer.encode(w)[1] for w in ["red", " green", " blue"])
    dry = DRY(1.0, 2.0, 2, -1, breakers)
    # "red green blue blue blue red green": blue would make the repeat 3 long.
    assert dry.repeat_lengths([a, b, c, c, c, a, b]) == {c: 2}
    # A line break inside the repeat: the repeat cannot reach back past it.
    assert dry.repeat_lengths([a, b, c, a, newline, b]) == {}
    # -1: the whole text, however long, is looked at; 64: only the last 64 tokens.
    long_text = [a, b, c, *[newline] * 500, a, b]
    assert dry.repeat_lengths(long_text) == {c: 2}
    assert DRY(1.0, 2.0, 2, 64, breakers).repeat_lengths(long_text) == {}


# -- repeat_last_n ----------------------------------------------------------------------------


def test_repeat_last_n_limits_the_repetition_penalty_window() -> None:
    scores = torch.full((1, 10), 2.0)
    state = DecodeState([[1, 2, 3, 4]], [0])
    windowed = RepetitionPenalty(2.0, last_n=2)(state, scores)
    assert windowed[0].tolist() == [2.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    whole = RepetitionPenalty(2.0, last_n=-1)(state, scores)
    assert whole[0, 1:5].tolist() == [1.0] * 4
    off = build_pipeline(SamplingParams(repetition_penalty=2.0, repeat_last_n=0), 10, None)
    assert not any(isinstance(step, RepetitionPenalty) for step in off)


# -- the pipeline and the decoder ------------------------------------------------------------


def test_pipeline_places_the_new_samplers() -> None:
    everything = SamplingParams(
        temperature=0.7, top_k=5, min_p=0.05, top_n_sigma=2.0, xtc_probability=0.5,
        dry_multiplier=0.8, dry_sequence_breakers=[], repetition_penalty=1.1,
    )  # fmt: skip
    names = [type(s).__name__ for s in build_pipeline(everything, 50, eos_id=0)]
    assert names == [
        "RepetitionPenalty", "DRY", "BlockTakenBack", "Temperature", "TopNSigma", "TopK",
        "MinP", "XTC",
    ]  # fmt: skip
    dynamic = SamplingParams(temperature=0.7, top_k=5, dynatemp_range=0.3)
    names = [type(s).__name__ for s in build_pipeline(dynamic, 50, eos_id=0)]
    assert names == ["BlockTakenBack", "TopK", "DynamicTemperature"]  # temperature last
    mirostat = SamplingParams(temperature=0.7, top_k=5, top_p=0.9, mirostat=2)
    names = [type(s).__name__ for s in build_pipeline(mirostat, 50, eos_id=0)]
    assert names == ["BlockTakenBack", "Temperature", "Mirostat"]  # truncation replaced
    with pytest.raises(ValueError, match="tokenizer"):
        build_pipeline(SamplingParams(dry_multiplier=0.8), 50, eos_id=0)


@pytest.fixture(scope="module")
def engine() -> MuseGPTEngine:
    """A tiny GPT trained for a few seconds on one sentence over and over: left to itself
    (greedy), it writes that sentence again and again."""
    text = "the sea and the wind came in with the rain. " * 40
    tokenizer = CharTokenizer.train([text])
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=48, n_layer=1, n_head=2, n_embd=32
    )
    model = GPT(config)
    data = torch.tensor(tokenizer.encode(text))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(120):
        starts = torch.randint(0, len(data) - 49, (16,))
        batch = torch.stack([data[i : i + 49] for i in starts.tolist()])
        loss = model(batch[:, :-1], batch[:, 1:]).loss
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return MuseGPTEngine(model.eval(), tokenizer, name="tiny")


def _repetition(text: str, n: int = 4) -> float:
    grams = [text[i : i + n] for i in range(len(text) - n + 1)]
    return 1 - len(set(grams)) / len(grams)


def test_dry_reduces_repetition_in_generated_text(engine: MuseGPTEngine) -> None:
    base = {"max_new_tokens": 120, "temperature": 0.0, "dry_sequence_breakers": []}
    plain = engine.complete(["the sea"], SamplingParams(**base))[0].text
    dry = engine.complete(["the sea"], SamplingParams(**base, dry_multiplier=3.0))[0].text
    assert _repetition(plain) > 0.3  # greedy decoding on a tiny model loops
    assert _repetition(dry) < _repetition(plain)


def test_every_sampler_decodes_rows_of_a_batch_reproducibly(engine: MuseGPTEngine) -> None:
    for extra in (
        {"mirostat": 1}, {"mirostat": 2, "mirostat_tau": 3.0}, {"xtc_probability": 0.5},
        {"dynatemp_range": 0.5}, {"top_n_sigma": 1.0}, {"dry_multiplier": 0.8},
    ):  # fmt: skip
        params = SamplingParams(max_new_tokens=12, n=3, seed=5, **extra)
        first = [c.text for c in engine.complete(["The sea", "Rain"], params)]
        again = [c.text for c in engine.complete(["The sea", "Rain"], params)]
        assert first == again and len(first) == 6, extra


def test_mirostat_state_follows_each_row() -> None:
    mirostat = Mirostat(2, 5.0, 1.0)
    scores = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
    state = DecodeState([[], []], [0, 0], keys=[3, 8])
    mirostat.chosen(state, scores, torch.tensor([0, -1]))  # row 8 had no token
    assert mirostat.mu == {3: pytest.approx(10.0 - (1.0 - 5.0))}  # surprise 1 bit, target 5
    state = DecodeState([[]], [0], keys=[8])  # row 3 left the batch
    assert mirostat.row_mu(state, 0) == 10.0


# -- validation, CLI, server, studio ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dry_multiplier", -1.0), ("dry_base", 0.5), ("dry_allowed_length", -1),
        ("dry_penalty_last_n", -2), ("dry_sequence_breakers", [""]), ("xtc_probability", 1.5),
        ("xtc_threshold", -0.1), ("mirostat", 3), ("mirostat_tau", -1.0), ("mirostat_eta", 2.0),
        ("dynatemp_range", -0.5), ("dynatemp_exponent", -1.0), ("top_n_sigma", -2.0),
        ("repeat_last_n", -2),
    ],
)  # fmt: skip
def test_out_of_range_sampler_fields_are_rejected_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        SamplingParams(**{field: value})
    assert field in str(info.value)


def test_llama_cpp_server_defaults() -> None:
    params = SamplingParams()
    assert (params.dry_multiplier, params.dry_base, params.dry_allowed_length) == (0.0, 1.75, 2)
    assert params.dry_penalty_last_n == 64 and params.repeat_last_n == 64
    assert params.dry_sequence_breakers == ["\n", ":", '"', "*"]
    assert (params.xtc_probability, params.xtc_threshold) == (0.0, 0.1)
    assert (params.mirostat, params.mirostat_tau, params.mirostat_eta) == (0, 5.0, 0.1)
    assert (params.dynatemp_range, params.dynatemp_exponent, params.top_n_sigma) == (0, 1, -1)


def test_cli_sampler_options_parse_into_sampling_params() -> None:
    app = typer.Typer()

    @app.command()
    @sampler_options
    def show(word: str, samplers: dict[str, object]) -> None:
        print(SamplingParams(**samplers).model_dump_json(include=set(SAMPLER_FIELDS)))

    runner = CliRunner()
    result = runner.invoke(
        app,
        ["hi", "--dry-multiplier", "0.8", "--dry-sequence-breaker", "\n",
         "--dry-sequence-breaker", "##", "--xtc-probability", "0.5", "--mirostat", "2",
         "--repeat-last-n", "-1", "--top-n-sigma", "1.5", "--dynatemp-range", "0.3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    chosen = json.loads(result.output)
    assert chosen["dry_multiplier"] == 0.8 and chosen["dry_sequence_breakers"] == ["\n", "##"]
    assert chosen["xtc_probability"] == 0.5 and chosen["mirostat"] == 2
    assert chosen["repeat_last_n"] == -1 and chosen["top_n_sigma"] == 1.5
    untouched = runner.invoke(app, ["hi"])
    assert json.loads(untouched.output) == json.loads(
        SamplingParams().model_dump_json(include=set(SAMPLER_FIELDS))
    )


def test_write_and_sample_commands_offer_the_sampler_options() -> None:
    from musegpt.cli.app import app

    runner = CliRunner()
    for command in (["write", "describe"], ["write", "poem"], ["sample"]):
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        for option in ("--dry-multiplier", "--xtc-probability", "--mirostat", "--top-n-sigma"):
            assert option in result.output, (command, option)


@pytest.fixture(scope="module")
def client(engine: MuseGPTEngine) -> Iterator[TestClient]:
    with TestClient(create_app({"tiny": engine}, ServerSettings(max_tokens=64))) as c:
        yield c


def test_server_takes_the_samplers_as_extra_body_fields(client: TestClient) -> None:
    body = {"prompt": "The sea", "max_tokens": 40, "temperature": 0}
    plain = client.post("/v1/completions", json=body)
    dry = client.post("/v1/completions", json={**body, "dry_multiplier": 3.0})
    assert plain.status_code == dry.status_code == 200
    assert plain.json()["choices"][0]["text"] != dry.json()["choices"][0]["text"]
    chat = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "seed": 1,
              "xtc_probability": 0.5, "mirostat": 2, "dynatemp_range": 0.4},
    )  # fmt: skip
    assert chat.status_code == 200, chat.text


@pytest.mark.parametrize(
    ("field", "value"),
    [("xtc_probability", 2.0), ("mirostat", 5), ("dry_base", 0.2), ("dry_sequence_breakers", "x")],
)
def test_server_rejects_out_of_range_samplers_naming_the_field(
    client: TestClient, field: str, value: object
) -> None:
    for path, body in (
        ("/v1/completions", {"prompt": "x", field: value}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], field: value}),
        ("/v1/studio/describe", {"text": "a lake", "params": {field: value}}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["param"] == field


def test_studio_request_takes_sampler_params(client: TestClient) -> None:
    body = {"text": "a lake", "params": {"max_new_tokens": 24, "seed": 3, "xtc_probability": 0.5,
                                         "dry_multiplier": 0.8}}  # fmt: skip
    response = client.post("/v1/studio/describe", json=body)
    # Accepted: a tiny model may write the description or fail the task's checks (422), but
    # the sampler fields themselves are not refused.
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert "xtc" not in response.text and "dry" not in response.text
    # ...and they are read as SamplingParams: out-of-range values are refused, naming them.
    for field, value in (("xtc_probability", 1.5), ("dry_multiplier", -1)):
        bad = {**body, "params": {**body["params"], field: value}}  # type: ignore[dict-item]
        refused = client.post("/v1/studio/describe", json=bad)
        assert refused.status_code == 400, refused.text
        assert field in refused.json()["error"]["message"] + str(refused.json()["error"]["param"])


def test_server_takes_llama_cpps_name_for_the_repetition_penalty(client: TestClient) -> None:
    body = {"prompt": "the sea", "max_tokens": 40, "temperature": 0}
    ours = client.post("/v1/completions", json={**body, "repetition_penalty": 3.0})
    theirs = client.post("/v1/completions", json={**body, "repeat_penalty": 3.0})
    assert ours.status_code == theirs.status_code == 200
    assert ours.json()["choices"][0]["text"] == theirs.json()["choices"][0]["text"]
    bad = client.post("/v1/completions", json={**body, "repeat_penalty": -1})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "repeat_penalty"


def test_task_sampling_defaults_yield_to_what_the_user_set(engine: MuseGPTEngine) -> None:
    """Lyrics' DRY and XTC defaults hold on every path (Python, CLI and server go through
    `Studio`), under what the user set."""
    studio = Studio(engine)
    assert studio.task_defaults("lyrics") == TASK_SAMPLING["lyrics"]
    assert studio.task_defaults("describe") == {}
    assert studio.writer("a lake", "lyrics").params.dry_multiplier == 0.8
    assert studio.writer("a lake", "describe").params.dry_multiplier == 0.0
    mine = Studio(engine, SamplingParams(dry_multiplier=0.0, seed=1))
    assert "dry_multiplier" not in mine.task_defaults("lyrics")
    writer = mine.writer("a lake", "lyrics", xtc_probability=0.2)
    assert (writer.params.dry_multiplier, writer.params.xtc_probability) == (0.0, 0.2)
    work = TASKS["describe"].perform(mine, task_request("describe", {"text": "a lake"}),
                                     max_new_tokens=8)  # fmt: skip
    assert work.task == "describe"


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), spread=st.sampled_from([0.0, 0.5]))
def test_xtc_and_dynamic_temperature_run_on_top_k_survivors_exactly(
    seed: int, spread: float
) -> None:
    """After top-k the decoder runs value-only steps on the k survivors alone: XTC and
    dynamic temperature give there what they give on the whole vocabulary."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(3, 5000, generator=g) * 3
    params = SamplingParams(
        temperature=0.9, top_k=40, top_p=0.95, xtc_probability=1.0, dynatemp_range=spread
    )
    state = DecodeState([[1], [2], [3]], [1, 1, 1])
    pipeline = build_pipeline(params, 5000, eos_id=None)
    short, ids = shortlist_scores(pipeline, state, raw)
    assert ids is not None  # the shortlist was used
    whole = apply_pipeline(build_pipeline(params, 5000, eos_id=None), state, raw)
    spread_out = torch.full_like(whole, NEG_INF).scatter(-1, ids, short)
    assert torch.allclose(spread_out.softmax(-1), whole.softmax(-1), atol=1e-6)
