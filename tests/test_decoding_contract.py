"""The generation contract, through the decoder and through `/v1/completions`: a row with no
allowed token never fails and never gets a made-up token; seeds and `logit_bias` ids out of
range are refused by name; deltas carry each token's id, exact bytes and log-probability;
special tokens are never written unless asked for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from test_server_helpers import memorising_engine, tiny_engine
from tokenizers import AddedToken, Tokenizer

from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import NEG_INF, DecodeState
from musegpt.model import GPT, GPTConfig
from musegpt.server import ServerSettings, create_app
from musegpt.tokenizer import BPETokenizer

POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"


@pytest.fixture(scope="module")
def tiny() -> MuseGPTEngine:
    return tiny_engine(block_size=64)


@pytest.fixture(scope="module")
def poet() -> MuseGPTEngine:
    """A byte-level BPE model that has learnt a Chinese poem: many of its tokens hold part
    of a character (the tokenizer merged bytes across character boundaries)."""
    tokenizer = BPETokenizer.train([POEM] * 4, vocab_size=300)
    return memorising_engine(tokenizer, POEM * 40, "poet")


def client_for(engine: MuseGPTEngine) -> TestClient:
    return TestClient(create_app({engine.name: engine}, ServerSettings(max_tokens=512)))


@pytest.fixture(scope="module")
def server(tiny: MuseGPTEngine) -> Iterator[TestClient]:
    with client_for(tiny) as client:
        yield client


def sse(client: TestClient, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        lines = [ln[6:] for ln in response.read().decode().splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def sampled_and_greedy() -> list[dict[str, Any]]:
    return [{"temperature": 0.0}, {"temperature": 1.0, "seed": 3}]


# -- a row with no allowed token -----------------------------------------------------------


@pytest.mark.parametrize("how", sampled_and_greedy())
def test_top_k_one_with_a_banned_letter_takes_the_best_letter_left(
    tiny: MuseGPTEngine, how: dict[str, Any]
) -> None:
    letter = tiny.generate("The sea", max_new_tokens=1, temperature=0)  # the likeliest
    out = tiny.complete("The sea", max_new_tokens=40, top_k=1, banned=[letter], **how)[0]
    greedy = tiny.generate("The sea", max_new_tokens=40, temperature=0, banned=[letter])
    # top_k=1 after the ban is greedy among what the ban leaves (it used to leave nothing).
    assert out.text == greedy and letter not in out.text and out.finish_reason == "length"


class OnlyABThenC:
    """A constraint: first 'a' or 'b'; after 'a' only 'c'; after 'b' nothing at all."""

    def __init__(self, a: int, b: int, c: int) -> None:
        self.a, self.b, self.c = a, b, c

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, NEG_INF)
        for row in range(scores.shape[0]):
            generated = state.generated(row)
            allowed = [self.a, self.b] if not generated else []
            if generated == [self.a]:
                allowed = [self.c]
            out[row, allowed] = scores[row, allowed]
        return out


@pytest.mark.parametrize("how", sampled_and_greedy())
def test_a_dead_end_takes_back_what_is_unsent_or_finishes_with_a_reason(
    tiny: MuseGPTEngine, how: dict[str, Any]
) -> None:
    a, b, c = (tiny.tokenizer.encode(ch)[0] for ch in "abc")
    constraint = [OnlyABThenC(a, b, c)]
    prefer_b = {"logit_bias": {b: 50.0}, "max_new_tokens": 2, **how}
    # "b" is held back (it might start the stop string "bz"): taken back, "a" then "c".
    held = tiny.complete("The sea", None, constraint, stop=["bz"], **prefer_b)[0]
    assert held.text == "ac" and held.finish_reason == "length"
    # "b" is already streamed: the row ends after it, saying why; no token is made up.
    sent = tiny.complete("The sea", None, constraint, logprobs=0, **prefer_b)[0]
    assert sent.text == "b" and sent.token_ids == [b]
    assert sent.finish_reason == "no_allowed_token" and "ruled out" in str(sent.finish_message)
    assert sent.logprobs is not None and [t.token_id for t in sent.logprobs] == [b]
    deltas = list(tiny.stream_deltas("The sea", None, constraint, **prefer_b))
    assert "".join(d.text for d in deltas) == "b"
    assert deltas[-1].finish_reason == "no_allowed_token" and deltas[-1].finish_message


@pytest.mark.parametrize("how", sampled_and_greedy())
def test_a_constraint_and_a_banned_phrase_that_leave_nothing_end_the_row_at_once(
    tiny: MuseGPTEngine, how: dict[str, Any]
) -> None:
    e = tiny.tokenizer.encode("e")[0]
    only_e = [OnlyABThenC(e, e, e)]
    out = tiny.complete(["The sea", "She"], None, only_e, banned=["e"], **how)
    assert [(c.text, c.token_ids, c.finish_reason) for c in out] == [
        ("", [], "no_allowed_token")
    ] * 2


@pytest.mark.parametrize("how", sampled_and_greedy())
def test_server_ends_a_row_with_nothing_left_to_write_clearly(
    server: TestClient, tiny: MuseGPTEngine, how: dict[str, Any]
) -> None:
    """`no_repeat_ngram_size: 1` forbids every token already in the text, and the end of
    text is forbidden until the limit: the row uses each other token once, then has none."""
    prompt = "The sea"
    vocab = tiny.tokenizer.vocab_size
    body = {
        "prompt": prompt,
        "max_tokens": 400,
        "min_new_tokens": 400,
        "no_repeat_ngram_size": 1,
        "logprobs": 0,
        **how,
    }
    reply = server.post("/v1/completions", json=body)
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and "ruled out" in choice["finish_message"]
    left = set(range(vocab)) - {tiny.tokenizer.eot_id} - set(tiny.tokenize(prompt))
    assert sorted(choice["logprobs"]["token_ids"]) == sorted(left)  # each once, none made up
    events = sse(server, "/v1/completions", body)
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert "".join(e["choices"][0]["text"] for e in events) == choice["text"]


@pytest.mark.parametrize("how", sampled_and_greedy())
def test_server_top_k_one_with_a_banned_letter(server: TestClient, how: dict[str, Any]) -> None:
    first = {"prompt": "The sea", "max_tokens": 1, "temperature": 0}
    letter = server.post("/v1/completions", json=first).json()["choices"][0]["text"]
    body = {"prompt": "The sea", "max_tokens": 30, "top_k": 1, "banned": [letter], **how}
    reply = server.post("/v1/completions", json=body)
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    assert letter not in choice["text"] and choice["finish_reason"] == "length"


# -- out-of-range numbers ------------------------------------------------------------------


def test_seeds_past_64_bits_are_refused_by_name(server: TestClient, tiny: MuseGPTEngine) -> None:
    body = {"prompt": "The sea", "max_tokens": 4, "seed": 2**64}
    reply = server.post("/v1/completions", json=body)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "seed"
    top = server.post("/v1/completions", json={**body, "seed": 2**64 - 1, "n": 2})
    assert top.status_code == 200  # the largest seed, and the one after it for sample 2
    with pytest.raises(ValueError, match="seed"):
        SamplingParams(seed=2**64)


def test_logit_bias_outside_the_vocabulary_names_a_few_ids(
    server: TestClient, tiny: MuseGPTEngine
) -> None:
    vocab = tiny.tokenizer.vocab_size
    bias = {str(token): 1.0 for token in range(vocab - 1, 60_000)}
    for path, extra in [
        ("/v1/completions", {"prompt": "The sea"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ]:
        reply = server.post(path, json={**extra, "max_tokens": 4, "logit_bias": bias})
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error["param"] == "logit_bias" and f"[0, {vocab})" in error["message"]
        assert str(vocab) in error["message"] and len(error["message"]) < 200


# -- deltas carry their tokens -------------------------------------------------------------


def test_deltas_carry_the_tokens_of_their_text_with_exact_bytes(poet: MuseGPTEngine) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=30, logprobs=2)
    whole = poet.complete("床前明月光，", params)[0]
    deltas = list(poet.stream_deltas("床前明月光，", params))
    assert "".join(d.text for d in deltas) == whole.text
    assert [t for d in deltas for t in d.token_ids] == whole.token_ids
    data = b"".join(b for d in deltas for b in d.token_bytes)
    assert data == whole.text.encode()
    split = [b for d in deltas for b in d.token_bytes if not _valid_utf8(b)]
    assert split  # tokens that hold part of a character were written
    text_so_far = tokens_so_far = b""
    for delta in deltas:
        assert delta.logprobs is not None
        assert [t.bytes for t in delta.logprobs] == delta.token_bytes
        assert [t.token_id for t in delta.logprobs] == delta.token_ids
        text_so_far += delta.text.encode()
        tokens_so_far += b"".join(delta.token_bytes)
        # The tokens handed out hold all the text so far, and none is wholly beyond it.
        assert tokens_so_far.startswith(text_so_far)
        last = len(delta.token_bytes[-1]) if delta.token_bytes else 0
        assert len(tokens_so_far) - last < len(text_so_far)


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_streamed_logprobs_report_each_tokens_real_bytes(poet: MuseGPTEngine) -> None:
    with client_for(poet) as client:
        chat = {
            "messages": [{"role": "user", "content": "床前明月光"}],
            "max_tokens": 24,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 2,
        }
        events = sse(client, "/v1/chat/completions", chat)
        entries = [
            t for e in events if e["choices"] and e["choices"][0]["logprobs"]
            for t in e["choices"][0]["logprobs"]["content"]
        ]  # fmt: skip
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
        whole = client.post("/v1/chat/completions", json=chat).json()["choices"][0]
        completion = {"prompt": "床前", "max_tokens": 24, "temperature": 0, "logprobs": 1}
        legacy = sse(client, "/v1/completions", completion)
    assert text == whole["message"]["content"]
    assert [e["bytes"] for e in entries] == [e["bytes"] for e in whole["logprobs"]["content"]]
    exact = [bytes(e["bytes"]) for e in entries]
    assert any(not _valid_utf8(b) for b in exact)  # the case that used to report U+FFFD's bytes
    assert b"".join(exact).decode().startswith(text)
    for entry in entries:
        for alternative in entry["top_logprobs"]:
            assert isinstance(alternative["bytes"], list)
    ids = [i for e in legacy for i in (e["choices"][0]["logprobs"] or {}).get("token_ids", [])]
    offsets = [
        o for e in legacy for o in (e["choices"][0]["logprobs"] or {}).get("text_offset", [])
    ]
    streamed = "".join(e["choices"][0]["text"] for e in legacy)
    assert poet.detokenize(ids).startswith(streamed) and offsets == sorted(offsets)
    assert offsets[-1] < len(streamed)


# -- special tokens ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def marked() -> tuple[MuseGPTEngine, int]:
    """A tiny model whose tokenizer has a special `<|image|>` token besides the separator."""
    tokenizer = BPETokenizer.train(["The sea was calm and the wind came in.\n"] * 4, 280)
    hf = Tokenizer.from_str(tokenizer.to_dict()["tokenizers_json"])
    hf.add_special_tokens([AddedToken("<|image|>", special=True, normalized=False)])
    with_image = BPETokenizer(hf)
    image = with_image.vocab_size - 1
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=with_image.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32
    )
    return MuseGPTEngine(GPT(config).eval(), with_image, name="marked"), image


def test_special_tokens_are_never_written_unless_asked_for(
    marked: tuple[MuseGPTEngine, int],
) -> None:
    engine, image = marked
    assert engine.tokenizer.special_ids == {image, engine.tokenizer.eot_id}
    push = {"logit_bias": {image: 100.0}, "max_new_tokens": 6}
    for how in sampled_and_greedy():
        out = engine.complete("The sea", **push, **how)[0]
        assert image not in out.token_ids and len(out.token_ids) == 6
        allowed = engine.complete("The sea", **push, **how, allow_special_tokens=True)[0]
        assert allowed.token_ids == [image] * 6 and allowed.text == "<|image|>" * 6
    with client_for(engine) as client:
        body = {"prompt": "The sea", "max_tokens": 6, "logit_bias": {str(image): 100}}
        text = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
        asked = client.post("/v1/completions", json={**body, "allow_special_tokens": True})
    assert "<|image|>" not in text
    assert asked.json()["choices"][0]["text"] == "<|image|>" * 6
