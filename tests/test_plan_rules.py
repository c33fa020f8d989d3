"""The token tables behind the plan constraints are built from one read of the vocabulary
per tokenizer (each read of Gemma's 262k tokens cost about a second)."""

from __future__ import annotations

import pytest

from musegpt.studio.plan_rules import line_end_ids, name_tokens, vocab_texts, word_start_ids
from musegpt.tokenizer.char import CharTokenizer


def test_every_table_reads_each_token_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = CharTokenizer.train(["Mara went home.\nShe wept! 王小雨说：好。机器人"])
    reads: list[int] = []
    read = tokenizer.token_bytes

    def counted(token_id: int) -> bytes:
        reads.append(token_id)
        return read(token_id)

    monkeypatch.setattr(tokenizer, "token_bytes", counted)
    lines = line_end_ids(tokenizer)
    sentences = line_end_ids(tokenizer, sentences=True)
    name_tokens(tokenizer, "en")
    name_tokens(tokenizer, "zh")
    vocab_texts(tokenizer)
    word_start_ids(tokenizer, {"机器"}, "zh")
    assert sorted(reads) == list(range(tokenizer.vocab_size))
    ids = tokenizer.encode
    assert set(ids("\n")) <= set(lines.tolist()) and not set(ids(".")) & set(lines.tolist())
    assert set(ids(".!。\n")) <= set(sentences.tolist())
