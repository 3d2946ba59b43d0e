"""The asset resolver on real files: lookup order, sha256 checks, folders, download, clear errors."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest

from citypatrol.models.assets import AssetEntry, AssetError, locate_asset, resolve_asset

OV_FOLDER = "models/yolo11n_int8_openvino_model"
OV_FILES = {
    "metadata.yaml": "2f13a5c199435aacf7198c79c61cfe846cfd6923dfae82894a7101083f8e8be2",
    "yolo11n.bin": "bf0e8b62016deda0d99888497d23b90e0289a845951d9a8a48ce305984d6b668",
    "yolo11n.xml": "6cf2d7fccde468c306b4a42e7458f554e11924b03d39e836f0350c7ee9b9c9ff",
}
BILLBOARD = "images/billboard_roadside_pole_pred.jpg"
BILLBOARD_SHA = "7a64d7cd6e0c74e1f80c13498fdd489f1bda8a0f344dcead071ee7c2fbd10b78"


@pytest.fixture
def env(tmp_path: Path, assets: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The real mirror and an empty cache of this test's own."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CITYPATROL_ASSET_MIRROR", str(assets))
    monkeypatch.setenv("CITYPATROL_CACHE", str(cache))
    return {"mirror": assets, "cache": cache}


def billboard(**overrides) -> AssetEntry:
    return AssetEntry(**{"name": "billboard", "path": BILLBOARD, "sha256": BILLBOARD_SHA, **overrides})


def test_finds_a_file_in_the_mirror(env: dict[str, Path]) -> None:
    assert resolve_asset(billboard()) == env["mirror"] / BILLBOARD


def test_a_mirror_copy_is_kept_in_the_cache_and_found_there_without_the_mirror(env: dict[str, Path], monkeypatch) -> None:
    board = AssetEntry(name="board", path=BILLBOARD, sha256=BILLBOARD_SHA)
    folder = AssetEntry(name="ov", path=OV_FOLDER, files=OV_FILES)
    assert resolve_asset(board) == env["mirror"] / BILLBOARD and resolve_asset(folder) == env["mirror"] / OV_FOLDER
    assert (env["cache"] / BILLBOARD).read_bytes() == (env["mirror"] / BILLBOARD).read_bytes()
    assert sorted(p.name for p in (env["cache"] / OV_FOLDER).iterdir()) == sorted(OV_FILES)  # no partial copies left
    monkeypatch.delenv("CITYPATROL_ASSET_MIRROR")  # e.g. run outside make
    assert resolve_asset(board) == env["cache"] / BILLBOARD and resolve_asset(folder) == env["cache"] / OV_FOLDER
    (env["cache"] / BILLBOARD).write_bytes(b"not the picture")  # the cache copy is checked like any other
    with pytest.raises(AssetError, match="sha256 mismatch"):
        resolve_asset(board)


def test_finds_a_model_folder_checking_each_file(env: dict[str, Path]) -> None:
    entry = AssetEntry(name="ov", path=OV_FOLDER, files=OV_FILES)
    assert resolve_asset(entry) == env["mirror"] / OV_FOLDER


def test_model_folder_with_one_wrong_file_hash_fails_naming_that_file(env: dict[str, Path]) -> None:
    wrong = {**OV_FILES, "yolo11n.bin": "0" * 64}
    with pytest.raises(AssetError) as exc:
        resolve_asset(AssetEntry(name="ov", path=OV_FOLDER, files=wrong))
    msg = str(exc.value)
    assert "yolo11n.bin" in msg and "0" * 64 in msg and OV_FILES["yolo11n.bin"] in msg
    assert "yolo11n.xml" not in msg


def test_explicit_path_wins_over_the_mirror(env: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "board.jpg"
    copy.parent.mkdir()
    shutil.copy(env["mirror"] / BILLBOARD, copy)
    assert resolve_asset(billboard(), explicit=copy) == copy


def test_explicit_path_that_does_not_exist_is_an_error_not_a_fallback(env: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="does not exist"):
        resolve_asset(billboard(), explicit=tmp_path / "nope.jpg")


def test_sha_mismatch_names_file_expected_and_actual(env: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "board.jpg"
    bad.write_bytes((env["mirror"] / BILLBOARD).read_bytes()[:-1])  # truncated by one byte
    actual = hashlib.sha256(bad.read_bytes()).hexdigest()
    with pytest.raises(AssetError) as exc:
        resolve_asset(billboard(), explicit=bad)
    msg = str(exc.value)
    assert str(bad) in msg and BILLBOARD_SHA in msg and actual in msg


def test_cache_is_used_when_the_mirror_lacks_the_file(env: dict[str, Path], monkeypatch) -> None:
    monkeypatch.delenv("CITYPATROL_ASSET_MIRROR")
    cached = env["cache"] / BILLBOARD
    cached.parent.mkdir(parents=True)
    shutil.copy(env["mirror"] / BILLBOARD, cached)
    assert resolve_asset(billboard()) == cached
    assert locate_asset(billboard()) == (cached, "cache")


def test_local_root_comes_before_the_mirror(env: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "images").mkdir(parents=True)
    shutil.copy(env["mirror"] / BILLBOARD, root / BILLBOARD)
    assert resolve_asset(billboard(local_root=root)) == root / BILLBOARD


def test_missing_everywhere_without_url_names_file_and_mirror_variable(env: dict[str, Path], monkeypatch) -> None:
    monkeypatch.delenv("CITYPATROL_ASSET_MIRROR")
    with pytest.raises(AssetError) as exc:
        resolve_asset(billboard(path="images/not_here.jpg"))
    assert "images/not_here.jpg" in str(exc.value) and "CITYPATROL_ASSET_MIRROR" in str(exc.value)


def test_unreachable_source_url_names_file_and_mirror_variable(env: dict[str, Path], monkeypatch) -> None:
    monkeypatch.delenv("CITYPATROL_ASSET_MIRROR")
    entry = billboard(path="images/not_here.jpg", source_url="http://127.0.0.1:9/not_here.jpg")  # discard port
    with pytest.raises(AssetError) as exc:
        resolve_asset(entry)
    assert "not_here.jpg" in str(exc.value) and "CITYPATROL_ASSET_MIRROR" in str(exc.value)
    assert not (env["cache"] / "images" / "not_here.jpg").exists()


@pytest.fixture
def http_root(tmp_path: Path):
    """A plain HTTP server on loopback standing in for the asset's source site."""
    root = tmp_path / "site"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_downloads_into_the_cache_and_checks_the_hash(env: dict[str, Path], http_root, monkeypatch) -> None:
    monkeypatch.delenv("CITYPATROL_ASSET_MIRROR")
    root, base = http_root
    shutil.copy(env["mirror"] / BILLBOARD, root / "board.jpg")
    path = resolve_asset(billboard(source_url=f"{base}/board.jpg"))
    assert path == env["cache"] / BILLBOARD
    assert hashlib.sha256(path.read_bytes()).hexdigest() == BILLBOARD_SHA


