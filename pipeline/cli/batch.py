"""Commands over recorded footage: `analyze`, `evaluate`, `samples fetch`, `demo`."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from citypatrol.annotate.labels import label_zh
from citypatrol.pipeline.batch.footage import plan_cameras
from citypatrol.pipeline.batch.runner import BatchResult, run_batch
from citypatrol.pipeline.cli.markup import esc
from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.config.loading import load_config

import contextlib
import sys

console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out_console = Console(width=None if sys.stdout.isatty() else 140)
samples_app = typer.Typer(no_args_is_help=True, help="The sample footage used by the demo, tests and evaluation.")


def _config(path: Path | None) -> Config:
    return load_config(path) if path else Config()


def _review_check(config: Config):
    """The second-stage check the review policy uses (dispatch on and `review.verifier` set), or None."""
    from citypatrol.pipeline.sinks.second_stage import VerifierUnavailable, load_check

    if not config.dispatch.enabled:
        return None
    try:
        return load_check(config.review)
    except VerifierUnavailable as exc:
        console.print(f"[red]cannot load the second-stage verifier:[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None


def _detector(config: Config):
    from citypatrol.models.detector import DetectorError
    from citypatrol.models.assets import AssetError

    from citypatrol.models.promotion import load_promoted

    try:
        with console.status("loading detector(s)…"):
            return load_promoted(config.models)  # a promoted version (`citypatrol models promote`) replaces the config's weights
    except (DetectorError, AssetError) as exc:
        console.print(f"[red]cannot load the detector:[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None


def print_summary(result: BatchResult) -> None:
    table = Table(title="analysed footage", show_lines=False)
    for col in ("camera", "file", "frames", "stream s", "detections", "cases", "problem"):
        table.add_column(col, justify="right" if col in ("frames", "stream s", "detections", "cases") else "left")
    for o in result.outcomes:
        table.add_row(esc(o.camera_id), esc(o.source), str(o.frames), f"{o.stream_seconds:.1f}", str(o.detections), str(o.cases),
                      esc(o.error[:80] + ("…" if len(o.error) > 80 else "")) if o.error else ("" if o.frames else "no frames"))
    out_console.print(table)
    for o in result.outcomes:
        if o.reading:
            out_console.print(f"{esc(o.camera_id)}: {esc(o.reading)}", highlight=False, soft_wrap=True)
        if o.tiling:
            out_console.print(f"{esc(o.camera_id)}: detected whole and in {esc(o.tiling)}", highlight=False, soft_wrap=True)
    if result.cases:
        cases = Table(title="cases")
        for col in ("case", "camera", "category", "code", "opened (s)", "score", "status"):
            cases.add_column(col)
        for r in result.cases:
            c = r.case
            cases.add_row(esc(c.case_id), esc(c.camera_id), f"{label_zh(c.category, r.codes.name)} {c.category.value}", esc(r.codes.code),
                          f"{c.opened_pts:.1f}", f"{c.score:.2f}", c.status.value)
        out_console.print(cases)
    for reason in result.disabled_rules:
        out_console.print(f"[yellow]rule off:[/yellow] {esc(reason)}", highlight=False)
    if result.evidence_errors:
        out_console.print(f"[yellow]{result.evidence_errors} evidence file(s) could not be written (see the log)[/yellow]")
    out_console.print(f"\nmodel {esc(result.model)}", highlight=False)
    frames = sum(o.frames for o in result.outcomes)
    if frames:
        looks = ", ".join(f"{esc(name)} {n}" for name, n in result.looks.items())
        out_console.print(f"detector looks of {frames} analysed frame(s): {looks}; {result.frames_gated} unchanged "
                          "(models.change_gate, rules.*.look_every_s)", highlight=False)
    out_console.print(f"results in {esc(result.out_dir)}/")
    out_console.print(f"  detections  {esc(result.detections_jsonl)}")
    out_console.print(f"  cases       {esc(result.cases_json)}  ({len(result.cases)} case(s))")
    out_console.print(f"  database    {esc(result.database_url)}")
    if result.report:
        out_console.print(f"  report      {esc(result.report)}")


def analyze(
    paths: list[Path] = typer.Argument(None, help="Video files or folders; default: the config's recorded cameras."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Config file (zones, models, rules)."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Analyse recorded footage: detections, cases, evidence and an HTML report."""
    cfg = _config(config)
    if paths:
        missing = [str(p) for p in paths if not p.exists()]
        for m in missing:
            console.print(f"[red]✗[/red] {esc(m)}: no such file or folder", highlight=False)
        plan = plan_cameras([p for p in paths if p.exists()], cfg)
        for note in plan.notes:
            console.print(f"[cyan]•[/cyan] {esc(note)}", highlight=False, soft_wrap=True)
        for error in plan.errors:
            console.print(f"[red]✗[/red] {esc(error)}", highlight=False, soft_wrap=True)
        cameras = plan.cameras
    else:
        cameras = [c for c in cfg.cameras if c.enabled and not c.is_live]
    if not cameras:
        console.print("[red]nothing to analyse:[/red] give video files or folders, or a config with recorded cameras")
        raise typer.Exit(1)
    check = _review_check(cfg)
    result = run_batch(cfg, cameras, out, _detector(cfg), console=console, show_progress=progress, check=check)
    print_summary(result)
    if not result.analysed_any:
        console.print("[red]nothing could be analysed[/red]: every source failed (see the table above)")
        raise typer.Exit(1)


