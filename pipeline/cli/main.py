"""The `citypatrol` command line. Each command is thin: it parses options and calls one module."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from citypatrol.models.commands import models_app
from citypatrol.pipeline.cli.markup import esc
from citypatrol.pipeline.config.loading import ConfigError, load_checked

# pretty_exceptions_show_locals=False: a traceback must never print local variables (config, URLs, secrets)
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  help="citypatrol: city-management problems found on CCTV, filed as cases.")
config_app = typer.Typer(no_args_is_help=True, help="Check configuration files and write the JSON schema.")
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
from citypatrol.models.training.commands import train_cmd  # noqa: E402

app.command("train")(train_cmd)
from citypatrol.models.training.retrain_commands import dataset_app, verifier_app  # noqa: E402

app.add_typer(dataset_app, name="dataset")
app.add_typer(verifier_app, name="verifier")
from citypatrol.pipeline.cli.batch import analyze, demo, evaluate, samples_app  # noqa: E402

app.command("analyze")(analyze)
app.command("evaluate")(evaluate)
app.command("demo")(demo)
app.add_typer(samples_app, name="samples")
from citypatrol.pipeline.cli.truth import truth_app  # noqa: E402

app.add_typer(truth_app, name="truth")
from citypatrol.pipeline.cli.plates import evaluate_plates  # noqa: E402

app.command("evaluate-plates")(evaluate_plates)
from citypatrol.pipeline.cli.dispatch import dispatch_app, report  # noqa: E402

app.add_typer(dispatch_app, name="dispatch")
app.command("report")(report)
from citypatrol.api.commands import serve, users_app  # noqa: E402

app.command("serve")(serve)
app.add_typer(users_app, name="users")
from citypatrol.pipeline.cli.live import run, status  # noqa: E402

app.command("run")(run)
app.command("status")(status)
from citypatrol.pipeline.cli.distributed import batch_queue, casekeeper, cluster_app, worker  # noqa: E402

app.command("worker")(worker)
app.command("casekeeper")(casekeeper)
app.command("batch-queue")(batch_queue)
app.add_typer(cluster_app, name="cluster")
from citypatrol.pipeline.cli.cameras import cameras_app  # noqa: E402

app.add_typer(cameras_app, name="cameras")

console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@config_app.command("check")
def config_check(
    files: list[Path] = typer.Argument(..., help="Config files to check."),
    allow_unset: bool = typer.Option(False, "--allow-unset", help="Check the rest of a file whose ${VAR}s are not set here; list them."),
) -> None:
    """Validate config files; print every problem with file, line and key path."""
    bad = 0
    for f in files:
        try:
            cfg, unset = load_checked(f, allow_unset=allow_unset)
        except ConfigError as exc:
            bad += 1
            console.print(f"[red]✗[/red] {esc(exc)}", highlight=False, soft_wrap=True)
            continue
        summary = (f"{len(cfg.cameras)} camera(s), {sum(len(c.zones) for c in cfg.cameras)} zone(s), {len(cfg.models.detectors)} "
                   "detector(s)") if cfg else "valid"
        if unset:
            summary += f"; {len(unset)} value(s) not set here, not checked:"
        console.print(f"[green]✓[/green] {esc(f)}: {summary}", highlight=False, soft_wrap=True)
        for issue in unset:
            console.print(f"  {esc(issue.render(str(f)))}", highlight=False, soft_wrap=True)
        for reason in _rules_off(cfg) if cfg else ():
            console.print(f"  [yellow]rule off:[/yellow] {esc(reason)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if bad else 0)


def _rules_off(cfg) -> list[str]:  # noqa: ANN001 (Config)
    """Why each rule would be off with the configured detectors (their classes as the registry lists them)."""
    from citypatrol.models.registry import RegistryError, detector_classes
    from citypatrol.pipeline.rules import build_rules

    try:
        classes = detector_classes(cfg.models.detectors)
    except RegistryError:
        return []
    if classes is None:
        return []  # weights given as paths: their classes are known once loaded (start-up says then)
    return [reason for _, reason in build_rules(classes, cfg.rules, categories=cfg.categories)[1]]


@config_app.command("schema")
def config_schema(out: Path = typer.Option(Path("configs/config.schema.json"), help="Where to write the schema.")) -> None:
    """Write the JSON schema of the config file (for editors and review)."""
    from citypatrol.pipeline.config.models import Config

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(Config.model_json_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    console.print(f"wrote {esc(out)}", highlight=False)


def main() -> None:
    from citypatrol.pipeline.store.records import StoreError

    try:
        app()
    except ConfigError as exc:
        console.print(esc(exc), highlight=False)
        sys.exit(2)
    except StoreError as exc:  # the case store cannot be opened or written: say so, no traceback
        console.print(f"cannot use the case store: {esc(exc)}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
