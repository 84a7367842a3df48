// Webhook Relay dashboard. Plain JavaScript, no build step, no external resources.
// Every action calls the admin API (docs/reference/http-api.md §5), the same one the CLI uses.
// The admin token lives in sessionStorage only (this tab) and travels in the Authorization
// header, never in a URL. Everything the relay returns is shown with textContent, never parsed
// as HTML (webhook bodies and headers come from outside senders).
"use strict";

const API = "/admin/webhook-connect";
const TOKEN_KEY = "webhook-relay-admin-token";
const POLL_MS = 2000;

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

let pollTimer = null;
let routeSerial = 0;
const rateSamples = new Map(); // channel -> {t, delivered, dead}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token(), Accept: "application/json" };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, "relay unreachable");
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = { detail: text }; }
  }
  if (res.status === 401 || res.status === 403) {
    signOut("The admin token was refused.");
    throw new ApiError(res.status, "not signed in");
  }
  if (!res.ok) {
    const detail = data && (data.detail || data.error || data.message);
    throw new ApiError(res.status, detail ? String(detail) : "HTTP " + res.status);
  }
  return data;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function td(value, cls) {
  return el("td", { class: cls, text: value === null || value === undefined ? "–" : String(value) });
}

function setText(root, key, value) {
  const node = $(`[data-k="${key}"]`, root);
  if (node) node.textContent = value === null || value === undefined ? "–" : String(value);
}

function status(message, isError) {
  const s = $("#status");
  s.textContent = message || "";
  s.classList.toggle("error", !!isError);
}

function live(ok) {
  const l = $("#live");
  l.hidden = false;
  l.textContent = ok ? "live" : "reconnecting…";
  l.classList.toggle("stale", !ok);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function when(ts) {
  if (!ts) return "–";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleString();
}

function rate(channel, delivered, dead) {
  const now = Date.now();
  const prev = rateSamples.get(channel);
  rateSamples.set(channel, { t: now, delivered, dead });
  if (!prev || now - prev.t < 500) return ["…", "…"];
  const dt = (now - prev.t) / 1000;
  const f = (a, b) => Math.max(0, (a - b) / dt).toFixed(1);
  return [f(delivered, prev.delivered), f(dead, prev.dead)];
}

function mount(templateId) {
  const view = $("#view");
  view.replaceChildren($("#" + templateId).content.cloneNode(true));
  view.hidden = false;
  return view;
}

function poll(fn, every = POLL_MS) {
  const serial = routeSerial;
  const tick = async () => {
    if (serial !== routeSerial) return;
    try {
      await fn();
      live(true);
    } catch (e) {
      if (e.status !== 401 && e.status !== 403) live(false);
    }
    if (serial === routeSerial) pollTimer = setTimeout(tick, every);
  };
  tick();
}

function errorText(e) {
  return e instanceof ApiError ? e.message : String(e);
}

// ---------------------------------------------------------------- sign-in

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopPolling();
  $("#view").hidden = true;
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#live").hidden = true;
  $("#signin-view").hidden = false;
  $("#signin-error").textContent = message || "";
  $("#token").value = "";
  $("#token").focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const value = $("#token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    await api("GET", "/overview");
  } catch (e) {
    if (e.status !== 401 && e.status !== 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("#signin-error").textContent = "Sign-in failed: " + errorText(e);
    }
    return;
  }
  $("#token").value = "";
  $("#signin-error").textContent = "";
  route();
}

// ---------------------------------------------------------------- views

async function channelNames() {
  const list = await api("GET", "/channels");
  return list.map((c) => c.name);
}

function showOverview() {
  const view = mount("tpl-overview");
  const body = $("#channels tbody", view);
  poll(async () => {
    const overview = await api("GET", "/overview");
    setText(view, "buffer", overview.health && overview.health.buffer ? "reachable" : "UNREACHABLE");
    setText(view, "connections", overview.total_connections);
    setText(view, "updated", new Date().toLocaleTimeString());
    const names = Object.keys(overview.channels || {}).sort();
    const stats = await Promise.all(
      names.map((n) => api("GET", "/channels/" + enc(n) + "/stats").catch(() => null))
    );
    const rows = names.map((name, i) => {
      const s = stats[i] || {};
      const c = overview.channels[name];
      const [dRate, xRate] = rate(name, s.messages_delivered || 0, s.messages_dead_lettered || 0);
      return el("tr", { "data-channel": name },
        el("td", {}, el("a", { href: "#/channel/" + enc(name), text: name })),
        td(s.messages_queued ?? c.messages_queued, "num queued"),
        td(s.messages_in_flight, "num in-flight"),
        td(age(s.oldest_queued_age_seconds), "num oldest"),
        td(dRate, "num delivered-rate"),
        td(xRate, "num dead-rate"),
        el("td", { class: "num dead-letters" },
          el("a", { href: "#/channel/" + enc(name) + "/dead-letters", text: String(s.dead_letters_queued ?? "–") })),
        td(c.connected_clients, "num connectors"),
        td(c.paused ? "paused" : "active", "state"));
    });
    body.replaceChildren(...rows);
    if (!rows.length) body.append(el("tr", {}, el("td", { colSpan: 9, text: "No channels." })));
  });
}

