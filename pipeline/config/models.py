"""Configuration: strict pydantic models for everything a deployment sets.

Unknown keys are errors, every field has bounds and a description, and cross-field checks run
once at load. `load_config` (in `config/loading.py`) reads YAML, resolves `${VAR}` secrets and turns
validation errors into messages that name the file and the key path.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import re
from datetime import date, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# Category and ZoneKind live with the configured categories; imported from here as before.
from citypatrol.pipeline.config.categories import (  # noqa: F401 (re-exported)
    NAME_PATTERN,
    Category,
    CategoryDef,
    ConfiguredCategory,
    RuleKind,
    ZoneKind,
    category_of,
    checked_zone_kind,
    declared_zone_kinds,
    is_builtin,
    zone_kind_of,
)

#: A category name: a built-in's becomes its `Category` member; others must be declared under `categories`.
CategoryName = Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(category_of)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    kind: Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(checked_zone_kind)] = Field(
        description="What is forbidden or expected inside the polygon: a built-in kind (no_parking, no_vending, bin_area, "
                    "ad_area, approved_ad) or one a configured category declares (e.g. door_front).")
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
    permit: str = Field("", max_length=64, description="approved_ad: the permit (审批) number of the approved sign.")
    valid_until: date | None = Field(None, description="approved_ad with a permit: the permit's last day; after it the sign is a case again.")
    look: str = Field(
        "", max_length=1400,
        description="approved_ad: the approved sign's look (a 32×32 grey thumbnail of the zone's box, base64; set by 'approve "
                    "this sign'); a different sign in its place is a case. Empty = approved by place only.")

    @model_validator(mode="after")
    def _register_entry(self) -> Zone:
        given = [n for n in ("permit", "valid_until", "look") if getattr(self, n)]
        if given and self.kind is not ZoneKind.approved_ad:
            raise ValueError(f"{', '.join(given)}: only an approved_ad zone (a register entry) has a permit, a valid_until or a look")
        if self.permit and self.valid_until is None:
            raise ValueError(f"permit {self.permit!r} has no valid_until: give the permit's last day (YYYY-MM-DD)")
        if self.look:
            try:
                raw = base64.b64decode(self.look, validate=True)
            except ValueError:
                raw = b""
            if len(raw) != 32 * 32:
                raise ValueError("look is not a sign's look (32×32 grey bytes, base64): take it with 'approve this sign'")
        return self

    @field_validator("polygon")
    @classmethod
    def _normalised(cls, polygon: list[list[float]]) -> list[list[float]]:
        for i, (x, y) in enumerate(polygon):
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"vertex {i} is [{x}, {y}]: not a number; give x and y in 0..1, normalised to the frame")
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"vertex {i} is [{x}, {y}], outside 0..1; coordinates are normalised to the frame")
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
    look_every_s: float = Field(
        0, ge=0, le=3600,
        description="How often (stream seconds) the models feeding this rule must look; between looks the rule sees their "
                    "newest detections. 0 = every analysed frame.",
    )

    def watched_classes(self) -> list[str]:
        """Every detector class this rule reads (what decides which models feed it)."""
        return list(self.classes)


class ParkingSettings(RuleSettings):
    dwell_s: float = Field(180, ge=0, le=86400, description="Seconds a vehicle must stand still in a no-parking zone.")
    classes: list[str] = Field(
        default_factory=lambda: ["car", "van", "pickup", "truck", "bus", "vehicle"],
        description="Vehicle classes: one family, so a parked car the detector calls car, then truck, keeps its dwell.")
    nonmotor_classes: list[str] = Field(
        default_factory=list,
        description="Bicycle/e-bike classes reported as 非机动车乱停放 (e.g. ['bicycle', 'motorcycle']); empty = off.",
    )
    read_plates: bool = Field(
        True, description="Read the number plate of a parked vehicle when its case opens (RapidOCR on the vehicle's box); "
                          "a plate that is not certain is stored as unread, never guessed.")

    def watched_classes(self) -> list[str]:
        return [*self.classes, *self.nonmotor_classes]


class VendingSettings(RuleSettings):
    dwell_s: float = Field(300, ge=0, le=86400)
    look_every_s: float = Field(
        10, ge=0, le=3600,
        description="A stall stands for minutes: the models feeding this rule look every 10 s (the city model's stall "
                    "class would otherwise make it run on every analysed frame).")
    classes: list[str] = Field(default_factory=lambda: ["stall"], description="Classes that are a stall by themselves.")
    cue_classes: list[str] = Field(
        default_factory=lambda: ["umbrella", "dining table", "table", "chair", "cart", "goods"],
        description="Stall cues; a stationary cluster of them with people counts as a stall.",
    )
    min_cues: int = Field(2, ge=1, le=20, description="Stall cues needed in one cluster.")
    min_people: int = Field(1, ge=0, le=50, description="People needed near the cue cluster.")
    cluster_radius: float = Field(0.12, gt=0, le=1, description="Cluster radius, as a fraction of the frame diagonal.")
    scene_change: bool = Field(
        True, description="Also report a new object (not in the reference image) at rest in a no_vending zone with people at it.",
    )
    scene_min_area: float = Field(0.002, gt=0, le=1, description="Smallest new object, as a share of the frame's area.")
    people_share: float = Field(
        0.5, ge=0, le=1, description="Share of the frames since a new object came to rest that must show people at it.",
    )

    def watched_classes(self) -> list[str]:
        return [*self.classes, *self.cue_classes, "person"]


class GarbageSettings(RuleSettings):
    dwell_s: float = Field(600, ge=0, le=86400)
    classes: list[str] = Field(default_factory=lambda: ["garbage_overflow"], description="Classes that are an overflowing bin.")
    pile_classes: list[str] = Field(default_factory=lambda: ["garbage_pile", "garbage"], description="Classes that are exposed garbage.")
    bin_classes: list[str] = Field(default_factory=lambda: ["garbage_bin"])
    near_bin: float = Field(0.5, ge=0, le=5, description="Garbage within this many bin-widths of a bin counts as overflow of that bin.")
    look_every_s: float = Field(30, ge=0, le=3600, description="Bins fill and garbage piles up over minutes: the models feeding this rule look every 30 s.")

    def watched_classes(self) -> list[str]:
        return [*self.classes, *self.pile_classes, *self.bin_classes]


class BillboardSettings(RuleSettings):
    dwell_s: float = Field(900, ge=0, le=86400)
    classes: list[str] = Field(default_factory=lambda: ["billboard"])
    scene_change: bool = Field(True, description="Also report new persistent objects in ad_area zones against the reference image.")
    scene_change_threshold: float = Field(0.35, gt=0, le=1, description="Share of an ad_area that must differ from the reference.")
    look_every_s: float = Field(60, ge=0, le=3600, description="Billboards go up over minutes: the models feeding this rule look every 60 s.")
    text_cue: bool = Field(True, description="Also report printed text (posters, banners, painted ads) at rest in ad_area zones, found by OCR.")
    panel_cue: bool = Field(
        False,
        description="Also report picture posters without text in ad_area zones drawn on a plain surface (a construction hoarding, "
        "a painted wall, a pole wrap): a panel of other colours with detail inside that the surface runs all the way round, at rest. "
        "Off by default: on an ad area that takes in a facade, windows and shop windows are such panels too. Looked for when the "
        "ad areas are read for text (text_every_s), so it needs text_cue.",
    )
    text_min_score: float = Field(
        0.3, ge=0, le=1,
        description="Recogniser confidence below which a detected text region is taken for texture (people, benches, railings), not text.",
    )
    text_every_s: float = Field(
        60, gt=0, le=86400,
        description="Stream seconds between OCR reads of a camera's ad areas (OCR costs about a second of CPU per read).",
    )


class Rules(Strict):
    illegal_parking: ParkingSettings = ParkingSettings()
    street_vending: VendingSettings = VendingSettings()
    garbage: GarbageSettings = GarbageSettings()
    billboard: BillboardSettings = BillboardSettings()


class RuleOverrides(Strict):
    """Per-camera overrides: only the keys given replace the global rule settings."""

    illegal_parking: dict[str, object] = Field(default_factory=dict)
    street_vending: dict[str, object] = Field(default_factory=dict)
    garbage: dict[str, object] = Field(default_factory=dict)
    billboard: dict[str, object] = Field(default_factory=dict)


class StillsOptions(Strict):
    """How a folder of time-lapse stills is read as one camera (config `source: {stills: {…}}`)."""

    time_from: Literal["auto", "name", "exif", "mtime"] = Field(
        "name", description="Where each still's capture time comes from: its file name, EXIF DateTimeOriginal, "
                            "its modification time, or auto (names, else EXIF, else sequence numbers).")
    pattern: str | None = Field(
        None, max_length=200,
        description="strptime-style pattern of the time in the names, e.g. 'IMG_%Y%m%d_%H%M%S' (default: "
                    "YYYY-MM-DD_HH_MM_SS and its usual variants).")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            from citypatrol.streams.still_times import pattern_regex

            pattern_regex(pattern)
        return pattern


class TileSpec(Strict):
    rows: int = Field(ge=1, le=8, description="Tile rows over the zones' part of the frame.")
    cols: int = Field(ge=1, le=8, description="Tile columns.")
    overlap: float = Field(0.2, ge=0, le=0.5, description="Share of a tile shared with its neighbour (a car at an edge is whole in one).")


class CameraDetector(Strict):
    """How this camera's frames go through the detectors."""

    tiles: Literal["auto", "off"] | TileSpec = Field(
        "off", description="Tiled inference for small, far vehicles: off; auto (tiles from the resolution and "
                           "min_vehicle_px, over the zones); or {rows, cols, overlap}. Costs one inference per tile.")
    min_vehicle_px: float = Field(
        40, ge=4, le=2000, description="Height in frame pixels of the smallest vehicle this camera must see in its zones (for tiles: auto).")
    imgsz: int | None = Field(
        None, ge=64, le=4096, multiple_of=32,
        description="Model input size for this camera's frames (every detector; null = each detector's imgsz). Larger sees "
                    "far vehicles at about (imgsz/640)² the CPU; fixed-shape exports keep their own size.")


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
    detector: CameraDetector = CameraDetector()
    stills: StillsOptions | None = Field(
        None, description="Read `source` (a folder) as one time-lapse camera this way; written in a config as "
                          "`source: {stills: {folder: …, time_from: name|exif|mtime, pattern: …}}`.")

    @model_validator(mode="before")
    @classmethod
    def _stills_source(cls, data: object) -> object:
        """`source: {stills: {folder, time_from, pattern}}` → `source: folder` + `stills: {time_from, pattern}`."""
        if not isinstance(data, dict) or not isinstance(data.get("source"), dict):
            return data
        spec = data["source"]
        if set(spec) != {"stills"} or not isinstance(spec["stills"], dict):
            raise ValueError("source: give a string (file, folder, URL) or {stills: {folder, time_from, pattern}}")
        options = dict(spec["stills"])
        folder = options.pop("folder", None)
        if not isinstance(folder, str) or not folder:
            raise ValueError("source.stills.folder: the folder of stills is required")
        if "stills" in data:
            raise ValueError("give the stills reading once: in source.stills or in stills, not both")
        return {**data, "source": folder, "stills": options}

    @model_validator(mode="after")
    def _unique_zone_ids(self) -> "Camera":
        seen: set[str] = set()
        for z in self.zones:
            if z.id in seen:
                raise ValueError(f"zone id {z.id!r} appears twice")
            seen.add(z.id)
        return self

    def stills_args(self) -> dict[str, str | None]:
        """`open_source` keywords for a stills camera (`time_from`, `pattern`); empty for other sources."""
        return {"time_from": self.stills.time_from, "pattern": self.stills.pattern} if self.stills else {}

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
    class_conf: dict[str, Annotated[float, Field(ge=0.01, le=1)]] = Field(
        default_factory=dict,
        description="Minimum confidence per canonical class, where it differs from `conf` (e.g. {stall: 0.6}).",
    )
    iou: float = Field(0.5, ge=0.05, le=0.95, description="NMS IoU threshold.")
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:0' …")
    export: Literal["none", "openvino", "openvino-int8", "onnx"] = Field(
        "none",
        description="Run .pt weights through this export instead (dynamic shape, built once on first use into the "
                    "user cache, keyed by the weights' sha256); 'none' = run the weights as they are; "
                    "'openvino-int8' = the OpenVINO export quantized to INT8 (NNCF), calibrated on `calibration`.")
    calibration: str = Field(
        "", description="Folder of pictures from the cameras (100–300 frames) that an 'openvino-int8' export is calibrated on.")
    batch: int = Field(4, ge=1, le=256, description="Images per inference call across cameras.")
    classes: list[str] = Field(
        default_factory=list,
        description="Keep only these canonical classes from this model (empty = all it maps).",
    )
    label_map: dict[str, str] = Field(
        default_factory=dict,
        description="Overrides of the model's label → canonical class map; map to '' to drop a label.",
    )


