/* citypatrol review center: helpers shared by every page (no libraries, nothing from other origins). */
"use strict";

const BOOT = JSON.parse(document.getElementById("boot").textContent);

function t(key) {
  return Object.prototype.hasOwnProperty.call(BOOT.t, key) ? BOOT.t[key] : key;
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** JSON over the REST API; changes carry the CSRF token; a lost session goes back to sign-in. */
async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = cookie("cp_csrf");
  const res = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401 && !path.startsWith("/api/v1/auth/login")) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new ApiError(401, "signed out");
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    let detail = data && data.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    throw new ApiError(res.status, detail || res.statusText);
  }
  return data;
}

/** h("div", {class: "x", text: "y", onclick: fn}, child, ...) */
function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "g", "rect", "line", "text", "path", "polyline", "circle", "title"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k === "class") el.setAttribute("class", v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const LOCALE = BOOT.lang === "en" ? "en-CA" : "zh-CN"; // en-CA: 2026-11-25, 17:11 (year first, 24 h)
const TIME_FMT = new Intl.DateTimeFormat(LOCALE, {
  timeZone: BOOT.timezone, year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const SHORT_FMT = new Intl.DateTimeFormat(LOCALE, {
  timeZone: BOOT.timezone, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
});

function fmtTime(iso) { return iso ? TIME_FMT.format(new Date(iso)) : "–"; }
function fmtShort(iso) { return iso ? SHORT_FMT.format(new Date(iso)) : "–"; }

function category(value) {
  const c = BOOT.categories.find((x) => x.value === value);
  if (!c) return { value, label: value, color: "#546e7a" };
  return { value, label: BOOT.lang === "en" ? c.en : c.zh, color: c.color };
}

let toastTimer = null;
function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = "toast " + kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 6000 : 2500);
}

function initHeader() {
  const lang = document.getElementById("lang-switch");
  if (lang) {
    lang.addEventListener("click", () => {
      document.cookie = "cp_lang=" + lang.dataset.lang + "; path=/; max-age=31536000; SameSite=Strict";
      location.reload();
    });
  }
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      try { await api("/api/v1/auth/logout", { method: "POST" }); } finally { location.href = "/login"; }
    });
  }
}

function isTyping(ev) {
  const tag = (ev.target && ev.target.tagName) || "";
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
}

initHeader();
