"""The retraining export on a city's configured category: a reviewer's decision on such a case is
counted and skipped (there is no detector class or "not a problem" label of ours to teach), never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from citypatrol.models.training.export import StoredCases, export_dataset
from citypatrol.pipeline.config.models import Location
from citypatrol.pipeline.store.records import CaseRecord, CategoryCode
from citypatrol.pipeline.types import Case, CaseStatus, Transition


def _decided(case_id: str, category: str, to: CaseStatus, reason: str) -> CaseRecord:
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    history = (Transition(None, CaseStatus.detected, at, "rule:shop_front_business"),
               Transition(CaseStatus.detected, CaseStatus.pending_review, at, "review-policy"),
               Transition(CaseStatus.pending_review, to, at, "user:alice", reason))
    case = Case(case_id, "door-cam", category, to, (0.1, 0.5, 0.3, 0.9), "door-1", 0.0, at, 600.0, at, 0.5,
                detail="new object at rest 600 s in door_front zone door-1", history=history, cue="scene_change")
    return CaseRecord(case, CategoryCode("0504", "店外经营", "街面秩序"), Location(), (), 1, at, at)


def test_decisions_on_a_configured_category_are_skipped_and_counted(tmp_path: Path) -> None:
    records = [_decided("c1", "shop_front_business", CaseStatus.approved, ""),
               _decided("c2", "shop_front_business", CaseStatus.rejected, "误报：不是问题")]
    result = export_dataset(StoredCases(records, tmp_path / "evidence"), tmp_path / "out")
    manifest = json.loads(result.manifest.read_text())
    assert json.dumps(manifest, ensure_ascii=False).count("configured category shop_front_business") >= 1
    assert result.counts["train"]["images"] == result.counts["val"]["images"] == 0