class ChangeGate(Strict):
    """Don't look when nothing changed: a frame whose watched zones look like the camera's last
    looked-at frame (a small grey picture, compared pixel by pixel) reuses that frame's detections,
    so dwell goes on; every `max_skipped`+1-th frame is looked at whatever it shows."""

    enabled: bool = Field(True, description="Skip the detectors on frames where nothing changed in the zones.")
    pixel_diff: int = Field(20, ge=1, le=255, description="Grey levels a pixel of the 160×90 picture must change by to count.")
    min_changed: int = Field(3, ge=1, le=10000, description="Changed pixels (of 160×90, inside the zones) that make the detectors look.")
    max_skipped: int = Field(5, ge=0, le=1000, description="Frames in a row that may reuse detections before a look regardless.")


class ModelsConfig(Strict):
    change_gate: ChangeGate = Field(default_factory=ChangeGate, description="Skip the detectors on frames where nothing changed.")
    detectors: list[DetectorConfig] = Field(
        default_factory=lambda: [
            DetectorConfig(name="coco", weights="yolo11n-coco-openvino-int8"),
            # conf 0.4: held-out precision 0.76-0.88 per class, recall 0.58-0.87, and nothing on the sample
            # footage above 0.35 (MODEL_CARD.md); run as its OpenVINO export, 3x faster than PyTorch on a CPU
            DetectorConfig(name="city", weights="citypatrol-city", imgsz=480, conf=0.4, export="openvino"),
        ],
        min_length=1,
        description="Detectors run on every analysed frame; their detections are merged.",
    )


