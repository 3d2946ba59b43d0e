"""The case store against real databases: a SQLite file and the machine's PostgreSQL.

Every test that takes `store` runs on both. PostgreSQL tests each get a fresh schema (selected
through the connection's search_path), dropped afterwards, so parallel runs do not collide.
Set CITYPATROL_TEST_POSTGRES to point at another server.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from citypatrol.pipeline.config.models import Camera, Category, CodeEntry, Config, Location
from citypatrol.pipeline.store.case_store import Store, open_store
from citypatrol.pipeline.store.records import (
    CaseNotFound,
    EvidenceKind,
    InvalidTransition,
    OutboxMessage,
    OutboxStatus,
    StoreError,
    StoreUnavailable,
)
from citypatrol.pipeline.store.engine import MIGRATIONS
from citypatrol.pipeline.store.tables import metadata
from citypatrol.pipeline.types import Case, CaseStatus, Event
from tests.fixtures_db import PG_URL, db_url, pg_admin, store  # noqa: F401, F811  (fixtures)

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
BOX = (0.10, 0.20, 0.30, 0.40)


def make_case(case_id: str = "c1", *, camera: str = "cam1", category: Category = Category.illegal_parking,
              status: CaseStatus = CaseStatus.detected, at: datetime = T0, pts: float = 200.0) -> Case:
    return Case(case_id, camera, category, status, BOX, "z1", pts, at, pts, at, 0.8)


def make_event(pts: float = 200.0, *, camera: str = "cam1", category: Category = Category.illegal_parking,
               since: float | None = None, score: float = 0.8) -> Event:
    """An event at stream time `pts`; by default a new episode (since = pts - 180 s) each time."""
    since = pts - 180.0 if since is None else since
    return Event(camera, category, BOX, "z1", pts, T0 + timedelta(seconds=pts - 200.0), since, score, detail="car still")


# -- schema and migrations ----------------------------------------------------------------------


def test_empty_database_is_migrated_to_head_and_matches_the_models(db_url):
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(cfg)
    assert len(scripts.get_heads()) == 1, f"the store's migrations have branched: {scripts.get_heads()}"
    with open_store(db_url) as store:
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_heads() == (scripts.get_current_head(),)
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
            tables = set(conn.dialect.get_table_names(conn))
        assert diff == [], f"the migrations and the models in store/tables.py disagree: {diff}"
        assert {"cameras", "cases", "case_sightings", "case_transitions", "evidence", "outbox"} <= tables
    with open_store(db_url) as again:  # opening a current database is a no-op
        assert again.list_cases() == []


def test_database_newer_than_this_code_is_refused(store, db_url):
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    with pytest.raises(StoreError, match="ffff9999.*upgrade citypatrol"):
        open_store(db_url)


def _users_at_0003(url: str, names: list[str]) -> None:
    """A database at revision 0003 (names were case-sensitive then) with these users, password 'a good long password'."""
    from alembic import command
    from argon2 import PasswordHasher

    from citypatrol.pipeline.store.engine import create_store_engine

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_store_engine(url)
    hashed = PasswordHasher().hash("a good long password")
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003_dispatch")
            for name in names:
                conn.execute(text("INSERT INTO users (username, password_hash, role, active, created_at, updated_at) "
                                  "VALUES (:n, :h, 'reviewer', true, :t, :t)"), {"n": name, "h": hashed, "t": T0})
    finally:
        engine.dispose()


def test_case_variant_user_names_stop_the_upgrade_naming_every_clash_and_merge_nothing(db_url):
    from citypatrol.pipeline.store.engine import create_store_engine

    _users_at_0003(db_url, ["Admin", "admin", "OPS", "Ops", "Wang.Li"])
    with pytest.raises(StoreError, match=r"'Admin' = 'admin'; 'OPS' = 'Ops'.*Nothing was changed") as exc:
        open_store(db_url)
    assert "Wang.Li" not in str(exc.value)
    engine = create_store_engine(db_url)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_heads() == ("0003_dispatch",)
            names = sorted(conn.execute(text("SELECT username FROM users")).scalars())
        assert names == ["Admin", "OPS", "Ops", "Wang.Li", "admin"]
        with engine.begin() as conn:  # the admin settles each clash, then starts again
            conn.execute(text("DELETE FROM users WHERE username IN ('admin', 'Ops')"))
    finally:
        engine.dispose()
    from citypatrol.pipeline.store.users import UserStore

    with open_store(db_url) as store:
        users = UserStore(store.engine)
        assert [u.username for u in users.users()] == ["admin", "ops", "wang.li"]
        assert users.verify("ADMIN", "a good long password").username == "admin"
        assert users.verify("wang.li", "a good long password").username == "wang.li"
        assert users.verify("admin", "a wrong password here") is None


def test_sqlite_file_is_in_wal_mode_with_foreign_keys(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'sub' / 'cases.db'}") as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    assert (tmp_path / "sub" / "cases.db").is_file()


def test_unreachable_postgres_names_the_host_not_the_password():
    with pytest.raises(StoreUnavailable) as err:
        open_store("postgresql+psycopg://citypatrol:s3cret-pw@127.0.0.1:1/citypatrol")
    message = str(err.value)
    assert "127.0.0.1" in message and ":1/citypatrol" in message
    assert "s3cret-pw" not in message
    assert "***" in message


def test_sqlite_file_that_cannot_be_created_is_a_clear_error(tmp_path):
    (tmp_path / "not-a-folder").write_text("x")
    with pytest.raises(StoreUnavailable, match="cannot create the folder"):
        open_store(f"sqlite:///{tmp_path / 'not-a-folder' / 'cases.db'}")


def test_processes_opening_a_new_database_at_once_migrate_it_once(db_url):
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def open_it() -> None:
        try:
            barrier.wait()
            with open_store(db_url) as s:
                s.list_cases()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_unusable_urls_are_clear_errors():
    with pytest.raises(StoreError, match="invalid database URL"):
        open_store("not a url")
    with pytest.raises(StoreError, match="unsupported database"):
        open_store("mysql://u:pw@localhost/x")


# -- cases, sightings, history ------------------------------------------------------------------


def test_open_attach_and_status_changes_keep_history_in_order(store):
    store.upsert_camera(Camera(id="cam1", name="东门", source="rtsp://u:pw@cam/1",
                               location=Location(lon=120.15, lat=30.28, address="延安路 1 号", district="上城区", grid_code="G-07")))
    assert store.open_case(make_case(), make_event(200.0), codes=CodeEntry(code="0505", name="机动车乱停放", major="街面秩序"))
    assert store.attach_sighting("c1", make_event(260.0, score=0.9))
    cst = timezone(timedelta(hours=8))
    store.set_status("c1", CaseStatus.pending_review, at=T0 + timedelta(minutes=2), actor="policy", reason="score 0.8 < 0.9")
    store.set_status("c1", CaseStatus.approved, at=(T0 + timedelta(minutes=5)).astimezone(cst), actor="user:alice")
    t = store.set_status("c1", CaseStatus.dispatched, at=T0 + timedelta(minutes=6), actor="dispatch")
    assert (t.from_status, t.to_status) == (CaseStatus.approved, CaseStatus.dispatched)

    rec = store.get_case("c1")
    assert rec.case.status is CaseStatus.dispatched
    assert [(h.from_status, h.to_status, h.actor) for h in rec.case.history] == [
        (None, CaseStatus.detected, "casebuilder"),
        (CaseStatus.detected, CaseStatus.pending_review, "policy"),
        (CaseStatus.pending_review, CaseStatus.approved, "user:alice"),
        (CaseStatus.approved, CaseStatus.dispatched, "dispatch"),
    ]
    assert rec.case.history[1].reason == "score 0.8 < 0.9"
    assert rec.case.history[2].at == T0 + timedelta(minutes=5) and rec.case.history[2].at.tzinfo is not None
    assert rec.case.opened_at == T0 and rec.case.opened_at.utcoffset() == timedelta(0)
    assert (rec.case.events, rec.sightings, rec.case.last_seen_pts, rec.case.score) == (2, 2, 260.0, 0.9)
    assert rec.case.last_seen_at == T0 + timedelta(seconds=60)
    assert rec.case.box == BOX and rec.case.category is Category.illegal_parking
    assert (rec.codes.code, rec.codes.name, rec.codes.major) == ("0505", "机动车乱停放", "街面秩序")
    # location snapshotted from the camera; a later camera change does not rewrite the case
    assert (rec.location.address, rec.location.district, rec.location.grid_code, rec.location.lon) == ("延安路 1 号", "上城区", "G-07", 120.15)
    store.upsert_camera(Camera(id="cam1", name="东门", source="x.mp4", location=Location(district="西湖区")))
    assert store.get_case("c1").location.district == "上城区"


def test_replayed_event_and_replayed_opening_are_stored_once(store):
    first = make_event(200.0)
    assert store.open_case(make_case(), first)
    assert store.open_case(make_case(), first) is False
    later = make_event(300.0)
    assert store.attach_sighting("c1", later) is True
    assert store.attach_sighting("c1", later) is False
    assert store.attach_sighting("c1", first) is False  # the opening event replayed
    rec = store.get_case("c1")
    assert (rec.sightings, rec.case.events, len(rec.case.history)) == (2, 2, 1)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM case_sightings")).scalar() == 2


def test_same_episode_fired_again_is_not_a_new_sighting_but_moves_last_seen(store):
    store.open_case(make_case(), make_event(200.0, since=20.0))
    again = make_event(500.0, since=20.0)  # same camera, category, box and since → same event id
    assert again.event_id == make_event(200.0, since=20.0).event_id
    assert store.attach_sighting("c1", again) is False
    rec = store.get_case("c1")
    assert (rec.sightings, rec.case.events, rec.case.last_seen_pts) == (1, 1, 500.0)
    assert rec.case.last_seen_at == T0 + timedelta(seconds=300)
    assert store.attach_sighting("c1", make_event(400.0, since=20.0)) is False  # older: last seen stays
    assert store.get_case("c1").case.last_seen_pts == 500.0


def test_history_from_the_case_builder_is_stored_as_given(store):
    from citypatrol.pipeline.types import Transition

    case = make_case(status=CaseStatus.pending_review)
    case = Case(**{**{f: getattr(case, f) for f in case.__dataclass_fields__}, "history": (
        Transition(None, CaseStatus.detected, T0, "rule:illegal_parking"),
        Transition(CaseStatus.detected, CaseStatus.pending_review, T0, "policy", "held for review"),
    )})
    store.open_case(case)
    assert [h.to_status for h in store.get_case("c1").case.history] == [CaseStatus.detected, CaseStatus.pending_review]


def test_unknown_case_is_case_not_found(store):
    with pytest.raises(CaseNotFound):
        store.get_case("nope")
    with pytest.raises(CaseNotFound):
        store.attach_sighting("nope", make_event())
    with pytest.raises(CaseNotFound):
        store.set_status("nope", CaseStatus.closed, at=T0, actor="test")
    with pytest.raises(CaseNotFound):
        store.add_evidence("nope", "crop", "nope/crop.jpg", "0" * 64, 1)


def test_transition_refused_by_the_state_machine_writes_nothing(store):
    store.open_case(make_case(), make_event())
    msg = OutboxMessage("case.submit", {"case_id": "c1"}, "c1:submit")
    with pytest.raises(InvalidTransition, match="from detected to closed"):
        store.set_status("c1", CaseStatus.closed, at=T0, actor="test", outbox=msg)
    rec = store.get_case("c1")
    assert rec.case.status is CaseStatus.detected and len(rec.case.history) == 1
    assert store.outbox() == []  # the message was rolled back with the change
    store.set_status("c1", CaseStatus.rejected, at=T0, actor="user:bob", reason="shadow, not a car")
    with pytest.raises(InvalidTransition, match="final"):  # rejected is final
        store.set_status("c1", CaseStatus.approved, at=T0, actor="user:alice")
    assert [h.to_status for h in store.get_case("c1").case.history] == [CaseStatus.detected, CaseStatus.rejected]


# -- listing and counting -----------------------------------------------------------------------


def _populate(store: Store) -> None:
    for cam, district in (("cam1", "上城区"), ("cam2", "西湖区"), ("cam3", "")):
        store.upsert_camera(Camera(id=cam, source="x.mp4", location=Location(district=district)))
    specs = [  # case id, camera, category, status, minutes after T0
        ("a", "cam1", Category.illegal_parking, CaseStatus.detected, 0),
        ("b", "cam1", Category.illegal_parking, CaseStatus.closed, 10),
        ("c", "cam1", Category.street_vending, CaseStatus.detected, 20),
        ("d", "cam2", Category.illegal_parking, CaseStatus.pending_review, 30),
        ("e", "cam2", Category.billboard, CaseStatus.detected, 40),
        ("f", "cam3", Category.garbage_overflow, CaseStatus.detected, 50),
        ("g", "cam2", Category.illegal_parking, CaseStatus.detected, 60),
    ]
    for cid, cam, cat, status, minutes in specs:
        store.open_case(make_case(cid, camera=cam, category=cat, status=status, at=T0 + timedelta(minutes=minutes)))


def test_list_filters_and_pagination(store):
    _populate(store)
    ids = lambda recs: [r.case_id for r in recs]  # noqa: E731
    assert ids(store.list_cases()) == ["g", "f", "e", "d", "c", "b", "a"]  # newest first
    assert ids(store.list_cases(status=CaseStatus.detected)) == ["g", "f", "e", "c", "a"]
    assert ids(store.list_cases(status=[CaseStatus.closed, CaseStatus.pending_review])) == ["d", "b"]
    assert ids(store.list_cases(category=Category.illegal_parking, camera_id="cam2")) == ["g", "d"]
    assert ids(store.list_cases(district="上城区")) == ["c", "b", "a"]
    assert ids(store.list_cases(since=T0 + timedelta(minutes=20), until=T0 + timedelta(minutes=50))) == ["e", "d", "c"]
    assert ids(store.list_cases(since=(T0 + timedelta(minutes=55)).astimezone(timezone(timedelta(hours=8))))) == ["g"]
    pages = [ids(store.list_cases(limit=3, offset=o)) for o in (0, 3, 6, 9)]
    assert pages == [["g", "f", "e"], ["d", "c", "b"], ["a"], []]
    assert store.count_cases() == 7 and store.count_cases(status="detected", camera_id=["cam1", "cam3"]) == 3
    with pytest.raises(ValueError):
        store.list_cases(limit=-1)


def test_counts_by(store):
    _populate(store)
    assert store.counts_by("category") == {"billboard": 1, "garbage_overflow": 1, "illegal_parking": 4, "street_vending": 1}
    assert store.counts_by("camera") == {"cam1": 3, "cam2": 3, "cam3": 1}
    assert store.counts_by("status") == {"closed": 1, "detected": 5, "pending_review": 1}
    assert store.counts_by("district") == {"": 1, "上城区": 3, "西湖区": 3}
    assert store.counts_by("camera", category="illegal_parking") == {"cam1": 2, "cam2": 2}
    with pytest.raises(ValueError, match="category, camera, status, district"):
        store.counts_by("zone")  # type: ignore[arg-type]


# -- evidence and outbox ------------------------------------------------------------------------


def test_evidence_is_recorded_once_per_path_and_validated(store):
    store.open_case(make_case())
    store.add_evidence("c1", EvidenceKind.frame, "c1/frame.jpg", "A" * 64, 1000)
    store.add_evidence("c1", "crop", "c1/crop.jpg", "b" * 64, 200)
    store.add_evidence("c1", "frame", "c1/frame.jpg", "c" * 64, 1001)  # re-rendered: replaces
    ev = store.get_case("c1").evidence
    assert [(e.kind, e.path, e.sha256[:1], e.size) for e in ev] == [(EvidenceKind.frame, "c1/frame.jpg", "c", 1001), (EvidenceKind.crop, "c1/crop.jpg", "b", 200)]
    for bad_path in ("/etc/passwd", "../c1/x.jpg", "C:/x.jpg"):
        with pytest.raises(ValueError, match="relative"):
            store.add_evidence("c1", "crop", bad_path, "b" * 64, 1)
    with pytest.raises(ValueError, match="frame, crop, clip, before, after"):
        store.add_evidence("c1", "video", "c1/x.mp4", "b" * 64, 1)
    with pytest.raises(ValueError, match="sha256"):
        store.add_evidence("c1", "clip", "c1/x.mp4", "xyz", 1)


def test_outbox_message_is_written_with_the_change_and_only_once(store):
    store.open_case(make_case(), make_event(), outbox=OutboxMessage("case.detected", {"case_id": "c1"}, "c1:detected"))
    msg = OutboxMessage("case.submit", {"case_id": "c1", "code": "0505"}, "c1:submit")
    store.set_status("c1", CaseStatus.approved, at=T0, actor="policy", outbox=msg)
    assert store.enqueue("c1", msg) is False  # same idempotency key
    out = store.outbox(case_id="c1")
    assert [(m.kind, m.idempotency_key, m.status, m.attempts) for m in out] == [
        ("case.detected", "c1:detected", OutboxStatus.pending, 0),
        ("case.submit", "c1:submit", OutboxStatus.pending, 0),
    ]
    assert out[1].payload == {"case_id": "c1", "code": "0505"}
    assert store.outbox(status="sent") == []


def test_concurrent_writers_lose_nothing(store):
    store.open_case(make_case())
    errors: list[BaseException] = []

    def writer(offset: float) -> None:
        try:
            for i in range(25):
                store.attach_sighting("c1", make_event(1000.0 + offset + i * 2))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in (0.0, 1.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rec = store.get_case("c1")
    assert (rec.sightings, rec.case.events) == (50, 51)


# -- the case builder's changes -----------------------------------------------------------------


def test_case_builder_changes_are_persisted_once_and_replays_change_nothing(store):
    from citypatrol.pipeline.cases.builder import CaseBuilder
    from citypatrol.pipeline.config.models import CasesConfig

    builder = CaseBuilder(CasesConfig(grace_s=600, reopen_window_s=3600))
    changes = [builder.add(make_event(pts, since=20.0)) for pts in (200.0, 260.0, 320.0)]  # one episode
    changes += builder.tick("cam1", 1000.0, T0 + timedelta(seconds=800))  # unseen for 680 s ≥ grace
    changes.append(builder.add(make_event(1500.0)))  # back at the same place: reopened
    assert [str(c.kind) for c in changes] == ["opened", "attached", "attached", "expired", "reopened"]

    codes = Config().codes
    assert [store.apply_change(c, codes=codes) for c in changes] == [True] * 5
    case_id = changes[0].case.case_id
    rec = store.get_case(case_id)
    built = builder.get(case_id)
    assert rec.case.status is CaseStatus.reopened
    assert [h.to_status for h in rec.case.history] == [CaseStatus.detected, CaseStatus.expired, CaseStatus.reopened]
    assert [h.actor for h in rec.case.history] == ["casebuilder"] * 3
    assert rec.case.history[1].at == T0 + timedelta(seconds=800)  # the builder's time, not the clock
    assert (rec.case.last_seen_pts, rec.case.last_seen_at, rec.case.events) == (built.last_seen_pts, built.last_seen_at, built.events)
    assert rec.sightings == 2  # two episodes: the repeated firings of the first are one sighting
    assert (rec.codes.code, rec.codes.name) == ("0505", "机动车乱停放")

    assert [store.apply_change(c, codes=codes) for c in changes] == [False] * 5  # replay: nothing new
    again = store.get_case(case_id)
    assert (again.case, again.sightings) == (rec.case, rec.sightings)


def test_a_plate_is_stored_and_a_later_read_fills_an_unread_one_but_never_replaces_a_read_one(store):
    from dataclasses import replace

    from citypatrol.pipeline.cases.builder import CaseChange, ChangeKind
    from citypatrol.pipeline.types import PlateRead

    codes = Config().codes
    unread = replace(make_case("c-unread"), plate=PlateRead.unread("no text found on the vehicle"))
    store.open_case(unread, make_event(200.0), codes=codes)
    store.open_case(make_case("c-never"), make_event(205.0), codes=codes)
    assert store.get_case("c-unread").case.plate == PlateRead("", 0.0, "no text found on the vehicle")
    assert store.get_case("c-never").case.plate is None

    read = PlateRead("皖AD12345", 0.93, "read")
    reopened = replace(unread, status=CaseStatus.reopened, plate=read, last_seen_pts=900.0, last_seen_at=T0 + timedelta(seconds=700))
    store.apply_change(CaseChange(ChangeKind.attached, reopened, make_event(900.0)), codes=codes)
    assert store.get_case("c-unread").case.plate == read
    other = replace(reopened, plate=PlateRead("皖AD12346", 0.99, "read"), last_seen_pts=950.0, last_seen_at=T0 + timedelta(seconds=750))
    store.apply_change(CaseChange(ChangeKind.attached, other, make_event(950.0)), codes=codes)
    assert store.get_case("c-unread").case.plate == read  # the first certain read stays


def test_stale_expiry_from_the_builder_does_not_override_the_stored_status(store):
    from citypatrol.pipeline.cases.builder import CaseBuilder

    builder = CaseBuilder()
    opened = builder.add(make_event(200.0))
    store.apply_change(opened)
    store.set_status(opened.case.case_id, CaseStatus.approved, at=T0, actor="user:alice")
    store.set_status(opened.case.case_id, CaseStatus.dispatched, at=T0, actor="dispatch")
    (expired,) = builder.tick("cam1", 2000.0, T0 + timedelta(hours=1))  # the builder still thinks "detected"
    store.apply_change(expired)
    rec = store.get_case(opened.case.case_id)
    assert rec.case.status is CaseStatus.dispatched
    assert CaseStatus.expired not in [h.to_status for h in rec.case.history]


def test_unclosed_cases_feed_the_builder_at_start_up(store):
    _populate(store)  # "b" is closed
    assert [c.case_id for c in store.unclosed_cases()] == ["a", "c", "d", "e", "f", "g"]
    assert [c.case_id for c in store.unclosed_cases(seen_since=T0 + timedelta(minutes=45))] == ["f", "g"]
    assert store.unclosed_cases()[0].history[0].to_status is CaseStatus.detected


def test_a_same_site_camera_moves_last_seen_time_but_not_the_case_clock(store):
    from citypatrol.pipeline.cases.builder import CaseBuilder

    builder = CaseBuilder(sites={"cam1": "east-gate", "cam2": "east-gate"})
    opened = builder.add(make_event(200.0))
    other = make_event(90.0, camera="cam2")  # cam2's own stream clock; wall time later than the opening
    other = Event(other.camera_id, other.category, other.box, None, other.pts, T0 + timedelta(minutes=3), other.since_pts, 0.95)
    attached = builder.add(other)
    assert (str(attached.kind), attached.case.case_id) == ("attached", opened.case.case_id)
    store.apply_change(opened)
    store.apply_change(attached)
    rec = store.get_case(opened.case.case_id)
    assert (rec.case.camera_id, rec.case.last_seen_pts, rec.case.last_seen_at, rec.case.score) == ("cam1", 200.0, T0 + timedelta(minutes=3), 0.95)
    with store.engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT camera_id FROM case_sightings")).scalars()) == ["cam1", "cam2"]
