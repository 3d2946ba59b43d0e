"""`citypatrol truth …`: write truth files for `citypatrol evaluate --truth` from labels a city already has."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.console import Console

truth_app = typer.Typer(no_args_is_help=True, help="Make truth files to evaluate citypatrol on your own footage.")
console = Console(stderr=True)


@truth_app.command("from-pklot")
def from_pklot(
    folder: Path = typer.Argument(..., help="A PKLot-style folder: frames/ + bounding_boxes/ (or stills beside their XML)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Truth file to write (default: ./<name>.truth.yaml)."),
    dwell: float = typer.Option(600, min=0, help="Seconds a space must stay occupied to be a problem (and the rule's dwell)."),
    name: str | None = typer.Option(None, help="Name of the footage (default: the folder's name)."),
    spaces: Path | None = typer.Option(None, help="For a folder without labels: one PKLot XML of the same camera; the lot is judged empty throughout."),
) -> None:
    """Turn per-still space occupancy (PKLot XML) into a truth file: the whole lot a no-parking zone,
    and a space occupied for at least the dwell one illegal-parking problem with its box and times."""
    from citypatrol.pipeline.evaluation.pklot import PklotError, pklot_truth, truth_document

    if not folder.is_dir():
        console.print(f"[red]✗[/red] {folder}: no such folder", highlight=False)
        raise typer.Exit(2)
    try:
        truth = pklot_truth(folder, dwell, spaces)
    except PklotError as exc:
        console.print(f"[red]✗[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    name = name or (folder.name if folder.name != "frames" else folder.parent.name)
    doc = truth_document(truth, name, dwell)
    out = out or Path(f"{name}.truth.yaml")
    header = (f"# Made by `citypatrol truth from-pklot {folder}` (dwell {dwell:g} s) from {truth.labelled} labelled still(s);\n"
              f"# pts 0 = {truth.first:%Y-%m-%d %H:%M:%S}, the first still. Each problem is a space occupied >= the dwell.\n"
              f"# A car in a bay the labels do not cover is in no item: a case for it counts as false; look before tuning.\n")
    out.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=140, default_flow_style=None), encoding="utf-8")
    print(f"wrote {out}: {len(truth.items)} problem(s) from {truth.labelled} labelled still(s), {truth.frames}")
