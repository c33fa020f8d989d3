"""A writer's project for timing personalisation: Jane Austen's *Lady Susan* (about 23,000
words), the English text that `music21` ships for language detection
(`music21/languageExcerpts/trainingData/en.txt`, a Project Gutenberg etext), imported into a
works library as one document per letter, paragraphs unwrapped as a writer types them.

It is on every machine that installs MuseGPT (music21 is a dependency) and is no shipped
adapter's training text (those are Tang and Song poems, English verse and Shakespeare).

    python benchmarks/personalise_project.py --db runs/lady-susan/works.db
    nice -n 10 musegpt finetune --from gemma3-270m --lora --works "Lady Susan" \
        --works-db runs/lady-susan/works.db --out runs/lady-susan/adapter
    python benchmarks/personalise_project.py --samples runs/lady-susan/adapter
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

PROJECT = "Lady Susan"
HEADING = re.compile(r"[IVXL]+|CONCLUSION")


def lady_susan_letters() -> list[tuple[str, str]]:
    """(title, text) of each letter and the conclusion, Gutenberg's header and footer cut."""
    import music21

    source = Path(music21.__file__).parent / "languageExcerpts" / "trainingData" / "en.txt"
    lines = source.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if HEADING.fullmatch(line.strip())]
    end = next(i for i, line in enumerate(lines) if line.startswith("End of The Project"))
    letters = []
    for start, stop in zip(starts, [*starts[1:], end], strict=True):
        body = "\n".join(lines[start + 1 : stop])
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body) if p.strip()]
        letters.append((lines[start].strip(), "\n\n".join(paragraphs)))
    return letters


def build_project(db: Path) -> tuple[int, int]:
    """Create the project in the works library `db`; (project id, words)."""
    from musegpt.store import WorksStore

    db.parent.mkdir(parents=True, exist_ok=True)
    store = WorksStore(db)
    try:
        project = int(store.create_project(PROJECT, "story")["id"])
        words = 0
        for title, text in lady_susan_letters():
            name = "Conclusion" if title == "CONCLUSION" else f"Letter {title}"
            store.create_document(project, name, "prose", text)
            words += len(text.split())
    finally:
        store.close()
    return project, words


def print_samples(run: Path, count: int, tokens: int) -> None:
    """What the base model and the adapted one write after the openings (40 characters) of
    the first `count` held-out paragraphs of the finished run in `run`, as the style distance
    measures them (temperature 0.8, seed 1)."""
    from musegpt.adapters.evaluate import continuations
    from musegpt.adapters.pipeline import ADAPTER_FILE, split_documents
    from musegpt.adapters.train import AdapterSettings
    from musegpt.adapters.works import WORKS_FILE
    from musegpt.engines.default_model import default_model_path

    heldout = split_documents(run / WORKS_FILE, AdapterSettings().seed)[1][:count]
    model = default_model_path()
    base = continuations(model, heldout, None, tokens)
    adapted = continuations(model, heldout, run / ADAPTER_FILE, tokens)
    for text, plain, own in zip(heldout, base, adapted, strict=True):
        print(f"opening: {text[:40]!r}\n  base:    {plain!r}\n  adapted: {own!r}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="works library to create the project in")
    parser.add_argument("--samples", type=Path, help="a finished run folder: print samples")
    parser.add_argument("--count", type=int, default=4, help="samples to print")
    parser.add_argument("--tokens", type=int, default=60, help="tokens each sample runs to")
    args = parser.parse_args()
    if args.samples is not None:
        print_samples(args.samples, args.count, args.tokens)
    elif args.db is not None:
        project, words = build_project(args.db)
        print(f"project {project} ({PROJECT!r}): {words} words in {args.db}")
    else:
        parser.error("give --db (make the project) or --samples RUN (print samples)")


if __name__ == "__main__":
    main()
