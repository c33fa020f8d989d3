"""`musegpt` entry point. Each command lives in its own module and imports heavy libraries
(torch, tokenizers) only when it runs, so `musegpt --help` stays instant."""

from __future__ import annotations

import typer

from musegpt.cli import (
    compose,
    draw,
    evaluate,
    finetune,
    form,
    hf,
    models,
    moderate,
    originality,
    prepare,
    sample,
    serve,
    train,
    works,
    write,
)

app = typer.Typer(
    name="musegpt",
    help="MuseGPT: train, fine-tune and write with your own GPT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("prepare")(prepare.prepare_command)
app.command("train")(train.train_command)
app.command("finetune")(finetune.finetune_command)
app.command("sample")(sample.sample_command)
app.command("quickstart")(train.quickstart_command)
app.command("export-hf")(hf.export_hf_command)
app.command("import-hf")(hf.import_hf_command)
app.command("compose")(compose.compose_command)
app.command("draw")(draw.draw_command)
app.command("train-images")(draw.train_images_command)
app.command("train-scorer")(draw.train_scorer_command)
evaluate.eval_app.command("images")(draw.eval_images_command)
app.add_typer(write.write_app, name="write")
app.add_typer(models.models_app, name="models")
app.add_typer(evaluate.eval_app, name="eval")
evaluate.eval_app.command("safety")(moderate.safety_eval_command)
app.add_typer(form.form_app, name="form")
app.add_typer(originality.originality_app, name="originality")
app.command("serve")(serve.serve_command)
app.command("moderate")(moderate.moderate_command)
app.add_typer(works.works_app, name="works")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
