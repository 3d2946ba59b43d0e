"""Cameras behind a GB/T 28181 video platform: its channel catalog → camera configs through a gateway.

citypatrol does not speak GB/T 28181 (SIP signalling, PS over RTP). A gateway — typically
wvp-GB28181-pro with ZLMediaKit — invites each channel and re-publishes it as RTSP; this module
turns the platform's channel list into `Camera` entries whose `source` is that gateway URL.
Pure: bytes in, validated cameras (or a `CatalogError` listing every bad row) out; reading and
writing files is the command's job (`citypatrol cameras import`).

Accepted catalogs
-----------------
CSV (UTF-8 with or without BOM, or GB18030 as Chinese platforms export it; comma, semicolon or
tab separated), one channel per row, a header row naming the columns. Column names are matched
without regard to case, spaces, `_` or `-`; Chinese or English:

  channel_id  (required) 通道编号 · 通道国标编号 · 国标编号 · 国标编码 · 通道ID · channel_id · channelId · gbDeviceId
  device_id   设备编号 · 设备国标编号 · 父设备编号 · device_id · parentDeviceId  (the channel's device; `{device_id}` in the URL)
  name        名称 · 通道名称 · 点位名称 · 摄像机名称 · name
  lon         经度 · lon · lng · longitude
  lat         纬度 · lat · latitude
  address     地址 · 安装地址 · 安装位置 · 位置 · address
  grid        网格 · 网格编码 · 网格编号 · 单元网格 · grid · grid_code
  district    区域 · 所属区域 · 街道 · 行政区划 · 行政区域 · district · civil_code
  status      状态 · 在线状态 · status  (在线/离线, ON/OFF, 1/0: only counted; offline channels are imported too)

Other columns are ignored (and listed in the result). JSON: the channel list of wvp-GB28181-pro's
API (`GET /api/device/query/devices/{deviceId}/channels` and the common-channel list), as saved
from the response: `{"code": 0, "data": {"list": [...], "total": …}}`, the page object
`{"list": [...]}` or a bare list. Per item: `channelId` (older wvp, where `deviceId` is the
device) or `deviceId` (newer wvp, with `parentDeviceId`) or `gbDeviceId` (common channels); `name`
/ `gbName`; `longitude`, `latitude` / `gbLongitude`, `gbLatitude`; `address` / `gbAddress`;
`civilCode` / `gbCivilCode` → district; `status` / `gbStatus` (ON/OFF, 1/0) is only counted.

Channel ids are the 20-digit GB/T 28181 codes (centre 8 + industry 2 + type 3 + network 1 +
serial 6). Digits 11–13 give the kind of device; 131 (camera) and 132 (IP camera) are imported,
other kinds in a catalog (directories 215/216, alarm inputs 134, NVRs 118, …) are skipped and
counted unless `all_types` is set. A position of 0,0 (what platforms store when none is known)
is left empty. Positions are written as the platform gives them (GB/T 28181 says WGS-84; some
platforms store GCJ-02).

Gateway URL: a template with `{channel_id}` and optionally `{device_id}`, e.g.
`rtsp://gateway:554/rtp/{channel_id}` or, for wvp's on-demand streams,
`rtsp://gateway:554/rtp/{device_id}_{channel_id}`. Credentials may only appear as `${VAR}`
(resolved from the environment when the config is loaded): a literal user, password or secret
query value in the template is refused.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import ValidationError

from citypatrol.pipeline.config.models import Camera, Config

CAMERA_TYPES = frozenset({"131", "132"})  # GB/T 28181 type codes of video cameras
TYPE_NAMES = {
    "111": "DVR", "112": "video server", "113": "encoder", "114": "decoder", "115": "video switch matrix",
    "116": "audio switch matrix", "117": "alarm controller", "118": "NVR", "130": "hybrid video recorder",
    "131": "camera", "132": "IP camera", "133": "display", "134": "alarm input", "135": "alarm output",
    "136": "voice input", "137": "voice output", "138": "mobile transmitter", "139": "other peripheral",
    "200": "platform centre", "215": "business group", "216": "virtual organisation",
}  # fmt: skip
_ID_RE = re.compile(r"^\d{20}$")

# Canonical field → accepted column names (compared after _norm()).
COLUMNS: dict[str, tuple[str, ...]] = {
    "channel_id": ("通道编号", "通道国标编号", "国标编号", "国标编码", "通道编码", "通道id", "channel_id", "channelid",
                   "channel", "gbdeviceid", "gb_id"),
    "device_id": ("设备编号", "设备国标编号", "父设备编号", "设备id", "device_id", "deviceid", "parentdeviceid", "parent_device_id"),
    "name": ("名称", "通道名称", "点位名称", "摄像机名称", "name", "channel_name", "gbname"),
    "lon": ("经度", "lon", "lng", "longitude", "gblongitude"),
    "lat": ("纬度", "lat", "latitude", "gblatitude"),
    "address": ("地址", "安装地址", "安装位置", "位置", "address", "gbaddress"),
    "grid": ("网格", "网格编码", "网格编号", "单元网格", "grid", "grid_code", "gridcode"),
    "district": ("区域", "所属区域", "街道", "行政区划", "行政区域", "district", "civil_code", "civilcode", "gbcivilcode"),
    "status": ("状态", "在线状态", "status", "online"),
}  # fmt: skip


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.strip().lstrip("\ufeff")).lower()


_ALIASES = {_norm(alias): key for key, names in COLUMNS.items() for alias in names}


class CatalogError(ValueError):
    """A catalog that cannot be imported as it is; `issues` names every bad row and column."""

    def __init__(self, source: str, issues: Sequence[str], what: str = "the channel catalog") -> None:
        self.source = source
        self.issues = list(issues)
        lines = "\n".join(f"  {i}" for i in self.issues)
        super().__init__(f"{source}: {len(self.issues)} problem(s) in {what}:\n{lines}")


@dataclass(frozen=True)
class Channel:
    """One channel as read from the catalog, before it becomes a camera."""

    where: str  # "row 3 (line 4)" or "item 3": how messages name it
    channel_id: str
    device_id: str = ""
    name: str = ""
    lon: float | None = None
    lat: float | None = None
    address: str = ""
    grid: str = ""
    district: str = ""
    online: bool | None = None
    columns: dict[str, str] = field(default_factory=dict)  # canonical field → the column/key name in the file

    @property
    def type_code(self) -> str:
        return self.channel_id[10:13]


@dataclass
class ImportResult:
    cameras: list[Camera]
    skipped: list[str]  # "row 4 (line 5): 34020000002150000001 is a business group (type 215)"
    ignored_columns: list[str]
    offline: int  # channels the platform listed as offline (imported all the same)
    fmt: str  # csv | json


# -- reading ------------------------------------------------------------------------------------


def decode_text(data: bytes) -> str:
    """UTF-8 (BOM or not), else GB18030 (the superset of GBK that Chinese platforms export)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def detect_format(text: str, filename: str = "") -> str:
    lower = filename.lower()
    if lower.endswith(".json"):
        return "json"
    if lower.endswith((".csv", ".txt", ".tsv")):
        return "csv"
    return "json" if text.lstrip().startswith(("{", "[")) else "csv"


