/* Statistics: three small SVG charts drawn here (no chart library). */
"use strict";

(function () {
  const range = document.getElementById("range");
  const W = 880;

  function svg(width, height, ...children) {
    return h("svg", { viewBox: "0 0 " + width + " " + height, width: "100%", class: "chart-svg", role: "img" }, ...children);
  }

  function none() { return h("p", { class: "muted", text: t("stats.none") }); }

  function legend(cats) {
    document.getElementById("legend").replaceChildren(...cats.map((c) => {
      const cat = category(c);
      return h("span", { class: "legend-item" }, h("svg", { width: 12, height: 12 }, h("rect", { width: 12, height: 12, rx: 2, fill: cat.color })), " " + cat.label);
    }));
  }

  function perDay(days, cats) {
    if (!days.length) return none();
    const H = 270, left = 40, bottom = 40, top = 22;
    const max = Math.max(1, ...days.map((d) => Object.values(d.counts).reduce((a, b) => a + b, 0)));
    const step = (W - left - 10) / days.length;
    const bw = Math.max(2, Math.min(40, step * 0.7));
    const y = (v) => top + (H - top - bottom) * (1 - v / max);
    const ticks = [0, Math.ceil(max / 2), max];
    const parts = ticks.map((v) => h("g", {},
      h("line", { x1: left, x2: W - 10, y1: y(v), y2: y(v), class: "grid" }),
      h("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis", text: String(v) })));
    const every = Math.ceil(days.length / 12);
    days.forEach((d, i) => {
      let acc = 0;
      const x = left + i * step + (step - bw) / 2;
      for (const c of cats) {
        const n = d.counts[c] || 0;
        if (!n) continue;
        parts.push(h("rect", { x, y: y(acc + n), width: bw, height: y(acc) - y(acc + n), fill: category(c).color },
          h("title", { text: d.day + " " + category(c).label + ": " + n })));
        acc += n;
      }
      if (acc) parts.push(h("text", { x: x + bw / 2, y: y(acc) - 4, "text-anchor": "middle", class: "value", text: String(acc) }));
      if (i % every === 0) parts.push(h("text", { x: x + bw / 2, y: H - bottom + 16, "text-anchor": "middle", class: "axis", text: d.day.slice(5) }));
    });
    return svg(W, H, ...parts);
  }

  function hbars(rows, { max, format, sub }) {
    if (!rows.length) return none();
    const rowH = 30, left = 175, right = 150, H = rows.length * rowH + 10;
    const width = 520;
    const x = (v) => left + (width - left - right) * (max ? v / max : 0);
    const parts = [];
    rows.forEach((r, i) => {
      const yy = 5 + i * rowH;
      const cat = category(r.category);
      parts.push(h("text", { x: left - 8, y: yy + 18, "text-anchor": "end", class: "label", text: cat.label }));
      parts.push(h("rect", { x: left, y: yy + 5, width: Math.max(1, x(r.value) - left), height: 18, rx: 3, fill: cat.color }));
      if (sub !== undefined && r.sub !== undefined) {
        parts.push(h("line", { x1: x(r.sub), x2: x(r.sub), y1: yy + 2, y2: yy + 26, class: "marker" }));
      }
      parts.push(h("text", { x: x(Math.max(r.value, r.sub || 0)) + 6, y: yy + 18, class: "value", text: format(r) }));
    });
    return svg(width, H, ...parts);
  }

  function hours(hh) { // 0.4 h -> "24 min", 30 h -> "30.0 h", 300 h -> "12.5 d"
    if (hh < 1) return Math.round(hh * 60) + " min";
    if (hh < 48) return hh.toFixed(1) + " h";
    return (hh / 24).toFixed(1) + " d";
  }

  function durations(map) {
    const rows = Object.entries(map).map(([c, d]) => ({ category: c, value: d.median_h, sub: d.p90_h, n: d.count }));
    const max = Math.max(0.001, ...rows.map((r) => r.sub));
    return hbars(rows, { max, sub: true, format: (r) => hours(r.value) + " / " + hours(r.sub) + " (" + r.n + ")" });
  }

  async function load() {
    let q = "";
    if (range.value !== "all") {
      const since = new Date(Date.now() - Number(range.value) * 86400000);
      q = "?since=" + encodeURIComponent(since.toISOString());
    }
    let s;
    try {
      s = await api("/api/v1/stats" + q);
    } catch (e) {
      toast(t("error") + ": " + e.message, "error");
      return;
    }
    document.getElementById("total").textContent = t("stats.total") + " " + s.total;
    const cats = BOOT.categories.map((c) => c.value).filter((c) => s.per_category[c]);
    for (const c of Object.keys(s.per_category)) if (!cats.includes(c)) cats.push(c);
    legend(cats);
    document.getElementById("chart-days").replaceChildren(perDay(s.per_day, cats));
    const prec = Object.entries(s.precision).filter(([, p]) => p.judged > 0)
      .map(([c, p]) => ({ category: c, value: p.precision, confirmed: p.confirmed, judged: p.judged }));
    document.getElementById("chart-precision").replaceChildren(
      hbars(prec, { max: 1, format: (r) => Math.round(r.value * 100) + "% (" + r.confirmed + "/" + r.judged + ")" }));
    document.getElementById("chart-close").replaceChildren(durations(s.time_to_close));
    document.getElementById("chart-decide").replaceChildren(durations(s.time_to_decision));
  }

  range.addEventListener("change", load);
  load();
})();