class CodeEntry(Strict):
    code: str = Field(min_length=1, max_length=32, description="Event code in the city's scheme, e.g. '0505'.")
    name: str = Field(min_length=1, max_length=100, description="Name in the city's scheme, e.g. '机动车乱停放'.")
    major: str = Field("", max_length=100, description="大类 name, e.g. '街面秩序'.")


def _default_codes() -> dict[str, CodeEntry]:
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

    @field_validator("evidence_dir")
    @classmethod
    def _evidence_dir(cls, path: Path) -> Path:
        return own_folder(path)


#: Top-level system folders no citypatrol output may go into (an evidence dir of '/etc' is a mistake or an attack).
SYSTEM_FOLDERS = frozenset({"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "proc", "run", "sbin", "sys", "usr"})


def own_folder(path: Path) -> Path:
    """A folder citypatrol writes into: a relative one stays inside its base (no '..'), an absolute
    one is not a system folder."""
    if not path.is_absolute() and ".." in path.parts:
        raise ValueError(f"{str(path)!r} climbs out of the folder it is relative to ('..'); give an absolute path "
                         "to put it elsewhere")
    if path.is_absolute() and (len(path.parts) == 1 or path.parts[1] in SYSTEM_FOLDERS):
        raise ValueError(f"{str(path)!r} is a system folder; give citypatrol a folder of its own, "
                         "e.g. /var/lib/citypatrol/evidence")
    return path


#: The case fields a dispatch message can carry; `dispatch.field_map` maps the platform's names onto them.
DISPATCH_FIELDS = (
    "case_id", "kind", "status", "category", "category_code", "category_name", "category_major",
    "camera_id", "camera_name", "lon", "lat", "address", "district", "grid_code",
    "opened_at", "last_seen_at", "sent_at", "description", "score", "events", "box", "zone_id",
    "plate", "plate_score", "plate_status", "plate_note", "evidence", "note",
)


class DispatchConfig(Strict):
    """Delivery of cases to the dispatch system (数字城管) through the transactional outbox."""

    enabled: bool = Field(False, description="Push cases to the dispatch system (and let the review policy auto-submit).")
    adapter: Literal["http", "mqtt", "file"] = Field("http", description="http: signed JSON POST; mqtt: publish to Mosquitto; file: JSONL drop folder.")
    url: str = Field("", description="HTTP endpoint of the dispatch system (adapter http).")
    secret: str = Field("", repr=False, description="HMAC-SHA256 key shared with the dispatch system; use ${DISPATCH_SECRET}.")
    callback_secret: str = Field(
        "", repr=False, description="Key that signs the dispatch system's status callbacks; empty = the same as `secret`.")
    callback_window_s: float = Field(300, ge=5, le=3600, description="Callbacks whose timestamp is further than this from now are refused.")
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host (adapter mqtt).")
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_topic: str = Field("citypatrol/cases/{camera_id}", description="Topic per message; {camera_id} is filled in.")
    mqtt_qos: int = Field(1, ge=0, le=2, description="MQTT QoS; 1 = at least once (receivers dedupe on the idempotency key).")
    mqtt_client_id: str = Field("citypatrol-dispatch", min_length=1, max_length=64, description="MQTT client id (one per dispatcher process).")
    mqtt_username: str = Field("", description="MQTT user name; empty = anonymous.")
    mqtt_password: str = Field("", repr=False, description="MQTT password; use ${MQTT_PASSWORD}.")
    file_dir: Path = Field(Path("outbox"), description="Drop folder of the JSONL file adapter.")

    @field_validator("file_dir")
    @classmethod
    def _file_dir(cls, path: Path) -> Path:
        return own_folder(path)

    file_rotate_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="The JSONL file is rotated (renamed with a time stamp) past this size.")
    max_attempts: int = Field(8, ge=1, le=100, description="Attempts before a delivery goes to dead-letter.")
    timeout_s: float = Field(10, gt=0, le=300, description="Timeout of one delivery attempt.")
    backoff_base_s: float = Field(10, ge=0.01, le=3600, description="Wait after the first failed attempt; doubles per attempt.")
    backoff_max_s: float = Field(1800, ge=0.01, le=86400, description="Longest wait between attempts.")
    backoff_jitter: float = Field(0.25, ge=0, le=1, description="Each wait is scaled by a random factor in 1 ± this.")
    lease_s: float = Field(120, ge=1, le=3600, description="A claimed message is another dispatcher's to take after this long (crash recovery).")
    poll_s: float = Field(2, ge=0.05, le=60, description="Idle wait between looks at the outbox.")
    batch: int = Field(20, ge=1, le=1000, description="Messages claimed per look.")
    evidence: Literal["url", "inline", "none"] = Field(
        "url", description="Evidence in messages: url (evidence_base_url + path), inline (base64 JPEG), none.")
    evidence_base_url: str = Field("", description="Prefix of evidence URLs, e.g. https://citypatrol.example/evidence/ (empty = relative paths).")
    evidence_max_bytes: int = Field(2_000_000, ge=1024, le=50_000_000, description="Inline evidence larger than this is sent as a URL instead.")
    evidence_wait_s: float = Field(30, ge=0, le=3600, description="A new case is held this long for its evidence images before it is sent without them.")
    field_map: dict[str, str] = Field(
        default_factory=dict,
        description="Outgoing JSON field → citypatrol field (one of DISPATCH_FIELDS); empty = citypatrol's own field names.",
    )

    @field_validator("field_map")
    @classmethod
    def _known_fields(cls, field_map: dict[str, str]) -> dict[str, str]:
        unknown = sorted(v for v in field_map.values() if v not in DISPATCH_FIELDS)
        if unknown:
            raise ValueError(f"unknown case field(s) {unknown}; choose from {', '.join(DISPATCH_FIELDS)}")
        return field_map

    @model_validator(mode="after")
    def _usable(self) -> "DispatchConfig":
        if self.lease_s <= self.timeout_s:
            raise ValueError(f"lease_s ({self.lease_s}) must be longer than timeout_s ({self.timeout_s})")
        if self.enabled and self.adapter == "http" and not self.url:
            raise ValueError("adapter http needs url")
        if self.enabled and self.adapter == "http" and not self.secret:
            raise ValueError("adapter http needs secret (HMAC key), e.g. secret: ${DISPATCH_SECRET}")
        return self


class ReviewThresholds(Strict):
    """When a new case goes to the dispatch system on its own instead of waiting for a reviewer."""

    auto_submit: bool = Field(True, description="Allow auto-submission at all; false = every case waits for a reviewer.")
    min_score: float = Field(0.85, ge=0, le=1, description="Best detector score the case needs to be auto-submitted.")
    min_dwell_s: float = Field(0, ge=0, le=86400, description="Seconds the problem must have persisted when the case opens.")
    min_check_score: float | None = Field(
        None, ge=0, le=1,
        description="When set, a second-stage check on the crop must score at least this; a case with no check result is held.",
    )


class ReviewOverride(Strict):
    """Thresholds for one camera and/or category; later entries win over earlier ones."""

    camera: str | None = Field(None, description="Camera id this entry applies to; empty = every camera.")
    category: CategoryName | None = Field(None, description="Category this entry applies to (built-in or configured); empty = every category.")
    auto_submit: bool | None = None
    min_score: float | None = Field(None, ge=0, le=1)
    min_dwell_s: float | None = Field(None, ge=0, le=86400)
    min_check_score: float | None = Field(None, ge=0, le=1)


class ReviewConfig(Strict):
    """The review policy: auto-submit (approved) or hold for a reviewer (pending_review)."""

    default: ReviewThresholds = Field(default_factory=ReviewThresholds, description="Thresholds where no override matches.")
    overrides: list[ReviewOverride] = Field(default_factory=list, max_length=1000, description="Per camera / category thresholds.")
    verifier: Path | None = Field(
        None,
        description="Second-stage verifier (.npz from `citypatrol verifier train`; relative = to the config file): its score "
        "on each new case's crop is the check score `min_check_score` asks for. Categories it was not trained on get none.",
    )

    def wants_check(self) -> bool:
        """True when some threshold asks for a second-stage check score."""
        return self.default.min_check_score is not None or any(o.min_check_score is not None for o in self.overrides)


class VerifyConfig(Strict):
    """核查: after the dispatch system reports a case handled, citypatrol re-checks the place on camera."""

    enabled: bool = Field(True, description="Re-check handled cases on camera; false = handled cases are closed without a check.")
    confirm_s: float = Field(300, ge=1, le=86400, description="Stream seconds the cause must stay gone (→ closed) or stay present (→ reopened).")
    cadence_s: float = Field(5, ge=0.1, le=600, description="Stream seconds between frames looked at.")
    max_watch_s: float = Field(1800, ge=1, le=86400, description="Give up after this long without a verdict; the case stays verifying and is tried again.")
    gap_s: float = Field(15, ge=0, le=3600, description="A cue missed for at most this long (detector flicker, a passer-by) does not end its presence.")
    match_iou: float = Field(0.3, ge=0.01, le=1, description="Overlap with the case's box at which a detection is the same problem.")

    @model_validator(mode="after")
    def _watch_long_enough(self) -> "VerifyConfig":
        if self.max_watch_s < self.confirm_s:
            raise ValueError(f"max_watch_s ({self.max_watch_s}) must be at least confirm_s ({self.confirm_s})")
        return self


def _default_deadlines() -> dict[str, float]:
    # Placeholders in working hours; cities set their own 处置时限 per category.
    return {
        Category.illegal_parking: 2,
        Category.nonmotor_parking: 4,
        Category.street_vending: 2,
        Category.exposed_garbage: 4,
        Category.garbage_overflow: 4,
        Category.billboard: 24,
    }


class SlaConfig(Strict):
    """Handling deadlines: a dispatched case not reported handled within its working hours is overdue."""

    enabled: bool = Field(True, description="Mark overdue cases.")
    working_days: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5], min_length=1, max_length=7,
        description="ISO weekdays that are working days (1 = Monday … 7 = Sunday).")
    working_hours: str = Field("09:00-18:00", description="One daily working window 'HH:MM-HH:MM' in the site's time zone (no wrap past midnight).")
    holidays: list[date] = Field(default_factory=list, description="Dates that are not working days.")
    deadline_hours: dict[CategoryName, float] = Field(
        default_factory=_default_deadlines,
        description="Working hours from dispatch to 'handled' per category (built-in or configured); a category not listed "
                    "has no deadline.",
    )

    @field_validator("working_days")
    @classmethod
    def _weekdays(cls, days: list[int]) -> list[int]:
        bad = [d for d in days if not 1 <= d <= 7]
        if bad:
            raise ValueError(f"weekdays are 1 (Monday) … 7 (Sunday), got {bad}")
        return days

    @field_validator("working_hours")
    @classmethod
    def _window(cls, text: str) -> str:
        hours = HoursRange.parse(text)
        if hours.start >= hours.end:
            raise ValueError(f"working_hours must start before it ends on the same day, got {text!r}")
        return text

    @field_validator("deadline_hours")
    @classmethod
    def _positive(cls, deadlines: dict[str, float]) -> dict[str, float]:
        bad = {str(k): v for k, v in deadlines.items() if not 0 < v <= 10000}
        if bad:
            raise ValueError(f"deadlines must be > 0 and <= 10000 working hours, got {bad}")
        return deadlines


