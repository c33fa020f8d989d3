"""The originality guard: the corpus index, `max_copy` while writing, and `musegpt
originality index/check`. The model here is trained in the test to memorise a poem."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.data.dataset import PreparedCorpus
from musegpt.data.prepare import prepare_corpus
from musegpt.engines.base import EngineError
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.generation.copy_guard import Aliases, CopyGuard
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import NEG_INF, DecodeState
from musegpt.model import GPT, GPTConfig, save_model
from musegpt.originality.check import check_text
from musegpt.originality.index import CopyIndex
from musegpt.originality.store import build_for_model, index_documents, open_index
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore
from musegpt.tokenizer.char import CharTokenizer

POEM = """The lantern keeper of the northern quay
counts every ship that passes in the night,
and writes their names in chalk upon the grey
stone wall, and wipes them off at morning light.
No sailor ever asked him why he stays;
the gulls alone have learned his patient ways.
"""
PROMPT = "The lantern"
LIMIT = 20


def train_to_memorise(corpus: PreparedCorpus, steps: int = 400) -> GPT:
    """A small GPT fitted to the corpus until it recites it (about 20 s on a busy core)."""
    torch.manual_seed(0)
    ids = torch.from_numpy(corpus.tokens("train").astype(np.int64))
    config = GPTConfig(
        vocab_size=corpus.tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=64
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only wait for each other
    try:
        for _ in range(steps):
            starts = torch.randint(0, len(ids) - 33, (32,), generator=generator).tolist()
            x = torch.stack([ids[s : s + 32] for s in starts])
            y = torch.stack([ids[s + 1 : s + 33] for s in starts])
            loss = model(x, y).loss
            assert loss is not None
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A corpus of one poem, a model that memorised it, and a cache of our own."""
    root = tmp_path_factory.mktemp("originality")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MUSEGPT_CACHE", str(root / "cache"))
        (root / "poem.txt").write_text(POEM, encoding="utf-8")
        prepare_corpus([str(root / "poem.txt")], root / "corpus", tokenizer="char", val_fraction=0)
        corpus = PreparedCorpus.open(root / "corpus")
        save_model(root / "model.safetensors", train_to_memorise(corpus), corpus.tokenizer)
        yield root


@pytest.fixture(scope="module")
def engine(folder: Path) -> MuseGPTEngine:
    return MuseGPTEngine.load(folder / "model.safetensors", name="reciter")


@pytest.fixture(scope="module")
def indexed(folder: Path, engine: MuseGPTEngine) -> CopyIndex:
    return build_for_model(
        engine.path, engine.tokenizer, engine.name, [str(folder / "corpus")]
    ).index


def longest_copy(index: CopyIndex, engine: MuseGPTEngine, text: str) -> int:
    span = index.longest_span(engine.tokenizer.encode(text))
    return span.length if span else 0


# -- the index ------------------------------------------------------------------------------


def test_index_search_agrees_with_a_brute_force_scan() -> None:
    rng = random.Random(3)
    tokens = [rng.randrange(1, 5) if i % 53 else 0 for i in range(1500)]
    index = CopyIndex.build(np.array(tokens), 0, {})

    def occurrences(span: list[int]) -> list[int]:
        return [i for i in range(len(tokens)) if tokens[i : i + len(span)] == span]

    for _ in range(100):
        span = [rng.randrange(1, 5) for _ in range(rng.randrange(1, 8))]
        found = index.find(span)
        where = occurrences(span)
        assert found.count == len(where)
        assert sorted(index.suffixes[found.lo : found.hi].tolist()) == where
        after = {tokens[i + len(span)] for i in where if i + len(span) < len(tokens)} - {0}
        assert set(index.followers(found).tolist()) == after
    text = [rng.randrange(1, 5) for _ in range(120)]
    best = max(
        j - i
        for i in range(len(text))
        for j in range(i + 1, len(text) + 1)
        if occurrences(text[i:j])
    )
    span = index.longest_span(text)
    assert span is not None and span.length == best
    assert tokens[span.position : span.position + best] == text[span.start : span.start + best]


# -- the guard while writing -----------------------------------------------------------------


def test_the_model_recites_its_poem_without_the_guard_and_not_with_it(
    engine: MuseGPTEngine, indexed: CopyIndex
) -> None:
    free = engine.complete(PROMPT, temperature=0, max_new_tokens=150)[0].text
    assert longest_copy(indexed, engine, free) > 4 * LIMIT  # it has learnt the poem by heart
    guarded = engine.complete(PROMPT, temperature=0, max_new_tokens=150, max_copy=LIMIT)[0]
    assert longest_copy(indexed, engine, guarded.text) <= LIMIT
    assert len(guarded.text) == 150  # still writes to the end, from the corpus's words
    sampled = engine.complete(
        PROMPT, temperature=0.8, n=4, seed=1, max_new_tokens=150, max_copy=LIMIT
    )
    assert all(longest_copy(indexed, engine, c.text) <= LIMIT for c in sampled)
    tight = engine.complete(PROMPT, temperature=0, max_new_tokens=80, max_copy=3)[0]
    assert longest_copy(indexed, engine, tight.text) <= 3


