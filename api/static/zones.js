/* Zone editor: polygons drawn over the camera's snapshot, saved as a new version through the API.
   Coordinates are normalised to the picture (0..1), as in the config file. */
"use strict";

(function () {
  const select = document.getElementById("camera-select");
  const img = document.getElementById("zone-snapshot");
  const canvas = document.getElementById("zone-canvas");
  const nosnap = document.getElementById("zone-nosnap");
  const list = document.getElementById("zone-list");
  const versionEl = document.getElementById("zone-version");
  const dirtyEl = document.getElementById("zone-dirty");
  const ctx = canvas.getContext("2d");
  const isAdmin = BOOT.user && BOOT.user.role === "admin";
  const COLORS = { no_parking: "#e53935", no_vending: "#8e24aa", bin_area: "#2e7d32", ad_area: "#1e88e5", approved_ad: "#00acc1" };

  let cameraId = null;
  let version = 0;
  let zones = [];        // [{id, name, kind, polygon: [[x,y],…], hours, dwell_s}]
  let selected = -1;     // index into zones
  let drawing = null;    // vertices of the polygon being drawn
  let drag = null;       // {zone, vertex}
  let hover = null;      // [x,y] of the mouse, normalised
  let dirty = false;

  function setDirty(v) { dirty = v; dirtyEl.hidden = !v; }

  // -- drawing --------------------------------------------------------------------------------

  function fit() {
    const r = img.getBoundingClientRect();
    canvas.width = Math.max(1, Math.round(r.width));
    canvas.height = Math.max(1, Math.round(r.height));
    canvas.style.width = r.width + "px";
    canvas.style.height = r.height + "px";
    canvas.style.left = img.offsetLeft + "px";
    canvas.style.top = img.offsetTop + "px";
    draw();
  }

  const px = ([x, y]) => [x * canvas.width, y * canvas.height];

  function poly(points, color, { fill = true, closed = true, width = 2, handles = false } = {}) {
    if (!points.length) return;
    ctx.beginPath();
    points.forEach((p, i) => { const [x, y] = px(p); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
    if (closed) ctx.closePath();
    if (fill) { ctx.fillStyle = color + "40"; ctx.fill(); }
    ctx.strokeStyle = color; ctx.lineWidth = width; ctx.stroke();
    if (handles) {
      for (const p of points) {
        const [x, y] = px(p);
        ctx.fillStyle = "#fff"; ctx.strokeStyle = color; ctx.lineWidth = 2;
        ctx.beginPath(); ctx.arc(x, y, 5, 0, Math.PI * 2); ctx.fill(); ctx.stroke();
      }
    }
  }

  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    zones.forEach((z, i) => {
      const color = COLORS[z.kind] || "#ffd600";
      poly(z.polygon, color, { width: i === selected ? 3 : 2, handles: i === selected });
      const [x, y] = px(z.polygon[0]);
      ctx.font = "bold 14px sans-serif";
      const label = (z.name || z.id);
      const w = ctx.measureText(label).width + 8;
      ctx.fillStyle = "rgba(0,0,0,.65)"; ctx.fillRect(x, y - 20, w, 18);
      ctx.fillStyle = "#fff"; ctx.fillText(label, x + 4, y - 6);
    });
    if (drawing) {
      const pts = hover ? [...drawing, hover] : drawing;
      poly(pts, "#ffd600", { fill: pts.length > 2, closed: false, handles: true });
    }
  }

  function norm(ev) {
    const r = canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [Math.round(clamp((ev.clientX - r.left) / r.width) * 10000) / 10000,
      Math.round(clamp((ev.clientY - r.top) / r.height) * 10000) / 10000];
  }

  function nearVertex(p) {
    const [mx, my] = px(p);
    for (let zi = zones.length - 1; zi >= 0; zi--) {
      const pts = zones[zi].polygon;
      for (let vi = 0; vi < pts.length; vi++) {
        const [x, y] = px(pts[vi]);
        if (Math.hypot(x - mx, y - my) <= 8) return { zone: zi, vertex: vi };
      }
    }
    return null;
  }

  function inside(p, pts) {
    let c = false;
    for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
      const [xi, yi] = pts[i], [xj, yj] = pts[j];
      if ((yi > p[1]) !== (yj > p[1]) && p[0] < ((xj - xi) * (p[1] - yi)) / (yj - yi) + xi) c = !c;
    }
    return c;
  }

  canvas.addEventListener("mousedown", (ev) => {
    const p = norm(ev);
    if (drawing) { drawing.push(p); draw(); return; }
    const v = nearVertex(p);
    if (v) { drag = v; selected = v.zone; renderList(); draw(); return; }
    selected = zones.findIndex((z) => inside(p, z.polygon));
    renderList(); draw();
  });
  canvas.addEventListener("mousemove", (ev) => {
    const p = norm(ev);
    if (drag) { zones[drag.zone].polygon[drag.vertex] = p; setDirty(true); draw(); return; }
    if (drawing) { hover = p; draw(); }
  });
  window.addEventListener("mouseup", () => { drag = null; });
  canvas.addEventListener("dblclick", (ev) => { ev.preventDefault(); finishDrawing(); });

  function startDrawing() { drawing = []; hover = null; selected = -1; canvas.classList.add("drawing"); renderList(); draw(); }

  function finishDrawing() {
    if (!drawing) return;
    // a double click also fired two mousedowns on the same spot: drop the repeated vertices
    const pts = drawing.filter((p, i) => i === 0 || Math.hypot(p[0] - drawing[i - 1][0], p[1] - drawing[i - 1][1]) > 0.002);
    drawing = null; hover = null; canvas.classList.remove("drawing");
    if (pts.length < 3) { draw(); return; }
    let n = zones.length + 1;
    while (zones.some((z) => z.id === "zone-" + n)) n++;
    zones.push({ id: "zone-" + n, name: "", kind: "no_parking", polygon: pts, hours: [], dwell_s: null });
    selected = zones.length - 1;
    setDirty(true);
    renderList(); draw();
    const name = list.querySelector(".zitem.current input[name=name]");
    if (name) name.focus();
  }

  // -- the list -------------------------------------------------------------------------------

  function renderList() {
    list.replaceChildren(...zones.map((z, i) => {
      const field = (name, value, attrs = {}) => h("input", {
        name, value, ...attrs, disabled: !isAdmin,
        oninput: (ev) => { z[name] = ev.target.value; setDirty(true); draw(); },
      });
      const kind = h("select", { name: "kind", disabled: !isAdmin, onchange: (ev) => { z.kind = ev.target.value; setDirty(true); draw(); } },
        BOOT.zone_kinds.map((k) => h("option", { value: k, selected: k === z.kind, text: t("zones.kind." + k) })));
      return h("li", { class: "zitem" + (i === selected ? " current" : ""), dataset: { id: z.id }, onclick: () => { selected = i; renderList(); draw(); } },
        h("label", {}, t("zones.id"), field("id", z.id, { pattern: "[A-Za-z0-9_.\\-]{1,64}", maxlength: 64 })),
        h("label", {}, t("zones.name"), field("name", z.name || "", { maxlength: 200 })),
        h("label", {}, t("zones.kind"), kind),
        h("p", { class: "muted", text: z.polygon.length + " " + t("zones.points") }),
        z.kind === "approved_ad" && z.permit ? h("p", { class: "muted zpermit",
          text: t("sign.permit") + " " + z.permit + " · " + t("sign.until") + " " + (z.valid_until || "–") }) : null,
        isAdmin ? h("button", { type: "button", class: "bad small", text: t("zones.delete"),
          onclick: (ev) => { ev.stopPropagation(); zones.splice(i, 1); selected = -1; setDirty(true); renderList(); draw(); } }) : null);
    }));
  }

  // -- load and save --------------------------------------------------------------------------

  let loading = 0; // only the newest camera choice may fill the editor (an older answer can arrive later)

  async function loadCamera(id) {
    const mine = ++loading;
    cameraId = id;
    history.replaceState(null, "", "/zones?camera=" + encodeURIComponent(id));
    const cam = cameras.find((c) => c.id === id);
    try {
      const zs = await api("/api/v1/cameras/" + encodeURIComponent(id) + "/zones");
      if (mine !== loading) return;
      version = zs.version;
      zones = zs.zones.map((z) => ({ ...z, polygon: z.polygon.map((p) => [...p]) }));
      versionEl.textContent = t("zones.version") + " " + version + " · " + t("zones.source." + zs.source);
    } catch (e) {
      if (mine !== loading) return;
      toast(t("error") + ": " + e.message, "error");
      zones = [];
    }
    selected = -1; drawing = null; setDirty(false);
    showFrame(cam);
    renderList();
  }

  // A picture taken from the camera now (a new camera has no evidence yet); when the camera gives
  // none, the reason, and the newest evidence picture or a grey frame to draw on.
  let frameUrl = null;
  async function showFrame(cam) {
    const id = cameraId;
    const grey = "data:image/svg+xml," + encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" width="1280" height="720"><rect width="100%" height="100%" fill="#263238"/></svg>');
    let blob = null, why = "";
    try {
      const res = await fetch("/api/v1/cameras/" + encodeURIComponent(id) + "/frame", { credentials: "same-origin" });
      if (res.ok) { blob = await res.blob(); } else { why = ((await res.json().catch(() => null)) || {}).detail || res.statusText; }
    } catch (e) {
      why = e.message;
    }
    if (id !== cameraId) return; // another camera was chosen meanwhile
    if (frameUrl) URL.revokeObjectURL(frameUrl);
    frameUrl = blob ? URL.createObjectURL(blob) : null;
    img.hidden = false;
    nosnap.hidden = !!(blob || (cam && cam.snapshot_url));
    img.src = frameUrl || (cam && cam.snapshot_url) || grey;
    if (why) toast(t("zones.noframe") + ": " + why, "error");
  }

  // What is saved of a zone; a register entry (approved_ad) keeps its permit, last day and look.
  function zoneBody(z) {
    const body = { id: z.id, name: z.name || "", kind: z.kind, polygon: z.polygon, hours: z.hours || [], dwell_s: z.dwell_s ?? null };
    if (z.kind === "approved_ad") {
      for (const k of ["permit", "valid_until", "look"]) if (z[k]) body[k] = z[k];
    }
    return body;
  }

  async function save() {
    if (!isAdmin) { toast(t("zones.readonly"), "error"); return; }
    const body = {
      base_version: version,
      zones: zones.map(zoneBody),
    };
    try {
      const zs = await api("/api/v1/cameras/" + encodeURIComponent(cameraId) + "/zones", { method: "PUT", body });
      version = zs.version;
      versionEl.textContent = t("zones.version") + " " + version + " · " + t("zones.source." + zs.source);
      setDirty(false);
      toast(t("zones.saved") + " " + version, "ok");
    } catch (e) {
      toast(e.status === 409 ? t("zones.conflict") : t("error") + ": " + e.message, "error");
    }
  }

  document.getElementById("zone-new").addEventListener("click", startDrawing);
  document.getElementById("zone-save").addEventListener("click", save);
  if (!isAdmin) { document.getElementById("zone-save").disabled = true; document.getElementById("zone-new").disabled = true; }
  select.addEventListener("change", () => {
    if (dirty && !window.confirm(t("zones.discard"))) { select.value = cameraId; return; }
    loadCamera(select.value);
  });
  img.addEventListener("load", fit);
  window.addEventListener("resize", fit);
  window.addEventListener("beforeunload", (ev) => { if (dirty) { ev.preventDefault(); ev.returnValue = ""; } });

  document.addEventListener("keydown", (ev) => {
    if (isTyping(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "Escape" && drawing) { drawing = null; canvas.classList.remove("drawing"); draw(); }
    else if (ev.key === "Enter" && drawing) { ev.preventDefault(); finishDrawing(); }
    else if (ev.key.toLowerCase() === "a" && isAdmin) { ev.preventDefault(); startDrawing(); }
    else if (ev.key.toLowerCase() === "s" && isAdmin) { ev.preventDefault(); save(); }
  });

  let cameras = [];
  (async function init() {
    try {
      cameras = await api("/api/v1/cameras");
    } catch (e) {
      toast(t("error") + ": " + e.message, "error");
      return;
    }
    select.replaceChildren(...cameras.map((c) => h("option", { value: c.id, text: c.name + " (" + c.id + ")" })));
    const wanted = new URLSearchParams(location.search).get("camera");
    const first = cameras.find((c) => c.id === wanted) || cameras[0];
    if (first) { select.value = first.id; loadCamera(first.id); }
  })();
})();