class ApiConfig(Strict):
    """The review center (`citypatrol serve`): where it listens and how it signs people in."""

    host: str = Field("127.0.0.1", description="Address to listen on; put a TLS proxy in front when not on loopback.")
    port: int = Field(8080, ge=1, le=65535)
    session_hours: float = Field(12, gt=0, le=24 * 30, description="A sign-in lasts this long (one reviewer shift).")
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto", description="Mark the session cookie Secure: 'auto' = when the request came over HTTPS.",
    )
    login_max_failures: int = Field(5, ge=1, le=1000, description="Failed sign-ins per user and address before a pause.")
    login_window_s: float = Field(900, gt=0, le=86400, description="Window in which failed sign-ins are counted; also the pause.")
    live_poll_s: float = Field(1.0, ge=0.1, le=60, description="How often the live queue looks for new and changed cases.")
    events_recheck_s: float = Field(
        15, gt=0, le=15,
        description="A live event stream re-checks its sign-in this often, and ends once the session or token is gone.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, max_length=64,
        description="Addresses or networks (e.g. '10.0.0.5', '10.0.0.0/24') of the reverse proxies in front; only their "
                    "X-Forwarded-For/-Proto is believed. Empty = the client is whoever connects (no forwarded headers).",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, proxies: list[str]) -> list[str]:
        for p in proxies:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ValueError(f"{p!r} is not an IP address or network (like 10.0.0.5 or 10.0.0.0/24)") from None
        return proxies


