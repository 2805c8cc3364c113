// The Reverb monitor's pages: plain DOM, no framework, no build step. Every value from the
// server is placed with textContent (never innerHTML): field values are game data.
"use strict";

const main = document.getElementById("main");
const live = document.getElementById("live");
const csrf = document.querySelector('meta[name="csrf"]').content;
let stream = null;
let lastFields = new Map(); // uid -> JSON of its fields, to highlight changes

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "href" || k === "id" || k === "type" || k === "placeholder" || k === "value")
      node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}

function time(t) {
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." +
    String(d.getMilliseconds()).padStart(3, "0");
}

function ms(seconds) {
  return seconds === null || seconds === undefined ? "–" : (seconds * 1000).toFixed(1) + " ms";
}

function since(t) {
  if (t === null || t === undefined) return "–";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 120) return s.toFixed(0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function value(v) {
  return typeof v === "string" ? v : JSON.stringify(v);
}

function table(id, headers, rows) {
  const head = el("tr", {}, ...headers.map((h) => el("th", { class: h.num ? "num" : "" }, h.t)));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, ...rows));
}

function card(k, v, id) {
  return el("div", { class: "card" }, el("div", { class: "v", id: id || "" }, v),
            el("div", { class: "k" }, k));
}

function subscribe(topic, render, room) {
  if (stream) stream.close();
  live.textContent = "connecting…";
  live.className = "live off";
  stream = new EventSource("/api/events?topic=" + encodeURIComponent(topic) +
    (room ? "&room=" + encodeURIComponent(room) : ""));
  stream.addEventListener("update", (ev) => {
    live.textContent = "live · " + new Date().toLocaleTimeString();
    live.className = "live on";
    render(JSON.parse(ev.data));
  });
  stream.onerror = () => {
    live.textContent = "disconnected (retrying)";
    live.className = "live off";
  };
}

// -- overview -------------------------------------------------------------------------------

function renderOverview(data) {
  const s = data.server;
  const limits = Object.entries(s.stats).filter(([k]) => k.startsWith("limit."));
  const rooms = data.rooms; // null: the server has no room types (protocol §17)
  const rows = data.clients.map((c) => el("tr", { "data-member": c.member },
    el("td", {}, el("a", { href: "#/client/" + c.member }, "#" + c.member)),
    rooms ? el("td", { class: "room" }, c.room === null || c.room === undefined ? "–" : c.room) : null,
    el("td", {}, c.address),
    el("td", {}, c.identity === null ? "" : value(c.identity)),
    el("td", { class: "num rtt", title: c.rtt_samples + " samples, min " + ms(c.rtt_min) +
      ", jitter " + ms(c.rtt_jitter) }, ms(c.rtt)),
    el("td", { class: "num" }, since(c.connected_since)),
    el("td", { class: "num" }, bytes(c.bytes_sent)),
    el("td", { class: "num" }, bytes(c.bytes_received)),
    el("td", { class: "num" }, c.frames_sent),
    el("td", { class: "num" + (c.rpcs_failed_total ? " bad" : "") },
      c.rpcs_received + (c.rpcs_failed_total ? " / " + c.rpcs_failed_total + " failed" : "")),
    el("td", {}, el("meter", { min: 0, max: s.max_send_buffer || 1, value: c.send_buffer }),
       " " + bytes(c.send_buffer)),
    el("td", { class: "num" }, c.view_size),
    el("td", { class: "num" }, c.pending_calls),
  ));
  const limitRows = limits.map(([k, n]) => el("tr", {}, el("td", {}, k), el("td", { class: "num" }, n)));
  main.replaceChildren(...[
    el("div", { class: "cards" },
      card("clients", data.clients.length, "client-count"),
      card("objects", s.objects, "object-count"),
      card("tick", s.tick, "tick"),
      card("last tick", (data.monitor.tick_seconds * 1000).toFixed(2) + " ms"),
      card("sent", bytes(s.bytes_sent)),
      card("received", bytes(s.bytes_received)),
      card("accepted / refused", (s.stats.accepted || 0) + " / " + (s.stats.refused || 0))),
    el("h2", {}, "Clients"),
    table("clients", [{ t: "member" }, ...(rooms ? [{ t: "room" }] : []), { t: "address" }, { t: "identity" }, { t: "RTT", num: 1 },
      { t: "connected", num: 1 }, { t: "sent", num: 1 }, { t: "received", num: 1 },
      { t: "frames out", num: 1 }, { t: "calls", num: 1 },
      { t: "send buffer" }, { t: "view size", num: 1 }, { t: "calls queued", num: 1 }], rows),
    data.clients.length ? null : el("p", { class: "dim" }, "No client connected."),
    ...(rooms ? roomsSection(rooms) : []),
    el("h2", {}, "Objects by type"),
    table("types", [{ t: "type" }, { t: "count", num: 1 }],
      Object.entries(s.objects_by_type).map(([k, n]) =>
        el("tr", {}, el("td", {}, k), el("td", { class: "num" }, n)))),
    el("h2", {}, "Limits hit"),
    limitRows.length ? table("limits", [{ t: "limit" }, { t: "hits", num: 1 }], limitRows)
      : el("p", { class: "dim" }, "None."),
  ].filter((node) => node !== null));
}

