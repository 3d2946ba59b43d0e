"""`citypatrol cameras import`: GB/T 28181 channel catalogs (CSV, wvp-GB28181-pro JSON) → camera configs via a gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from citypatrol.pipeline.config.catalog_import import CatalogError, cameras_yaml, check_gateway, import_catalog
from citypatrol.pipeline.config.loading import load_config

EXE = [sys.executable, "-m", "citypatrol.pipeline.cli.main"]
GATEWAY = "rtsp://${GW_USER}:${GW_PASSWORD}@gateway:554/rtp/{channel_id}"

CSV = """通道编号,名称,经度,纬度,地址,网格,备注
34020000001320000001,解放路东口,118.796900,32.060300,解放路与中山路交叉口,320102001001,东向西
34020000001310000002,中山北路菜场,118.78,32.07,中山北路88号,320102001002,
34020000002150000003,城管业务分组,,,,,
34020000001320000004,湖南路步行街,0,0,湖南路,,
"""


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, "cameras", "import", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_csv_catalog_to_cameras_through_the_gateway(tmp_path: Path) -> None:
    catalog = tmp_path / "通道目录.csv"
    catalog.write_text(CSV, encoding="utf-8-sig")  # with a BOM, as spreadsheet programs save it
    out = tmp_path / "cameras.yaml"
    proc = _cli(str(catalog), "--gateway", GATEWAY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "wrote 3 camera(s)" in proc.stderr
    assert "34020000002150000003" in proc.stderr and "business group (type 215)" in proc.stderr  # skipped, and said so
    assert "columns not used: 备注" in proc.stderr

    text = out.read_text(encoding="utf-8")
    assert "${GW_USER}:${GW_PASSWORD}@" in text  # credentials stay variables in the file
    cams = yaml.safe_load(text)["cameras"]
    assert [c["id"] for c in cams] == ["34020000001320000001", "34020000001310000002", "34020000001320000004"]
    first = cams[0]
    assert first["name"] == "解放路东口"
    assert first["source"] == "rtsp://${GW_USER}:${GW_PASSWORD}@gateway:554/rtp/34020000001320000001"
    assert first["location"] == {"lon": 118.7969, "lat": 32.0603, "address": "解放路与中山路交叉口", "grid_code": "320102001001"}
    assert "lon" not in cams[2].get("location", {})  # 0,0 = position unknown

    # The file is a config `citypatrol run` accepts; ${VAR}s resolve from the environment.
    os.environ["GW_USER"], os.environ["GW_PASSWORD"] = "viewer", "s3cret"
    try:
        cfg = load_config(out)
    finally:
        del os.environ["GW_USER"], os.environ["GW_PASSWORD"]
    assert cfg.cameras[0].source == "rtsp://viewer:s3cret@gateway:554/rtp/34020000001320000001"
    assert cfg.cameras[1].location.grid_code == "320102001002" and cfg.cameras[1].cadence_s == 2.0

    # Not overwritten without --force.
    again = _cli(str(catalog), "--gateway", GATEWAY, "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr


def test_bad_rows_are_named_by_row_and_column(tmp_path: Path) -> None:
    catalog = tmp_path / "bad.csv"
    catalog.write_text(
        "通道编号,名称,经度,纬度\n"
        "34020000001320000001,解放路东口,118.7969,32.0603\n"
        "3402000000132000002,少一位,118.78,32.07\n"  # 19 digits
        "34020000001320000003,坐标错误,118.7x,32.07\n"
        "34020000001320000004,纬度越界,118.78,95\n"
        "34020000001320000001,重复通道,118.70,32.01\n",
        encoding="utf-8",
    )
    proc = _cli(str(catalog), "--gateway", GATEWAY, "--out", str(tmp_path / "out.yaml"))
    assert proc.returncode == 1
    err = " ".join(proc.stderr.split())
    assert "row 2 (line 3), column '通道编号': '3402000000132000002' is not a 20-digit GB/T 28181 id" in err
    assert "row 3 (line 4), column '经度': '118.7x' is not a number" in err
    assert "row 4 (line 5), column '纬度': 95 is outside -90..90" in err
    assert not (tmp_path / "out.yaml").exists()  # nothing half-written

    # Duplicates are found once the rows themselves are fine.
    with pytest.raises(CatalogError) as exc:
        import_catalog(catalog.read_bytes().replace(b"3402000000132000002,", b"34020000001320000002,")
                       .replace(b"118.7x", b"118.7").replace(b",95\n", b",32.1\n"), "bad.csv", GATEWAY)
    assert "row 5 (line 6), column '通道编号': channel 34020000001320000001 already listed in row 1 (line 2)" in str(exc.value)


def test_model_limits_name_the_column() -> None:
    data = ("channel_id,name\n34020000001320000001," + "长" * 201 + "\n").encode()
    with pytest.raises(CatalogError) as exc:
        import_catalog(data, "long.csv", GATEWAY)
    assert "row 1 (line 2), column 'name': String should have at most 200 characters" in str(exc.value)


def test_missing_channel_column_lists_the_columns_found() -> None:
    with pytest.raises(CatalogError) as exc:
        import_catalog("名称,经度\n解放路,118.7\n".encode(), "x.csv", GATEWAY)
    assert "no channel id column" in str(exc.value) and "columns found: 名称, 经度" in str(exc.value)


def test_gb18030_semicolons_and_english_headers() -> None:
    text = "Channel ID;Name;Longitude;Latitude;Address;Grid Code;District;Status\n" \
           "34020000001320000001;鼓楼广场;118.77;32.06;鼓楼广场北侧;320106001;鼓楼区;离线\n"
    result = import_catalog(text.encode("gb18030"), "catalog.csv", GATEWAY)
    cam = result.cameras[0]
    assert cam.name == "鼓楼广场" and cam.location.address == "鼓楼广场北侧"
    assert cam.location.grid_code == "320106001" and cam.location.district == "鼓楼区"
    assert result.offline == 1


WVP_OLD = {  # wvp-GB28181-pro 2.x: /api/device/query/devices/{deviceId}/channels, channelId + deviceId (the NVR)
    "code": 0, "msg": "成功",
    "data": {"total": 3, "pageNum": 1, "pageSize": 100, "list": [
        {"id": 11, "channelId": "34020000001320000101", "deviceId": "34020000001180000001", "name": "新街口东",
         "longitude": 118.7841, "latitude": 32.0416, "address": "中山路1号", "civilCode": "320102", "status": 1,
         "parental": 0, "ptzType": 3},
        {"id": 12, "channelId": "34020000001320000102", "deviceId": "34020000001180000001", "name": "新街口西",
         "longitude": 0.0, "latitude": 0.0, "address": "", "civilCode": "320102", "status": 0},
        {"id": 13, "channelId": "34020000002160000001", "deviceId": "34020000001180000001", "name": "虚拟组织",
         "parental": 1},
    ]},
}  # fmt: skip


def test_wvp_json_old_and_new_field_names() -> None:
    result = import_catalog(json.dumps(WVP_OLD, ensure_ascii=False).encode(), "channels.json",
                            "rtsp://zlm:554/rtp/{device_id}_{channel_id}")
    assert result.fmt == "json"
    assert [c.id for c in result.cameras] == ["34020000001320000101", "34020000001320000102"]
    first = result.cameras[0]
    assert first.source == "rtsp://zlm:554/rtp/34020000001180000001_34020000001320000101"
    assert first.location.lon == 118.7841 and first.location.district == "320102"
    assert result.cameras[1].location.lon is None
    assert result.offline == 1 and len(result.skipped) == 1 and "virtual organisation" in result.skipped[0]

    newer = [  # wvp 2.7+: deviceId is the channel, parentDeviceId its device; status ON/OFF; a bare list
        {"id": 5, "deviceId": "34020000001320000201", "parentDeviceId": "34020000001180000002", "name": "珠江路",
         "longitude": 118.79, "latitude": 32.05, "status": "ON"},
    ]
    r2 = import_catalog(json.dumps(newer).encode(), "newer.json", "rtsp://zlm:554/rtp/{device_id}_{channel_id}")
    assert r2.cameras[0].source == "rtsp://zlm:554/rtp/34020000001180000002_34020000001320000201"
    common = {"list": [{"gbId": 7, "gbDeviceId": "34020000001320000301", "gbName": "太平南路", "gbLongitude": 118.8,
                        "gbLatitude": 32.03, "gbAddress": "太平南路", "gbCivilCode": "320104", "gbStatus": "OFF",
                        "dataDeviceId": 3}]}  # fmt: skip
    r3 = import_catalog(json.dumps(common).encode(), "common.json", GATEWAY)
    assert r3.cameras[0].name == "太平南路" and r3.cameras[0].location.district == "320104" and r3.offline == 1


def test_json_errors_name_the_item_and_key() -> None:
    items = [{"channelId": "34020000001320000101", "name": "a", "longitude": "东经118"}]
    with pytest.raises(CatalogError) as exc:
        import_catalog(json.dumps(items, ensure_ascii=False).encode(), "c.json", GATEWAY)
    assert "item 1, column 'longitude': '东经118' is not a number" in str(exc.value)
    with pytest.raises(CatalogError) as exc:
        import_catalog(b'{"code": 401, "msg": "token expired"}', "c.json", GATEWAY)
    assert "code 401: token expired" in str(exc.value)
    with pytest.raises(CatalogError) as exc:  # {device_id} asked for, none in the catalog
        import_catalog(json.dumps([{"gbDeviceId": "34020000001320000101"}]).encode(), "c.json",
                       "rtsp://zlm/rtp/{device_id}_{channel_id}")
    assert "item 1" in str(exc.value) and "{device_id}" in str(exc.value)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("rtsp://admin:12345@gateway:554/rtp/{channel_id}", "must be ${VAR}s"),
        ("rtsp://admin@gateway:554/rtp/{channel_id}", "must be ${VAR}s"),
        ("rtsp://gateway:554/rtp/{channel_id}?token=abc123", "token= must be a ${VAR}"),
        ("rtsp://gateway:554/rtp/live", "needs {channel_id}"),
        ("rtsp://gateway:554/rtp/{channel}", "unknown placeholder"),
        ("http://gateway/rtp/{channel_id}", "must start with rtsp://"),
    ],
)
def test_gateway_url_refuses_literal_credentials_and_bad_templates(template: str, problem: str) -> None:
    assert any(problem in p for p in check_gateway(template)), check_gateway(template)
    with pytest.raises(CatalogError, match="gateway URL"):
        import_catalog(CSV.encode(), "c.csv", template)


@pytest.mark.parametrize(
    "template",
    [GATEWAY, "rtsp://gateway:554/rtp/{channel_id}", "rtsp://gateway/rtp/{device_id}_{channel_id}?token=${GW_TOKEN}",
     "rtsps://${U}@gw.example:322/{channel_id}"],
)
def test_gateway_url_accepts_variables(template: str) -> None:
    assert check_gateway(template) == []


def test_yaml_round_trip_keeps_ids_as_strings() -> None:
    result = import_catalog(CSV.encode(), "c.csv", "rtsp://gateway:554/rtp/{channel_id}", cadence_s=1.5)
    doc = yaml.safe_load(cameras_yaml(result.cameras, header="test"))
    assert all(isinstance(c["id"], str) and len(c["id"]) == 20 for c in doc["cameras"])
    assert doc["cameras"][0]["cadence_s"] == 1.5
