"""Hugging Face GPT-2 interoperability: export a MuseGPT model as a `transformers` GPT-2
checkpoint folder, and import a GPT-2 checkpoint folder as a MuseGPT model.

MuseGPT's layout is GPT-2's (pre-LayerNorm blocks, fused `c_attn`, tanh-GELU MLP 4× wide,
tied output layer), so conversion is a renaming plus one transposition: GPT-2 stores its
projections as `Conv1D` layers whose weight is the transposed `nn.Linear` weight.

What does not carry over:

* rotary positions (GPT-2 has only an absolute, learned position table), so `rope` models
  cannot be exported; sinusoidal models are exported with their fixed table written into
  GPT-2's learned table `wpe` (identical outputs; it becomes trainable on the Hugging Face side);
* GPT-2 settings MuseGPT does not implement (an activation other than the tanh and exact
  GELUs, per-layer attention scaling, reordered/upcast attention, a feed-forward width other
  than 4×, cross-attention, an untied output layer) are refused on import, naming the setting;
* MuseGPT has a single dropout rate; GPT-2's three (`embd_pdrop`, `resid_pdrop`,
  `attn_pdrop`) are exported equal, and `resid_pdrop` is kept on import.

`transformers` is imported only inside the functions that need it (it is slow to import).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from musegpt.model.config import GPTConfig
from musegpt.model.gpt import GPT
from musegpt.model.positional import SinusoidalPositions
from musegpt.tokenizer.base import EOT, Tokenizer
from musegpt.tokenizer.bpe import BPETokenizer
from musegpt.tokenizer.char import CharTokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

# The per-layer modules, named alike on both sides (MuseGPT `blocks.{i}.…`, Hugging Face
# `transformer.h.{i}.…`), and whether each is a projection whose weight GPT-2 stores transposed.
_LAYER_PARTS: tuple[tuple[str, bool], ...] = (
    ("ln_1", False),
    ("attn.c_attn", True),
    ("attn.c_proj", True),
    ("ln_2", False),
    ("mlp.c_fc", True),
    ("mlp.c_proj", True),
)
# GPT-2 activations that are exactly MuseGPT's tanh-approximated GELU, and the exact one.
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
_EXACT_GELU = "gelu"
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))  # `tokenizers` byte-fallback names
README = "README.md"


class HFInteropError(ValueError):
    """A model or checkpoint that cannot be converted, with the reason."""


# ---------------------------------------------------------------------------------------------
# Shared helpers


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence `transformers`' progress bars and info/warning logs for the duration."""
    from transformers.utils import logging

    hf_logging: Any = logging  # some of its functions are untyped
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------
# MuseGPT -> Hugging Face


def check_exportable(config: GPTConfig) -> None:
    if config.positional == "rope":
        raise HFInteropError(
            "cannot export a rotary-position ('rope') model to GPT-2: GPT-2 has only absolute "
            "learned position embeddings (wpe), no rotary embeddings, so no GPT-2 checkpoint "
            "computes what this model does. Models with 'learned' or 'sinusoidal' positions export."
        )


def gpt2_config(config: GPTConfig, eot_id: int) -> GPT2Config:
    """The `GPT2Config` equivalent to a MuseGPT config."""
    from transformers import GPT2Config

    check_exportable(config)
    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=None,  # 4 × n_embd
        activation_function="gelu_new" if config.activation == "gelu_tanh" else _EXACT_GELU,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=config.layer_norm_eps,
        scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False,
        tie_word_embeddings=True,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        architectures=["GPT2LMHeadModel"],
    )


def gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """MuseGPT weights under GPT2LMHeadModel's names and layouts (fp32, CPU). Missing biases
    (a `bias=False` model) become zeros; the tied `lm_head.weight` is left out."""
    config = model.config
    check_exportable(config)
    src = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    if isinstance(model.positions, SinusoidalPositions):
        wpe = model.positions.table.detach().to("cpu", torch.float32)
    else:
        wpe = src["positions.wpe.weight"]
    out = {"transformer.wte.weight": src["wte.weight"], "transformer.wpe.weight": wpe}

    def put(muse: str, hf: str, transposed: bool) -> None:
        weight = src[f"{muse}.weight"]
        out[f"{hf}.weight"] = weight.t() if transposed else weight
        # nn.Linear weight is (out, in) and LayerNorm weight (C,): shape[0] is the bias size.
        bias = src.get(f"{muse}.bias")
        out[f"{hf}.bias"] = bias if bias is not None else torch.zeros(weight.shape[0])

    for i in range(config.n_layer):
        for part, transposed in _LAYER_PARTS:
            put(f"blocks.{i}.{part}", f"transformer.h.{i}.{part}", transposed)
    put("ln_f", "transformer.ln_f", False)
    return {k: v.contiguous() for k, v in out.items()}