function roomsSection(rooms) {
  const rows = rooms.rooms.map((r) => el("tr", { "data-room": r.id },
    el("td", {}, el("code", {}, r.id)),
    el("td", {}, r.type),
    el("td", { class: "num" + (r.max_clients !== null && r.clients >= r.max_clients ? " dim" : "") },
      r.clients + " / " + (r.max_clients === null ? "∞" : r.max_clients) +
      (r.reserved ? " (+" + r.reserved + " reserved)" : "")),
    el("td", { class: r.locked ? "bad" : "dim" }, r.locked ? "locked" : "open"),
    el("td", { class: "num" }, r.objects),
    el("td", { class: "num", title: r.tick_rate === null ? "ticked with the server's world" :
      "asks for " + r.tick_rate + " Hz; p99 " + ms(r.tick_p99) + ", max " + ms(r.tick_max) +
      ", " + r.overruns + " overruns" },
      r.tick_rate === null ? "server's" : (r.held_rate === null ? "…" : r.held_rate.toFixed(1)) +
      " / " + r.tick_rate + " Hz"),
    el("td", { class: "fields" }, Object.keys(r.metadata).length ? value(r.metadata) : ""),
  ));
  const types = Object.entries(rooms.by_type).map(([k, n]) => k + " " + n).join(" · ");
  return [
    el("h2", {}, "Rooms"),
    el("p", { class: "dim", id: "room-summary" }, rooms.total + " rooms: " + types +
      (rooms.truncated ? " (the " + rooms.rooms.length + " fullest shown)" : "")),
    table("rooms", [{ t: "room" }, { t: "type" }, { t: "clients", num: 1 }, { t: "state" },
      { t: "objects", num: 1 }, { t: "tick rate held", num: 1 }, { t: "metadata" }], rows),
  ];
}

// -- world ----------------------------------------------------------------------------------

function objectRows(objects, mine) {
  const fresh = new Map();
  const rows = objects.map((o) => {
    const before = lastFields.get(o.uid);
    const shown = {};
    const fields = el("td", { class: "fields" },
      ...Object.entries(o.fields).map(([k, v]) => {
        shown[k] = value(v);
        const changed = before !== undefined && before[k] !== shown[k];
        return el("div", { "data-field": k, class: changed ? "changed" : "" },
          el("span", { class: "dim" }, k + " = "), shown[k]);
      }));
    fresh.set(o.uid, shown);
    return el("tr", { "data-uid": o.uid },
      el("td", { class: "num" }, o.uid),
      el("td", {}, o.type),
      el("td", {}, o.owner === null ? el("span", { class: "dim" }, "server")
        : el("a", { href: "#/client/" + o.owner }, "#" + o.owner + (mine === o.owner ? " (this)" : ""))),
      fields,
      el("td", { class: "seen-by" }, ...(o.seen_by || []).flatMap((m, i) =>
        [i ? " " : "", el("a", { href: "#/client/" + m }, "#" + m)])),
      el("td", {}, o.withheld ? el("span", { class: "bad" }, "withheld: unencodable now; clients keep these values") : ""));
  });
  lastFields = fresh;
  return rows;
}

function roomOptions(select, data) {
  // the rooms to choose from (protocol §17): the default room first, then by id
  const ids = data.rooms || [];
  const have = [...select.options].map((o) => o.value).join("\n");
  if (have !== ids.join("\n")) {
    select.replaceChildren(...ids.map((id) => el("option", { value: id },
      id === "default" ? "default (the server's world)" : id)));
  }
  select.value = data.room;
}