class LiveConfig(Strict):
    """`citypatrol run`: where live metrics and status go, how live cameras connect and recover."""

    metrics_host: str = Field("127.0.0.1", description="Address of the Prometheus /metrics endpoint ('0.0.0.0' = every interface).")
    metrics_port: int = Field(9108, ge=0, le=65535, description="Port of the Prometheus /metrics endpoint; 0 = no endpoint.")
    status_file: Path = Field(
        Path("citypatrol-status.json"),
        description="Per-camera status the runner rewrites atomically every status_interval_s; `citypatrol status` reads it.",
    )
    status_interval_s: float = Field(2.0, ge=0.2, le=60, description="Seconds between rewrites of the status file.")
    realtime: bool = Field(
        True,
        description="Recorded cameras play at real time (newest frame wins, like a stream); false = every sampled frame, as fast as the detector goes.",
    )
    open_timeout_s: float = Field(10, gt=0, le=120, description="Live cameras: connect and handshake within this many seconds.")
    read_timeout_s: float = Field(5, gt=0, le=120, description="Live cameras: no data this long = connection lost, reconnect.")
    backoff_max_s: float = Field(30, ge=0.1, le=600, description="Live cameras: longest wait between reconnection attempts.")
    zones_poll_s: float = Field(
        10, ge=0, le=3600,
        description="Seconds between checks for zones saved in the review center (they replace the config's); 0 = only at start.",
    )


