"""Configuration: strict pydantic models for everything a deployment sets.

Unknown keys are errors, every field has bounds and a description, and cross-field checks run
once at load. `load_config` (in `configfile.py`) reads YAML, resolves `${VAR}` secrets and turns
validation errors into messages that name the file and the key path.
"""

from __future__ import annotations

import re
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Category(StrEnum):
    """The problems citypatrol reports. Values are stable identifiers used in the store and API."""

    illegal_parking = "illegal_parking"  # 机动车乱停放
    nonmotor_parking = "nonmotor_parking"  # 非机动车乱停放
    street_vending = "street_vending"  # 无照经营游商 / 占道经营
    garbage_overflow = "garbage_overflow"  # 垃圾桶满溢
    exposed_garbage = "exposed_garbage"  # 暴露垃圾
    billboard = "billboard"  # 违章张贴悬挂广告牌匾


class ZoneKind(StrEnum):
    no_parking = "no_parking"
    no_vending = "no_vending"
    bin_area = "bin_area"
    ad_area = "ad_area"
    approved_ad = "approved_ad"


_HOURS_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class HoursRange(Strict):
    """A daily time window in the site's local time; may wrap past midnight (22:00-06:00)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> "HoursRange":
        m = _HOURS_RE.match(text.strip())
        if not m:
            raise ValueError(f"expected 'HH:MM-HH:MM' (e.g. '07:00-22:00'), got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        end = time(23, 59, 59) if h2 == 24 else time(h2, m2)
        return cls(start=time(h1, m1), end=end)

    def contains(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t <= self.end
        return t >= self.start or t <= self.end


Point = Annotated[list[float], Field(min_length=2, max_length=2)]


class Zone(Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Zone id, unique within its camera.")
    name: str = Field("", max_length=200, description="Name shown to reviewers, e.g. '东门人行道'.")
    kind: ZoneKind = Field(description="What is forbidden or expected inside the polygon.")
    polygon: list[Point] = Field(
        min_length=3,
        max_length=256,
        description="Vertices as [x, y] normalised to the frame (0..1, origin top-left).",
    )
    hours: list[str] = Field(
        default_factory=list,
        max_length=24,
        description="Active daily windows 'HH:MM-HH:MM' in the site's time zone; empty = always active.",
    )
    dwell_s: float | None = Field(None, ge=0, le=86400, description="Overrides the rule's dwell for this zone.")

    @field_validator("polygon")
    @classmethod
    def _normalised(cls, polygon: list[list[float]]) -> list[list[float]]:
        for i, (x, y) in enumerate(polygon):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"vertex {i} {[x, y]} is outside 0..1; coordinates are normalised to the frame")
        return polygon

    @field_validator("hours")
    @classmethod
    def _hours(cls, hours: list[str]) -> list[str]:
        for h in hours:
            HoursRange.parse(h)
        return hours

    def hour_ranges(self) -> list[HoursRange]:
        return [HoursRange.parse(h) for h in self.hours]


class Location(Strict):
    lon: float | None = Field(None, ge=-180, le=180, description="Longitude (WGS-84 or the platform's datum).")
    lat: float | None = Field(None, ge=-90, le=90, description="Latitude.")
    address: str = Field("", max_length=300, description="Street address filed with each case.")
    district: str = Field("", max_length=100, description="District (区/街道) for reports.")
    grid_code: str = Field("", max_length=64, description="Grid / unit code (网格编码) of the camera's site.")


class RuleSettings(Strict):
    """Settings shared by every rule; each field can be overridden per camera."""

    enabled: bool = Field(True, description="Turn the rule off without removing its zones.")
    dwell_s: float = Field(300, ge=0, le=86400, description="Seconds of stream time the problem must persist.")
    min_score: float = Field(0.35, ge=0, le=1, description="Minimum detector confidence for a cue.")
    classes: list[str] = Field(default_factory=list, description="Canonical classes this rule looks for (empty = rule default).")


class ParkingRule(RuleSettings):
    dwell_s: float = Field(180, ge=0, le=86400, description="Seconds a vehicle must stand still in a no-parking zone.")
    classes: list[str] = Field(default_factory=lambda: ["car", "truck", "bus", "vehicle"])
    nonmotor_classes: list[str] = Field(
        default_factory=list,
        description="Bicycle/e-bike classes reported as 非机动车乱停放 (e.g. ['bicycle', 'motorcycle']); empty = off.",
    )


class VendingRule(RuleSettings):
    dwell_s: float = Field(300, ge=0, le=86400)
    classes: list[str] = Field(default_factory=lambda: ["stall"], description="Classes that are a stall by themselves.")
    cue_classes: list[str] = Field(
        default_factory=lambda: ["umbrella", "dining table", "table", "chair", "cart", "goods"],
        description="Stall cues; a stationary cluster of them with people counts as a stall.",
    )
    min_cues: int = Field(2, ge=1, le=20, description="Stall cues needed in one cluster.")
    min_people: int = Field(1, ge=0, le=50, description="People needed near the cue cluster.")
    cluster_radius: float = Field(0.12, gt=0, le=1, description="Cluster radius, as a fraction of the frame diagonal.")


class GarbageRule(RuleSettings):
    dwell_s: float = Field(600, ge=0, le=86400)
    classes: list[str] = Field(default_factory=lambda: ["garbage_overflow"], description="Classes that are an overflowing bin.")
    pile_classes: list[str] = Field(default_factory=lambda: ["garbage_pile", "garbage"], description="Classes that are exposed garbage.")
    bin_classes: list[str] = Field(default_factory=lambda: ["garbage_bin"])
    near_bin: float = Field(0.5, ge=0, le=5, description="Garbage within this many bin-widths of a bin counts as overflow of that bin.")


class BillboardRule(RuleSettings):
    dwell_s: float = Field(900, ge=0, le=86400)
    classes: list[str] = Field(default_factory=lambda: ["billboard"])
    scene_change: bool = Field(True, description="Also report new persistent objects in ad_area zones against the reference image.")
    scene_change_threshold: float = Field(0.35, gt=0, le=1, description="Share of an ad_area that must differ from the reference.")


class Rules(Strict):
    illegal_parking: ParkingRule = ParkingRule()
    street_vending: VendingRule = VendingRule()
    garbage: GarbageRule = GarbageRule()
    billboard: BillboardRule = BillboardRule()


class RuleOverrides(Strict):
    """Per-camera overrides: only the keys given replace the global rule settings."""

    illegal_parking: dict[str, object] = Field(default_factory=dict)
    street_vending: dict[str, object] = Field(default_factory=dict)
    garbage: dict[str, object] = Field(default_factory=dict)
    billboard: dict[str, object] = Field(default_factory=dict)


class Camera(Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Stable camera id (or the platform's 20-digit channel id).")
    name: str = Field("", max_length=200, description="Name shown to reviewers and filed with cases.")
    source: str = Field(min_length=1, description="A video file, a folder of videos/stills, or an rtsp:// URL (may contain ${SECRET}).")
    enabled: bool = True
    cadence_s: float = Field(2.0, ge=0.1, le=60, description="Seconds of stream time between analysed frames.")
    location: Location = Location()
    zones: list[Zone] = Field(default_factory=list, max_length=64)
    site: str = Field("", max_length=64, description="Site id shared by cameras that watch the same place (cross-camera dedup).")
    reference_image: Path | None = Field(None, description="Picture the zones were drawn on; used for scene-change and camera-moved checks.")
    start_time: str | None = Field(
        None,
        description="Wall-clock start of a recording, ISO 8601 with offset; default: the file's creation_time tag, else its modification time.",
    )
    rules: RuleOverrides = RuleOverrides()

    @model_validator(mode="after")
    def _unique_zone_ids(self) -> "Camera":
        seen: set[str] = set()
        for z in self.zones:
            if z.id in seen:
                raise ValueError(f"zone id {z.id!r} appears twice")
            seen.add(z.id)
        return self

    @property
    def is_live(self) -> bool:
        return self.source.lower().startswith(("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "srt://"))


class DetectorConfig(Strict):
    name: str = Field(min_length=1, description="Name for logs and case provenance.")
    weights: str = Field(
        min_length=1,
        description="A model registry name (see `citypatrol models list`) or a path to .pt / .onnx / an *_openvino_model folder / .engine.",
    )
    imgsz: int = Field(640, ge=64, le=4096, multiple_of=32, description="Inference size in pixels.")
    conf: float = Field(0.25, ge=0.01, le=1, description="Minimum confidence kept from this model.")
    iou: float = Field(0.5, ge=0.05, le=0.95, description="NMS IoU threshold.")
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:0' …")
    batch: int = Field(4, ge=1, le=256, description="Images per inference call across cameras.")
    classes: list[str] = Field(
        default_factory=list,
        description="Keep only these canonical classes from this model (empty = all it maps).",
    )
    label_map: dict[str, str] = Field(
        default_factory=dict,
        description="Overrides of the model's label → canonical class map; map to '' to drop a label.",
    )


class ModelsConfig(Strict):
    detectors: list[DetectorConfig] = Field(
        default_factory=lambda: [DetectorConfig(name="coco", weights="yolo11n-coco-openvino-int8")],
        min_length=1,
        description="Detectors run on every analysed frame; their detections are merged.",
    )


class CodeEntry(Strict):
    code: str = Field(min_length=1, max_length=32, description="Event code in the city's scheme, e.g. '0505'.")
    name: str = Field(min_length=1, max_length=100, description="Name in the city's scheme, e.g. '机动车乱停放'.")
    major: str = Field("", max_length=100, description="大类 name, e.g. '街面秩序'.")


def _default_codes() -> dict[Category, CodeEntry]:
    return {
        Category.illegal_parking: CodeEntry(code="0505", name="机动车乱停放", major="街面秩序"),
        Category.nonmotor_parking: CodeEntry(code="0506", name="非机动车乱停放", major="街面秩序"),
        Category.street_vending: CodeEntry(code="0501", name="无照经营游商", major="街面秩序"),
        Category.exposed_garbage: CodeEntry(code="0102", name="暴露垃圾", major="市容环境"),
        # No national event code: a 满溢 problem of the 垃圾箱 component; cities map their own.
        Category.garbage_overflow: CodeEntry(code="BJ-0103-MY", name="垃圾箱满溢", major="市容环境"),
        Category.billboard: CodeEntry(code="0202", name="违章张贴悬挂广告牌匾", major="宣传广告"),
    }


class CasesConfig(Strict):
    match_iou: float = Field(0.3, ge=0.01, le=1, description="Box overlap at which a new event joins an open case.")
    grace_s: float = Field(600, ge=0, le=7 * 86400, description="A case whose cause is unseen this long expires.")
    reopen_window_s: float = Field(3600, ge=0, le=30 * 86400, description="A problem back within this time reopens its expired case.")


class StorageConfig(Strict):
    database_url: str = Field(
        "sqlite:///citypatrol.db",
        description="SQLAlchemy URL: sqlite:///file.db (default, WAL) or postgresql+psycopg://user@host/db.",
    )
    evidence_dir: Path = Field(Path("evidence"), description="Where evidence images and clips are written.")
    clip_seconds: float = Field(6.0, ge=0, le=60, description="Length of the evidence clip around the case's opening.")


class DispatchConfig(Strict):
    enabled: bool = Field(False, description="Push cases to the dispatch system.")
    adapter: Literal["http", "mqtt", "file"] = "http"
    url: str = Field("", description="HTTP endpoint of the dispatch system (adapter http).")
    secret: str = Field("", repr=False, description="HMAC-SHA256 key shared with the dispatch system; use ${DISPATCH_SECRET}.")
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_topic: str = "citypatrol/cases/{camera_id}"
    file_dir: Path = Path("outbox")
    max_attempts: int = Field(8, ge=1, le=100, description="Attempts before a delivery goes to dead-letter.")
    timeout_s: float = Field(10, gt=0, le=300)
    field_map: dict[str, str] = Field(default_factory=dict, description="Outgoing JSON field → case field.")


class ApiConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    session_hours: float = Field(12, gt=0, le=24 * 30)


class Site(Strict):
    name: str = Field("citypatrol", max_length=200)
    timezone: str = Field("Asia/Shanghai", description="IANA time zone for zone hours and reports.")


class Config(Strict):
    """A whole deployment: cameras, models, rules, cases, storage, dispatch, API."""

    version: Literal[1] = 1
    site: Site = Site()
    cameras: list[Camera] = Field(default_factory=list, max_length=10000)
    models: ModelsConfig = ModelsConfig()
    rules: Rules = Rules()
    cases: CasesConfig = CasesConfig()
    codes: dict[Category, CodeEntry] = Field(default_factory=_default_codes)
    storage: StorageConfig = StorageConfig()
    dispatch: DispatchConfig = DispatchConfig()
    api: ApiConfig = ApiConfig()

    @model_validator(mode="after")
    def _checks(self) -> "Config":
        ids: set[str] = set()
        for cam in self.cameras:
            if cam.id in ids:
                raise ValueError(f"camera id {cam.id!r} appears twice")
            ids.add(cam.id)
        missing = [c.value for c in Category if c not in self.codes]
        if missing:
            raise ValueError(f"codes: no code for {', '.join(missing)}")
        for cam in self.cameras:
            for name, overrides in cam.rules.model_dump().items():
                base = getattr(self.rules, name)
                try:
                    base.model_validate({**base.model_dump(), **overrides})
                except Exception as exc:  # re-raised with the camera named
                    raise ValueError(f"camera {cam.id!r} rules.{name}: {exc}") from exc
        return self

    def camera(self, camera_id: str) -> Camera:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(camera_id)

    def rules_for(self, camera: Camera) -> Rules:
        """The global rules with this camera's overrides applied."""
        merged = {}
        for name, overrides in camera.rules.model_dump().items():
            base = getattr(self.rules, name)
            merged[name] = base.model_validate({**base.model_dump(), **overrides})
        return Rules(**merged)