function renderWorld(data) {
  window.lastWorld = data;
  if (!document.getElementById("world-filter")) {
    const input = el("input", { id: "world-filter", placeholder: "filter: type, uid or value" });
    input.addEventListener("input", () => renderWorld(window.lastWorld));
    const select = el("select", { id: "world-room", title: "room" });
    select.addEventListener("change", () => {
      location.hash = select.value === "default" ? "#/world" : "#/world/" + encodeURIComponent(select.value);
    });
    main.replaceChildren(
      el("div", { class: "toolbar" }, select, el("span", { id: "world-tick" }), el("span", { id: "world-count", class: "dim" }), input),
      el("div", { id: "world-table" }));
  }
  const select = document.getElementById("world-room");
  select.hidden = data.rooms === null || data.rooms === undefined;
  if (!select.hidden) roomOptions(select, data);
  const f = document.getElementById("world-filter").value.toLowerCase();
  const objects = data.objects.filter((o) => !f || o.type.toLowerCase().includes(f) ||
    JSON.stringify(o.fields).toLowerCase().includes(f) || String(o.uid) === f);
  document.getElementById("world-tick").textContent = data.tick === null ?
    (data.watched === false ? "too many rooms watched at once" :
      data.room && data.room !== "default" ? "no such room (disposed?)" : "no snapshot yet")
    : "tick " + data.tick;
  document.getElementById("world-count").textContent = objects.length + " of " +
    data.objects.length + " objects · seen by " + data.peers.length + " synced clients" +
    (data.truncated ? " · truncated" : "");
  document.getElementById("world-table").replaceChildren(
    table("objects", [{ t: "uid", num: 1 }, { t: "type" }, { t: "owner" }, { t: "fields" },
      { t: "seen by" }, { t: "" }], objectRows(objects)));
}

// -- a client ---------------------------------------------------------------------------------

let frameFilter = { q: "", kind: "" };

function frameRows(frames) {
  return frames.filter((fr) => (!frameFilter.kind || fr.kind === frameFilter.kind) &&
    (!frameFilter.q || JSON.stringify(fr.body).includes(frameFilter.q)))
    .map((fr) => el("tr", { "data-seq": fr.seq, "data-tick": fr.tick === null ? "" : fr.tick },
      el("td", {}, time(fr.time)),
      el("td", {}, fr.kind),
      el("td", { class: "num" }, fr.tick === null ? "" : fr.tick),
      el("td", { class: "num" }, bytes(fr.size)),
      el("td", {}, el("details", {}, el("summary", {}, fr.summary || "show"),
        el("pre", {}, JSON.stringify(fr.body, null, 1))))));
}

function renderClient(member, data) {
  if (!document.getElementById("client-controls")) {
    const reason = el("input", { id: "reason", placeholder: "reason (sent to the client)" });
    const button = el("button", { id: "disconnect", class: "danger", type: "button" }, "Disconnect");
    const result = el("span", { id: "action-result", class: "dim" });
    button.addEventListener("click", () => disconnect(member, reason.value, result));
    const q = el("input", { id: "frame-filter", placeholder: "filter frames: text in body" });
    const kind = el("select", { id: "frame-kind" },
      ...["", "sync", "rpc_result", "rpc_error"].map((k) => el("option", { value: k }, k || "any kind")));
    q.addEventListener("input", () => { frameFilter.q = q.value; });
    kind.addEventListener("change", () => { frameFilter.kind = kind.value; });
    main.replaceChildren(
      el("h2", {}, "Client #" + member + " ", el("span", { id: "client-state" }),
        el("span", { id: "client-room", class: "dim" })),
      el("div", { id: "client-cards", class: "cards" }),
      el("div", { id: "client-controls" },
        el("div", { class: "toolbar" }, reason, button, result),
        el("div", { class: "toolbar" }, q, kind)),
      el("h2", {}, "Errors it caused"),
      el("div", { id: "errors-wrap", class: "errors" }),
      el("h2", {}, "Last frames sent to it (newest first)"),
      el("div", { id: "frames-wrap" }),
      el("h2", {}, "Its calls"),
      el("div", { id: "rpcs-wrap" }),
      el("h2", { id: "view-title" }),
      el("div", { id: "view-wrap" }));
  }
  const open = new Set([...document.querySelectorAll("#frames details[open]")]
    .map((d) => d.closest("tr").dataset.seq));
  const state = document.getElementById("client-state");
  state.textContent = data.connected ? "connected" : "disconnected";
  state.className = data.connected ? "" : "bad";
  const room = document.getElementById("client-room");
  room.replaceChildren(...(data.room ? [" in room ", el("a", { href: data.room === "default" ?
    "#/world" : "#/world/" + encodeURIComponent(data.room) }, data.room)] : []));
  const c = data.counters || {};
  const st = data.stats;
  document.getElementById("client-cards").replaceChildren(...(st ? [
    card("RTT", ms(st.rtt), "client-rtt"),
    card("connected for", st.connected ? since(st.connected_since)
      : st.connected_for.toFixed(1) + " s"),
    card("sent / received", bytes(st.bytes_sent) + " / " + bytes(st.bytes_received)),
    card("frames out / in", st.frames_sent + " / " + st.frames_received),
    card("calls ok / failed", st.rpcs_answered + " / " + st.rpcs_failed_total),
    card("messages in / out", st.messages_received + " / " + st.messages_sent),
    card("send buffer", (100 * st.send_buffer_fill).toFixed(1) + " %"),
  ] : []), card("frames held here", c.frames_held || 0), card("view size", data.view.length));
  const codes = Object.entries(st ? st.rpcs_failed : {});
  const incidents = st ? st.incidents.slice().reverse() : [];
  document.getElementById("errors-wrap").replaceChildren(...[
    codes.length ? table("client-rpc-errors", [{ t: "rpc error code" }, { t: "calls", num: 1 }],
      codes.map(([k, n]) => el("tr", { "data-code": k }, el("td", { class: "bad" }, k),
        el("td", { class: "num" }, n)))) : el("p", { class: "dim" }, "No call failed."),
    incidents.length ? table("client-incidents", [{ t: "time" }, { t: "what" }, { t: "code" },
      { t: "detail" }], incidents.map((i) => el("tr", { "data-kind": i.kind },
        el("td", {}, time(i.time)), el("td", { class: i.kind === "closed" ? "" : "bad" }, i.kind),
        el("td", { class: "num" }, i.code === null ? "" : i.code), el("td", {}, i.detail))))
      : el("p", { class: "dim" }, "No limit hit, protocol error or close."),
    data.failed_rpcs.length ? table("client-failed", [{ t: "time" }, { t: "object" },
      { t: "method (its last failed calls)" }, { t: "result" }, { t: "ms", num: 1 }],
      data.failed_rpcs.slice(-8).reverse().map(rpcCells)) : null,
  ].filter((node) => node !== null));
  document.getElementById("frames-wrap").replaceChildren(
    table("frames", [{ t: "time" }, { t: "kind" }, { t: "tick", num: 1 }, { t: "size", num: 1 },
      { t: "content" }], frameRows(data.frames)));
  document.getElementById("rpcs-wrap").replaceChildren(
    table("client-rpcs", [{ t: "time" }, { t: "object" }, { t: "method" }, { t: "result" },
      { t: "ms", num: 1 }], data.rpcs.slice().reverse().map(rpcCells)));
  document.getElementById("view-title").textContent =
    "What it holds" + (data.room && data.room !== "default" ? " in room " + data.room : "") +
    " (as of tick " + data.tick + ")";
  document.getElementById("view-wrap").replaceChildren(
    table("view", [{ t: "uid", num: 1 }, { t: "type" }, { t: "owner" }, { t: "fields" },
      { t: "seen by" }, { t: "" }],
      objectRows(data.view, member)));
  for (const d of document.querySelectorAll("#frames details")) {
    if (open.has(d.closest("tr").dataset.seq)) d.open = true;
  }
}

