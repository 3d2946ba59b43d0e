/* Review queue: evidence large, facts beside it, decisions by keyboard, new cases live over SSE. */
"use strict";

(function () {
  const QUEUE = ["detected", "pending_review", "reopened"];
  const REJECT_REASONS = ["reject.not_problem", "reject.compliant", "reject.unclear", "reject.wrong_place", "reject.other"];
  const params = new URLSearchParams(location.search);
  const cameraFilter = params.get("camera");

  const els = {
    list: document.getElementById("queue-list"),
    count: document.getElementById("queue-count"),
    empty: document.getElementById("queue-empty"),
    live: document.getElementById("live"),
    img: document.getElementById("evidence"),
    clip: document.getElementById("clip"),
    noimage: document.getElementById("noimage"),
    info: document.getElementById("info"),
    actions: document.getElementById("actions"),
    picker: document.getElementById("picker"),
    pickerTitle: document.getElementById("picker-title"),
    pickerList: document.getElementById("picker-list"),
    pickerText: document.getElementById("picker-text"),
    boxLayer: document.getElementById("boxlayer"),
    boxRect: document.getElementById("boxrect"),
  };

  let items = [];          // queue, newest first (the API's order; new arrivals go on top)
  let currentId = null;    // selected case id
  let detail = null;       // its detail (with history)
  let detailSeq = 0;       // bumped by every detail asked for or received: an older answer arriving late is dropped
  let showingClip = false;
  let picker = null;       // {kind, options:[{label, value}], choose(value, text)}
  let busy = false;
  let drawing = null;      // box being drawn: {start:[x,y], box:[x1,y1,x2,y2] | null} in 0…1 of the picture

  const lastOf = (ev, kind) => [...(ev || [])].reverse().find((e) => e.kind === kind);

  // -- queue list -----------------------------------------------------------------------------

  function renderList() {
    els.list.replaceChildren(...items.map((c) => {
      const cat = category(c.category.value);
      const thumb = lastOf(c.evidence, "crop") || lastOf(c.evidence, "frame");
      return h("li", {
        class: "qitem" + (c.case_id === currentId ? " current" : "") + (c.isNew ? " new" : ""),
        dataset: { id: c.case_id }, onclick: () => select(c.case_id),
      },
      thumb ? h("img", { src: thumb.url, alt: "", loading: "lazy" }) : h("span", { class: "thumb-empty" }),
      h("div", { class: "qtext" },
        h("div", { class: "qcat" }, h("span", { class: "dot", "data-color": cat.color }), cat.label,
          c.isNew ? h("span", { class: "tag-new", text: t("queue.new") }) : null),
        h("div", { class: "qmeta", text: c.camera_name }),
        h("div", { class: "qmeta", text: fmtShort(c.opened_at) + (c.location.district ? " · " + c.location.district : "") }),
      ));
    }));
    for (const dot of els.list.querySelectorAll(".dot")) dot.style.background = dot.dataset.color;
    els.count.textContent = String(items.length);
    els.empty.hidden = items.length > 0;
    const cur = els.list.querySelector(".current");
    if (cur) cur.scrollIntoView({ block: "nearest" });
  }

  function indexOf(id) { return items.findIndex((c) => c.case_id === id); }

  async function select(id) {
    currentId = id;
    showingClip = false;
    drawing = null;
    const summary = items[indexOf(id)];
    if (summary) { summary.isNew = false; renderCase(summary, null); }
    renderList();
    if (!id) return;
    try {
      await loadDetail(id);
    } catch (e) {
      if (e.status === 404) { removeItem(id); } else { toast(t("error") + ": " + e.message, "error"); }
    }
    preloadNext();
  }

  // The case's detail (history and activity) for the panel. Answers can arrive out of order: one
  // asked for before a decision may come after the decision's own answer, and must not put the
  // history from before it back on the panel.
  async function loadDetail(id) {
    const seq = ++detailSeq;
    const d = await api("/api/v1/cases/" + encodeURIComponent(id));
    if (seq === detailSeq && currentId === id) { detail = d; renderCase(d, d); }
  }

  function preloadNext() {
    const i = indexOf(currentId);
    const next = items[i + 1];
    const frame = next && lastOf(next.evidence, "frame");
    if (frame) { const img = new Image(); img.src = frame.url; }
  }

  function removeItem(id) {
    const i = indexOf(id);
    if (i < 0) return;
    items.splice(i, 1);
    if (currentId === id) {
      const next = items[Math.min(i, items.length - 1)];
      select(next ? next.case_id : null);
    } else {
      renderList();
    }
  }

  // -- the case -------------------------------------------------------------------------------

  function renderCase(c, d) {
    if (!c) {
      els.img.hidden = true; els.clip.hidden = true; els.noimage.hidden = true;
      els.info.replaceChildren(h("p", { class: "muted", text: t("queue.empty") }));
      return;
    }
    const frame = lastOf(c.evidence, "frame");
    const clip = lastOf(c.evidence, "clip");
    const crop = lastOf(c.evidence, "crop");
    document.getElementById("clip-btn").disabled = !clip;
    if (showingClip && clip) {
      els.img.hidden = true; els.noimage.hidden = true; els.clip.hidden = false;
      if (els.clip.dataset.src !== clip.url) { els.clip.src = clip.url; els.clip.dataset.src = clip.url; }
      els.clip.play().catch(() => {});
    } else {
      els.clip.pause(); els.clip.hidden = true;
      els.img.hidden = !frame; els.noimage.hidden = !!frame;
      if (frame && els.img.getAttribute("src") !== frame.url) els.img.src = frame.url;
      els.img.alt = c.category.zh + " " + c.case_id;
    }
    placeBoxLayer();
    const cat = category(c.category.value);
    const loc = c.location;
    const rows = [
      [t("case.category"), h("span", { class: "cat-chip", "data-color": cat.color, text: cat.label })],
      [t("case.code"), (c.category.code || "–") + " " + (c.category.code_name || "")],
      [t("case.time"), fmtTime(c.opened_at)],
      [t("case.lastseen"), fmtTime(c.last_seen_at)],
      [t("case.camera"), c.camera_name],
      [t("case.place"), [loc.address, loc.district].filter(Boolean).join(" · ") || "–"],
      [t("case.grid"), loc.grid_code || "–"],
      [t("case.score"), c.score.toFixed(2)],
      [t("case.events"), String(c.events)],
      [t("case.status"), t("status." + c.status)],
    ];
    if (c.detail) rows.push([t("case.detail"), c.detail]);
    if (c.plate) rows.push([t("case.plate"), plateText(c.plate)]);
    if (d && d.model) rows.push([t("case.model"), d.model]); // which model version made the case
    const info = [
      h("h2", { class: "case-title" }, cat.label),
      h("p", { class: "case-id muted", text: c.case_id }),
      h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)])),
    ];
    if (c.category.value === "billboard" && QUEUE.includes(c.status)) info.push(signForm());
    if (crop) info.push(h("figure", { class: "crop" }, h("img", { src: crop.url, alt: t("case.crop") }), h("figcaption", { text: t("case.crop") })));
    if (d) info.push(h("h3", { text: t("case.history") }), historyList(d));
    const typing = document.activeElement && document.activeElement.closest("#sign-form") ? document.activeElement.id : null;
    els.info.replaceChildren(...info);
    if (typing && document.getElementById(typing)) document.getElementById(typing).focus(); // a live update does not take the form away
    for (const chip of els.info.querySelectorAll(".cat-chip")) chip.style.borderColor = chip.dataset.color;
  }

  // Approve this sign: the case becomes an entry of the camera's ads register (permit, last day, look).
  // What is typed survives the panel being drawn again (the case's detail arriving, a live update).
  let signDraft = { id: null, permit: "", until: "" };
  function signForm() {
    if (signDraft.id !== currentId) signDraft = { id: currentId, permit: "", until: "" };
    const draft = signDraft;
    const permit = h("input", { id: "sign-permit", name: "permit", required: true, maxlength: "64", autocomplete: "off",
      oninput: () => { draft.permit = permit.value; } });
    const until = h("input", { id: "sign-until", name: "valid_until", type: "date", required: true,
      oninput: () => { draft.until = until.value; }, onchange: () => { draft.until = until.value; } });
    permit.value = draft.permit;
    until.value = draft.until;
    return h("form", { id: "sign-form", class: "sign-form", onsubmit: (ev) => {
      ev.preventDefault();
      decide("approve-sign", { permit: permit.value.trim(), valid_until: until.value }, "done.approve_sign");
    } },
    h("h3", { text: t("sign.title") }),
    h("label", {}, t("sign.permit") + " ", permit),
    h("label", {}, t("sign.until") + " ", until),
    h("button", { type: "submit", text: t("sign.submit") }),
    h("p", { class: "muted", text: t("sign.help") }));
  }

  // A plate is shown only when read for certain; an unread one says so and why, never a guess.
  function plateText(p) {
    if (p.status === "read") return h("span", { class: "plate", text: p.text, title: p.score.toFixed(2) });
    return h("span", { class: "plate-unread muted", text: t("case.plate_unread") + (p.note ? " · " + p.note : "") });
  }

  function historyList(d) {
    const rows = d.history.map((x) => ({ at: x.at, text: (x.from_status ? t("status." + x.from_status) + " → " : "") + t("status." + x.to_status), who: x.actor, why: x.reason }));
    for (const a of d.activity) {
      if (a.action === "confirm" || a.action === "reject") continue; // already a status change above
      const to = a.action === "reclassify" && a.detail && a.detail.to ? ": " + category(a.detail.to).label : "";
      rows.push({ at: a.at, text: t("act." + a.action) + to, who: a.actor, why: a.reason });
    }
    rows.sort((a, b) => a.at.localeCompare(b.at));
    return h("ol", { class: "history" }, rows.map((r) => h("li", {},
      h("span", { class: "when", text: fmtShort(r.at) }), " ", r.text, " ", h("span", { class: "muted", text: r.who }),
      r.why ? h("div", { class: "why", text: r.why }) : null)));
  }

  // -- the reviewer's box on the evidence picture ---------------------------------------------

  // The picture is scaled to fit (object-fit: contain): the layer covers exactly its drawn area.
  function placeBoxLayer() {
    const img = els.img;
    const shown = !img.hidden && img.naturalWidth > 0;
    const reviewed = detail && detail.case_id === currentId ? detail.reviewed_box : null;
    els.boxLayer.hidden = !shown || (!drawing && !reviewed);
    if (els.boxLayer.hidden) return;
    const scale = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
    const w = img.naturalWidth * scale, hgt = img.naturalHeight * scale;
    Object.assign(els.boxLayer.style, {
      left: img.offsetLeft + (img.clientWidth - w) / 2 + "px", top: img.offsetTop + (img.clientHeight - hgt) / 2 + "px",
      width: w + "px", height: hgt + "px",
    });
    els.boxLayer.classList.toggle("drawing", !!drawing);
    const box = drawing ? drawing.box : reviewed;
    els.boxRect.hidden = !box;
    if (box) {
      Object.assign(els.boxRect.style, {
        left: box[0] * 100 + "%", top: box[1] * 100 + "%", width: (box[2] - box[0]) * 100 + "%", height: (box[3] - box[1]) * 100 + "%",
      });
      els.boxRect.title = drawing ? "" : t("box.reviewed");
    }
  }

  function pointAt(ev) {
    const r = els.boxLayer.getBoundingClientRect();
    return [Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height))];
  }

  els.boxLayer.addEventListener("pointerdown", (ev) => {
    if (!drawing) return;
    ev.preventDefault();
    els.boxLayer.setPointerCapture(ev.pointerId);
    drawing.start = pointAt(ev);
    drawing.box = null;
  });
  els.boxLayer.addEventListener("pointermove", (ev) => {
    if (!drawing || !drawing.start) return;
    const [x, y] = pointAt(ev), [sx, sy] = drawing.start;
    drawing.box = [Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)];
    placeBoxLayer();
  });
  els.boxLayer.addEventListener("pointerup", () => { if (drawing) drawing.start = null; });
  els.img.addEventListener("load", placeBoxLayer);
  window.addEventListener("resize", placeBoxLayer);

  function startBox() {
    // the list's copy of the case has its evidence too: B works while the details are still loading
    const cur = detail && detail.case_id === currentId ? detail : items[indexOf(currentId)];
    const shown = cur ? lastOf(cur.evidence, "frame") : null;
    if (!shown || showingClip || els.img.hidden || !els.img.naturalWidth) { toast(t("box.noframe")); return; }
    drawing = { start: null, box: null, evidence: shown.id };
    placeBoxLayer();
    toast(t("box.hint"));
  }

  function endBox(save) {
    const box = drawing && drawing.box;
    const evidence = drawing && drawing.evidence;
    drawing = null;
    placeBoxLayer();
    if (save && box && box[2] - box[0] > 0.005 && box[3] - box[1] > 0.005) {
      decide("box", { box: box.map((v) => Math.round(v * 10000) / 10000), evidence_id: evidence }, "done.box");
    }
  }

  // -- decisions ------------------------------------------------------------------------------

  async function decide(action, body, doneKey) {
    if (!currentId || busy) return;
    const id = currentId;
    busy = true;
    try {
      const d = await api("/api/v1/cases/" + encodeURIComponent(id) + "/" + action, { method: "POST", body });
      detailSeq++; // newer than any detail asked for before
      toast(t(doneKey) + " · " + id, "ok");
      if (!QUEUE.includes(d.status)) {
        removeItem(id);
      } else {
        const i = indexOf(id);
        if (i >= 0) items[i] = d;
        if (currentId === id) { detail = d; renderCase(d, d); }
        renderList();
      }
    } catch (e) {
      toast(t("error") + ": " + e.message, "error");
    } finally {
      busy = false;
    }
  }

  function move(step) {
    if (!items.length) return;
    const i = indexOf(currentId);
    const j = Math.max(0, Math.min(items.length - 1, (i < 0 ? 0 : i + step)));
    select(items[j].case_id);
  }

  function openPicker(kind, title, options, choose, { text = false } = {}) {
    picker = { kind, options, choose, text };
    els.pickerTitle.textContent = title;
    els.pickerList.replaceChildren(...options.map((o, i) => h("li", { class: "popt", onclick: () => pick(i) }, h("kbd", { text: String(i + 1) }), " ", o.label)));
    els.pickerText.hidden = !text;
    els.pickerText.value = "";
    els.picker.hidden = false;
    if (text && !options.length) els.pickerText.focus();
  }

  function closePicker() { picker = null; els.picker.hidden = true; }

  function pick(i) {
    const p = picker;
    if (!p || i < 0 || i >= p.options.length) return;
    const opt = p.options[i];
    if (opt.needsText) { // "other": type the reason, Enter sends it
      p.pending = opt;
      els.pickerText.hidden = false;
      els.pickerText.focus();
      return;
    }
    closePicker();
    p.choose(opt.value, "");
  }

  function submitPickerText() {
    const p = picker;
    const text = els.pickerText.value.trim();
    if (!p || !text) return;
    closePicker();
    p.choose(p.pending ? p.pending.value : null, text);
  }

  const actions = {
    confirm: () => decide("confirm", {}, "done.confirm"),
    reject: () => openPicker("reject", t("reject.title"),
      REJECT_REASONS.map((k) => ({ label: t(k), value: t(k), needsText: k === "reject.other" })),
      (value, text) => decide("reject", { reason: text ? (value + ": " + text) : value }, "done.reject")),
    reclassify: () => {
      const cur = items[indexOf(currentId)];
      const options = BOOT.categories.filter((c) => !cur || c.value !== cur.category.value)
        .map((c) => ({ label: category(c.value).label, value: c.value }));
      openPicker("reclassify", t("reclassify.title"), options,
        (value) => decide("reclassify", { category: value }, "done.reclassify"));
    },
    merge: () => {
      const cur = items[indexOf(currentId)];
      if (!cur) return;
      const options = items.filter((c) => c.case_id !== cur.case_id && c.camera_id === cur.camera_id).slice(0, 9)
        .map((c) => ({ label: category(c.category.value).label + " · " + fmtShort(c.opened_at) + " · " + c.case_id, value: c.case_id }));
      if (!options.length) { toast(t("merge.none")); return; }
      openPicker("merge", t("merge.title"), options, (value) => decide("merge", { into: value }, "done.merge"));
    },
    note: () => openPicker("note", t("note.title"), [], (_, text) => decide("notes", { text }, "done.note"), { text: true }),
    box: () => startBox(),
    clip: () => {
      const cur = detail && detail.case_id === currentId ? detail : items[indexOf(currentId)];
      if (!cur || !lastOf(cur.evidence, "clip")) return;
      showingClip = !showingClip;
      renderCase(cur, detail && detail.case_id === currentId ? detail : null);
    },
    next: () => move(1),
    prev: () => move(-1),
  };

  els.actions.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-act]");
    if (b) { b.blur(); actions[b.dataset.act](); } // blur: Enter must not click the button again
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (picker) {
      if (ev.key === "Escape") { ev.preventDefault(); closePicker(); return; }
      if (ev.target === els.pickerText) {
        if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); submitPickerText(); }
        return;
      }
      if (/^[1-9]$/.test(ev.key)) { ev.preventDefault(); pick(Number(ev.key) - 1); }
      return;
    }
    if (drawing) { // drawing a box: Enter saves it, Esc leaves it
      if (ev.key === "Enter" || ev.key === "Escape") { ev.preventDefault(); endBox(ev.key === "Enter"); }
      return;
    }
    if (isTyping(ev)) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    const map = {
      y: "confirm", Enter: "confirm", n: "reject", c: "reclassify", m: "merge", o: "note", v: "clip", b: "box",
      j: "next", ArrowDown: "next", ArrowRight: "next", k: "prev", ArrowUp: "prev", ArrowLeft: "prev",
    };
    if (key === "?") { ev.preventDefault(); toast(t("help.keys")); return; }
    const act = map[key];
    if (act) { ev.preventDefault(); actions[act](); }
  });

  // -- live updates ---------------------------------------------------------------------------

  function onCase(c) {
    if (cameraFilter && c.camera_id !== cameraFilter) return;
    const i = indexOf(c.case_id);
    if (QUEUE.includes(c.status)) {
      if (i < 0) {
        c.isNew = true;
        items.unshift(c);
        toast(t("queue.newcase") + ": " + category(c.category.value).label + " · " + c.camera_name, "new");
        if (!currentId) { select(c.case_id); return; }
      } else {
        c.isNew = items[i].isNew;
        items[i] = c;
        if (c.case_id === currentId) {
          renderCase(c, detail && detail.case_id === c.case_id ? detail : null);
          if (!busy) loadDetail(c.case_id).catch(() => {}); // the history too: the event carries only the case
        }
      }
      renderList();
    } else if (i >= 0 && !busy) {
      removeItem(c.case_id);
    }
  }

  function connect(since) {
    const es = new EventSource("/api/v1/events?since=" + encodeURIComponent(since));
    es.addEventListener("open", () => { els.live.classList.remove("off"); els.live.title = ""; });
    es.addEventListener("error", () => { els.live.classList.add("off"); els.live.title = t("queue.offline"); });
    es.addEventListener("case", (ev) => { try { onCase(JSON.parse(ev.data)); } catch (e) { /* a malformed event is skipped */ } });
  }

  async function load() {
    const since = new Date(Date.now() - 5000).toISOString();
    let url = "/api/v1/cases?queue=true&limit=500";
    if (cameraFilter) url += "&camera=" + encodeURIComponent(cameraFilter);
    try {
      const page = await api(url);
      items = page.items;
    } catch (e) {
      toast(t("error") + ": " + e.message, "error");
    }
    renderList();
    await select(items.length ? items[0].case_id : null);
    connect(since);
  }

  load();
})();
