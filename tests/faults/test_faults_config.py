"""Hostile and malformed configuration files: each a clear `ConfigError` (file, line, key path),
quickly, never a hang, a crash or a traceback; secrets only from the environment or the secrets
file, and never echoed. (Unknown keys, bad values and key paths in general: tests/pipeline/config/test_config.py.)
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

from citypatrol.pipeline.config.loading import MAX_CONFIG_BYTES, ConfigError, load_config, parse_config

SECRET = "Sekr1t-Value-77"


def _points(n: int) -> str:
    return ",".join(f"[{(i % 1000) / 1000},{(i // 1000) / 1000}]" for i in range(n))


def _camera(extra: str) -> str:
    return f"cameras:\n  - id: gate\n    source: gate.mp4\n{extra}"


BILLION_LAUGHS = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))

HOSTILE = {
    # name: (text, what the message must say, key path or None)
    "wrong types": ("cameras: {id: gate}\nrules: {illegal_parking: {dwell_s: three minutes}}\n", "valid list", "cameras"),
    "wrong nested type": (_camera("    zones: [{id: z, kind: no_parking, polygon: [[a, b], [0, 1], [1, 1]]}]\n"),
                          "valid number", "cameras[0].zones[0].polygon[0][0]"),
    "huge polygon": (_camera(f"    zones:\n      - id: z\n        kind: no_parking\n        polygon: [{_points(100_000)}]\n"),
                     "more than 10,000 items", None),
    "polygon over the schema's limit": (_camera(f"    zones: [{{id: z, kind: no_parking, polygon: [{_points(300)}]}}]\n"),
                                        "at most 256", "cameras[0].zones[0].polygon"),
    "unknown top-level key": ("camras: []\n", "unknown key", "camras"),
    "unknown nested key": ("storage: {evidence_dir: ev, evidence_folder: x}\n", "unknown key", "storage.evidence_folder"),
    "evidence dir climbing out": ("storage: {evidence_dir: ../../etc}\n", "climbs out", "storage.evidence_dir"),
    "evidence dir in /etc": ("storage: {evidence_dir: /etc/cron.d}\n", "system folder", "storage.evidence_dir"),
    "drop folder climbing out": ("dispatch: {file_dir: ../../../var/spool/cron}\n", "climbs out", "dispatch.file_dir"),
    "escaped NUL byte": (_camera('    name: "gate\\0/etc/passwd"\n'), "NUL", "cameras[0].name"),
    "raw NUL byte": ("site: {name: 'a\x00b'}\n", "not valid YAML", None),
    "deep nesting": ("site: " + "[" * 200 + "]" * 200 + "\n", "nested more than 64 levels", None),
    "very deep nesting": ("site: " + "[" * 50_000 + "]" * 50_000 + "\n", "nest", None),
    "billion laughs": (BILLION_LAUGHS, "expands to more than", None),
    "recursive alias": ("site: &s {name: *s}\n", "refers to a value that contains it", None),
    "python object tag": ("site: !!python/object/apply:os.system ['touch /tmp/owned']\n", "not valid YAML", None),
    "unknown time zone": ("site: {timezone: ../../etc/passwd}\n", "unknown time zone", "site.timezone"),
    "infinite number": (_camera("    cadence_s: .inf\n"), "less than or equal to 60", "cameras[0].cadence_s"),
    "not a number": (_camera("    cadence_s: .nan\n"), "cadence_s", "cameras[0].cadence_s"),
    "10 MB string": ("site: {name: " + "x" * 10_000_000 + "}\n", "at most 200 characters", "site.name"),
    "binary junk": ("\x89PNG\r\n\x1a\n\x00\x00", "not valid YAML", None),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_config_is_a_clear_error(name):
    text, says, path = HOSTILE[name]
    t = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "city.yaml")
    took = time.monotonic() - t
    message = str(exc.value)
    assert says in message, message[:2000]
    assert message.startswith("city.yaml") and len(message) < 4000, message[:4000]  # named, and never the whole input back
    if path is not None:
        assert path in {i.path for i in exc.value.issues}, [i.path for i in exc.value.issues]
    assert took < 30, f"{name}: {took:.1f} s"  # a hang guard, not a speed test


def test_oversized_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "city.yaml"
    with big.open("wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match="larger than any configuration"):
        load_config(big)


def test_config_check_reports_a_hostile_file_without_a_traceback(tmp_path):
    bad = tmp_path / "laughs.yaml"
    bad.write_text(BILLION_LAUGHS)
    deep = tmp_path / "deep.yaml"
    deep.write_text("site: " + "{a: " * 100 + "1" + "}" * 100 + "\n")
    done = subprocess.run([sys.executable, "-m", "citypatrol.pipeline.cli.main", "config", "check", str(bad), str(deep)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "laughs.yaml" in done.stderr and "expands to more than" in done.stderr
    assert "deep.yaml" in done.stderr and "nested more than" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_secrets_come_from_the_environment_or_the_secrets_file_and_are_never_echoed(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="citypatrol.config")
    text = ("cameras:\n  - id: gate\n    source: rtsp://admin:${CAM_PW}@10.0.0.5/live\n"
            "dispatch: {secret: '${DISPATCH_SECRET}', mqtt_password: '${MQTT_PW:-}'}\n")
    monkeypatch.setenv("CAM_PW", SECRET)
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"# citypatrol secrets\nDISPATCH_SECRET={SECRET}-dispatch\n")
    monkeypatch.setenv("CITYPATROL_SECRETS_FILE", str(secrets))
    cfg = parse_config(text)
    assert cfg.cameras[0].source == f"rtsp://admin:{SECRET}@10.0.0.5/live"
    assert cfg.dispatch.secret == f"{SECRET}-dispatch" and cfg.dispatch.mqtt_password == ""
    assert SECRET not in repr(cfg.dispatch) and not caplog.records  # nothing written into the file: no warning

    # a secret landing in a field that refuses it is not echoed in the error
    with pytest.raises(ConfigError) as exc:
        parse_config("dispatch: {mqtt_port: '${CAM_PW}'}\nsite: {name: '" + "${CAM_PW}" * 20 + "'}\n")
    assert {i.path for i in exc.value.issues} == {"dispatch.mqtt_port", "site.name"}
    assert SECRET not in str(exc.value)

    # a missing variable names the variable, never a value
    monkeypatch.delenv("CAM_PW")
    with pytest.raises(ConfigError, match=r"\$\{CAM_PW\} is not set"):
        parse_config(text)


@pytest.mark.parametrize("text, path", [
    ("dispatch: {secret: plain-text-key}\n", "dispatch.secret"),
    ("dispatch: {callback_secret: plain-text-key}\n", "dispatch.callback_secret"),
    ("dispatch: {mqtt_password: plain-text-key}\n", "dispatch.mqtt_password"),
    ("cameras: [{id: gate, source: 'rtsp://admin:plain-text-key@10.0.0.5/live'}]\n", "cameras[0].source"),
    ("storage: {database_url: 'postgresql+psycopg://cp:plain-text-key@db/cp'}\n", "storage.database_url"),
])
def test_a_secret_written_into_the_file_is_flagged_by_key_path_not_value(text, path, caplog):
    caplog.set_level(logging.WARNING, logger="citypatrol.config")
    parse_config(text, "city.yaml")
    warnings = [r.getMessage() for r in caplog.records if r.name == "citypatrol.config"]
    assert len(warnings) == 1 and path in warnings[0] and "${NAME}" in warnings[0], warnings
    assert "plain-text-key" not in warnings[0]
