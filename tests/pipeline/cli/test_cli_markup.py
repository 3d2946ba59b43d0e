"""Text from users in the command line's Rich output: token names, paths, --out folders and config
values with `[`, `]` and `[/x]` in them are printed as they are, and never stop a command half done.
The real `citypatrol` CLI in a subprocess, on a real SQLite store and real footage."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from citypatrol.pipeline.cli.markup import esc
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.store.users import UserStore

CLI = [sys.executable, "-m", "citypatrol.pipeline.cli.main"]


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("text", ["t[/x]", "a[", "[bold]x[/bold]", "[nan, 0.2]", "\\[red]", "o[/x]", "plain"])
def test_esc_prints_every_text_as_it_is(text):
    console = Console(width=200, record=True)
    console.print(f"[red]✗[/red] {esc(text)}", highlight=False)
    assert console.export_text() == f"✗ {text}\n"


def test_a_token_named_with_markup_is_created_and_its_secret_shown(tmp_path):
    db = f"sqlite:///{tmp_path / 'users.db'}"
    made = cli("users", "token", "t[/x]", "--role", "analyst", "--db", db)
    assert made.returncode == 0, made.stderr
    assert "'t[/x]'" in made.stderr and made.stdout.startswith("cpt_")
    with open_store(db) as store:
        users = UserStore(store.engine)
        assert [t.name for t in users.tokens()] == ["t[/x]"]
        assert users.token(made.stdout.strip()).name == "t[/x]"
    refused = cli("users", "token", "t[/y]", "--role", "[/boss]", "--db", db)
    assert refused.returncode == 1 and "got '[/boss]'" in refused.stderr  # the refusal is shown with the value as typed


def test_config_check_says_which_vertex_and_what_was_found(tmp_path):
    folder = tmp_path / "c["
    folder.mkdir()
    good = folder / "x].yaml"  # a path with [/x] in it
    good.write_text("cameras: []\n")
    bad = tmp_path / "nan.yaml"
    bad.write_text("cameras:\n  - id: c1\n    source: a.mp4\n    zones:\n      - id: z\n        kind: no_parking\n"
                   "        polygon: [[0.1, 0.1], [.nan, 0.2], [0.5, 0.5]]\n")
    r = cli("config", "check", str(good), str(bad))
    assert r.returncode == 1, r.stderr
    said = " ".join(r.stderr.split())
    assert f"✓ {good}: 0 camera(s)" in said
    assert "cameras[0].zones[0].polygon: vertex 1 is [nan, 0.2]: not a number" in said


def test_analyze_with_brackets_in_folder_and_out_goes_on_past_a_bad_file(tmp_path, assets):
    folder = tmp_path / "a["
    folder.mkdir()
    shutil.copy(assets / "videos/parking_lot_cctv_timelapse_640x480_8s.mp4", folder / "good.mp4")
    (folder / "notes[x].mp4").write_text("this is not a video\n")
    out = tmp_path / "o[" / "x]"
    r = cli("analyze", str(folder), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "detections.jsonl").is_file() and '"camera": "good"' in (out / "detections.jsonl").read_text()
    assert "notes[x]" in r.stdout + r.stderr  # the bad file is named as it is
    assert f"results in {out}/" in r.stdout