def to_gpt2(model: GPT, eot_id: int) -> GPT2LMHeadModel:
    """A `transformers.GPT2LMHeadModel` computing the same logits as `model` (eval mode)."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel(gpt2_config(model.config, eot_id))
    missing, unexpected = hf.load_state_dict(gpt2_state_dict(model), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:  # a bug, not a user error: the two layouts drifted apart
        raise RuntimeError(f"GPT-2 layout mismatch: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    hf.train(False)
    return hf


def char_tokenizer_json(tokenizer: CharTokenizer) -> str:
    """A `tokenizers` model giving exactly the char tokenizer's ids: BPE with no merges over
    the characters (ids 0..n-1), `<|endoftext|>` as a special token (id n), and byte fallback
    to the 256 `<0xNN>` tokens (ids n+1..n+256) for unseen characters; decoding turns the
    byte tokens back into bytes and joins everything without spaces."""
    from tokenizers import AddedToken, decoders, models
    from tokenizers import Tokenizer as HFTokenizer

    vocab = {c: i for i, c in enumerate(tokenizer.chars)}
    vocab[EOT] = tokenizer.eot_id
    vocab.update({name: tokenizer.eot_id + 1 + b for b, name in enumerate(_BYTE_TOKENS)})
    if len(vocab) != tokenizer.vocab_size:  # a character spelled like a special/byte token
        raise HFInteropError("char tokenizer vocabulary collides with its special tokens")
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True))
    hf.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
    hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return str(hf.to_str())


def tokenizer_files(tokenizer: Tokenizer, model_max_length: int) -> dict[str, str]:
    """`tokenizer.json` and `tokenizer_config.json` that `AutoTokenizer` loads as a fast
    tokenizer with the same ids as `tokenizer`."""
    if isinstance(tokenizer, BPETokenizer):
        tokenizer_json = str(tokenizer.to_dict()["tokenizers_json"])
    elif isinstance(tokenizer, CharTokenizer):
        tokenizer_json = char_tokenizer_json(tokenizer)
    else:
        raise HFInteropError(f"cannot export a {type(tokenizer).__name__} to Hugging Face")
    tokenizer_config = {
        # The generic fast tokenizer takes tokenizer.json as it is (no GPT-2-specific
        # rebuilding), so ids match MuseGPT's exactly.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
    }
    return {
        "tokenizer.json": tokenizer_json,
        "tokenizer_config.json": json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n",
    }


def model_card(model: GPT, tokenizer: Tokenizer, name: str) -> str:
    cfg = model.config
    params = model.num_parameters()
    if isinstance(tokenizer, CharTokenizer):
        tok = (
            f"character tokenizer ({len(tokenizer.chars)} characters, `<\\|endoftext\\|>`, and "
            "256 byte-fallback tokens `<0x00>`…`<0xFF>` for characters never seen in training)"
        )
    else:
        tok = f"byte-level BPE, {tokenizer.vocab_size} tokens"
    positions = (
        "learned position embeddings"
        if cfg.positional == "learned"
        else "fixed sinusoidal positions, stored in GPT-2's learned table `wpe` "
        "(identical outputs; fine-tuning here will update them)"
    )
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags:
- gpt2
- musegpt
---

# {name}

A small GPT trained with MuseGPT and exported to the Hugging Face
GPT-2 format by `musegpt export-hf`. It loads with the standard `transformers` classes and
gives the same logits as the original MuseGPT model (fp32).

| | |
|---|---|
| architecture | GPT-2 (`GPT2LMHeadModel`), pre-LayerNorm, tanh-GELU, tied output layer |
| parameters | {params:,} |
| layers / heads / width | {cfg.n_layer} / {cfg.n_head} / {cfg.n_embd} |
| context | {cfg.block_size} tokens |
| positions | {positions} |
| tokenizer | {tok} |
| end of text | `<\\|endoftext\\|>` (id {tokenizer.eot_id}), also BOS and EOS |

## Use

```python
from transformers import AutoTokenizer, GPT2LMHeadModel

model = GPT2LMHeadModel.from_pretrained("path/to/this/folder")
tok = AutoTokenizer.from_pretrained("path/to/this/folder")
ids = tok.encode("Once upon a time", return_tensors="pt")
out = model.generate(ids, max_length=50, do_sample=True, top_k=50)
print(tok.decode(out[0], skip_special_tokens=True))
```

The prompt and the generated text together must fit the {cfg.block_size}-token context
(keep `max_length` at most {cfg.block_size}). `musegpt import-hf` turns this folder back into
a MuseGPT model.
"""


