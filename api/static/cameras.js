/* Camera wall: latest snapshot, health, open cases; refreshed every 30 s. */
"use strict";

(function () {
  const wall = document.getElementById("wall");
  const count = document.getElementById("camera-count");

  function card(cam) {
    const health = cam.health.status || "unknown";
    return h("article", { class: "cam card", dataset: { id: cam.id } },
      h("div", { class: "cam-snap" },
        cam.snapshot_url ? h("img", { src: cam.snapshot_url, alt: cam.name, loading: "lazy" })
          : h("p", { class: "muted", text: t("cameras.nosnap") }),
        h("span", { class: "health " + health, text: t("health." + health),
          title: cam.health.detail.reason || cam.health.detail.last_error || cam.health.detail.state || "" })),
      h("div", { class: "cam-body" },
        h("h3", { text: cam.name }),
        h("p", { class: "muted", text: [cam.id, cam.location.address, cam.location.district].filter(Boolean).join(" · ") }),
        h("p", {}, h("strong", { text: String(cam.open_cases) }), " " + t("cameras.open") + " · " + t("cameras.zones") + " " + cam.zones),
        h("p", { class: "muted", text: t("cameras.last") + " " + fmtShort(cam.last_case_at) }),
        h("p", { class: "cam-links" },
          h("a", { href: "/?camera=" + encodeURIComponent(cam.id), text: t("cameras.cases") }),
          h("a", { href: "/zones?camera=" + encodeURIComponent(cam.id), text: t("cameras.edit") }))));
  }

  async function load() {
    try {
      const cams = await api("/api/v1/cameras");
      wall.replaceChildren(...cams.map(card));
      count.textContent = String(cams.length);
    } catch (e) {
      toast(t("error") + ": " + e.message, "error");
    }
  }

  load();
  setInterval(load, 30000);
})();