def test_the_guard_holds_alongside_banned_phrases_and_streaming(
    engine: MuseGPTEngine, indexed: CopyIndex
) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=120, max_copy=10, banned=["the"])
    text = "".join(engine.stream(PROMPT, params))
    assert "the" not in text and longest_copy(indexed, engine, text) <= 10


def test_a_character_spelt_with_its_byte_token_still_counts_as_copied() -> None:
    """abc-folk's grammar let it write "|" as the byte token 0x7C (seen): that must not
    reset the copy count, and the byte token of a banned character is banned too."""
    tokenizer = CharTokenizer.train(["abcdefgh"])
    eot = tokenizer.eot_id
    index = CopyIndex.build(np.array([*tokenizer.encode("abcdefgh"), eot]), eot, {})

    def spellings(char: str) -> tuple[int, int]:
        own = tokenizer.encode(char)[0]
        byte = next(
            t
            for t in range(tokenizer.vocab_size)
            if tokenizer.token_bytes(t) == char.encode() and t != own
        )
        return own, byte

    (a, _), (_, b_byte), (c, _), (d, d_byte), (e, _) = map(spellings, "abcde")
    guard = CopyGuard(index, 3, Aliases.of(tokenizer))
    scores = guard(DecodeState([[a, b_byte, c]], [0]), torch.zeros(1, tokenizer.vocab_size))
    assert scores[0, d] == NEG_INF and scores[0, d_byte] == NEG_INF
    assert scores[0, e] == 0  # only what would copy a fourth character is banned


def test_max_copy_on_a_model_without_an_index_says_how_to_make_one(folder: Path) -> None:
    other = MuseGPTEngine.load(folder / "model.safetensors", name="unindexed")
    other.path = str(folder / "elsewhere.safetensors")  # not linked to any index
    with pytest.raises(EngineError, match="musegpt originality index --model unindexed"):
        other.complete(PROMPT, max_new_tokens=5, max_copy=10)
    with pytest.raises(ValueError, match="max_copy"):
        SamplingParams(max_copy=0)


def test_an_index_made_with_another_tokenizer_is_refused(
    folder: Path, engine: MuseGPTEngine
) -> None:
    other = CharTokenizer.train(["xyz"])
    index_documents(["xyz xyz"], other, folder / "other-index", {})
    with pytest.raises(ValueError, match="another tokenizer"):
        open_index(folder / "other-index", engine.tokenizer)


# -- musegpt originality index / check --------------------------------------------------------


def test_cli_index_and_check_report_the_span_its_source_and_a_near_duplicate_score(
    folder: Path, engine: MuseGPTEngine, indexed: CopyIndex
) -> None:
    runner = CliRunner()
    model = str(folder / "model.safetensors")
    built = runner.invoke(
        app, ["originality", "index", "--model", model, "--corpus", str(folder / "corpus")]
    )
    assert built.exit_code == 0, built.output
    assert "indexed 1 documents" in built.output
    copied = folder / "copied.txt"
    copied.write_text("My own first line.\nand writes their names in chalk upon the grey\n")
    checked = runner.invoke(app, ["originality", "check", str(copied), "--model", model])
    assert checked.exit_code == 0, checked.output
    assert "line 3" in checked.output and "The lantern keeper" in checked.output
    report = json.loads(
        runner.invoke(app, ["originality", "check", str(copied), "--model", model, "--json"]).output
    )
    assert report["longest_text"].strip() == "and writes their names in chalk upon the grey"
    assert report["source"]["line"] == 3 and 0 < report["near_duplicate"] < 1
    whole = check_text(POEM, indexed, engine.tokenizer, folder / "corpus" / "originality")
    assert whole.near_duplicate == 1.0 and whole.longest_tokens == len(POEM.rstrip())
    missing = runner.invoke(app, ["originality", "check", str(folder / "nope.txt"), "-m", model])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_a_packaged_name_is_needed_to_find_a_corpus_unasked(engine: MuseGPTEngine) -> None:
    with pytest.raises(ValueError, match="--corpus"):
        build_for_model(engine.path, engine.tokenizer, engine.name)


TUNES = [
    "X:1\nT:First\nM:4/4\nL:1/8\nK:D\n|:A2FA dAFA|B2GB dBGB|A2FA dAFA|e2dc d4:|\n",
    "X:1\nT:Second\nM:6/8\nL:1/8\nK:G\n|:GAB cde|fed cBA|GAB dBG|A3 A3:|\n",
]