function connectionRow(channel, c, withChannel) {
  const disconnect = el("button", {
    type: "button", class: "disconnect", text: "Disconnect",
    onclick: async () => {
      if (!confirm("Disconnect " + c.connection_id + "?")) return;
      try {
        await api("DELETE", "/channels/" + enc(channel) + "/connections/" + enc(c.connection_id));
        status("Disconnected " + c.connection_id + ".");
      } catch (e) {
        status("Disconnect failed: " + errorText(e), true);
      }
    },
  });
  return el("tr", { "data-connection": c.connection_id },
    td(c.connection_id),
    td(c.connector_id),
    withChannel ? el("td", {}, el("a", { href: "#/channel/" + enc(channel), text: channel })) : null,
    td(c.protocol),
    td("v" + c.protocol_version),
    td(c.remote_ip),
    td(when(c.connected_at)),
    td(c.in_flight_count, "num"),
    el("td", {}, disconnect));
}

function showConnectors() {
  const view = mount("tpl-connectors");
  const body = $("#connectors tbody", view);
  poll(async () => {
    const names = await channelNames();
    const details = await Promise.all(
      names.map((n) => api("GET", "/channels/" + enc(n)).catch(() => null))
    );
    const rows = [];
    details.forEach((d, i) => {
      for (const c of (d && d.connected_clients) || []) rows.push(connectionRow(names[i], c, true));
    });
    body.replaceChildren(...rows);
    if (!rows.length) body.append(el("tr", {}, el("td", { colSpan: 9, text: "No connector is connected." })));
  });
}

function fillGrid(dl, entries) {
  dl.replaceChildren(...entries.flatMap(([k, v]) => [
    el("dt", { text: k }),
    el("dd", { text: v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v) }),
  ]));
}

function showChannel(name) {
  const view = mount("tpl-channel");
  setText(view, "name", name);
  $("#dead-letters-link", view).href = "#/channel/" + enc(name) + "/dead-letters";
  const act = (label, path, body) => async () => {
    try {
      await api("POST", "/channels/" + enc(name) + path, body);
      status(label + " done.");
    } catch (e) {
      status(label + " failed: " + errorText(e), true);
    }
  };
  $("#pause", view).addEventListener("click", act("Pause", "/pause"));
  $("#resume", view).addEventListener("click", act("Resume", "/resume"));
  $("#rotate", view).addEventListener("click", async () => {
    if (!confirm("Rotate the token of " + name + "? Connectors need the new token; the old one stays valid for an hour.")) return;
    try {
      const r = await api("POST", "/channels/" + enc(name) + "/rotate-token", { grace_period_seconds: 3600 });
      $("#new-token-value", view).textContent = r.new_token;
      $("#new-token-grace", view).textContent = when(r.old_token_expires_at);
      $("#new-token", view).hidden = false;
    } catch (e) {
      status("Rotation failed: " + errorText(e), true);
    }
  });
  $("#new-token-done", view).addEventListener("click", () => {
    // The token is shown once: forget it from the page.
    $("#new-token-value", view).textContent = "";
    $("#new-token", view).hidden = true;
  });
  poll(async () => {
    const d = await api("GET", "/channels/" + enc(name));
    const s = d.stats || {};
    const badge = $('[data-k="paused-badge"]', view);
    badge.textContent = d.config.paused ? "paused" : "active";
    badge.classList.toggle("paused", !!d.config.paused);
    $("#pause", view).disabled = !!d.config.paused;
    $("#resume", view).disabled = !d.config.paused;
    const [dRate, xRate] = rate(name, s.messages_delivered || 0, s.messages_dead_lettered || 0);
    fillGrid($("#channel-stats", view), [
      ["Queued", s.messages_queued],
      ["In flight", s.messages_in_flight],
      ["Oldest queued", age(s.oldest_queued_age_seconds)],
      ["Delivered", s.messages_delivered],
      ["Delivered/s", dRate],
      ["Dead-lettered", s.messages_dead_lettered],
      ["Dead-lettered/s", xRate],
      ["Dead letters now", s.dead_letters_queued],
      ["Expired", s.messages_expired],
      ["Per webhook (queued)", s.webhook_stats],
    ]);
    fillGrid($("#channel-settings", view), Object.entries(d.config || {}));
    const rows = (d.connected_clients || []).map((c) => connectionRow(name, c, false));
    const body = $("#channel-connections tbody", view);
    body.replaceChildren(...rows);
    if (!rows.length) body.append(el("tr", {}, el("td", { colSpan: 8, text: "No connector is connected." })));
  });
}

