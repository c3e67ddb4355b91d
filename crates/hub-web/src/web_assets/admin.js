// The admin page (/hub/admin): a client of the hub's own REST API (/hub/api, JupyterHub's
// API), authenticated by the session cookie with the session's XSRF token in X-XSRFToken,
// as JupyterHub's admin page is. Lists users a page at a time with a name search, starts and
// stops servers (following spawn progress), adds and deletes users. User data is put into
// the page with textContent only.
"use strict";
const box = document.getElementById("admin");
const xsrf = box.dataset.xsrf;
const me = box.dataset.me;
const limit = Number(box.dataset.limit) || 50;
const tbody = document.querySelector("#users tbody");
const statusLine = document.getElementById("status");
let offset = 0;
let filter = "";
let searchTimer = null;
let pollTimer = null;
const streams = new Map();

/** Calls the REST API; resolves to the parsed body, rejects with the API's message. */
async function api(method, path, body) {
  const headers = { "X-XSRFToken": xsrf, Accept: "application/jupyterhub-pagination+json" };
  const opts = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch("/hub/api" + path, opts);
  const text = await r.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = { message: text }; }
  }
  if (!r.ok) throw new Error((data && data.message) || `${r.status} ${r.statusText}`);
  return data;
}

function say(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "muted";
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

function hhmm(iso) {
  const d = new Date(iso);
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function ticketCell(k) {
  if (!k) return el("td", { class: "muted", "data-ticket": "none" }, "no ticket");
  const now = Date.now();
  if (k.last_error) {
    return el("td", { class: "error", "data-ticket": "failing", title: k.last_error },
      `renewal failing (${k.consecutive_failures}×): ${k.last_error}`);
  }
  if (k.valid_until && Date.parse(k.valid_until) > now) {
    return el("td", { class: "ok", "data-ticket": "valid", title: k.principal },
      `valid until ${hhmm(k.valid_until)}`);
  }
  if (k.valid_until) return el("td", { class: "error", "data-ticket": "expired" }, `expired ${hhmm(k.valid_until)}`);
  return el("td", { class: "muted", "data-ticket": "none" }, "no ticket yet");
}

function serverState(u) {
  const s = u.servers && u.servers[""];
  // hub_state is this hub's extra field: starting, running, stopping, stopped or failed.
  return { state: s ? s.hub_state : "stopped", server: s };
}

function follow(name, progressUrl, bar, label) {
  if (streams.has(name)) streams.get(name).close();
  const src = new EventSource(progressUrl);
  streams.set(name, src);
  src.onmessage = (ev) => {
    const d = JSON.parse(ev.data);
    bar.value = d.progress;
    label.textContent = d.message;
    if (d.ready || d.failed) {
      src.close();
      streams.delete(name);
      load();
    }
  };
  src.onerror = () => { src.close(); streams.delete(name); };
}

function action(label, cls, fn, confirmText) {
  const b = el("button", { type: "button", class: cls }, label);
  b.addEventListener("click", async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    b.disabled = true;
    try { await fn(); } catch (e) { say(e.message, true); }
    await load();
  });
  return b;
}

function row(u) {
  const { state, server } = serverState(u);
  const tr = el("tr", { "data-user": u.name, "data-state": state });
  const nameCell = el("td", {}, u.name);
  if (u.admin) nameCell.append(" ", el("span", { class: "tag" }, "admin"));
  const serverCell = el("td", { class: "server" });
  if (state === "running") {
    serverCell.append(el("a", { href: server.url }, server.hub_node ? "running on " + server.hub_node : "running"));
  } else if (state === "starting") {
    const bar = el("progress", { max: 100, value: 0 });
    const msg = el("span", { class: "muted" }, "starting");
    serverCell.append(bar, msg);
    follow(u.name, server.progress_url, bar, msg);
  } else if (state === "failed") {
    serverCell.append(el("span", { class: "error", title: server.hub_message }, "failed: " + server.hub_message));
  } else {
    serverCell.append(el("span", { class: "muted", title: (server && server.hub_message) || "" }, state));
  }
  // Named servers: each with its state and a Stop button while it runs.
  for (const [name, s] of Object.entries(u.servers || {})) {
    if (!name) continue;
    const line = el("div", { class: "named", "data-server": name, "data-state": s.hub_state });
    line.append(el("span", {}, name + ": "));
    line.append(s.hub_state === "running" ? el("a", { href: s.url }, "running") : el("span", { class: "muted", title: s.hub_message || "" }, s.hub_state));
    if (s.hub_state === "running" || s.hub_state === "starting") {
      line.append(" ", action("Stop", "secondary", async () => {
        await api("DELETE", "/users/" + encodeURIComponent(u.name) + "/servers/" + encodeURIComponent(name));
        say(`Stopped ${u.name}'s server ${name}.`);
      }));
    }
    serverCell.append(line);
  }
  const actions = el("td", { class: "actions" });
  const path = "/users/" + encodeURIComponent(u.name);
  if (state === "running" || state === "starting") {
    actions.append(action("Stop", "secondary", async () => {
      await api("DELETE", path + "/server");
      say(`Stopped ${u.name}'s server.`);
    }));
  } else if (state !== "stopping") {
    actions.append(action("Start", "", async () => {
      say(`Starting ${u.name}'s server…`);
      await api("POST", path + "/server", {});
      say(`${u.name}'s server is up.`);
    }));
  }
  actions.append(" ", el("a", { href: "/hub/admin/logs/" + encodeURIComponent(u.name) }, "log"), " ");
  const del = action("Delete", "danger", async () => {
    await api("DELETE", path);
    say(`Deleted ${u.name}.`);
  }, `Delete user ${u.name}? Their server is stopped; their files and Linux account stay.`);
  if (u.name === me) { del.disabled = true; del.title = "You cannot delete yourself"; }
  actions.append(del);
  tr.append(nameCell, serverCell, el("td", { title: u.last_activity || "" }, ago(u.last_activity)), ticketCell(u.kerberos), actions);
  return tr;
}

async function load() {
  clearTimeout(pollTimer);
  const q = new URLSearchParams({ offset, limit, include_stopped_servers: "1" });
  if (filter) q.set("name_filter", filter);
  let data;
  try {
    data = await api("GET", "/users?" + q);
  } catch (e) {
    say(e.message, true);
    return;
  }
  const p = data._pagination;
  if (p.total > 0 && p.offset >= p.total) {
    offset = Math.max(0, p.total - limit);
    return load();
  }
  tbody.replaceChildren(...data.items.map(row));
  if (data.items.length === 0) {
    tbody.append(el("tr", {}, el("td", { colSpan: 5, class: "muted" }, filter ? `No user matches “${filter}”.` : "No users yet.")));
  }
  document.getElementById("range").textContent =
    p.total === 0 ? "0 users" : `${p.offset + 1}–${p.offset + data.items.length} of ${p.total}`;
  document.getElementById("prev").disabled = p.offset === 0;
  document.getElementById("next").disabled = !p.next;
  box.dataset.loaded = String(Date.now());
  // Servers that are stopping change state without a progress stream: look again soon.
  if (tbody.querySelector("tr[data-state=stopping]")) pollTimer = setTimeout(load, 1000);
}

document.getElementById("q").addEventListener("input", (ev) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { filter = ev.target.value.trim().toLowerCase(); offset = 0; load(); }, 250);
});
document.getElementById("search").addEventListener("submit", (ev) => ev.preventDefault());
document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - limit); load(); });
document.getElementById("next").addEventListener("click", () => { offset += limit; load(); });
document.getElementById("add").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const names = document.getElementById("names").value.split(/[\s,]+/).filter(Boolean);
  if (names.length === 0) { say("Type at least one user name.", true); return; }
  try {
    const made = await api("POST", "/users", { usernames: names, admin: document.getElementById("add-admin").checked });
    say(`Added ${made.map((u) => u.name).join(", ")}.`);
    document.getElementById("names").value = "";
  } catch (e) {
    say(e.message, true);
  }
  await load();
});
load();
