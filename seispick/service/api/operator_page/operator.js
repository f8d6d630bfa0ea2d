// The seispick operator page: stations on a plain lat/lon plot, the last picks, events and the latency budget.
// Only the service's own routes, by relative address (no CDN, no map tiles): GET v1/stations (polled),
// v1/stations/coordinates, v1/picks and v1/events once, then the live feeds v1/stream/picks, v1/stream/picks
// ?status=... and v1/stream/events (EventSource), and metrics for the budget's p50. With an API key in the
// address (#api_key=KEY) requests carry X-API-Key and the live feeds are the WebSocket routes (?api_key=).
"use strict";

(function () {
  const STATION_POLL_MS = 2000;
  const METRICS_POLL_MS = 5000;
  const LATE_S = 10; // a streaming instrument whose data latency is above this is drawn as late
  const MAX_PICKS = 60;
  const MAX_EVENTS = 50;
  const SVG_NS = document.getElementById("map").namespaceURI; // the page's <svg>: SVG's namespace
  const UPDATE_STATUSES = "preliminary,confirmed,rejected";
  const STAGES = [
    ["record", "record_s"],
    ["window", "window_s"],
    ["first_look", "first_look_s"],
    ["inference", "inference_s"],
    ["publication", null],
    ["association", null],
  ];

  const apiKey = readKey();
  const coordinates = new Map(); // NET.STA -> {latitude, longitude}
  let stations = []; // rows of GET v1/stations
  const picks = new Map(); // pick id -> pick (with status)
  const events = new Map(); // event id -> latest version
  const feeds = {}; // name -> "open" | "closed" | "connecting"

  function readKey() {
    const match = /(?:^|[#&])api_key=([^&]+)/.exec(window.location.hash);
    if (match) {
      const key = decodeURIComponent(match[1]);
      try {
        window.sessionStorage.setItem("seispick_api_key", key);
      } catch (e) {
        /* storage refused: the key lasts this page */
      }
      return key;
    }
    try {
      return window.sessionStorage.getItem("seispick_api_key");
    } catch (e) {
      return null;
    }
  }

  // -- helpers ------------------------------------------------------------------------------------------------
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  function fixed(value, digits) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "";
  }

  function time(iso) {
    return typeof iso === "string" ? iso.replace("T", " ").replace(/(\.\d)\d*Z$/, "$1") : "";
  }

  function stationKey(traceId) {
    return String(traceId || "").split(".").slice(0, 2).join(".");
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  function row(cells, className) {
    const tr = el("tr", null, className);
    for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
    return tr;
  }

  async function getJson(path) {
    const headers = { Accept: "application/json" };
    if (apiKey) headers["X-API-Key"] = apiKey;
    const response = await fetch(path, { headers: headers, cache: "no-store" });
    if (!response.ok) throw new Error(path + ": " + response.status);
    return response.json();
  }

  async function getText(path) {
    const headers = {};
    if (apiKey) headers["X-API-Key"] = apiKey;
    const response = await fetch(path, { headers: headers, cache: "no-store" });
    if (!response.ok) throw new Error(path + ": " + response.status);
    return response.text();
  }

  // -- live feeds ---------------------------------------------------------------------------------------------
  function showFeeds() {
    const parts = Object.entries(feeds).map(([name, state]) => name + " " + state);
    const node = document.getElementById("feeds");
    node.textContent = parts.join(" | ") || "no live feed";
    node.className = "feeds " + (Object.values(feeds).every((s) => s === "open") ? "ok" : "down");
  }

  // SSE (EventSource) without a key; the WebSocket twin with one (EventSource cannot send X-API-Key).
  // onRecord(kind, record): kind is the SSE event name (pick, detection, pick_update, event).
  function follow(name, ssePath, wsPath, kinds, onRecord) {
    feeds[name] = "connecting";
    showFeeds();
    if (!apiKey) {
      const source = new EventSource(ssePath);
      source.onopen = () => {
        feeds[name] = "open";
        showFeeds();
      };
      source.onerror = () => {
        feeds[name] = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
        showFeeds();
        if (source.readyState === EventSource.CLOSED) window.setTimeout(() => follow(name, ssePath, wsPath, kinds, onRecord), 5000);
      };
      for (const kind of kinds) {
        source.addEventListener(kind, (message) => {
          try {
            onRecord(kind, JSON.parse(message.data));
          } catch (e) {
            /* a malformed record is skipped */
          }
        });
      }
      return;
    }
    const url = new URL(wsPath, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("api_key", apiKey);
    const socket = new WebSocket(url.toString());
    socket.onopen = () => {
      feeds[name] = "open";
      showFeeds();
    };
    socket.onclose = () => {
      feeds[name] = "closed";
      showFeeds();
      window.setTimeout(() => follow(name, ssePath, wsPath, kinds, onRecord), 5000);
    };
    socket.onmessage = (message) => {
      let record;
      try {
        record = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      let kind = kinds[0];
      if (kinds.includes("pick_update") && record.status) kind = "pick_update";
      else if (kinds.includes("pick") && record.phase) kind = "pick";
      else if (kinds.includes("detection") && !record.phase) kind = "detection";
      onRecord(kind, record);
    };
  }

  // -- stations -----------------------------------------------------------------------------------------------
  function stationClass(s) {
    if (!s) return "unknown";
    if (s.state === "streaming" && typeof s.data_latency_s === "number" && s.data_latency_s > LATE_S) return "late";
    return ["streaming", "behind", "silent"].includes(s.state) ? s.state : "unknown";
  }

  function stagesText(stages) {
    if (!stages) return "";
    return Object.entries(stages)
      .map(([name, value]) => name.replace(/_s$/, "") + " " + fixed(value, 2))
      .join(", ");
  }

  function renderStations() {
    const tbody = document.querySelector("#stations tbody");
    fill(
      tbody,
      stations.map((s) => {
        const state = el("td", s.state, "state " + stationClass(s));
        return row([s.trace_id, state, fixed(s.data_latency_s, 2), fixed(s.lag_s, 1), s.picks, stagesText(s.latency_stages)]);
      })
    );
    const counts = {};
    for (const s of stations) counts[s.state] = (counts[s.state] || 0) + 1;
    document.getElementById("stations-summary").textContent =
      stations.length + " instruments: " + Object.entries(counts).map(([k, v]) => v + " " + k).join(", ");
    renderMap();
    renderStationBudget();
  }

  function renderMap() {
    const map = document.getElementById("map");
    const note = document.getElementById("map-note");
    const byKey = new Map();
    for (const s of stations) {
      const key = stationKey(s.trace_id);
      const have = byKey.get(key);
      if (!have || stationClass(s) !== "streaming") byKey.set(key, s); // the worst instrument of a station
    }
    const keys = new Set([...coordinates.keys()]);
    const placed = [...keys].map((key) => ({ key: key, at: coordinates.get(key), state: byKey.get(key) }));
    const epicentres = [...events.values()].filter((e) => typeof e.latitude === "number" && typeof e.longitude === "number");
    map.replaceChildren();
    if (placed.length === 0) {
      map.classList.add("empty");
      note.textContent = "No station coordinates: the service does not associate (events.stations), so the instruments are listed below only.";
      return;
    }
    map.classList.remove("empty");
    const unplaced = [...byKey.keys()].filter((k) => !coordinates.has(k));
    note.textContent = unplaced.length ? "Without coordinates (table below): " + unplaced.join(", ") : "";
    const points = placed.map((p) => p.at).concat(epicentres.map((e) => ({ latitude: e.latitude, longitude: e.longitude })));
    let latMin = Math.min(...points.map((p) => p.latitude));
    let latMax = Math.max(...points.map((p) => p.latitude));
    let lonMin = Math.min(...points.map((p) => p.longitude));
    let lonMax = Math.max(...points.map((p) => p.longitude));
    const latMid = (latMin + latMax) / 2;
    const kx = Math.cos((latMid * Math.PI) / 180); // equirectangular: a degree of longitude is cos(lat) shorter
    const span = Math.max(latMax - latMin, (lonMax - lonMin) * kx, 0.02) * 1.15;
    const W = 600;
    const H = 420;
    const pad = 40;
    const scale = Math.min((W - 2 * pad) / span, (H - 2 * pad) / span);
    const lonMid = (lonMin + lonMax) / 2;
    const x = (lon) => W / 2 + (lon - lonMid) * kx * scale;
    const y = (lat) => H / 2 - (lat - latMid) * scale;
    // graticule: a line every step degrees
    const step = niceStep(span / 4);
    const g = svg("g", { class: "graticule" });
    for (let lat = Math.ceil((latMid - H / 2 / scale) / step) * step; lat <= latMid + H / 2 / scale; lat += step) {
      g.appendChild(svg("line", { x1: 0, x2: W, y1: y(lat), y2: y(lat) }));
      const t = svg("text", { x: 4, y: y(lat) - 3 });
      t.textContent = lat.toFixed(decimals(step)) + "\u00b0";
      g.appendChild(t);
    }
    const lonHalf = W / 2 / (kx * scale);
    for (let lon = Math.ceil((lonMid - lonHalf) / step) * step; lon <= lonMid + lonHalf; lon += step) {
      g.appendChild(svg("line", { x1: x(lon), x2: x(lon), y1: 0, y2: H }));
      const t = svg("text", { x: x(lon) + 3, y: H - 4 });
      t.textContent = lon.toFixed(decimals(step)) + "\u00b0";
      g.appendChild(t);
    }
    map.appendChild(g);
    for (const e of epicentres) {
      const star = svg("g", { class: "epicentre " + (e.evaluation_status || ""), transform: "translate(" + x(e.longitude) + "," + y(e.latitude) + ")" });
      star.appendChild(svg("polygon", { points: starPoints(11, 4.5) }));
      const t = svg("text", { x: 13, y: 4 });
      t.textContent = e.id + (typeof e.magnitude === "number" ? " M" + e.magnitude.toFixed(1) : "");
      star.appendChild(t);
      map.appendChild(star);
    }
    for (const p of placed) {
      const cls = stationClass(p.state);
      const node = svg("g", { class: "station " + cls, transform: "translate(" + x(p.at.longitude) + "," + y(p.at.latitude) + ")" });
      node.appendChild(svg("polygon", { points: "0,-8 7,5 -7,5" }));
      const label = svg("text", { x: 9, y: 4 });
      label.textContent = p.key.split(".")[1] || p.key;
      node.appendChild(label);
      const title = svg("title");
      title.textContent = p.key + ": " + (p.state ? p.state.state + ", data latency " + fixed(p.state.data_latency_s, 2) + " s" : "no data yet");
      node.appendChild(title);
      map.appendChild(node);
    }
  }

  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  function decimals(step) {
    return Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  }

  function starPoints(outer, inner) {
    const out = [];
    for (let i = 0; i < 10; i++) {
      const r = i % 2 ? inner : outer;
      const a = (Math.PI / 5) * i - Math.PI / 2;
      out.push((r * Math.cos(a)).toFixed(1) + "," + (r * Math.sin(a)).toFixed(1));
    }
    return out.join(" ");
  }

  async function pollStations() {
    try {
      const body = await getJson("v1/stations");
      stations = body.stations || [];
      renderStations();
    } catch (e) {
      document.getElementById("stations-summary").textContent = "(" + e.message + ")";
    }
  }

  async function loadCoordinates() {
    try {
      const body = await getJson("v1/stations/coordinates");
      for (const s of body.stations || []) coordinates.set(s.key, { latitude: s.latitude, longitude: s.longitude });
    } catch (e) {
      /* no coordinates: the table only */
    }
    renderMap();
  }

  // -- picks --------------------------------------------------------------------------------------------------
  function addPick(kind, record) {
    if (kind === "detection" || !record.id) return;
    for (const old of record.supersedes || []) {
      const superseded = picks.get(old);
      if (superseded) superseded.status = "superseded";
    }
    const have = picks.get(record.id);
    const status = kind === "pick_update" ? record.status : have && have.status === "confirmed" ? "confirmed" : "final";
    picks.set(record.id, Object.assign({}, have || {}, record, { status: status, seen: Date.now() }));
    while (picks.size > MAX_PICKS * 2) picks.delete(oldestPick());
    renderPicks();
  }

  function oldestPick() {
    let oldest = null;
    for (const [id, p] of picks) if (oldest === null || p.peak_time < picks.get(oldest).peak_time) oldest = id;
    return oldest;
  }

  function renderPicks() {
    const sorted = [...picks.values()].sort((a, b) => (a.peak_time < b.peak_time ? 1 : -1)).slice(0, MAX_PICKS);
    fill(
      document.querySelector("#picks tbody"),
      sorted.map((p) => row([time(p.peak_time), p.trace_id, p.phase, fixed(p.probability, 2), el("td", p.status, "status " + p.status)], "pick " + p.status))
    );
    const counts = {};
    for (const p of picks.values()) counts[p.status] = (counts[p.status] || 0) + 1;
    document.getElementById("picks-summary").textContent = Object.entries(counts).map(([k, v]) => v + " " + k).join(", ");
  }

  async function loadPicks() {
    for (const [path, kind] of [
      ["v1/picks?limit=" + MAX_PICKS, "pick"],
      ["v1/picks?limit=" + MAX_PICKS + "&status=" + UPDATE_STATUSES, "pick_update"],
    ]) {
      try {
        const body = await getJson(path);
        for (const p of body.picks || []) addPick(kind, p);
      } catch (e) {
        /* no real-time job, or no preliminary picks */
      }
    }
  }

  // -- events -------------------------------------------------------------------------------------------------
  function addEvent(record) {
    if (!record.id) return;
    const have = events.get(record.id);
    if (have && (have.version || 0) > (record.version || 0)) return;
    events.set(record.id, record);
    renderEvents();
    renderMap();
  }

  function renderEvents() {
    const sorted = [...events.values()].sort((a, b) => (a.origin_time < b.origin_time ? 1 : -1)).slice(0, MAX_EVENTS);
    fill(
      document.querySelector("#events tbody"),
      sorted.map((e) => {
        const magnitude = typeof e.magnitude === "number" ? (e.magnitude_type || "M") + " " + e.magnitude.toFixed(2) : "-";
        const status = (e.evaluation_status || "\u2013") + (e.superseded_by ? " \u2192 " + e.superseded_by : "");
        return row(
          [e.id, e.version, time(e.origin_time), fixed(e.latitude, 3), fixed(e.longitude, 3), fixed(e.depth_km, 1), magnitude, e.n_stations, e.n_picks, el("td", status, "status " + (e.evaluation_status || "")), time(e.published_at)],
          "event " + (e.evaluation_status || "")
        );
      })
    );
    document.getElementById("events-summary").textContent = events.size ? events.size + " events" : "none yet";
  }

  async function loadEvents() {
    try {
      const body = await getJson("v1/events");
      for (const e of body.events || []) addEvent(e);
    } catch (e) {
      document.getElementById("events-summary").textContent = "(association not configured)";
      return false;
    }
    renderEvents();
    return true;
  }

  // -- latency budget -----------------------------------------------------------------------------------------
  // Prometheus text: {stage: {buckets: [[le, cumulative]], count}} of seispick_latency_stage_seconds, plus
  // seispick_association_latency_seconds as the stage "association".
  function parseHistograms(text) {
    const out = {};
    const pattern = /^(seispick_latency_stage_seconds|seispick_association_latency_seconds)_(bucket|count)\{?([^}]*)\}? ([0-9.eE+-]+|NaN|\+Inf)$/;
    for (const line of text.split("\n")) {
      const m = pattern.exec(line.trim());
      if (!m) continue;
      const labels = {};
      for (const part of m[3].match(/\w+="[^"]*"/g) || []) {
        const i = part.indexOf("=");
        labels[part.slice(0, i)] = part.slice(i + 2, -1);
      }
      const stage = m[1] === "seispick_association_latency_seconds" ? "association" : labels.stage;
      if (!stage) continue;
      const h = out[stage] || (out[stage] = { buckets: new Map(), count: 0 });
      const value = parseFloat(m[4]);
      if (m[2] === "count") h.count += value;
      else {
        const le = labels.le === "+Inf" ? Infinity : parseFloat(labels.le);
        h.buckets.set(le, (h.buckets.get(le) || 0) + value); // summed over other labels (network, ...)
      }
    }
    return out;
  }

  // Prometheus' histogram_quantile: linear within the bucket that holds the quantile.
  function quantile(q, h) {
    const buckets = [...h.buckets.entries()].sort((a, b) => a[0] - b[0]);
    if (!buckets.length) return null;
    const total = buckets[buckets.length - 1][1];
    if (!total) return null;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const [le, cumulative] of buckets) {
      if (cumulative >= rank) {
        if (le === Infinity) return lower;
        return lower + ((le - lower) * (rank - below)) / Math.max(cumulative - below, 1e-12);
      }
      lower = le;
      below = cumulative;
    }
    return lower;
  }

  let histograms = {};

  function median(values) {
    if (!values.length) return null;
    const sorted = values.slice().sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  function renderStationBudget() {
    const tbody = document.querySelector("#budget tbody");
    fill(
      tbody,
      STAGES.map(([stage, field]) => {
        const h = histograms[stage];
        const p50 = h ? quantile(0.5, h) : null;
        const values = field ? stations.map((s) => (s.latency_stages || {})[field]).filter((v) => typeof v === "number") : [];
        return row([stage, fixed(p50, 2) || "\u2013", h ? h.count : 0, fixed(median(values), 2) || "\u2013"]);
      })
    );
  }

  async function pollMetrics() {
    const note = document.getElementById("budget-note");
    try {
      histograms = parseHistograms(await getText("metrics"));
      note.textContent = "p50: seispick_latency_stage_seconds (and seispick_association_latency_seconds) since the service started, interpolated in its buckets as histogram_quantile does; publication is measured only with Redis.";
    } catch (e) {
      note.textContent = "metrics not readable here (" + e.message + "): the stations' latest picks only.";
    }
    renderStationBudget();
  }

  // -- start --------------------------------------------------------------------------------------------------
  function tick() {
    document.getElementById("clock").textContent = new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  async function start() {
    document.getElementById("late-s").textContent = String(LATE_S);
    tick();
    window.setInterval(tick, 1000);
    await Promise.all([loadCoordinates(), pollStations(), loadPicks(), pollMetrics()]);
    window.setInterval(pollStations, STATION_POLL_MS);
    window.setInterval(pollMetrics, METRICS_POLL_MS);
    follow("picks", "v1/stream/picks", "v1/ws/picks", ["pick", "detection"], addPick);
    follow("pick updates", "v1/stream/picks?status=" + UPDATE_STATUSES, "v1/ws/picks?status=" + UPDATE_STATUSES, ["pick_update"], addPick);
    if (await loadEvents()) follow("events", "v1/stream/events", "v1/ws/events", ["event"], (kind, record) => addEvent(record));
    document.body.dataset.ready = "true";
  }

  start();
})();