function showDeadLetters(name) {
  const view = mount("tpl-dead-letters");
  setText(view, "channel", name);
  $('[data-k="channel-link"]', view).href = "#/channel/" + enc(name);
  const body = $("#dead-letters tbody", view);
  const progress = $("#dl-progress", view);
  let cursors = [null]; // cursor of each page shown so far
  let next = null;

  const filter = () => ({
    webhook_id: $("#dl-webhook", view).value || undefined,
    reason: $("#dl-reason", view).value || undefined,
  });
  const query = (extra) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...filter(), ...extra })) if (v !== undefined && v !== null) q.set(k, v);
    return q.toString();
  };
  const selected = () => $$("input.pick:checked", body).map((i) => i.value);

  const replayOne = async (id) => {
    await api("POST", "/channels/" + enc(name) + "/dead-letters/" + enc(id) + "/replay");
  };

  const showDetail = async (id) => {
    try {
      const d = await api("GET", "/channels/" + enc(name) + "/dead-letters/" + enc(id));
      setText(view, "detail-id", id);
      $("#dl-headers", view).textContent = JSON.stringify(d.headers, null, 2);
      let text = "";
      if (d.body !== undefined) {
        try {
          const bytes = Uint8Array.from(atob(d.body), (ch) => ch.charCodeAt(0));
          text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
        } catch (e) {
          text = d.body;
        }
      } else {
        text = JSON.stringify(d.payload, null, 2);
      }
      $("#dl-body", view).textContent = text;
      $("#dl-detail", view).hidden = false;
    } catch (e) {
      status("Could not load " + id + ": " + errorText(e), true);
    }
  };

  const load = async () => {
    const page = await api("GET", "/channels/" + enc(name) + "/dead-letters?" +
      query({ limit: $("#dl-limit", view).value, cursor: cursors[cursors.length - 1] || undefined }));
    next = page.next_cursor;
    $("#dl-next", view).disabled = !next;
    $("#dl-first", view).disabled = cursors.length === 1;
    setText(view, "total", page.total);
    const rows = page.messages.map((m) => el("tr", { "data-message-id": m.message_id },
      el("td", {}, el("input", { type: "checkbox", class: "pick", value: m.message_id })),
      el("td", {}, el("a", { href: "#/messages/" + enc(m.message_id), text: m.message_id })),
      td(m.webhook_id),
      td(m.dead_letter_reason),
      td(when(m.dead_lettered_at)),
      td(m.delivery_count, "num"),
      td(m.last_error),
      el("td", {},
        el("button", { type: "button", class: "show", text: "Show", onclick: () => showDetail(m.message_id) }),
        " ",
        el("button", {
          type: "button", class: "replay", text: "Replay",
          onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              await replayOne(m.message_id);
              status("Replayed " + m.message_id + ".");
              await load();
            } catch (e) {
              ev.target.disabled = false;
              status("Replay failed: " + errorText(e), true);
            }
          },
        }))));
    body.replaceChildren(...rows);
    if (!rows.length) body.append(el("tr", {}, el("td", { colSpan: 8, text: "No dead letters match." })));
    $("#dl-all", view).checked = false;
  };

  const fillWebhooks = async () => {
    try {
      const d = await api("GET", "/channels/" + enc(name));
      const select = $("#dl-webhook", view);
      for (const w of d.config.webhook_ids || []) select.append(el("option", { value: w, text: w }));
    } catch (e) { /* the filter stays at "all" */ }
  };

  $("#dl-filter", view).addEventListener("submit", (ev) => {
    ev.preventDefault();
    cursors = [null];
    load().catch((e) => status(errorText(e), true));
  });
  $("#dl-next", view).addEventListener("click", () => {
    if (!next) return;
    cursors.push(next);
    load().catch((e) => status(errorText(e), true));
  });
  $("#dl-first", view).addEventListener("click", () => {
    cursors = [null];
    load().catch((e) => status(errorText(e), true));
  });
  $("#dl-all", view).addEventListener("change", (ev) => {
    for (const i of $$("input.pick", body)) i.checked = ev.target.checked;
  });
  $("#replay-selected", view).addEventListener("click", async () => {
    const ids = selected();
    if (!ids.length) return status("Select dead letters first.", true);
    let done = 0, failed = 0;
    for (const id of ids) {
      try { await replayOne(id); done++; } catch (e) { failed++; }
      progress.textContent = `replaying ${done + failed}/${ids.length}` + (failed ? ` (${failed} failed)` : "");
    }
    status(`Replayed ${done} of ${ids.length}.`, failed > 0);
    await load();
  });
  $("#replay-all", view).addEventListener("click", async () => {
    if (!confirm("Replay every dead letter that matches the filter?")) return;
    let total = 0;
    const button = $("#replay-all", view);
    button.disabled = true;
    try {
      // The API replays up to `limit` per call and says how many remain.
      for (;;) {
        const r = await api("POST", "/channels/" + enc(name) + "/dead-letters/replay", { ...filter(), limit: 500 });
        total += r.replayed;
        progress.textContent = `replayed ${total}, ${r.remaining} remaining`;
        if (r.stopped) { status("Replay stopped: " + r.stopped, true); break; }
        if (!r.remaining || !r.replayed) break;
      }
      status(`Replayed ${total}.`);
    } catch (e) {
      status("Replay failed after " + total + ": " + errorText(e), true);
    } finally {
      button.disabled = false;
      cursors = [null];
      await load().catch(() => {});
    }
  });
  $("#purge", view).addEventListener("click", () => {
    const dialog = $("#purge-dialog", view);
    $("#purge-count", view).textContent = $('[data-k="total"]', view).textContent;
    $("#purge-channel", view).textContent = name;
    $("#purge-confirm", view).value = "";
    dialog.showModal();
  });
  $("#purge-dialog", view).addEventListener("close", async () => {
    const dialog = $("#purge-dialog", view);
    if (dialog.returnValue !== "purge") return;
    if ($("#purge-confirm", view).value !== name) return status("Purge cancelled: the name did not match.", true);
    try {
      const r = await api("DELETE", "/channels/" + enc(name) + "/dead-letters?" + query({}));
      status(`Purged ${r.purged}.`);
      cursors = [null];
      await load();
    } catch (e) {
      status("Purge failed: " + errorText(e), true);
    }
  });

  fillWebhooks();
  // Live: refresh the first page while nothing is selected (a refresh would drop a selection).
  poll(async () => {
    if (cursors.length === 1 && !selected().length) await load();
  }, 3000);
}

