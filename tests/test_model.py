"""The GPT itself: causality, cache consistency, initialisation, saving."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from musegpt.model import GPT, GPTConfig, ModelFileError, load_model, save_model
from musegpt.model.fastpath import linear
from musegpt.model.positional import sinusoidal_table

ENCODINGS = ["learned", "sinusoidal", "rope"]


def tiny(positional: str, **overrides: object) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=97,
        block_size=32,
        n_layer=2,
        n_head=4,
        n_embd=32,
        positional=positional,
        **overrides,  # type: ignore[arg-type]
    )
    return GPT(config).eval()


@pytest.mark.parametrize("positional", ENCODINGS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_changing_a_later_token_never_changes_earlier_logits(
    positional: str, data: st.DataObject
) -> None:
    model = tiny(positional)
    length = data.draw(st.integers(2, 32))
    ids = torch.tensor([data.draw(st.lists(st.integers(0, 96), min_size=length, max_size=length))])
    t = data.draw(st.integers(0, length - 2))
    changed = ids.clone()
    changed[0, t + 1 :] = (changed[0, t + 1 :] + data.draw(st.integers(1, 96))) % 97
    with torch.no_grad():
        a = model(ids).logits
        b = model(changed).logits
    assert torch.equal(a[:, : t + 1], b[:, : t + 1])
    if length > t + 1:
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


@pytest.mark.parametrize("positional", ENCODINGS)
def test_cached_incremental_logits_equal_full_forward(positional: str) -> None:
    model = tiny(positional)
    ids = torch.randint(0, 97, (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache(batch_size=3)
        # A prefill of several tokens, then chunks of uneven size, then single tokens.
        pieces = [ids[:, :7], ids[:, 7:12], ids[:, 12:13], ids[:, 13:20]]
        pieces += [ids[:, i : i + 1] for i in range(20, 32)]
        stepped = torch.cat([model(p, cache=cache).logits for p in pieces], dim=1)
    assert cache.length == 32
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)


def test_cache_truncate_allows_rolling_back() -> None:
    model = tiny("rope")
    ids = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cache = model.new_cache(1)
        model(ids[:, :6], cache=cache)
        first = model(ids[:, 6:7], cache=cache).logits
        cache.truncate(6)
        again = model(ids[:, 6:7], cache=cache).logits
    torch.testing.assert_close(first, again, atol=0, rtol=0)


def test_sinusoidal_table_follows_the_formula() -> None:
    table = sinusoidal_table(50, 16)
    pos, i = 7, 3
    assert table[pos, 2 * i].item() == pytest.approx(
        math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-6
    )
    assert table[pos, 2 * i + 1].item() == pytest.approx(
        math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-6
    )


def test_embeddings_are_tied_and_counted_once() -> None:
    model = tiny("learned")
    assert model.lm_head.weight is model.wte.weight
    c = model.config
    per_block = (
        2 * 2 * c.n_embd  # two LayerNorms
        + c.n_embd * 3 * c.n_embd
        + 3 * c.n_embd  # qkv
        + c.n_embd * c.n_embd
        + c.n_embd  # attention output
        + c.n_embd * 4 * c.n_embd
        + 4 * c.n_embd  # ffn in
        + 4 * c.n_embd * c.n_embd
        + c.n_embd  # ffn out
    )
    expected = (
        c.vocab_size * c.n_embd + c.block_size * c.n_embd + c.n_layer * per_block + 2 * c.n_embd
    )
    assert model.num_parameters() == expected
    assert model.num_parameters(exclude_embeddings=True) == expected - c.block_size * c.n_embd


def test_residual_projections_get_scaled_initialisation() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=8, n_head=4, n_embd=256))
    proj_std = model.blocks[0].attn.c_proj.weight.std().item()
    fc_std = model.blocks[0].mlp.c_fc.weight.std().item()
    assert fc_std == pytest.approx(0.02, rel=0.05)
    assert proj_std == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


def test_dropout_only_acts_in_training_mode() -> None:
    model = tiny("learned", dropout=0.5)
    ids = torch.randint(0, 97, (1, 16))
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(ids).logits, model(ids).logits)
        model.eval()
        assert torch.equal(model(ids).logits, model(ids).logits)


def test_loss_ignores_minus_one_targets_and_starts_near_uniform() -> None:
    model = tiny("learned")
    ids = torch.randint(0, 97, (2, 16))
    targets = ids.roll(-1, dims=1)
    targets[:, -1] = -1
    loss = model(ids, targets).loss
    assert loss is not None
    assert loss.item() == pytest.approx(math.log(97), rel=0.05)


def test_too_long_input_is_a_clear_error() -> None:
    model = tiny("learned")
    with pytest.raises(ValueError, match="exceeds the model's context of 32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="positional must be one of"):
        GPTConfig(positional="alibi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activation must be one of gelu_tanh, gelu"):
        GPTConfig(activation="relu")  # type: ignore[arg-type]


def test_activation_is_the_configured_gelu_and_is_saved(tmp_path: Path) -> None:
    """`activation: gelu` (nanoGPT's exact GELU) changes the feed-forward function, and a
    saved model comes back with the activation it was trained with."""
    from musegpt.tokenizer.char import CharTokenizer

    x = torch.linspace(-4, 4, 64).reshape(1, 1, 64)
    exact, tanh = tiny("learned", activation="gelu"), tiny("learned")
    assert torch.equal(exact.blocks[0].mlp.activation(x), F.gelu(x))
    assert torch.equal(tanh.blocks[0].mlp.activation(x), F.gelu(x, approximate="tanh"))
    ids = torch.randint(0, 97, (1, 16))
    assert not torch.allclose(exact(ids).logits, tanh(ids).logits)  # same weights (seed 0)
    tokenizer = CharTokenizer.train(["abcdefgh "])
    save_model(tmp_path, exact, tokenizer)
    loaded, _ = load_model(tmp_path)
    assert loaded.config.activation == "gelu"
    assert torch.equal(loaded.eval()(ids).logits, exact(ids).logits)


def test_missing_or_damaged_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no MuseGPT model"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_model(tmp_path)


@pytest.mark.parametrize("positional", ENCODINGS)
def test_left_padded_rows_match_their_unpadded_selves(positional: str) -> None:
    model = tiny(positional)
    g = torch.Generator().manual_seed(3)
    short, long = (
        torch.randint(0, 97, (1, 5), generator=g),
        torch.randint(0, 97, (1, 9), generator=g),
    )
    follow = torch.randint(0, 97, (2, 4), generator=g)
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])
    padding = torch.tensor([4, 0])
    with torch.no_grad():
        cache = model.new_cache(2)
        first = model(batch, cache=cache, left_padding=padding).logits[:, -1]
        steps = [model(follow[:, i : i + 1], cache=cache, left_padding=padding).logits[:, -1]
                 for i in range(4)]  # fmt: skip
        for row, prompt in enumerate([short, long]):
            alone = model(torch.cat([prompt, follow[row : row + 1]], 1)).logits[0]
            n = prompt.shape[1]
            torch.testing.assert_close(first[row], alone[n - 1], atol=1e-5, rtol=0)
            for i in range(4):
                torch.testing.assert_close(steps[i][row], alone[n + i], atol=1e-5, rtol=0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", [1, 3, 8, 40])
@pytest.mark.parametrize(
    ("n_in", "n_out", "bias"),
    [(64, 192, True), (256, 64, False), (8, 8, True), (512, 2048, True), (2048, 512, False)],
)
def test_fast_linear_matches_the_layer_and_follows_weight_updates(
    threads: int, rows: int, n_in: int, n_out: int, bias: bool
) -> None:
    """The decode-time linear (prepacked, per-thread blocks, huge-page copies) computes what
    the layer does, and a weight changed in place or replaced is never served stale."""

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(rows + n_out)
        layer = nn.Linear(n_in, n_out, bias=bias)
        x = torch.randn(1, rows, n_in)
        with torch.inference_mode():
            for _ in range(2):  # the second call uses the cached copy
                torch.testing.assert_close(linear(layer, x), layer(x), rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            layer.weight.mul_(-2.0)
            torch.testing.assert_close(linear(layer, x), layer(x), rtol=1e-5, atol=1e-5)
            layer.weight = nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)
            torch.testing.assert_close(linear(layer, x), layer(x), rtol=1e-5, atol=1e-5)
        # With autograd on, gradients flow as through the layer itself.
        x.requires_grad_(True)
        linear(layer, x).sum().backward()
        assert x.grad is not None and layer.weight.grad is not None
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("rows", [1, 8])
def test_fast_linear_follows_optimizer_steps(rows: int) -> None:
    """Training and evaluating in turn (as the trainer does) never evaluates old weights,
    with the optimizer the trainer uses: CPU fused AdamW updates weights in place without
    bumping their version counter, which the cached copies otherwise key on."""
    from musegpt.train.config import TrainConfig
    from musegpt.train.trainer import optimizer_for

    torch.manual_seed(rows)
    layer = nn.Linear(64, 192)
    optimizer = optimizer_for(layer, TrainConfig(learning_rate=0.1), torch.device("cpu"))
    assert optimizer.defaults["fused"]
    x = torch.randn(1, rows, 64)
    for _ in range(3):
        with torch.no_grad():
            torch.testing.assert_close(linear(layer, x), F.linear(x, layer.weight, layer.bias))
        layer(x).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
