"""Config loading: every error names the file, line and key path; secrets come from the environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from citypatrol.pipeline.config.models import Category, Config
from citypatrol.pipeline.config.loading import ConfigError, check_config, load_config, parse_config

REPO = Path(__file__).resolve().parents[3]

BAD = """\
cameras:
  - id: gate
    source: a.mp4
  - id: gate
    source: b.mp4
  - id: east
    source: c.mp4
    cadense_s: 3
    zones:
      - id: z1
        kind: no_parking
        polygon: [[0, 0], [1.5, 0], [1, 1]]
        hours: ["25:00-01:00"]
      - id: z2
        kind: no_swimming
        polygon: [[0, 0], [1, 0]]
models:
  detectors:
    - name: coco
      weights: w
      imgsz: 100
"""


def test_every_error_has_a_key_path_and_line():
    with pytest.raises(ConfigError) as exc:
        parse_config(BAD, "city.yaml")
    issues = {i.path: i for i in exc.value.issues}
    assert "cameras[2].cadense_s" in issues and "unknown key" in issues["cameras[2].cadense_s"].message
    assert issues["cameras[2].cadense_s"].line == 8
    assert "outside 0..1" in issues["cameras[2].zones[0].polygon"].message
    assert "HH:MM-HH:MM" in issues["cameras[2].zones[0].hours"].message
    assert "cameras[2].zones[1].kind" in issues
    assert "cameras[2].zones[1].polygon" in issues  # two points are not a polygon
    assert "multiple of 32" in issues["models.detectors[0].imgsz"].message
    text = str(exc.value)
    assert text.startswith("city.yaml:") and "city.yaml:8: cameras[2].cadense_s" in text


def test_duplicate_camera_ids_rejected():
    with pytest.raises(ConfigError, match="camera id 'gate' appears twice"):
        parse_config("cameras: [{id: gate, source: a.mp4}, {id: gate, source: b.mp4}]")


def test_bad_yaml_and_wrong_top_level():
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("cameras: [\n  - id: a\n", "x.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config("- 1\n- 2\n")


def test_env_secret_interpolation(monkeypatch, tmp_path):
    monkeypatch.setenv("CAM_PW", "s3cret")
    cfg = parse_config("cameras:\n  - id: a\n    source: rtsp://admin:${CAM_PW}@10.0.0.5/live\n")
    assert cfg.cameras[0].source == "rtsp://admin:s3cret@10.0.0.5/live"
    monkeypatch.delenv("CAM_PW")
    with pytest.raises(ConfigError) as exc:
        parse_config("cameras:\n  - id: a\n    source: rtsp://admin:${CAM_PW}@h/live\n")
    assert exc.value.issues[0].path == "cameras[0].source" and "CAM_PW" in exc.value.issues[0].message
    secrets = tmp_path / "secrets.env"
    secrets.write_text("CAM_PW=fromfile\n")
    monkeypatch.setenv("CITYPATROL_SECRETS_FILE", str(secrets))
    assert "fromfile" in parse_config("cameras:\n  - id: a\n    source: rtsp://u:${CAM_PW}@h/\n").cameras[0].source


UNSET = """\
cameras:
  - id: gate
    source: rtsp://admin:${CP_TEST_GATE_PW}@10.0.0.5/live
api:
  port: ${CP_TEST_API_PORT}
dispatch:
  secret: ${CP_TEST_DISPATCH_SECRET}