class DistributedConfig(Strict):
    """Many machines (`citypatrol worker`, `citypatrol casekeeper`, `citypatrol batch-queue`) over Redis.

    Workers claim cameras through leases (expiry = failover) and publish events to Redis Streams;
    casekeepers, one per shard at a time, build the cases into the store (PostgreSQL). How it all
    fits: `pipeline/distributed/protocol.py`.
    """

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", min_length=1,
        description="Redis URL (redis:// or rediss://; a password may come from ${REDIS_PASSWORD}).",
    )
    prefix: str = Field(
        "citypatrol", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every Redis key and stream of this deployment (several deployments can share one Redis).",
    )
    lease_ms: int = Field(
        10_000, ge=1000, le=600_000,
        description="A camera or shard whose owner stops renewing for this long is taken over by another process.",
    )
    heartbeat_ms: int = Field(
        2_000, ge=100, le=60_000,
        description="How often leases are renewed and cameras, shards and segments rebalanced; at most a third of lease_ms.",
    )
    shards: int = Field(
        4, ge=1, le=1024,
        description="Event streams; a camera's events (by site when it has one) always go to the same shard, "
        "so one casekeeper applies them in order. Changing it moves cameras between shards: drain first.",
    )
    worker_group: str = Field("workers", min_length=1, max_length=64, description="Consumer group of workers on the segment queue.")
    casekeeper_group: str = Field("casekeepers", min_length=1, max_length=64, description="Consumer group of casekeepers on the event streams.")
    tick_s: float = Field(
        10, ge=0.1, le=600,
        description="A camera with no events still reports its stream time this often, so casekeepers can expire cases.",
    )
    stream_maxlen: int = Field(
        500_000, ge=0, le=100_000_000,
        description="Entries kept per event stream (approximate trimming; 0 = no trimming); size above what casekeepers may fall behind.",
    )
    evidence_ttl_s: int = Field(
        3600, ge=60, le=7 * 86400,
        description="Evidence frames (JPEG, one per new sighting) wait in Redis this long for a casekeeper.",
    )
    evidence_max_side: int = Field(1280, ge=160, le=4096, description="Evidence frames are scaled down to this longer side.")
    evidence_jpeg_quality: int = Field(85, ge=30, le=100, description="JPEG quality of evidence frames.")
    outbox_max: int = Field(
        100_000, ge=100, le=10_000_000,
        description="Messages a worker keeps while Redis is unreachable; past this the oldest are dropped (and counted).",
    )
    retry_max_s: float = Field(10, ge=0.1, le=300, description="Longest wait between retries while Redis or the database is down.")
    segment_s: float = Field(600, ge=10, le=86400, description="`batch-queue`: length of a recorded-footage segment (stream seconds).")
    segment_overlap_s: float | None = Field(
        None, ge=0, le=86400,
        description="Footage analysed before a segment's start so a problem crossing the boundary reaches its dwell; "
        "empty = the longest dwell of the file's camera plus two cadence steps.",
    )
    segment_slots: int = Field(1, ge=0, le=64, description="Segments a worker analyses at once, besides its cameras (0 = none).")
    saved_zones: bool = Field(
        True,
        description="Workers use the zones saved in the review center, read from storage.database_url (when that is "
                    "PostgreSQL or an existing SQLite file), checked every live.zones_poll_s; false = the config's zones only.",
    )

    @model_validator(mode="after")
    def _timing(self) -> "DistributedConfig":
        if self.heartbeat_ms * 3 > self.lease_ms:
            raise ValueError(f"heartbeat_ms ({self.heartbeat_ms}) must be at most a third of lease_ms ({self.lease_ms})")
        if self.worker_group == self.casekeeper_group:
            raise ValueError("worker_group and casekeeper_group must differ")
        return self


