"""`musegpt export-hf` and `musegpt import-hf`: trade models with Hugging Face `transformers`
as GPT-2 checkpoint folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from musegpt.cli.errors import user_errors


def export_hf_command(
    model: Annotated[
        Path, typer.Argument(help="MuseGPT model file or folder (model.safetensors).")
    ],
    out: Annotated[Path, typer.Argument(help="Folder to write the GPT-2 checkpoint into.")],
    force: Annotated[
        bool, typer.Option("--force", help="Write into OUT even if it is not empty.")
    ] = False,
) -> None:
    """Export a MuseGPT model as a Hugging Face GPT-2 checkpoint folder.

    transformers' GPT2LMHeadModel.from_pretrained(OUT) and AutoTokenizer.from_pretrained(OUT)
    load it and give the same logits and token ids. Models with learned or sinusoidal
    positions export; rotary (rope) models cannot be expressed as GPT-2.
    """
    with user_errors():
        from musegpt.model.hf_gpt2 import export_model_file

        folder = export_model_file(model, out, overwrite=force)
        typer.echo(f"exported {model} to {folder} (Hugging Face GPT-2 format)")
        typer.echo(
            "load it with: GPT2LMHeadModel.from_pretrained(path), "
            "AutoTokenizer.from_pretrained(path)"
        )


def import_hf_command(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Local GPT-2 checkpoint folder: config.json, model.safetensors or "
            "pytorch_model.bin, and tokenizer.json or vocab.json + merges.txt."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="MuseGPT model file (.safetensors) or folder.")],
) -> None:
    """Import a Hugging Face GPT-2 checkpoint folder as a MuseGPT model.

    The result (learned positions, biases, byte-level BPE tokenizer) works with
    `musegpt sample` and `musegpt finetune --from OUT`.
    """
    with user_errors():
        from musegpt.model.hf_gpt2 import import_to_model_file

        path = import_to_model_file(folder, out)
        typer.echo(f"imported {folder} as a MuseGPT model: {path}")