"""


def test_unset_variables_are_named_with_their_lines_and_allow_unset_checks_the_rest(monkeypatch, tmp_path):
    for name in ("CP_TEST_GATE_PW", "CP_TEST_API_PORT", "CP_TEST_DISPATCH_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as exc:
        parse_config(UNSET, "city.yaml")
    assert [(i.line, i.path, i.message.split(" is not set")[0]) for i in exc.value.issues] == [
        (3, "cameras[0].source", "${CP_TEST_GATE_PW}"), (5, "api.port", "${CP_TEST_API_PORT}"),
        (7, "dispatch.secret", "${CP_TEST_DISPATCH_SECRET}")]
    config, unset = check_config(UNSET, "city.yaml", allow_unset=True)
    assert config is None and [i.line for i in unset] == [3, 5, 7]  # a port cannot be stood in for; the rest is valid
    config, unset = check_config(UNSET.replace("${CP_TEST_API_PORT}", "8081"), "city.yaml", allow_unset=True)
    assert config is not None and config.api.port == 8081 and [i.path for i in unset] == ["cameras[0].source", "dispatch.secret"]
    broken = UNSET + "  timeout_s: -1\n"  # a real mistake beside the unset values is still found
    with pytest.raises(ConfigError) as exc:
        check_config(broken, "city.yaml", allow_unset=True)
    assert [i.path for i in exc.value.issues] == ["dispatch.timeout_s"]

    f = tmp_path / "city.yaml"
    f.write_text(UNSET)
    exe = [sys.executable, "-m", "citypatrol.pipeline.cli.main", "config", "check"]
    strict = subprocess.run(exe + [str(f)], capture_output=True, text=True)
    assert strict.returncode == 1 and f"{f}:5: api.port: ${{CP_TEST_API_PORT}} is not set" in strict.stderr
    lenient = subprocess.run(exe + ["--allow-unset", str(f)], capture_output=True, text=True)
    assert lenient.returncode == 0, lenient.stderr
    assert "3 value(s) not set here, not checked" in lenient.stderr and f"{f}:7: dispatch.secret" in lenient.stderr


def test_per_camera_rule_overrides_merge_and_validate():
    cfg = parse_config("cameras:\n  - id: a\n    source: a.mp4\n    rules: {illegal_parking: {dwell_s: 20}}\n")
    merged = cfg.rules_for(cfg.cameras[0])
    assert merged.illegal_parking.dwell_s == 20
    assert merged.illegal_parking.min_score == cfg.rules.illegal_parking.min_score
    with pytest.raises(ConfigError, match="rules.illegal_parking"):
        parse_config("cameras:\n  - id: a\n    source: a.mp4\n    rules: {illegal_parking: {dwell_s: -5}}\n")


def test_text_reads_must_come_before_a_case_expires():
    with pytest.raises(ConfigError, match="camera 'a' rules.billboard.text_every_s .900. must be shorter than cases.grace_s"):
        parse_config("cameras:\n  - id: a\n    source: a.mp4\n    rules: {billboard: {text_every_s: 900}}\n")
    assert parse_config("rules: {billboard: {text_every_s: 900, text_cue: false}}\n").rules.billboard.text_every_s == 900


def test_defaults_have_a_code_for_every_category():
    cfg = Config()
    assert set(cfg.codes) == set(Category)
    assert cfg.codes[Category.illegal_parking].code == "0505"


def test_relative_sources_resolve_against_the_config_file(tmp_path):
    (tmp_path / "c.yaml").write_text("cameras:\n  - id: a\n    source: clips/a.mp4\n  - id: b\n    source: rtsp://h/x\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.cameras[0].source == str(tmp_path / "clips" / "a.mp4")
    assert cfg.cameras[1].source == "rtsp://h/x"


def test_trusted_proxies_are_none_by_default_and_must_be_addresses_or_networks():
    assert Config().api.trusted_proxies == []
    ok = parse_config("api: {trusted_proxies: ['10.0.0.5', '10.1.0.0/16', '::1']}")
    assert ok.api.trusted_proxies == ["10.0.0.5", "10.1.0.0/16", "::1"]
    for bad in ("'*'", "proxy.local", "'10.0.0.0/33'"):
        with pytest.raises(ConfigError) as exc:
            parse_config(f"api: {{trusted_proxies: [{bad}]}}", "x.yaml")
        assert "api.trusted_proxies" in str(exc.value) and "not an IP address or network" in str(exc.value)


def test_example_config_is_valid_and_schema_is_current(monkeypatch):
    monkeypatch.setenv("CAM_EAST_PASSWORD", "x")
    monkeypatch.setenv("DISPATCH_SECRET", "y")
    load_config(REPO / "configs" / "example.yaml")
    schema = json.loads((REPO / "configs" / "config.schema.json").read_text())
    assert schema == json.loads(json.dumps(Config.model_json_schema())), "run `citypatrol config schema` to refresh"


def test_config_check_says_which_rules_no_configured_model_serves(tmp_path, monkeypatch):
    coco_only = tmp_path / "coco.yaml"
    coco_only.write_text("models:\n  detectors:\n    - name: coco\n      weights: yolo11n-coco-openvino-int8\n")
    exe = [sys.executable, "-m", "citypatrol.pipeline.cli.main", "config", "check"]
    r = subprocess.run(exe + [str(coco_only)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "rule off: garbage" in r.stderr and "rule off: billboard" in r.stderr and "rule off: illegal_parking" not in r.stderr
    monkeypatch.setenv("CAM_EAST_PASSWORD", "x")
    monkeypatch.setenv("DISPATCH_SECRET", "y")
    example = subprocess.run(exe + [str(REPO / "configs" / "example.yaml")], capture_output=True, text=True)
    assert example.returncode == 0 and "rule off" not in example.stderr, example.stderr  # the city model serves them


def test_config_check_cli_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("cameras: []\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    exe = [sys.executable, "-m", "citypatrol.pipeline.cli.main", "config", "check"]
    ok = subprocess.run(exe + [str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    fail = subprocess.run(exe + [str(good), str(bad)], capture_output=True, text=True)
    assert fail.returncode == 1
    assert "cameras[2].cadense_s" in fail.stderr and "bad.yaml:8" in fail.stderr


def test_a_review_verifier_is_relative_to_the_config_and_a_bad_one_stops_the_run(tmp_path):
    folder = tmp_path / "city"
    folder.mkdir()
    cfg_file = folder / "city.yaml"
    cfg_file.write_text(
        "dispatch: {enabled: true, adapter: file, file_dir: outbox}\n"
        "review:\n  default: {min_check_score: 0.6}\n  verifier: models/verifier.npz\n"
    )
    assert load_config(cfg_file).review.verifier == (folder / "models" / "verifier.npz").resolve()

    exe = [sys.executable, "-m", "citypatrol.pipeline.cli.main", "analyze", "--config", str(cfg_file), "--out", str(tmp_path / "out"),
           str(Path(__file__))]  # fmt: skip
    missing = subprocess.run(exe, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert "second-stage verifier" in missing.stderr and "no such file" in missing.stderr and "verifier.npz" in missing.stderr
    (folder / "models").mkdir()
    (folder / "models" / "verifier.npz").write_bytes(b"PK\x03\x04 not really a verifier")
    damaged = subprocess.run(exe, capture_output=True, text=True, timeout=300)
    assert damaged.returncode == 2 and "is not a citypatrol verifier" in damaged.stderr, damaged.stderr


def test_ads_register_entries_are_checked_naming_the_zone():
    head = "cameras:\n  - id: a\n    source: a.mp4\n    zones:\n"
    poly = "polygon: [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]"
    ok = parse_config(head + f"      - {{id: p1, kind: approved_ad, {poly}, permit: SZ-1, valid_until: 2027-01-31}}\n")
    assert str(ok.cameras[0].zones[0].valid_until) == "2027-01-31"
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.zones\[0\].*permit 'SZ-1' has no valid_until"):
        parse_config(head + f"      - {{id: p1, kind: approved_ad, {poly}, permit: SZ-1}}\n")
    with pytest.raises(ConfigError, match="only an approved_ad zone"):
        parse_config(head + f"      - {{id: p1, kind: ad_area, {poly}, permit: SZ-1, valid_until: 2027-01-31}}\n")
    with pytest.raises(ConfigError, match="look is not a sign's look"):
        parse_config(head + f"      - {{id: p1, kind: approved_ad, {poly}, look: abc}}\n")