def read_catalog(data: bytes, source: str, fmt: str = "auto") -> tuple[list[Channel], list[str], str]:
    """(channels, ignored columns, format) from a catalog file's bytes; CatalogError on any bad row."""
    text = decode_text(data)
    fmt = detect_format(text, source) if fmt == "auto" else fmt
    if fmt == "csv":
        channels, ignored = _read_csv(text, source)
    elif fmt == "json":
        channels, ignored = _read_json(text, source)
    else:
        raise ValueError(f"unknown catalog format {fmt!r}: csv, json or auto")
    return channels, ignored, fmt


def _read_csv(text: str, source: str) -> tuple[list[Channel], list[str]]:
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if not first:
        raise CatalogError(source, ["the file is empty"])
    delimiter = max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    columns: dict[str, int] = {}
    names: dict[str, str] = {}
    ignored: list[str] = []
    channels: list[Channel] = []
    issues: list[str] = []
    row_no = 0
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip().lstrip("\ufeff") for c in cells]
            for i, col in enumerate(header):
                key = _ALIASES.get(_norm(col))
                if key is None:
                    ignored.append(col)
                elif key in columns:
                    issues.append(f"header (line {line}): columns {names[key]!r} and {col!r} both mean {key}")
                else:
                    columns[key], names[key] = i, col
            if "channel_id" not in columns:
                known = ", ".join(COLUMNS["channel_id"][:4])
                raise CatalogError(source, [f"header (line {line}): no channel id column (one of {known}, …); "
                                            f"columns found: {', '.join(header)}"])
            continue
        row_no += 1
        where = f"row {row_no} (line {line})"
        if len(cells) > len(header):
            issues.append(f"{where}: {len(cells)} cells but the header has {len(header)} columns")
            continue
        raw = {k: (cells[i].strip() if i < len(cells) else "") for k, i in columns.items()}
        ch = _channel(where, raw, names, issues)
        if ch is not None:
            channels.append(ch)
    if header is None:
        raise CatalogError(source, ["the file is empty"])
    if issues:
        raise CatalogError(source, issues)
    return channels, ignored