class HealthKind(StrEnum):
    """Camera faults that camera health reports, each as a start and an end event."""

    offline = "offline"  # no frames (视频丢失)
    frozen = "frozen"  # the picture does not change at all (画面冻结)
    covered = "covered"  # dark, uniform or blurred: lens covered, painted or smeared (遮挡)
    moved = "moved"  # off the preset the zones were drawn on (镜头偏移)


class HealthSettings(Strict):
    """Camera health: when a camera counts as offline, frozen, covered or moved, and what follows.

    Picture thresholds apply to the frame scaled to a fixed work size, so they hold at any
    resolution. How each measure behaves at night and in static scenes: `pipeline/health/monitor.py`.
    """

    enabled: bool = Field(True, description="Watch camera health.")
    recover_s: float = Field(
        10, ge=0, le=3600,
        description="Seconds a condition must stay gone before its end event (offline ends with the first frame).",
    )
    offline_after_s: float = Field(60, ge=1, le=86400, description="No frames for this long = offline (longer than a reconnect).")
    frozen_after_s: float = Field(60, ge=1, le=86400, description="A picture that does not change for this long = frozen.")
    frozen_max_diff: float = Field(
        0.25, gt=0, le=20,
        description="A block (16×16 grid) is unchanged when its mean absolute difference is at most this many grey levels; "
        "a live sensor's noise stays above it.",
    )
    frozen_ignore_share: float = Field(
        0.1, ge=0, le=0.5,
        description="Share of the blocks that may change while the picture still counts as frozen (an OSD clock, a blinking light).",
    )
    covered_after_s: float = Field(30, ge=1, le=86400, description="A dark, uniform or blurred picture for this long = covered.")
    dark_mean: float = Field(8, ge=0, le=128, description="Dark: mean brightness (0–255) below this …")
    dark_peak: float = Field(
        32, ge=0, le=255,
        description="… and no light source either: the 99.5th brightness percentile below this (night scenes have lamps).",
    )
    uniform_std: float = Field(
        2.0, ge=0, le=64,
        description="Uniform: brightness spread (std on a 160-px picture, so sensor noise averages out) below this …",
    )
    uniform_contrast: float = Field(
        0.04, ge=0, le=1, description="… or below this share of the mean brightness (a white cloth, a painted lens).",
    )
    blur_sharpness: float = Field(
        0.12, ge=0, le=10,
        description="Blurred: Laplacian variance / brightness variance on a 160-px picture below this; real scenes measure 1–3.",
    )
    moved_after_s: float = Field(60, ge=1, le=86400, description="A view off its reference image for this long = moved.")
    moved_check_s: float = Field(
        10, ge=0, le=3600, description="Seconds between comparisons with the reference image (feature matching, ~40 ms each).",
    )
    moved_shift: float = Field(0.04, gt=0, le=1, description="Tolerated shift of the picture centre, as a share of frame width/height.")
    moved_rotation_deg: float = Field(2.0, gt=0, le=180, description="Tolerated rotation in degrees.")
    moved_scale: float = Field(0.06, gt=0, le=1, description="Tolerated zoom change as a share (0.06 = ±6 %).")
    moved_min_inliers: int = Field(20, ge=6, le=1000, description="Features that must agree on one shift before it is trusted.")
    moved_when_unmatched: bool = Field(
        True, description="A clear picture that does not match the reference at all counts as moved (turned to another view).",
    )
    suspend_rules: list[HealthKind] = Field(
        default_factory=lambda: [HealthKind.moved, HealthKind.frozen],
        description="While one of these is active the camera's zone rules are suspended (zones no longer fit; the picture is stale).",
    )
    cases: bool = Field(True, description="Raise a maintenance case (category camera_fault) for each health condition.")
    maintenance_code: str = Field("", max_length=32, description="Event code of camera-fault cases in the city's scheme; empty = none.")
    maintenance_codes: dict[HealthKind, str] = Field(
        default_factory=dict, description="Per-fault codes overriding maintenance_code (e.g. a vendor's video-diagnostics alarm types).",
    )

    @model_validator(mode="after")
    def _check_interval(self) -> "HealthSettings":
        if self.moved_check_s > self.moved_after_s:
            raise ValueError(f"moved_check_s ({self.moved_check_s}) must not exceed moved_after_s ({self.moved_after_s})")
        return self


