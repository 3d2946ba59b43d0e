"""A configured category through the store and the review center's API over HTTP, on SQLite and
PostgreSQL: listed, filtered and shown with the city's code and name, reclassified to and from,
and offered to reviewers and the zone editor; an unknown category is refused."""

from __future__ import annotations

from datetime import UTC, datetime

from citypatrol.pipeline.config.models import CategoryDef, ConfiguredCategory, category_of
from tests.fixtures_api import SEED, SeedCase, add_case, api_config, db_url, evidence_set, pg_admin, start_api  # noqa: F401
from tests.footage import box_zone

SHOP_FRONT = CategoryDef(name="shop_front_business", code="0504", title="店外经营", major="街面秩序", title_en="goods outside the shop",
                         zone_kind="door_front", rule="scene_change")


def config_with_category():
    base = api_config()
    cams = [c.model_copy(update={"zones": [*c.zones, box_zone("doors", "door_front", (0.0, 0.25, 0.25, 0.65))]})
            if c.id == "pedestrian" else c for c in base.cameras]
    return type(base).model_validate({**base.model_dump(), "cameras": [c.model_dump() for c in cams],
                                      "categories": [SHOP_FRONT.model_dump()]})


def test_a_configured_category_is_listed_filtered_and_reclassified(db_url, evidence_set):
    config = config_with_category()
    api, server = start_api(db_url, evidence_set, config=config)
    try:
        seed = SeedCase("c-shop-front", "pedestrian", category_of("shop_front_business"), (0.05, 0.40, 0.20, 0.62), "doors",
                        1.0, 0.5, detail="new object (not in the reference image) at rest 640 s in door_front zone doors")
        add_case(api.store, config, seed, [], now=datetime.now(UTC))
        stored = api.store.get_case("c-shop-front")
        assert isinstance(stored.case.category, ConfiguredCategory) and stored.codes.code == "0504"

        c = api.client("analyst")
        page = c.get("/api/v1/cases", params={"category": "shop_front_business"}).json()
        assert [i["case_id"] for i in page["items"]] == ["c-shop-front"] and page["total"] == 1
        assert page["items"][0]["category"] == {"value": "shop_front_business", "zh": "店外经营", "en": "shop front business",
                                                "color": "#546e7a", "code": "0504", "code_name": "店外经营", "major": "街面秩序"}
        both = c.get("/api/v1/cases", params={"category": ["shop_front_business", "billboard"]}).json()
        assert {i["case_id"] for i in both["items"]} == {"c-shop-front", "c-london-poster", "c-london-render"}
        assert c.get("/api/v1/cases/c-shop-front").json()["zone_id"] == "doors"
        assert c.get("/api/v1/cases", params={"category": "Not A Name"}).status_code == 422

        machine = api.client("reviewer")
        back = machine.post("/api/v1/cases/c-shop-front/reclassify", json={"category": "street_vending", "reason": "a vendor"}).json()
        assert back["category"]["value"] == "street_vending" and back["category"]["code"] == "0501"
        to = machine.post("/api/v1/cases/c-bin/reclassify", json={"category": "shop_front_business", "reason": "shop's goods"}).json()
        assert (to["category"]["value"], to["category"]["code"], to["category"]["code_name"]) == ("shop_front_business", "0504", "店外经营")
        assert to["activity"][-1]["detail"] == {"from": "garbage_overflow", "to": "shop_front_business"}
        refused = machine.post("/api/v1/cases/c-junction/reclassify", json={"category": "shop_front_busines"})
        assert refused.status_code == 422
        [why] = refused.json()["detail"]
        assert why["loc"] == ["body", "category"] and "unknown category 'shop_front_busines'" in why["msg"]

        stats = c.get("/api/v1/stats")
        assert stats.status_code == 200 and stats.json()["per_category"]["shop_front_business"] == 1  # c-bin now

        admin = api.client("admin")
        zones = admin.get("/api/v1/cameras/pedestrian/zones").json()
        shop = {"id": "doors-2", "kind": "door_front", "polygon": [[0.3, 0.1], [0.6, 0.1], [0.6, 0.2]]}
        put = admin.put("/api/v1/cameras/pedestrian/zones", json={"base_version": 0, "zones": [*zones["zones"], shop]})
        assert put.status_code == 200 and [z["kind"] for z in put.json()["zones"]][-2:] == ["door_front", "door_front"]
        typo = admin.post("/api/v1/cameras/pedestrian/zones/items", json={"base_version": 1, "zone": {**shop, "id": "d3", "kind": "doorfront"}})
        assert typo.status_code == 422 and "d3 (doorfront)" in typo.json()["detail"]

        reviewer, _ = api.login("reviewer")
        page_html = reviewer.get("/").text
        assert "shop_front_business" in page_html and "door_front" in page_html  # offered in reclassify and the zone editor
    finally:
        server.stop()
        api.store.close()