_JSON_KEYS = {  # canonical field → item keys, first present wins
    "channel_id": ("channelId", "gbDeviceId", "deviceId", "channel_id"),
    "device_id": ("parentDeviceId", "deviceId", "device_id"),
    "name": ("name", "gbName"),
    "lon": ("longitude", "gbLongitude", "lon", "lng"),
    "lat": ("latitude", "gbLatitude", "lat"),
    "address": ("address", "gbAddress"),
    "grid": ("gridCode", "grid_code", "grid"),
    "district": ("civilCode", "gbCivilCode", "district"),
    "status": ("status", "gbStatus", "online"),
}


def _json_items(doc: Any) -> list[Any] | None:
    """The channel list inside a wvp response, page object or bare list."""
    for _ in range(3):
        if isinstance(doc, list):
            return doc
        if not isinstance(doc, dict):
            return None
        if isinstance(doc.get("code"), int) and doc["code"] != 0:
            return None
        for key in ("list", "records", "rows", "channels", "data"):
            if key in doc:
                doc = doc[key]
                break
        else:
            return None
    return doc if isinstance(doc, list) else None


def _read_json(text: str, source: str) -> tuple[list[Channel], list[str]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(source, [f"not JSON: {exc}"]) from None
    items = _json_items(doc)
    if items is None:
        hint = f" (the API answered code {doc.get('code')}: {doc.get('msg', '')})" if isinstance(doc, dict) and "code" in doc else ""
        raise CatalogError(source, ["no channel list found: expected a list, {\"list\": [...]} or "
                                    f"{{\"code\": 0, \"data\": {{\"list\": [...]}}}}{hint}"])
    channels: list[Channel] = []
    issues: list[str] = []
    for n, item in enumerate(items, 1):
        where = f"item {n}"
        if not isinstance(item, dict):
            issues.append(f"{where}: expected an object, got {type(item).__name__}")
            continue
        raw: dict[str, str] = {}
        names: dict[str, str] = {}
        for key, candidates in _JSON_KEYS.items():
            if key == "device_id" and names.get("channel_id") == "deviceId":
                candidates = tuple(c for c in candidates if c != "deviceId")  # newer wvp: deviceId is the channel
            for cand in candidates:
                value = item.get(cand)
                if key == "device_id" and not _ID_RE.match(str(value or "").strip()):
                    continue  # a database id or nothing: the device id is optional in JSON
                if value is not None and str(value).strip() != "":
                    raw[key], names[key] = str(value).strip(), cand
                    break
        ch = _channel(where, raw, names, issues)
        if ch is not None:
            channels.append(ch)
    if issues:
        raise CatalogError(source, issues)
    return channels, []


def _channel(where: str, raw: dict[str, str], names: dict[str, str], issues: list[str]) -> Channel | None:
    """A Channel from one row's values (by canonical field); problems go to `issues`, naming the column."""

    def col(key: str) -> str:
        return f"column {names.get(key, key)!r}" if names.get(key, key) != key else f"column {key}"

    before = len(issues)
    cid = raw.get("channel_id", "")
    if not cid:
        issues.append(f"{where}, {col('channel_id')}: empty; every channel needs its 20-digit id")
    elif not _ID_RE.match(cid):
        issues.append(f"{where}, {col('channel_id')}: {cid!r} is not a 20-digit GB/T 28181 id")
    dev = raw.get("device_id", "")
    if dev and not _ID_RE.match(dev):
        issues.append(f"{where}, {col('device_id')}: {dev!r} is not a 20-digit GB/T 28181 id")
    coords: dict[str, float | None] = {}
    for key, bound in (("lon", 180.0), ("lat", 90.0)):
        text = raw.get(key, "")
        if not text:
            coords[key] = None
            continue
        try:
            value = float(text)
        except ValueError:
            issues.append(f"{where}, {col(key)}: {text!r} is not a number")
            continue
        if not -bound <= value <= bound:
            issues.append(f"{where}, {col(key)}: {value:g} is outside -{bound:g}..{bound:g}")
            continue
        coords[key] = value
    if len(issues) > before:
        return None
    lon, lat = coords.get("lon"), coords.get("lat")
    if lon == 0 and lat == 0:
        lon = lat = None  # "unknown" on most platforms, not the Gulf of Guinea
    status = raw.get("status", "").upper()
    online = True if status in ("ON", "1", "TRUE", "ONLINE", "在线") else False if status in ("OFF", "0", "FALSE", "OFFLINE", "离线") else None
    return Channel(
        where=where, channel_id=cid, device_id=dev, name=raw.get("name", ""), lon=lon, lat=lat,
        address=raw.get("address", ""), grid=raw.get("grid", ""), district=raw.get("district", ""),
        online=online, columns=dict(names),
    )  # fmt: skip


# -- gateway URL ----------------------------------------------------------------------------------

_VAR_ONLY = re.compile(r"^(?:\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})+$")
_SECRET_QUERY = re.compile(r"(?i)^(?:password|passwd|pwd|pass|token|access_token|auth|key|secret|signature|sign)$")


def check_gateway(template: str) -> list[str]:
    """Problems with a gateway URL template (empty = fine)."""
    problems = []
    if not template.lower().startswith(("rtsp://", "rtsps://")):
        problems.append(f"the gateway URL must start with rtsp:// or rtsps://, got {template!r}")
    if "{channel_id}" not in template:
        problems.append("the gateway URL needs {channel_id} where the channel's 20-digit id goes, "
                        "e.g. rtsp://gateway:554/rtp/{channel_id}")
    unknown = set(re.findall(r"(?<!\$)\{([^{}]*)\}", template)) - {"channel_id", "device_id"}
    if unknown:
        problems.append(f"unknown placeholder(s) {', '.join(sorted('{' + u + '}' for u in unknown))}: "
                        "use {channel_id} and {device_id}")
    rest = template.split("://", 1)[-1]
    authority = re.split(r"[/?#]", rest.replace("${", "\0").replace("}", "\1"), maxsplit=1)[0]
    if "@" in authority:
        userinfo = authority.rsplit("@", 1)[0].replace("\0", "${").replace("\1", "}")
        for part in userinfo.split(":", 1):
            if part and not _VAR_ONLY.match(part):
                problems.append("credentials in the gateway URL must be ${VAR}s resolved from the environment "
                                "(e.g. rtsp://${GATEWAY_USER}:${GATEWAY_PASSWORD}@gateway:554/rtp/{channel_id}), not literal text")
                break
    query = urlsplit(template.replace("{", "%7B").replace("}", "%7D")).query
    for k, v in parse_qsl(query, keep_blank_values=True):
        v = v.replace("%7B", "{").replace("%7D", "}")
        if _SECRET_QUERY.match(k) and v and not _VAR_ONLY.match(v):
            problems.append(f"the gateway URL's {k}= must be a ${{VAR}}, not literal text")
    return problems


def gateway_url(template: str, channel: Channel) -> str:
    if "{device_id}" in template and not channel.device_id:
        raise ValueError("the gateway URL uses {device_id} but the catalog gives none for this channel")
    return template.replace("{channel_id}", channel.channel_id).replace("{device_id}", channel.device_id)


# -- cameras ------------------------------------------------------------------------------------


def cameras_from_channels(
    channels: Iterable[Channel], gateway: str, *, source: str = "catalog", all_types: bool = False, cadence_s: float | None = None,
) -> tuple[list[Camera], list[str]]:
    """Validated cameras (channel id = camera id) and the channels skipped as not cameras; CatalogError otherwise."""
    problems = check_gateway(gateway)
    if problems:
        raise CatalogError("--gateway", problems, what="the gateway URL")
    cameras: list[Camera] = []
    skipped: list[str] = []
    issues: list[str] = []
    seen: dict[str, str] = {}
    for ch in channels:
        if not all_types and ch.type_code not in CAMERA_TYPES:
            kind = TYPE_NAMES.get(ch.type_code, "not a camera")
            skipped.append(f"{ch.where}: {ch.channel_id} {ch.name} is a {kind} (type {ch.type_code})".replace("  ", " "))
            continue
        if ch.channel_id in seen:
            issues.append(f"{ch.where}, column {ch.columns.get('channel_id', 'channel_id')!r}: channel {ch.channel_id} "
                          f"already listed in {seen[ch.channel_id]}")
            continue
        seen[ch.channel_id] = ch.where
        try:
            url = gateway_url(gateway, ch)
        except ValueError as exc:
            issues.append(f"{ch.where}, column device_id: {exc}")
            continue
        data: dict[str, Any] = {
            "id": ch.channel_id,
            "name": ch.name,
            "source": url,
            "location": {"lon": ch.lon, "lat": ch.lat, "address": ch.address, "grid_code": ch.grid, "district": ch.district},
        }
        if cadence_s is not None:
            data["cadence_s"] = cadence_s
        try:
            cameras.append(Camera.model_validate(data))
        except ValidationError as exc:
            for err in exc.errors():
                field_name = str(err["loc"][-1]) if err["loc"] else ""
                key = {"grid_code": "grid", "id": "channel_id"}.get(field_name, field_name)
                column = ch.columns.get(key, field_name)
                issues.append(f"{ch.where}, column {column!r}: {err['msg']}")
    if issues:
        raise CatalogError(source, issues)
    return cameras, skipped


def import_catalog(
    data: bytes, source: str, gateway: str, *, fmt: str = "auto", all_types: bool = False, cadence_s: float | None = None,
) -> ImportResult:
    """The whole import: a catalog file's bytes → cameras; raises CatalogError naming every bad row and column."""
    channels, ignored, fmt = read_catalog(data, source, fmt)
    cameras, skipped = cameras_from_channels(channels, gateway, source=source, all_types=all_types, cadence_s=cadence_s)
    if not cameras:
        raise CatalogError(source, ["no camera channels in the catalog"
                                    + (f" ({len(skipped)} entries skipped as not cameras; --all-types keeps them)" if skipped else "")])
    Config(cameras=cameras)  # whole-config checks (unique ids) as `citypatrol run` will do them
    ids = {c.id for c in cameras}
    offline = sum(1 for ch in channels if ch.online is False and ch.channel_id in ids)
    return ImportResult(cameras, skipped, ignored, offline, fmt)


def cameras_yaml(cameras: Sequence[Camera], *, header: str = "") -> str:
    """A config document with these cameras (`citypatrol config check` accepts it; merge it into a deployment's config)."""
    items = [c.model_dump(mode="json", exclude_defaults=True) for c in cameras]
    for item, cam in zip(items, cameras):
        loc = item.get("location", {})
        item["location"] = {k: v for k, v in loc.items() if v not in (None, "")}
        if not item["location"]:
            del item["location"]
        item.setdefault("name", cam.name)
    body = yaml.safe_dump({"cameras": items}, allow_unicode=True, sort_keys=False, width=200)
    comment = "".join(f"# {ln}\n" if ln else "#\n" for ln in header.splitlines())
    return comment + body
