"""The review center in Debian's Chromium, driven by Playwright, against a real server and store:
sign in, review three cases by keyboard, see a new case arrive live, draw a zone and find it saved,
look at the camera wall, the statistics and the English switch. Screenshots go to
test-artifacts/ui/ (git-ignored) for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.fixtures_api import PASSWORD, SEED, SeedCase, add_case, evidence_set, start_api  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium missing: run `make system-deps`")
expect.set_options(timeout=15_000)  # a shared 2-core machine can be slow; a real failure still fails


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture
def ui_server(tmp_path, evidence_set, browser):
    api, server = start_api(f"sqlite:///{tmp_path / 'ui.db'}", evidence_set)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield api
    finally:
        for context in browser.contexts:  # close the pages first: their live streams end with them
            context.close()
        server.stop()
        api.store.close()


def new_page(browser, url: str, errors: list[str]) -> Page:
    context = browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN", base_url=url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    return page


def sign_in(page: Page, role: str) -> None:
    page.goto("/")
    expect(page).to_have_url("/login?next=%2F")
    page.fill("#username", role)
    page.fill("#password", PASSWORD[role])
    page.click("button[type=submit]")
    expect(page).to_have_url("/")


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def case(api, case_id: str) -> dict:
    return api.client("analyst").get(f"/api/v1/cases/{case_id}").json()


def test_review_three_cases_by_keyboard_and_see_a_new_case_arrive_live(browser, ui_server):
    errors: list[str] = []
    page = new_page(browser, ui_server.url, errors)
    page.goto("/login")
    page.fill("#username", "reviewer")
    page.fill("#password", "wrong password!")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
    shot(page, "01-login-failed")
    errors.clear()  # the refused sign-in is logged by the browser as a failed (401) request
    sign_in(page, "reviewer")

    items = page.locator("#queue-list li")
    expect(items).to_have_count(len(SEED))
    expect(page.locator("#queue-count")).to_have_text(str(len(SEED)))
    expect(page.locator("#live")).not_to_have_class("live off")
    first = SEED[0].case_id
    expect(page.locator("#queue-list li.current")).to_have_attribute("data-id", first)
    expect(page.locator("#info .case-title")).to_have_text("违规广告牌")
    expect(page.locator("#info")).to_contain_text("伦敦街道 London street")
    expect(page.locator("#info")).to_contain_text("sample street · 西城区")
    page.wait_for_function("() => { const i = document.getElementById('evidence'); return i.complete && i.naturalWidth > 1000; }")
    expect(page.locator("#info .history li")).to_have_count(1)
    expect(page.locator("#info .plate, #info .plate-unread")).to_have_count(0)  # a billboard has no plate
    expect(page.locator("#sign-form")).to_be_visible()  # approve this sign: a billboard can be registered
    shot(page, "02-review-queue")

    # 1: confirm with Y
    page.keyboard.press("y")
    expect(page.locator("#toast")).to_contain_text("已确认")
    expect(items).to_have_count(len(SEED) - 1)
    assert case(ui_server, first)["status"] == "approved"
    second = SEED[1].case_id
    expect(page.locator("#queue-list li.current")).to_have_attribute("data-id", second)

    # 2: a parking case shows its plate; reject with N, reason 1
    expect(page.locator("#info .plate")).to_have_text("皖AD12345")
    expect(page.locator("#sign-form")).to_have_count(0)
    expect(page.locator("#info")).to_contain_text("车牌")
    page.keyboard.press("n")
    expect(page.locator("#picker")).to_be_visible()
    expect(page.locator("#picker-list li")).to_have_count(5)
    shot(page, "03-reject-reasons")
    page.keyboard.press("1")
    expect(page.locator("#picker")).to_be_hidden()
    expect(items).to_have_count(len(SEED) - 2)
    rejected = case(ui_server, second)
    assert rejected["status"] == "rejected" and rejected["history"][-1]["reason"] == "误报：不是问题"
    assert rejected["history"][-1]["actor"] == "user:reviewer"

    # 3: J to the next one, then reclassify with C (the first category offered), and the clip with V
    third = page.locator("#queue-list li.current").get_attribute("data-id")
    page.keyboard.press("j")
    nxt = page.locator("#queue-list li.current").get_attribute("data-id")
    assert nxt != third
    page.keyboard.press("k")
    expect(page.locator("#queue-list li.current")).to_have_attribute("data-id", third)
    before = case(ui_server, third)["category"]["value"]
    page.keyboard.press("c")
    expect(page.locator("#picker-list li").first).to_be_visible()
    page.keyboard.press("1")
    expect(page.locator("#toast")).to_contain_text("已改类")
    after = case(ui_server, third)
    assert after["category"]["value"] != before and after["activity"][-1]["actor"] == "user:reviewer"
    expect(page.locator("#info")).to_contain_text("改类")

    page.keyboard.press("k")
    page.keyboard.press("k")  # back to the top of the queue
    top = page.locator("#queue-list li.current").get_attribute("data-id")
    if any(e["kind"] == "clip" for e in case(ui_server, top)["evidence"]):
        page.keyboard.press("v")
        expect(page.locator("#clip")).to_be_visible()
        page.keyboard.press("v")
        expect(page.locator("#evidence")).to_be_visible()

    # a case opened by the pipeline while the page is open appears without reload
    files = ui_server.files
    add_case(ui_server.store, ui_server.config,
             SeedCase("c-live-ui", "pedestrian", SEED[2].category, (0.38, 0.15, 0.46, 0.32), "bins", 1.0, 0.0), files["c-bin"])
    live = page.locator('#queue-list li[data-id="c-live-ui"]')
    expect(live).to_be_visible(timeout=20_000)
    expect(live.locator(".tag-new")).to_have_text("新")
    expect(page.locator("#toast")).to_contain_text("新案件")
    shot(page, "04-new-case-live")
    live.click()
    expect(page.locator("#info .case-id")).to_have_text("c-live-ui")
    page.wait_for_function("() => { const i = document.getElementById('evidence'); return i.complete && i.naturalWidth > 1000; }")
    shot(page, "05-new-case-selected")
    assert not errors, errors


def test_a_reviewer_draws_the_objects_box_on_the_evidence(browser, ui_server):
    errors: list[str] = []
    page = new_page(browser, ui_server.url, errors)
    sign_in(page, "reviewer")
    first = SEED[0].case_id
    expect(page.locator("#queue-list li.current")).to_have_attribute("data-id", first)
    # the case's details are in (its history shows), and the picture they name has loaded: on a busy
    # machine the list's picture comes first and the details' one replaces it a moment later
    expect(page.locator("#info")).to_contain_text("处理记录")
    page.wait_for_function("() => { const i = document.getElementById('evidence'); return i.complete && i.naturalWidth > 1000; }")
    expect(page.locator("#boxlayer")).to_be_hidden()  # no reviewer box yet

    page.keyboard.press("b")
    expect(page.locator("#toast")).to_contain_text("拖动")
    layer = page.locator("#boxlayer")
    expect(layer).to_be_visible()
    # the layer covers exactly the drawn picture (letterboxed by object-fit: contain)
    img = page.evaluate("() => { const i = document.getElementById('evidence'); return [i.naturalWidth, i.naturalHeight]; }")
    lb = layer.bounding_box()
    assert abs(lb["width"] / lb["height"] - img[0] / img[1]) < 0.01, (lb, img)
    want = (0.60, 0.30, 0.85, 0.62)
    page.mouse.move(lb["x"] + want[0] * lb["width"], lb["y"] + want[1] * lb["height"])
    page.mouse.down()
    page.mouse.move(lb["x"] + 0.7 * lb["width"], lb["y"] + 0.5 * lb["height"], steps=4)
    page.mouse.move(lb["x"] + want[2] * lb["width"], lb["y"] + want[3] * lb["height"], steps=4)
    page.mouse.up()
    expect(page.locator("#boxrect")).to_be_visible()
    shot(page, "12-drawing-a-box")
    page.keyboard.press("Enter")
    expect(page.locator("#toast")).to_contain_text("框已保存")

    got = case(ui_server, first)
    assert got["status"] == "detected", "drawing a box is not a decision"
    assert got["reviewed_box"] == pytest.approx(list(want), abs=0.01)
    assert got["activity"][-1]["action"] == "correct_box" and got["activity"][-1]["actor"] == "user:reviewer"
    shown = [e for e in got["evidence"] if e["kind"] == "frame"][-1]
    assert got["activity"][-1]["detail"]["evidence"].endswith(".jpg") and shown["url"].endswith(f"/{shown['id']}")
    # a box said to be drawn on another case's picture is refused
    other = case(ui_server, SEED[1].case_id)
    foreign = next(e["id"] for e in other["evidence"] if e["kind"] == "frame")
    bearer = ui_server.client("reviewer")
    refused = bearer.post(f"/api/v1/cases/{first}/box", json={"box": [0.1, 0.1, 0.2, 0.2], "evidence_id": foreign})
    assert refused.status_code == 409 and "not a frame of case" in refused.text
    expect(page.locator("#info .history")).to_contain_text("修正了目标框")
    expect(page.locator("#boxrect")).to_be_visible()  # the reviewer's box stays drawn over the evidence
    shot(page, "13-reviewed-box")

    # Esc leaves the box as it was
    page.keyboard.press("b")
    page.mouse.move(lb["x"] + 0.1 * lb["width"], lb["y"] + 0.1 * lb["height"])
    page.mouse.down()
    page.mouse.move(lb["x"] + 0.2 * lb["width"], lb["y"] + 0.2 * lb["height"], steps=3)
    page.mouse.up()
    page.keyboard.press("Escape")
    assert case(ui_server, first)["reviewed_box"] == got["reviewed_box"]
    assert not errors, errors


def test_draw_a_zone_and_find_it_saved(browser, ui_server):
    errors: list[str] = []
    page = new_page(browser, ui_server.url, errors)
    sign_in(page, "admin")
    page.click("nav >> text=区域编辑")
    expect(page).to_have_url(re.compile(r"/zones"))
    page.select_option("#camera-select", "london")
    expect(page.locator("#zone-version")).to_contain_text("版本 0")
    expect(page.locator("#zone-list li")).to_have_count(1)
    page.wait_for_function("() => { const i = document.getElementById('zone-snapshot'); return i.complete && i.naturalWidth > 1000; }")
    canvas = page.locator("#zone-canvas")
    box = canvas.bounding_box()
    assert box and box["width"] > 600
    page.click("#zone-new")
    corners = [(0.10, 0.70), (0.45, 0.68), (0.50, 0.90), (0.08, 0.92)]
    for x, y in corners:
        page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
    page.keyboard.press("Enter")
    expect(page.locator("#zone-list li")).to_have_count(2)
    expect(page.locator("#zone-dirty")).to_be_visible()
    page.fill("#zone-list li.current input[name=name]", "东门人行道")
    page.select_option("#zone-list li.current select[name=kind]", "no_vending")
    shot(page, "06-zone-drawn")
    page.click("#zone-save")
    expect(page.locator("#toast")).to_contain_text("已保存，版本 1")
    expect(page.locator("#zone-dirty")).to_be_hidden()

    saved = ui_server.client("analyst").get("/api/v1/cameras/london/zones").json()
    assert saved["version"] == 1 and saved["saved_by"] == "user:admin"
    zone = next(z for z in saved["zones"] if z["id"] != "hoarding")
    assert zone["name"] == "东门人行道" and zone["kind"] == "no_vending"
    for (x, y), (sx, sy) in zip(corners, zone["polygon"]):
        assert abs(x - sx) < 0.01 and abs(y - sy) < 0.01

    page.reload()
    expect(page.locator("#zone-version")).to_contain_text("版本 1")
    expect(page.locator("#zone-list li")).to_have_count(2)
    shot(page, "07-zone-reloaded")

    page.click("nav >> text=摄像头")
    expect(page.locator(".cam")).to_have_count(4)
    page.wait_for_function("() => [...document.querySelectorAll('.cam-snap img')].every(i => i.complete && i.naturalWidth > 0)")
    expect(page.locator('.cam[data-id="london"] .health')).to_have_text("状态未知")
    shot(page, "08-camera-wall")

    ui_server.client("reviewer").post("/api/v1/cases/c-bin/reject", json={"reason": "bin is not full"})
    ui_server.client("reviewer").post("/api/v1/cases/c-london-poster/confirm", json={})
    page.click("nav >> text=统计")
    expect(page.locator("#total")).to_have_text(f"案件总数 {len(SEED)}")
    expect(page.locator("#chart-days rect")).not_to_have_count(0)
    expect(page.locator("#chart-precision rect")).to_have_count(2)
    shot(page, "09-statistics")

    page.click("#lang-switch")
    expect(page.locator("nav a.active")).to_have_text("Statistics")
    expect(page.locator("#total")).to_have_text(f"Cases {len(SEED)}")
    shot(page, "10-statistics-en")
    page.click("nav >> text=Review queue")
    expect(page.locator("#info .case-title")).not_to_be_empty()
    expect(page.locator(".actions")).to_contain_text("Confirm")
    shot(page, "11-review-queue-en")
    assert not errors, errors



NEXT = [
    ("%2Fstats%3Fx%3D1%23top", "/stats?x=1#top"),  # a page of this site: allowed, query and fragment kept
    ("%2Fcameras", "/cameras"),
    ("%2F%09%2Fevil.example", "/"),  # the tab is dropped by the URL parser: //evil.example
    ("%2F%0A%2Fevil.example", "/"),
    ("%2F%2Fevil.example", "/"),
    ("%2F%5Cevil.example", "/"),
    ("https%3A%2F%2Fevil.example%2F", "/"),
    ("javascript%3Aalert(1)", "/"),
]


def test_sign_in_goes_on_only_to_a_page_of_this_site(browser, ui_server):
    for next_param, lands_on in NEXT:
        errors: list[str] = []
        page = new_page(browser, ui_server.url, errors)
        left: list[str] = []
        page.context.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), lambda route, left=left: (left.append(route.request.url), route.abort()))
        page.goto(f"/login?next={next_param}")
        page.fill("#username", "reviewer")
        page.fill("#password", PASSWORD["reviewer"])
        page.click("button[type=submit]")
        expect(page).to_have_url(ui_server.url + lands_on)
        assert left == [], f"next={next_param}: sign-in sent the browser away from the review center: {left}"
        page.context.close()


def test_a_late_answer_never_puts_an_older_history_back(browser, ui_server):
    """The case detail asked for on selecting a case can arrive after a decision's own answer (a busy
    server answers out of order): the panel keeps the newer history, with the 改类 entry."""
    errors: list[str] = []
    page = new_page(browser, ui_server.url, errors)
    sign_in(page, "reviewer")
    target = SEED[2].case_id
    held: list = []

    def hold(route) -> None:  # noqa: ANN001
        if route.request.method != "GET":
            route.continue_()
            return
        held.append((route, route.fetch()))  # read now, before the decision: delivered after it

    page.route(f"**/api/v1/cases/{target}", hold)
    page.locator(f'#queue-list li[data-id="{target}"]').click()
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the detail request was not seen"
    page.keyboard.press("c")
    page.keyboard.press("1")
    expect(page.locator("#toast")).to_contain_text("已改类")
    expect(page.locator("#info .history")).to_contain_text("改类")
    route, stale = held.pop(0)
    route.fulfill(response=stale)
    page.unroute(f"**/api/v1/cases/{target}")
    page.wait_for_timeout(1500)  # the stale answer, then the live event of the change, have arrived
    expect(page.locator("#info .history")).to_contain_text("改类")
    assert case(ui_server, target)["category"]["value"] != SEED[2].category.value
    assert not errors, errors


def test_a_reviewer_approves_a_sign_from_the_case(browser, ui_server):
    errors: list[str] = []
    page = new_page(browser, ui_server.url, errors)
    sign_in(page, "reviewer")
    expect(page.locator("#queue-list li.current")).to_have_attribute("data-id", "c-london-poster")
    page.fill("#sign-permit", "SZ-2026-004")
    page.keyboard.press("2")
    page.keyboard.press("y")  # typing in the form is not a keyboard decision
    page.keyboard.press("Backspace")
    expect(page.locator("#sign-permit")).to_have_value("SZ-2026-0042")
    assert case(ui_server, "c-london-poster")["status"] == "detected"
    page.fill("#sign-until", "2027-01-31")
    shot(page, "06-approve-sign")
    page.click("#sign-form button[type=submit]")
    expect(page.locator("#toast")).to_contain_text("已登记为已审批广告")
    expect(page.locator('#queue-list li[data-id="c-london-poster"]')).to_have_count(0)
    decided = case(ui_server, "c-london-poster")
    assert decided["status"] == "rejected" and "permit SZ-2026-0042" in decided["history"][-1]["reason"]
    zones = ui_server.client("admin").get("/api/v1/cameras/london/zones").json()
    entry = zones["zones"][-1]
    assert entry["permit"] == "SZ-2026-0042" and entry["kind"] == "approved_ad" and entry["look"]

    # an admin editing the camera's zones afterwards keeps the register entry whole
    admin = new_page(browser, ui_server.url, errors)
    sign_in(admin, "admin")
    admin.goto("/zones")
    admin.select_option("#camera-select", "london")
    expect(admin.locator("#zone-list li")).to_have_count(2)
    expect(admin.locator("#zone-list .zpermit")).to_contain_text("SZ-2026-0042")
    admin.fill('#zone-list li[data-id="hoarding"] input[name=name]', "施工围挡 east")
    admin.click("#zone-save")
    expect(admin.locator("#toast")).to_contain_text("已保存，版本 2")
    kept = ui_server.client("admin").get("/api/v1/cameras/london/zones").json()["zones"]
    assert kept[0]["name"] == "施工围挡 east"
    assert {k: kept[1][k] for k in ("permit", "valid_until", "look")} == {k: entry[k] for k in ("permit", "valid_until", "look")}
    assert not errors, errors
