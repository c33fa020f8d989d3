"""`python -m musegpt.train ...` is `musegpt train ...`; the form `torchrun` launches:

torchrun --nproc_per_node=2 -m musegpt.train --config C.yaml --data DIR --out RUN
"""

from __future__ import annotations

import typer

from musegpt.cli.train import train_command


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(train_command)
    app()


if __name__ == "__main__":
    main()