class Site(Strict):
    name: str = Field("citypatrol", max_length=200)
    timezone: str = Field("Asia/Shanghai", description="IANA time zone for zone hours and reports.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {name!r}: give an IANA name such as 'Asia/Shanghai'") from None
        return name


class Config(Strict):
    """A whole deployment: cameras, models, rules, cases, storage, dispatch, API, live runtime, distributed mode."""

    version: Literal[1] = 1
    site: Site = Site()
    cameras: list[Camera] = Field(default_factory=list, max_length=10000)
    models: ModelsConfig = ModelsConfig()
    rules: Rules = Rules()
    cases: CasesConfig = CasesConfig()
    codes: dict[CategoryName, CodeEntry] = Field(
        default_factory=_default_codes,
        description="The city's code per built-in category; a configured category's code comes from its entry in `categories`.")
    categories: list[CategoryDef] = Field(
        default_factory=list, max_length=200,
        description="Categories this city adds by configuration (name, code, zone kind, rule kind, classes); see README "
                    "'Adding a category'.")
    storage: StorageConfig = StorageConfig()
    dispatch: DispatchConfig = DispatchConfig()
    review: ReviewConfig = ReviewConfig()
    verify: VerifyConfig = VerifyConfig()
    sla: SlaConfig = SlaConfig()
    api: ApiConfig = ApiConfig()
    live: LiveConfig = LiveConfig()
    health: HealthSettings = HealthSettings()
    distributed: DistributedConfig = DistributedConfig()

    @model_validator(mode="wrap")
    @classmethod
    def _zone_kinds(cls, data: object, handler):  # noqa: ANN206
        """Zones may use the kinds the config's categories declare: tell the zone validator which."""
        raw = data.get("categories") if isinstance(data, dict) else None
        kinds = frozenset(
            str(c.get("zone_kind")) if isinstance(c, dict) else str(getattr(c, "zone_kind", ""))
            for c in (raw if isinstance(raw, list) else ())
        )
        with declared_zone_kinds(kinds):
            return handler(data)

    @model_validator(mode="after")
    def _checks(self) -> "Config":
        ids: set[str] = set()
        for cam in self.cameras:
            if cam.id in ids:
                raise ValueError(f"camera id {cam.id!r} appears twice")
            ids.add(cam.id)
        self._check_categories()
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
        # the text cue fires only when it reads; between reads its case must not expire
        for where, rules in [("rules", self.rules)] + [(f"camera {c.id!r} rules", self.rules_for(c)) for c in self.cameras]:
            b = rules.billboard
            if b.text_cue and b.text_every_s >= self.cases.grace_s:
                raise ValueError(
                    f"{where}.billboard.text_every_s ({b.text_every_s:g}) must be shorter than cases.grace_s "
                    f"({self.cases.grace_s:g}), or a text-cue case expires between two reads"
                )
        return self

    def _check_categories(self) -> None:
        """Configured categories: unique, and every name and zone kind used elsewhere is declared.
        Their codes join `codes`, so the store and the dispatch message file them like the built-ins'."""
        names: set[str] = set()
        for i, c in enumerate(self.categories):
            if c.name in names:
                raise ValueError(f"categories.{i}.name: {c.name!r} appears twice")
            names.add(c.name)
        kinds = {k.value for k in ZoneKind} | {c.zone_kind for c in self.categories}
        for cam in self.cameras:
            for z in cam.zones:
                if z.kind not in kinds:
                    raise ValueError(
                        f"camera {cam.id!r} zone {z.id!r}: kind {z.kind!r} is neither a built-in zone kind "
                        f"({', '.join(k.value for k in ZoneKind)}) nor the zone_kind of a category under `categories`")
        known = {c.value for c in Category} | names
        used = [("codes", k) for k in self.codes] + [("sla.deadline_hours", k) for k in self.sla.deadline_hours]
        used += [(f"review.overrides.{i}.category", o.category) for i, o in enumerate(self.review.overrides) if o.category]
        for where, name in used:
            if name not in known:
                raise ValueError(f"{where}: unknown category {str(name)!r}; declare it under `categories` or use a built-in one")
        declared = {category_of(c.name): CodeEntry(code=c.code, name=c.title, major=c.major) for c in self.categories}
        for name, entry in self.codes.items():
            if not is_builtin(name) and entry != declared[name]:  # equal = a dumped config read back
                raise ValueError(f"codes: {str(name)!r} is a configured category; give its code in its `categories` entry")
        codes = {**self.codes, **declared}
        object.__setattr__(self, "codes", codes)  # frozen model: filled in once, at load

    def category(self, name: str) -> CategoryDef | None:
        """The configured category of this name; None for a built-in or an unknown one."""
        return next((c for c in self.categories if c.name == name), None)

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
