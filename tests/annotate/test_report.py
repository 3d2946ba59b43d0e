"""The supervisor's HTML report: three synthetic cases with real evidence from the London footage."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import av
import cv2
import pytest

from citypatrol.annotate.evidence import write_case_images
from citypatrol.annotate.report import ReportCase, ReportSummary, render_report, write_cases_json

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)  # 10:00 in Asia/Shanghai
SPECS = [
    # case id, category, zh, code, camera, box, opened_pts, last_seen_pts, status
    ("C-001", "illegal_parking", "机动车乱停放", "0505", "cam-01", (0.30, 0.42, 0.62, 0.70), 12.0, 200.0, "pending_review"),
    ("C-002", "billboard", "违规广告牌", "0202", "cam-01", (0.72, 0.33, 0.98, 0.60), 40.0, None, "dispatched"),
    ("C-003", "garbage_overflow", "垃圾箱满溢", "BJ-0103-MY", "cam-02", (0.02, 0.45, 0.15, 0.72), 95.0, 300.0, "closed"),
]
CAMERAS = {"cam-01": "西单北大街 东侧", "cam-02": "复兴门外大街 公交站", "cam-03": "西四南大街"}


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)


@pytest.fixture(scope="module")
def report_dir(sample_video, tmp_path_factory) -> tuple[Path, list[ReportCase]]:
    out = tmp_path_factory.mktemp("report")
    with av.open(str(sample_video("london"))) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
    cases = []
    for cid, cat, zh, code, cam, box, pts, last, status in SPECS:
        write_case_images(out / "evidence", cid, frame, box, cat, 0.8, camera_name=CAMERAS[cam])
        (out / "evidence" / f"{cid}.mp4").write_bytes(b"\0" * 16)  # the clip link only needs a file here
        cases.append(ReportCase(
            case_id=cid, category=cat, category_zh=zh, code=code, camera_id=cam, camera_name=CAMERAS[cam],
            address="北京市西城区西单北大街120号", grid_code="110102003005",
            opened_at=T0 + timedelta(seconds=pts), last_seen_at=T0 + timedelta(seconds=last or pts),
            opened_pts=pts, last_seen_pts=last, score=0.8, status=status,
            detail=f"{cat} for {int((last or pts) - pts)} s <in zone>",
            image=f"evidence/{cid}.jpg", crop=f"evidence/{cid}_crop.jpg", clip=f"evidence/{cid}.mp4",
        ))
    summary = ReportSummary(
        site="西城区 Xicheng pilot", model="yolo11n-coco-openvino-int8",
        footage=("london_street_hoardings_1080p_3s.mp4",), footage_seconds=3725.0,
        timezone="Asia/Shanghai", generated_at=T0, cameras=CAMERAS,
    )
    render_report(cases, summary, out)
    return out, cases


def test_report_lists_every_case_in_chinese_and_english(report_dir):
    out, cases = report_dir
    html = (out / "report.html").read_text(encoding="utf-8")
    for c in cases:
        assert c.case_id in html and f'id="case-{c.case_id}"' in html
    for zh in ("机动车乱停放", "违规广告牌", "垃圾箱满溢"):
        assert zh in html
    assert "illegal parking" in html and "overflowing bin" in html
    assert "0505" in html and "BJ-0103-MY" in html
    assert "西单北大街 东侧" in html and "110102003005" in html
    assert "西四南大街" in html, "a camera without cases is still listed"
    assert "2026-11-25 10:00:12" in html, "times are shown in the site's time zone"
    assert "1:02:05" in html  # footage analysed
    assert "&lt;in zone&gt;" in html and "<in zone>" not in html  # detail is escaped


def test_report_counts_per_category_and_camera(report_dir):
    out, _ = report_dir
    html = (out / "report.html").read_text(encoding="utf-8")
    # cam-01 has 2 cases (parking + billboard), cam-02 one, cam-03 none.
    rows = re.findall(r"<tr><td>(.*?)</tr>", html, re.S)
    cam_rows = {r.split("<br>")[0]: re.findall(r'class="n[^"]*">(?:<b>)?(\d+)', r) for r in rows if "cam-0" in r}
    assert cam_rows["西单北大街 东侧"][-1] == "2"
    assert cam_rows["复兴门外大街 公交站"][-1] == "1"
    assert cam_rows["西四南大街"][-1] == "0"


def test_report_is_self_contained_with_working_relative_links(report_dir):
    out, cases = report_dir
    html = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", html), "the report must not fetch anything from the internet"
    parser = _Links()
    parser.feed(html)
    files = [link for link in parser.links if not link.startswith("#")]
    assert "timeline.png" in files
    for c in cases:
        assert c.image in files and c.crop in files and c.clip in files
    for link in files:
        assert not link.startswith(("/", "file:")), link
        assert (out / unquote(link)).is_file(), f"broken link {link}"
    thumb = cv2.imread(str(out / next(f for f in files if f.startswith("thumbs/"))))
    assert thumb.shape[1] == 480
    timeline = cv2.imread(str(out / "timeline.png"))
    assert timeline is not None and timeline.shape[1] > 800


def test_missing_or_foreign_evidence_is_not_linked(report_dir, tmp_path, caplog):
    _, cases = report_dir
    c = cases[0]
    broken = ReportCase(**{**{f: getattr(c, f) for f in c.__slots__}, "image": "evidence/gone.jpg",
                           "crop": "https://example.org/x.jpg", "clip": "/etc/hostname"})
    render_report([broken], ReportSummary(site="s", model="m"), tmp_path)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "gone.jpg" not in html and "example.org" not in html and "/etc/hostname" not in html
    assert "no evidence image" in html
    assert any("missing" in r.message for r in caplog.records)


def test_empty_report_says_so(tmp_path):
    path = render_report([], ReportSummary(site="s", model="m"), tmp_path)
    html = path.read_text(encoding="utf-8")
    assert "No cases were found" in html and "timeline.png" not in html


def test_cases_json_roundtrip(report_dir, tmp_path):
    _, cases = report_dir
    path = write_cases_json(cases, tmp_path / "cases.json")
    text = path.read_text(encoding="utf-8")
    assert "机动车乱停放" in text  # readable, not \u-escaped
    rows = json.loads(text)
    assert [r["case_id"] for r in rows] == ["C-001", "C-002", "C-003"]
    assert rows[0]["opened_at"] == "2026-11-25T02:00:12+00:00"
    assert [ReportCase.from_dict(r) for r in rows] == cases
    with pytest.raises(ValueError, match="unknown keys"):
        ReportCase.from_dict({**rows[0], "bogus": 1})
    # dicts are accepted as input to the report too
    assert render_report(rows, ReportSummary(site="s", model="m"), tmp_path / "r").is_file()