def export_gpt2(
    model: GPT,
    tokenizer: Tokenizer,
    out: str | Path,
    *,
    name: str = "MuseGPT model",
    overwrite: bool = False,
) -> Path:
    """Write a Hugging Face GPT-2 folder (config.json, generation_config.json,
    model.safetensors, tokenizer.json, tokenizer_config.json, README.md) to `out`."""
    check_exportable(model.config)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise HFInteropError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{model.config.vocab_size} embeddings"
        )
    files = tokenizer_files(tokenizer, model.config.block_size)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise HFInteropError(f"{out} is a file; export-hf writes a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise HFInteropError(
            f"{out} is not empty; choose a new folder, or --force to write into it"
        )
    with quiet_transformers():
        hf = to_gpt2(model, tokenizer.eot_id)
        out.mkdir(parents=True, exist_ok=True)
        hf.save_pretrained(out)
    for filename, text in files.items():
        (out / filename).write_text(text, encoding="utf-8")
    (out / README).write_text(model_card(model, tokenizer, name), encoding="utf-8")
    return out


def export_model_file(model_path: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """`export_gpt2` for a MuseGPT model file or folder."""
    from musegpt.model.io import load_model, resolve_model_file

    file = resolve_model_file(model_path)
    model, tokenizer = load_model(file)
    name = file.parent.name if file.name == "model.safetensors" else file.stem
    return export_gpt2(model, tokenizer, out, name=name or "MuseGPT model", overwrite=overwrite)


# ---------------------------------------------------------------------------------------------
# Hugging Face -> MuseGPT


def musegpt_config(hf_config: GPT2Config) -> GPTConfig:
    """The MuseGPT config for a GPT-2 config (learned positions, biases), or an
    HFInteropError naming every setting MuseGPT cannot reproduce."""
    model_type = getattr(hf_config, "model_type", None)
    if model_type != "gpt2":
        raise HFInteropError(
            f"only GPT-2 checkpoints can be imported (model_type is {model_type!r})"
        )
    n_embd = int(hf_config.n_embd)
    problems = []
    activation = hf_config.activation_function
    if activation not in (*_TANH_GELU, _EXACT_GELU):
        problems.append(
            f"activation_function={activation!r} (MuseGPT has the tanh GELU, 'gelu_new', "
            "and the exact one, 'gelu')"
        )
    if not getattr(hf_config, "scale_attn_weights", True):
        problems.append("scale_attn_weights=false (MuseGPT scales attention by 1/sqrt(head size))")
    if getattr(hf_config, "scale_attn_by_inverse_layer_idx", False):
        problems.append("scale_attn_by_inverse_layer_idx=true (no per-layer attention scaling)")
    if getattr(hf_config, "reorder_and_upcast_attn", False):
        problems.append(
            "reorder_and_upcast_attn=true (MuseGPT's attention is not reordered/upcast)"
        )
    n_inner = getattr(hf_config, "n_inner", None)
    if n_inner is not None and n_inner != 4 * n_embd:
        problems.append(f"n_inner={n_inner} (MuseGPT's feed-forward is 4 × n_embd = {4 * n_embd})")
    if getattr(hf_config, "add_cross_attention", False):
        problems.append("add_cross_attention=true (MuseGPT is decoder-only)")
    if problems:
        raise HFInteropError("unsupported GPT-2 setting(s): " + "; ".join(problems))
    try:
        return GPTConfig(
            vocab_size=int(hf_config.vocab_size),
            block_size=int(hf_config.n_positions),
            n_layer=int(hf_config.n_layer),
            n_head=int(hf_config.n_head),
            n_embd=n_embd,
            dropout=float(hf_config.resid_pdrop),
            bias=True,
            positional="learned",
            layer_norm_eps=float(hf_config.layer_norm_epsilon),
            activation="gelu" if activation == _EXACT_GELU else "gelu_tanh",
        )
    except ValueError as err:
        raise HFInteropError(f"GPT-2 config cannot be used: {err}") from err


def musegpt_state_dict(hf_state: dict[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel weights under MuseGPT's names and layouts (the inverse of
    `gpt2_state_dict`)."""
    src = {
        k.removeprefix("transformer."): v.detach().to("cpu", torch.float32)
        for k, v in hf_state.items()
    }
    out = {"wte.weight": src["wte.weight"], "positions.wpe.weight": src["wpe.weight"]}

    def put(hf: str, muse: str, transposed: bool) -> None:
        weight = src[f"{hf}.weight"]
        out[f"{muse}.weight"] = weight.t() if transposed else weight
        out[f"{muse}.bias"] = src[f"{hf}.bias"]

    for i in range(n_layer):
        for part, transposed in _LAYER_PARTS:
            put(f"h.{i}.{part}", f"blocks.{i}.{part}", transposed)
    put("ln_f", "ln_f", False)
    return {k: v.contiguous() for k, v in out.items()}


def from_gpt2(hf: GPT2LMHeadModel) -> GPT:
    """A MuseGPT model (eval mode) computing the same logits as a GPT2LMHeadModel."""
    config = musegpt_config(hf.config)
    state = dict(hf.state_dict())
    wte = state["transformer.wte.weight"]
    lm_head = state.get("lm_head.weight")
    if lm_head is not None and not torch.equal(lm_head, wte):
        raise HFInteropError(
            "tie_word_embeddings=false: this checkpoint's output layer (lm_head) differs from "
            "its token embeddings (wte), but MuseGPT ties the two"
        )
    model = GPT(config)
    missing, unexpected = model.load_state_dict(
        musegpt_state_dict(state, config.n_layer), strict=False
    )
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"MuseGPT layout mismatch: missing {missing}, unexpected {unexpected}")
    return model.eval()


def _checkpoint_folder(folder: str | Path) -> Path:
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise HFInteropError(f"no checkpoint folder at {folder}")
    if not folder.is_dir():
        raise HFInteropError(
            f"{folder} is a file; import-hf needs a Hugging Face checkpoint folder "
            "(config.json, model.safetensors or pytorch_model.bin, tokenizer files)"
        )
    if not (folder / "config.json").is_file():
        raise HFInteropError(f"{folder} has no config.json: not a Hugging Face checkpoint folder")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise HFInteropError(
            f"{folder} has no weights: expected model.safetensors or pytorch_model.bin"
        )
    return folder


def _read_gpt2_config(folder: Path) -> GPT2Config:
    from transformers import GPT2Config

    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HFInteropError(f"{path} is not readable JSON: {err}") from err
    if not isinstance(raw, dict):
        raise HFInteropError(f"{path} does not hold a JSON object")
    if raw.get("model_type") != "gpt2":
        raise HFInteropError(
            f"only GPT-2 checkpoints can be imported ({path} has model_type "
            f"{raw.get('model_type')!r})"
        )
    with quiet_transformers():
        config: GPT2Config = GPT2Config.from_pretrained(folder, local_files_only=True)
    return config


def _load_gpt2_weights(folder: Path, config: GPT2Config) -> GPT2LMHeadModel:
    from transformers import GPT2LMHeadModel

    try:
        with quiet_transformers():
            loaded: Any = GPT2LMHeadModel.from_pretrained(
                folder,
                config=config,
                local_files_only=True,
                output_loading_info=True,
            )
    except (OSError, ValueError, RuntimeError) as err:
        raise HFInteropError(f"cannot read the weights in {folder}: {err}") from err
    hf: Any = loaded[0]
    info: dict[str, Any] = loaded[1]
    hf.float()  # a half-precision checkpoint is imported as fp32, like all MuseGPT models
    missing = sorted(k for k in info.get("missing_keys", ()) if k != "lm_head.weight")
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        detail = f"missing {', '.join(missing[:5])}" if missing else f"wrong shape {mismatched[:5]}"
        raise HFInteropError(f"the weights in {folder} do not match its config.json: {detail}")
    model: GPT2LMHeadModel = hf
    return model


def _read_hf_tokenizer(folder: Path) -> HFTokenizer:
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    try:
        if (folder / "tokenizer.json").is_file():
            return HFTokenizer.from_file(str(folder / "tokenizer.json"))
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
        if vocab.is_file() and merges.is_file():
            # The GPT-2 tokenizer: byte-level BPE, no prefix space, <|endoftext|> special.
            hf = HFTokenizer(models.BPE.from_file(str(vocab), str(merges)))
            hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            hf.decoder = decoders.ByteLevel()
            if hf.token_to_id(EOT) is not None:
                hf.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
            return hf
    except Exception as err:  # tokenizers raises plain Exception for malformed files
        raise HFInteropError(f"cannot read the tokenizer in {folder}: {err}") from err
    raise HFInteropError(
        f"{folder} has no tokenizer: expected tokenizer.json, or vocab.json and merges.txt"
    )


def _char_layout(hf: HFTokenizer) -> list[str] | None:
    """The characters, if `hf` is a MuseGPT char tokenizer as `char_tokenizer_json` writes it."""
    data = json.loads(hf.to_str())
    model = data.get("model") or {}
    if (
        model.get("type") != "BPE"
        or model.get("merges")
        or not model.get("byte_fallback")
        or data.get("pre_tokenizer") is not None
        or data.get("normalizer") is not None
    ):
        return None
    vocab: dict[str, int] = model.get("vocab") or {}
    by_id = sorted(vocab, key=vocab.__getitem__)
    n = len(by_id) - 257
    if n < 0 or [vocab[t] for t in by_id] != list(range(len(by_id))):
        return None
    chars, specials = by_id[:n], by_id[n:]
    if (
        specials != [EOT, *_BYTE_TOKENS]
        or any(len(c) != 1 for c in chars)
        or chars != sorted(chars)
    ):
        return None
    return chars


def _is_byte_level(hf: HFTokenizer) -> bool:
    return '"ByteLevel"' in json.dumps(json.loads(hf.to_str()).get("pre_tokenizer"))


def musegpt_tokenizer(hf: HFTokenizer) -> Tokenizer:
    """A MuseGPT tokenizer wrapping a `tokenizers` one: a MuseGPT char tokenizer if the file
    came from one, otherwise a byte-level BPE tokenizer with an `<|endoftext|>` token."""
    chars = _char_layout(hf)
    if chars is not None:
        return CharTokenizer(chars)
    if hf.token_to_id(EOT) is None:
        raise HFInteropError(
            f"the checkpoint's tokenizer has no {EOT} token, which MuseGPT needs as its "
            "end-of-text separator"
        )
    if not _is_byte_level(hf):
        raise HFInteropError(
            "the checkpoint's tokenizer is not byte-level BPE (GPT-2 style); MuseGPT can only "
            "import byte-level BPE tokenizers"
        )
    try:
        return BPETokenizer(hf)
    except KeyError as err:
        raise HFInteropError(
            f"the checkpoint's tokenizer has a token that is not byte-level: {err}"
        ) from err


def import_gpt2(folder: str | Path) -> tuple[GPT, Tokenizer]:
    """A MuseGPT model (learned positions, biases; eval mode) and tokenizer from a local
    Hugging Face GPT-2 checkpoint folder."""
    path = _checkpoint_folder(folder)
    hf_config = _read_gpt2_config(path)
    config = musegpt_config(hf_config)  # refuse unsupported settings before loading weights
    tokenizer = musegpt_tokenizer(_read_hf_tokenizer(path))
    if tokenizer.vocab_size > config.vocab_size:
        raise HFInteropError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size} embeddings (vocab_size in config.json)"
        )
    hf = _load_gpt2_weights(path, hf_config)
    return from_gpt2(hf), tokenizer


def import_to_model_file(folder: str | Path, out: str | Path) -> Path:
    """`import_gpt2`, saved as a MuseGPT model file (a .safetensors path or a folder)."""
    from musegpt.model.io import save_model

    model, tokenizer = import_gpt2(folder)
    return save_model(out, model, tokenizer, metadata={"imported_from": "huggingface-gpt2"})