function showMessages(id) {
  const view = mount("tpl-messages");
  const form = $("#lookup-form", view);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("#lookup-id", view).value.trim();
    if (value) location.hash = "#/messages/" + enc(value);
  });
  if (!id) return;
  $("#lookup-id", view).value = id;
  poll(async () => {
    let t;
    try {
      t = await api("GET", "/messages/" + enc(id));
    } catch (e) {
      if (e.status === 404 || e.status === 422) {
        $("#trace", view).hidden = true;
        status(e.message, true);
        return;
      }
      throw e;
    }
    status("");
    const state = $("#trace-state", view);
    state.textContent = t.state;
    state.className = "state-" + t.state;
    $("#trace-channel", view).replaceChildren(el("a", { href: "#/channel/" + enc(t.channel), text: t.channel }));
    $("#trace-webhook", view).textContent = t.webhook_id || "–";
    $("#trace-accepted", view).textContent = when(t.accepted_at);
    $("#trace-replays", view).textContent = String(t.replays || 0);
    $("#trace-attempts tbody", view).replaceChildren(...t.attempts.map((a) => el("tr", {},
      td(when(a.at)),
      td(a.connection_id),
      td(a.transport),
      td(a.outcome + (a.reason ? " (" + a.reason + ")" : ""), "outcome"),
      td(a.target_status, "num target-status"),
      td(a.error),
      el("td", { class: "snippet", text: a.response_snippet ?? "–" }))));
    $("#trace-events", view).replaceChildren(...(t.events || []).map((e) =>
      el("li", { text: when(e.at) + " — " + e.event + (e.reason ? " (" + e.reason + ")" : "") })));
    $("#trace", view).hidden = false;
  });
}

// ---------------------------------------------------------------- routing

function stopPolling() {
  routeSerial++;
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = null;
}

function route() {
  stopPolling();
  status("");
  if (!token()) return signOut();
  $("#signin-view").hidden = true;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "channel" && parts[1] && parts[2] === "dead-letters") return showDeadLetters(parts[1]);
  if (parts[0] === "channel" && parts[1]) return showChannel(parts[1]);
  if (parts[0] === "connectors") return showConnectors();
  if (parts[0] === "messages") return showMessages(parts[1]);
  return showOverview();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  route();
});
