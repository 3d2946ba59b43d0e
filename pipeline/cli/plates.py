"""`citypatrol evaluate-plates`: exact-match plate reading on a folder of real plate photos."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer
from rich.progress import track
from rich.table import Table

from citypatrol.pipeline.cli.batch import console
from citypatrol.pipeline.cli.markup import esc
from citypatrol.pipeline.evaluation.samples import SAMPLES_DIR

BUNDLED = SAMPLES_DIR / "plates.csv"


def evaluate_plates(
    images: Path = typer.Argument(..., help="Folder holding the manifest's pictures (by file name)."),
    manifest: Path = typer.Option(BUNDLED, "--manifest", "-m", help="CSV: file, plate, kind (vehicle | plate) [, sha256 …]."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores and every miss as JSON on stdout."),
) -> None:
    """Exact-match accuracy of plate reading on real plate photos: vehicle photos are read the way a
    parking case's vehicle box is, plate pictures as one line. Every row is checked first."""
    from citypatrol.models.text import RapidTextReader, TextReaderError
    from citypatrol.pipeline.evaluation.plates import PlateSetError, load_plate_set, read_sample, score

    try:
        samples = load_plate_set(manifest, images)
    except PlateSetError as exc:
        console.print(f"✗ {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        try:
            reader = RapidTextReader()
        except TextReaderError as exc:
            console.print(f"[red]cannot load the OCR:[/red] {esc(exc)}", highlight=False)
            raise typer.Exit(2) from None

        results = [read_sample(reader, s, images)
                   for s in track(samples, description="reading plates", console=console, disable=as_json)]
    scores = score(results)
    misses = [{"file": r.sample.file, "kind": r.sample.kind, "truth": r.sample.plate, "read": r.read.text,
               "score": r.read.score, "note": r.read.note, "wrong": r.wrong} for r in results if not r.exact]
    if as_json:
        print(json.dumps({"scores": [s.as_dict() for s in scores], "misses": misses}, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"plate reading on {len(samples)} pictures ({esc(manifest.name)})")
    for col in ("kind", "pictures", "exact", "unread", "wrong", "accuracy", "median s"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for s in scores:
        d = s.as_dict()
        table.add_row(s.kind, str(s.n), str(s.exact), str(s.unread), str(s.wrong), f"{s.accuracy:.3f}", f"{d['median_s']}")
    console.print(table)
    for m in misses:
        what = f"read {m['read']} ({m['score']:.2f}) — WRONG" if m["wrong"] else f"unread: {m['note']}"
        console.print(f"  {esc(m['file'])}: truth {esc(m['truth'])}, {esc(what)}", highlight=False)