def test_bars_copied_from_a_corpus_tune(tmp_path: Path) -> None:
    tokenizer = CharTokenizer.train(TUNES)
    index = index_documents(TUNES, tokenizer, tmp_path / "tunes", {})
    tune = "X:1\nT:Mine\nM:4/4\nL:1/8\nK:D\n|:A2FA dAFA|B2GB dBGB|c2ec f4|e2dc d4:|\n"
    report = check_text(tune, index, tokenizer)
    assert report.bars is not None
    assert (report.bars.bars, report.bars.found, report.bars.longest_run) == (4, 3, 2)


# -- the server -------------------------------------------------------------------------------


def test_a_server_request_takes_max_copy(
    folder: Path, engine: MuseGPTEngine, indexed: CopyIndex
) -> None:
    settings = ServerSettings(data_dir=folder / "server", max_tokens=200)
    with TestClient(create_app({"reciter": engine}, settings)) as client:
        body = {"model": "reciter", "prompt": PROMPT, "max_tokens": 120, "temperature": 0}
        free = client.post("/v1/completions", json=body)
        assert free.status_code == 200, free.text
        assert longest_copy(indexed, engine, free.json()["choices"][0]["text"]) > LIMIT
        guarded = client.post("/v1/completions", json={**body, "max_copy": LIMIT})
        assert guarded.status_code == 200, guarded.text
        assert longest_copy(indexed, engine, guarded.json()["choices"][0]["text"]) <= LIMIT
        bad = client.post("/v1/completions", json={**body, "max_copy": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "max_copy"


def test_max_copy_on_a_served_model_without_an_index_is_a_400_saying_what_to_do(
    folder: Path,
) -> None:
    other = MuseGPTEngine.load(folder / "model.safetensors", name="unindexed")
    other.path = str(folder / "elsewhere.safetensors")  # not linked to any index
    settings = ServerSettings(data_dir=folder / "server2", max_tokens=50)
    with TestClient(create_app({"unindexed": other}, settings)) as client:
        body = {"model": "unindexed", "prompt": PROMPT, "max_tokens": 10, "max_copy": 5}
        for stream in (False, True):
            answer = client.post("/v1/completions", json={**body, "stream": stream})
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["param"] == "max_copy" and "musegpt originality index" in error["message"]
        task = {"text": "the quay", "params": {"max_copy": 5, "max_new_tokens": 10}}
        studio = client.post("/v1/studio/describe", json=task)
        assert studio.status_code == 400 and studio.json()["error"]["param"] == "max_copy"


def test_a_studio_work_records_its_longest_copied_span_in_its_provenance(
    folder: Path, engine: MuseGPTEngine, indexed: CopyIndex
) -> None:
    store = WorksStore(folder / "works.db")
    settings = ServerSettings(data_dir=folder / "studio", max_tokens=200)
    with TestClient(create_app({"reciter": engine}, settings, store)) as client:
        pid = client.post("/v1/projects", json={"name": "Copies"}).json()["id"]
        body = {"text": "the quay", "project_id": pid, "params": {"seed": 1}}
        work = client.post("/v1/studio/describe", json=body)
        assert work.status_code == 200, work.text
        shown = work.json()["longest_copy"]
        assert shown["indexed"] and shown["tokens"] == len(shown["text"]) > 0
        assert shown["text"] in POEM and shown["first_line"] == POEM.split("\n")[0]
        recorded = client.get(f"/v1/projects/{pid}/generations").json()["data"][0]
        assert recorded["params"]["longest_copy"] == shown


def test_the_web_studio_shows_a_works_longest_copied_span(
    folder: Path, engine: MuseGPTEngine, indexed: CopyIndex
) -> None:
    from studio_browser import WIDE, launched, open_studio  # skips without Chromium
    from test_server_helpers import running_server

    settings = ServerSettings(data_dir=folder / "web", max_tokens=200)
    app = create_app({"reciter": engine}, settings, WorksStore(folder / "web.db"))
    with running_server(app) as base, launched() as browser:
        page = open_studio(browser, base, WIDE)
        # app.js's own studio call: a streamed POST read to its end, then the work announced.
        page.evaluate(
            """async () => {
              await studio("describe", {model: "reciter", text: "the quay", params: {seed: 1}});
            }"""
        )
        page.wait_for_selector("#longest-copy:not(:empty)")
        shown = page.inner_text("#longest-copy")
        assert shown.startswith("longest span copied from the training corpus"), shown
        assert "The lantern keeper of the northern quay" in shown, shown
        page.close()


def test_a_composed_tune_takes_max_copy(engine: MuseGPTEngine, indexed: CopyIndex) -> None:
    from musegpt.music.abc import Header
    from musegpt.music.compose import compose_headers

    # A header the reciter has seen: its poem's first line as the title, so it recites on.
    header = Header(title="The lantern keeper", key="D")
    free = compose_headers(engine, [header], bars=64, seed=1, constrained=False, temperature=0)
    guarded = compose_headers(engine, [header], 64, 1, False, 0.0, sampling={"max_copy": 6})[0]
    assert longest_copy(indexed, engine, free[0].body) > 6
    assert longest_copy(indexed, engine, guarded.body) <= 6
