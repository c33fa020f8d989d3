"""`musegpt eval forms` (musegpt/forms/evaluate.py) on a GPT trained in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from musegpt.data.prepare import prepare_corpus
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.forms import check, get_form
from musegpt.forms.evaluate import (
    Reference,
    evaluate,
    first_poem,
    load_reference,
    load_topics,
    markdown_table,
    normal_line,
)
from musegpt.model import GPT, GPTConfig
from musegpt.model.io import save_model
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
"""

CHINESE = """\
床前明月光，疑是地上霜。举头望明月，低头思故乡。
白日依山尽，黄河入海流。欲穷千里目，更上一层楼。
春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。
千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。
"""

TOPIC_CHARS = "".join(load_topics("zh")) + "".join(load_topics("en"))


@pytest.fixture(scope="module")
def engine() -> MuseGPTEngine:
    """A char GPT trained for a few dozen steps on English lines and jueju."""
    torch.manual_seed(0)
    text = (ENGLISH + CHINESE) * 3
    tokenizer = CharTokenizer.train([text, TOPIC_CHARS, '—"《》（）'])
    ids = torch.tensor(tokenizer.encode(text))
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=48
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(50):
        start = torch.randint(0, len(ids) - 33, (16,))
        x = torch.stack([ids[s : s + 32] for s in start.tolist()])
        y = torch.stack([ids[s + 1 : s + 33] for s in start.tolist()])
        loss = model(x, targets=y).loss
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return MuseGPTEngine(model.eval(), tokenizer, name="tiny")


def test_topic_lists_have_thirty_or_more_topics_per_language() -> None:
    for lang in ("en", "zh"):
        topics = load_topics(lang)
        assert len(topics) >= 30
        assert len(set(topics)) == len(topics)
    assert load_topics("zh", 3) == load_topics("zh")[:3]
    with pytest.raises(ValueError, match="topics are available"):
        load_topics("en", 1000)


def test_constrained_poems_all_pass(engine: MuseGPTEngine) -> None:
    reference = Reference.from_texts("training text", [ENGLISH, CHINESE])
    scores = list(evaluate(engine, ["haiku", "wujue"], 3, seed=1, reference=reference, batch=2))
    assert [s.form for s in scores] == ["haiku", "wujue"]
    for score in scores:
        assert score.topics == 3
        assert score.constrained_pass == 1.0, score.failures
        assert all(check(poem, score.form).passed for poem in score.poems)
        assert 0.0 <= score.unconstrained_pass <= 1.0
        assert 0.0 < score.distinct2 <= 1.0
        assert score.copied_lines is not None and 0.0 <= score.copied_lines <= 1.0
        assert score.seconds_constrained > 0 and score.tokens_constrained > 0
    table = markdown_table([s.row() for s in scores])
    assert table.count("\n") == 4 and "| haiku | 3 | 100% |" in table


def test_copied_lines_are_found_ignoring_case_and_punctuation() -> None:
    ref = Reference.from_texts("r", [CHINESE, "The Sea is Deep,\nand wide"])
    assert ref.copied("举头望明月")  # half of a line of the corpus
    assert ref.copied("the sea is deep")
    assert not ref.copied("the sea is wide")
    assert normal_line("  Hello, World! ") == "helloworld"


def test_reference_from_a_prepared_corpus_and_a_file(tmp_path: Path) -> None:
    source = tmp_path / "poems.txt"
    source.write_text(CHINESE, encoding="utf-8")
    prepare_corpus([str(source)], tmp_path / "corpus", tokenizer="char", val_fraction=0.0)
    for spec in (tmp_path / "corpus", source):
        ref = load_reference(str(spec))
        assert ref.copied("孤舟蓑笠翁") and not ref.copied("孤舟蓑笠人")


def test_unconstrained_text_is_cut_to_the_first_poem() -> None:
    haiku = get_form("haiku")
    text = "one\n\ntwo\nthree\nfour\n\nfive"
    assert first_poem(text, haiku) == "one\ntwo\nthree"
    wujue = get_form("wujue")
    assert first_poem("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", wujue).count("\n") == 3


def test_eval_forms_command_writes_the_table(engine: MuseGPTEngine, tmp_path: Path) -> None:
    from musegpt.cli.app import app

    model_file = save_model(tmp_path / "tiny.safetensors", engine.model, engine.tokenizer)
    out = tmp_path / "forms-eval.md"
    args = ["eval", "forms", "--model", str(model_file), "--forms", "wujue", "--topics", "2"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "musegpt eval forms" in page and "| wujue | 2 | 100% |" in page
    raw = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert raw[0]["form"] == "wujue" and len(raw[0]["poems"]) == 2