def test_download_of_a_different_file_is_refused_and_not_kept(env: dict[str, Path], http_root, monkeypatch) -> None:
    monkeypatch.delenv("CITYPATROL_ASSET_MIRROR")
    root, base = http_root
    (root / "board.jpg").write_bytes(b"an html error page, not the image")
    with pytest.raises(AssetError) as exc:
        resolve_asset(billboard(source_url=f"{base}/board.jpg"))
    assert BILLBOARD_SHA in str(exc.value) and hashlib.sha256(b"an html error page, not the image").hexdigest() in str(exc.value)
    assert not (env["cache"] / BILLBOARD).exists()
    assert not list((env["cache"] / "images").glob("*.part"))


def test_downloads_a_model_folder_file_by_file(env: dict[str, Path], http_root, monkeypatch) -> None:
    monkeypatch.delenv("CITYPATROL_ASSET_MIRROR")
    root, base = http_root
    shutil.copytree(env["mirror"] / OV_FOLDER, root / "ov")
    path = resolve_asset(AssetEntry(name="ov", path=OV_FOLDER, files=OV_FILES, source_url=f"{base}/ov"))
    assert path == env["cache"] / OV_FOLDER
    assert sorted(p.name for p in path.iterdir()) == sorted(OV_FILES)


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "x", "path": "a.jpg"},  # no hash at all
        {"name": "x", "path": "a.jpg", "sha256": BILLBOARD_SHA, "files": {"b": BILLBOARD_SHA}},  # both
        {"name": "x", "path": "../a.jpg", "sha256": BILLBOARD_SHA},  # escapes the mirror
        {"name": "x", "path": "a.jpg", "sha256": "abc"},  # not a sha256
    ],
)
def test_bad_entries_are_rejected(fields: dict) -> None:
    with pytest.raises(ValueError):
        AssetEntry(**fields)
