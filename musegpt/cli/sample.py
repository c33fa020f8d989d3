from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from musegpt.cli.errors import user_errors
from musegpt.cli.options import Samplers, sampler_options

Opt = typer.Option


@sampler_options
def sample_command(
    model: Annotated[Path, typer.Argument(help="Model file or folder (model.safetensors).")],
    prompt: Annotated[str, Opt(help="Text to continue; empty starts a new document.")] = "",
    max_new_tokens: Annotated[int, Opt(help="Tokens to generate at most.")] = 200,
    min_new_tokens: Annotated[int, Opt(help="No end-of-text before this many tokens.")] = 0,
    temperature: Annotated[float, Opt(help="Randomness; 0 = greedy.")] = 0.8,
    top_k: Annotated[int, Opt(help="Keep the k likeliest tokens; 0 = all.")] = 200,
    top_p: Annotated[float, Opt(help="Nucleus sampling mass; 1 = off.")] = 1.0,
    min_p: Annotated[float, Opt(help="Drop tokens under min_p × the best; 0 = off.")] = 0.0,
    typical_p: Annotated[float, Opt(help="Locally typical sampling mass; 1 = off.")] = 1.0,
    repetition_penalty: Annotated[float, Opt(help="CTRL penalty on seen tokens; 1 = off.")] = 1.0,
    presence_penalty: Annotated[float, Opt(help="OpenAI presence penalty, -2..2.")] = 0.0,
    frequency_penalty: Annotated[float, Opt(help="OpenAI frequency penalty, -2..2.")] = 0.0,
    no_repeat_ngram_size: Annotated[int, Opt(help="Never repeat an n-gram of this size.")] = 0,
    stop: Annotated[list[str] | None, Opt(help="Stop before this text (repeatable).")] = None,
    ban: Annotated[list[str] | None, Opt(help="A phrase that must never appear.")] = None,
    ban_regex: Annotated[list[str] | None, Opt(help="A pattern never to match.")] = None,
    seed: Annotated[int | None, Opt(help="Same seed, same text.")] = None,
    num_samples: Annotated[int, Opt("--num-samples", "-n", help="How many samples.")] = 1,
    samplers: Samplers = None,
) -> None:
    """Continue a prompt with a trained MuseGPT model, streaming to the terminal."""
    with user_errors():
        from musegpt.api import load
        from musegpt.generation.params import SamplingParams

        params = SamplingParams(
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            typical_p=typical_p,
            repetition_penalty=repetition_penalty,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
            stop=stop or [],
            banned=ban or [],
            banned_regex=ban_regex or [],
            seed=seed,
            **(samplers or {}),
        )
        muse = load(model)
        for i in range(num_samples):
            if num_samples > 1:
                typer.echo(f"--- sample {i + 1} ---")
            typer.echo(prompt, nl=False)
            sample_params = params if seed is None else params.model_copy(update={"seed": seed + i})
            for piece in muse.stream(prompt, sample_params):
                typer.echo(piece, nl=False)
            typer.echo()
