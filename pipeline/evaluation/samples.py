"""The sample footage: its manifest, truth files, and placing the files in `sample_videos/`.

The videos are never committed; `fetch_samples` copies each one from wherever the asset resolver
finds it (mirror, cache, source URL), checked by sha256.

A photo is a fixed camera held still: a sample with `hold: N` is one image placed N times as a
folder of numbered stills (`cadence_s` apart), so a problem in the photo can last the dwell.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from citypatrol.models.assets import AssetEntry, resolve_asset, sha256_file
from citypatrol.pipeline.evaluation.scoring import Truth, load_truth

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "sample_videos"


@dataclass(frozen=True)
class SampleVideo:
    name: str
    entry: AssetEntry
    what_happens: str
    truth_path: Path
    hold: int = 0  # a photo held as this many numbered stills; 0 = the file (or folder) as it is

    @property
    def filename(self) -> str:
        """File name in the samples folder; a stills or held-photo sample is a folder named after the sample."""
        return self.name if self.entry.is_folder or self.hold else Path(self.entry.path).name

    def held_names(self) -> list[str]:
        suffix = Path(self.entry.path).suffix
        return [f"still_{i:03d}{suffix}" for i in range(self.hold)]

    def truth(self) -> Truth:
        return load_truth(self.truth_path)


def load_samples(folder: Path = SAMPLES_DIR) -> list[SampleVideo]:
    data = yaml.safe_load((folder / "manifest.yaml").read_text(encoding="utf-8"))
    out = []
    for item in data["samples"]:
        entry = AssetEntry(
            name=item["name"],
            path=item["path"],
            sha256=item.get("sha256"),
            files=item.get("files") or {},
            size=item.get("size"),
            source_url=item.get("source_url"),
            licence=item.get("licence", ""),
        )
        out.append(SampleVideo(item["name"], entry, item.get("what_happens", ""), folder / f"{item['name']}.truth.yaml",
                               hold=int(item.get("hold", 0))))
    return out


def fetch_samples(dest: Path = SAMPLES_DIR, names: list[str] | None = None) -> list[Path]:
    """Place the sample files in `dest` (skipping those already there with the right sha256)."""
    placed = []
    for sample in load_samples():
        if names and sample.name not in names:
            continue
        target = dest / sample.filename
        if sample.hold:
            _place_held(sample, target)
            placed.append(target)
            continue
        if _in_place(sample.entry, target):
            placed.append(target)
            continue
        found = resolve_asset(sample.entry)
        dest.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        if sample.entry.is_folder:
            tmp.mkdir()
            for rel in sample.entry.files:
                shutil.copyfile(found / rel, tmp / rel)
            if target.exists():
                shutil.rmtree(target)
        else:
            shutil.copyfile(found, tmp)
        tmp.replace(target)
        placed.append(target)
    return placed


def _place_held(sample: SampleVideo, target: Path) -> None:
    names = sample.held_names()
    if target.is_dir() and sorted(p.name for p in target.iterdir()) == names and all(
        sha256_file(target / n) == sample.entry.sha256 for n in names
    ):
        return
    found = resolve_asset(sample.entry)
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.mkdir(parents=True)
    for n in names:
        shutil.copyfile(found, target / n)


def _in_place(entry: AssetEntry, target: Path) -> bool:
    if entry.is_folder:
        return target.is_dir() and all(
            (target / rel).is_file() and sha256_file(target / rel) == digest for rel, digest in entry.files.items()
        )
    return target.is_file() and sha256_file(target) == entry.sha256