def evaluate(
    config: Path | None = typer.Option(None, "--config", "-c", help="Config for models and rules (cameras come from the truth files)."),
    out: Path = typer.Option(Path("out/evaluate"), "--out", "-o", help="Output folder."),
    sample: list[str] = typer.Option(None, "--sample", help="Only these samples (manifest names)."),
    truth: list[Path] = typer.Option(None, "--truth", "-t", help="Truth files of your own footage (format of sample_videos/*.truth.yaml) instead of the samples."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores, false cases and missed problems as JSON on stdout."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    candidate: str | None = typer.Option(None, "--candidate", help="Compare these weights (or NAME@VERSION) with the current model."),
    detector: str | None = typer.Option(None, "--detector", help="With --candidate: the detector slot it replaces (default: the first)."),
    data: Path | None = typer.Option(None, "--data", help="With --candidate: a dataset.yaml (e.g. an export's) for detection metrics on its val split."),
    register: bool = typer.Option(True, help="With --candidate: record it and this comparison as a candidate version."),
) -> None:
    """Event-level precision and recall per category on the sample footage's truth files, or on your
    own footage with --truth FILE.truth.yaml … (every file is checked before anything runs).

    With --candidate: the candidate and the current model side by side (detection metrics on --data's
    validation split, event-level figures on the footage), recorded for `citypatrol models promote`.
    """
    from citypatrol.pipeline.evaluation.run import (
        TruthFilesError, evaluate_samples, evaluate_truth_files, load_truth_files, undeclared_categories,
    )
    from citypatrol.pipeline.evaluation.report import evaluation_dict

    cfg = _config(config)
    if candidate:
        _evaluate_candidate(cfg, candidate, detector, data, out, sample or None, register)
        return
    truths = None
    if truth:
        try:
            truths = load_truth_files(truth)
            if undeclared := undeclared_categories(cfg, [t for _, _, t in truths]):
                raise TruthFilesError(undeclared)
        except TruthFilesError as exc:
            for problem in exc.problems:
                console.print(f"✗ {problem}", highlight=False, markup=False)
            console.print("nothing was evaluated: fix the truth file(s) above", highlight=False)
            raise typer.Exit(2) from None
    # with --json, stdout carries the JSON only: whatever the model libraries print goes to stderr
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        if truths is not None:
            ev = evaluate_truth_files(cfg, _detector(cfg), out, truths, console=console, show_progress=progress and not as_json)
        else:
            ev = evaluate_samples(cfg, _detector(cfg), out, names=sample or None, console=console,
                                  show_progress=progress and not as_json)
    if as_json:
        import json

        print(json.dumps(evaluation_dict(ev), ensure_ascii=False, indent=2))
        return
    print_evaluation(ev)


def _evaluate_candidate(cfg: Config, candidate: str, slot: str | None, data: Path | None, out: Path,
                        samples: list[str] | None, register: bool) -> None:
    from citypatrol.models.detector import DetectorError, load_detectors
    from citypatrol.models.promotion import ModelState, PromotionError, parse_ref, with_weights
    from citypatrol.models.training.compare import compare

    state = ModelState()
    try:
        weights = state.get(*parse_ref(candidate))["path"] if parse_ref(candidate) else candidate
        slot = slot or cfg.models.detectors[0].name
        current = _detector(cfg)
        with console.status("loading the candidate…"):
            cand = load_detectors(with_weights(cfg.models, slot, weights))
    except (PromotionError, DetectorError) as exc:
        console.print(f"[red]✗[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None
    result = compare(cfg, current, cand, out, data_yaml=data, samples=samples)
    print_comparison(result.as_dict())
    if register and Path(weights).is_file():
        manifest = Path(data).parent / "manifest.json" if data else None
        v = state.register(slot, Path(weights), metrics=result.as_dict(),
                           manifest=manifest if manifest and manifest.is_file() else None, by="cli:evaluate")
        ref = esc(f"{v['name']}@{v['version']}")
        out_console.print(f"recorded as {ref} ({esc(v['status'])}); promote with `citypatrol models promote {ref}`", highlight=False)
    out_console.print(f"comparison in {esc(result.path)}", highlight=False)


def print_comparison(cmp: dict) -> None:
    table = Table(title="candidate vs current")
    for col in ("measure", "current", "candidate"):
        table.add_column(col)
    cur, cand = cmp["current"], cmp["candidate"]
    table.add_row("model", esc(cur["model"]), esc(cand["model"]))
    fmt = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    if "detection" in cur:
        for k in ("images", "labels", "precision", "recall", "mAP50", "mAP50-95"):
            table.add_row(f"val {k}", fmt(cur["detection"][k]), fmt(cand["detection"][k]))
    if "events" in cur:
        for k in ("true_cases", "false_cases", "missed", "precision", "recall"):
            table.add_row(f"events {k}", fmt(cur["events"][k]), fmt(cand["events"][k]))
    out_console.print(table)
    if cand.get("classes_lost"):
        out_console.print(f"[yellow]the candidate does not emit {esc(cand['classes_lost'])}: rules that need them go off[/yellow]")


def print_evaluation(ev) -> None:
    table = Table(title="event-level precision / recall per category")
    for col in ("category", "true cases", "false cases", "missed", "precision", "recall"):
        table.add_column(col)
    for cat, s in ev.categories.items():
        fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        table.add_row(f"{label_zh(cat)} {cat.value}", str(s.true_positives), str(s.false_positives), str(s.false_negatives),
                      fmt(s.precision), fmt(s.recall))
    out_console.print(table)
    from citypatrol.pipeline.evaluation.report import look_at

    for v in ev.videos:
        for case, why in v.false_cases:
            out_console.print(f"  false case  {esc(v.video)}: {esc(case.case_id)} {case.category.value} at {case.opened_pts:.1f} s — {esc(why)}"
                              f"\n              evidence {esc(case.evidence or '(none written)')}", highlight=False, soft_wrap=True)
        for item in v.missed:
            out_console.print(f"  missed      {esc(v.video)}: {item.category.value} {esc(list(item.box))} from {item.start_s} s — {esc(item.note)}"
                              f"\n              look at {esc(look_at(ev, v.video, item))}", highlight=False, soft_wrap=True)


@samples_app.command("fetch")
def samples_fetch(names: list[str] = typer.Argument(None, help="Only these samples.")) -> None:
    """Place the sample footage in sample_videos/ through the asset resolver (sha256-checked)."""
    from citypatrol.models.assets import AssetError
    from citypatrol.pipeline.evaluation.samples import fetch_samples

    try:
        for p in fetch_samples(names=names or None):
            out_console.print(f"✓ {esc(p)}")
    except AssetError as exc:
        console.print(f"[red]✗[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None


def demo(out: Path = typer.Option(Path("demo_out"), "--out", "-o")) -> None:
    """Analyse the sample footage with the default models and print where the results are."""
    from citypatrol.pipeline.evaluation.run import evaluate_samples

    logging.getLogger().setLevel(logging.WARNING)
    cfg = Config()
    out_console.print("citypatrol demo: the sample footage under the camera configs of its truth files\n")
    ev = evaluate_samples(cfg, _detector(cfg), out, console=console)
    print_summary(ev.batch)
    out_console.print()
    print_evaluation(ev)
    from citypatrol.api.commands import demo_login

    password = demo_login(ev.batch.database_url)
    db = f"sqlite:///{out / 'citypatrol.db'}" if ev.batch.database_url.endswith("/citypatrol.db") else ev.batch.database_url
    out_console.print("\nreview the cases in the browser (review center):", highlight=False)
    out_console.print(f"  citypatrol serve --db {esc(db)} --evidence {esc(out / 'evidence')}", highlight=False, soft_wrap=True)
    out_console.print(f"  then open http://127.0.0.1:8080/ and sign in as demo / {esc(password)}  (shown once)", highlight=False)