async function disconnect(member, reason, result) {
  result.textContent = "…";
  const res = await fetch("/api/client/" + member + "/disconnect", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Reverb-CSRF": csrf },
    body: JSON.stringify({ reason }),
  });
  const body = await res.json().catch(() => ({}));
  result.textContent = res.ok ? "disconnected" : "refused: " + (body.error || res.status);
  result.className = res.ok ? "" : "bad";
}

// -- calls ----------------------------------------------------------------------------------

function rpcCells(r) {
  return el("tr", { "data-seq": r.seq },
    el("td", {}, time(r.at)),
    el("td", {}, r.type + " uid=" + r.uid + (r.room ? " in " + r.room : "")),
    el("td", {}, r.method + "(" + r.args.replace(/^\[|\]$/g, "") + ")"),
    el("td", { class: r.code === "ok" ? "" : "bad" }, r.code + (r.message ? ": " + r.message : "")),
    el("td", { class: "num" }, (r.seconds * 1000).toFixed(3)));
}

function renderRpc(data) {
  main.replaceChildren(
    el("h2", {}, "Calls (newest first)"),
    table("rpcs", [{ t: "time" }, { t: "client" }, { t: "object" }, { t: "method" },
      { t: "result" }, { t: "ms", num: 1 }],
      data.rpcs.slice().reverse().map((r) => {
        const row = rpcCells(r);
        row.insertBefore(el("td", {}, el("a", { href: "#/client/" + r.member }, "#" + r.member)),
          row.children[1]);
        return row;
      })));
}

// -- routing --------------------------------------------------------------------------------

function route() {
  const hash = location.hash || "#/";
  lastFields = new Map();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.getAttribute("href") === hash);
  main.replaceChildren(el("p", { class: "dim" }, "loading…"));
  const client = hash.match(/^#\/client\/(\d+)$/);
  if (client) {
    const member = Number(client[1]);
    frameFilter = { q: "", kind: "" };
    subscribe("client:" + member, (d) => renderClient(member, d));
  } else if (hash === "#/world" || hash.startsWith("#/world/")) {
    const room = hash === "#/world" ? "" : decodeURIComponent(hash.slice("#/world/".length));
    subscribe("world", renderWorld, room);
  } else if (hash === "#/rpc") {
    subscribe("rpc", renderRpc);
  } else {
    subscribe("overview", renderOverview);
  }
}

window.addEventListener("hashchange", route);
route();
