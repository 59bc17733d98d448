// The officer console: a small client of the gate's /api/console endpoints.
// Every state-changing request carries the session's CSRF token.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let session = null;
  let selected = null;
  let refreshTimer = null;
  let queueSeen = null, pastAt = 0;   // what the queue held, and when past referrals were last fetched
  let queueBusy = false;               // a poll still waiting on a slow network: the next one skips

  async function api(path, opts = {}) {
    const headers = Object.assign({}, opts.headers || {});
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if ((opts.method || "GET") !== "GET") headers["X-CSRF-Token"] = session ? session.csrf : "";
    const r = await fetch(path, { method: opts.method || "GET", headers, credentials: "same-origin",
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    if (r.status === 401 && path !== "/api/console/login") { await loadSession(); throw new Error("Please sign in again."); }
    if (!r.ok) {
      let msg = r.statusText;
      try { const j = await r.json(); msg = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) {}
      throw new Error(msg);
    }
    return r.status === 204 ? null : r.json();
  }

  function error(msg) { $("error").hidden = !msg; $("error").textContent = msg || ""; }
  function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }
  function kv(table, obj) {
    table.replaceChildren();
    for (const [k, v] of Object.entries(obj || {})) {
      const tr = el("tr"); tr.append(el("td", k), el("td", v === null || v === undefined ? "—" : (typeof v === "object" ? JSON.stringify(v) : String(v))));
      table.append(tr);
    }
  }

  function show(view) {
    document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== view; });
    document.querySelectorAll("nav button[data-view]").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
    clearInterval(refreshTimer);
    if (view === "referrals") { queueSeen = null; loadQueue(); refreshTimer = setInterval(loadQueue, 3000); }
    if (view === "users") loadUsers();
    if (view === "dashboard") { loadDashboard(); refreshTimer = setInterval(loadDashboard, 10000); }
  }

  async function loadSession() {
    session = await api("/api/console/session");
    const nav = $("nav");
    nav.hidden = !session.authenticated;
    if (!session.authenticated) { show("login"); return; }
    $("who").textContent = `${session.username} (${session.role})`;
    let first = null;
    document.querySelectorAll("nav button[data-view]").forEach((b) => {
      const ok = b.dataset.roles.split(" ").includes(session.role);
      b.hidden = !ok; if (ok && !first) first = b.dataset.view;
    });
    show(first);
  }

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      session = await api("/api/console/login", { method: "POST", body: { username: f.get("username"), password: f.get("password") } });
      e.target.reset(); error(""); await loadSession();
    } catch (err) { error(err.message); }
  });
  $("logout").addEventListener("click", async () => { try { await api("/api/console/logout", { method: "POST" }); } catch (e) {} await loadSession(); });
  document.querySelectorAll("nav button[data-view]").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));

  // --- own password ---
  $("password-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    $("password-done").hidden = true;
    if (f.get("new") !== f.get("again")) { error("The two new passwords differ."); return; }
    try {
      session = await api("/api/console/password", { method: "POST", body: { current_password: f.get("current"), new_password: f.get("new") } });
      e.target.reset(); error(""); $("password-done").hidden = false;
    } catch (err) { error(err.message); }
  });

  // --- referrals ---
  async function loadQueue() {
    if (queueBusy) return;
    queueBusy = true;
    try {
      const items = await api("/api/console/referrals");
      $("queue-count").textContent = `(${items.length})`;
      const ul = $("queue"); ul.replaceChildren();
      for (const it of items) {
        const li = el("li"); li.dataset.id = it.id;
        li.append(el("strong", it.reasons.join(", ")), el("small", new Date(it.started_at).toLocaleTimeString() + " · " + it.id.slice(0, 8)));
        if (selected === it.id) li.classList.add("selected");
        li.addEventListener("click", () => openReferral(it.id));
        ul.append(li);
      }
      if (selected && !items.some((i) => i.id === selected)) { $("detail").hidden = true; selected = null; }
      // A referral enters the trail as it joins the queue and is resolved as it leaves: refetch the
      // past list when the queue changes, and every 30 s for those that came and went between polls.
      const key = items.map((i) => i.id).join();
      if (key !== queueSeen || Date.now() - pastAt > 30000) { queueSeen = key; pastAt = Date.now(); await loadPast(); }
    } catch (err) { queueSeen = null; error(err.message); } finally { queueBusy = false; }
  }

  // Past referrals come from the audit trail; their photos only if the gate keeps face images.
  async function loadPast() {
    const items = await api("/api/console/history?limit=20");
    const ul = $("past"); ul.replaceChildren();
    for (const it of items) {
      const li = el("li"); li.dataset.record = it.record_id;
      li.append(el("strong", it.reasons.join(", ")), el("small", new Date(it.occurred_at).toLocaleString() + " · " +
        (it.transaction_id || "").slice(0, 8) + " · " + (it.resolved ? `${it.resolved} by ${it.resolved_by}` : "not overridden")));
      li.addEventListener("click", () => openPast(it));
      ul.append(li);
    }
  }

  function openPast(it) {
    $("detail").hidden = true; selected = null; $("past-detail").hidden = false;
    $("p-id").textContent = (it.transaction_id || "").slice(0, 8);
    $("p-meta").textContent = `${new Date(it.occurred_at).toLocaleString()} · ${it.gate_id} · ` +
      (it.resolved ? `${it.resolved} by ${it.resolved_by}` : "not overridden");
    $("p-reasons").replaceChildren(...it.reasons.map((x) => el("li", x)));
    $("p-photos").hidden = !it.has_face_image; $("p-nophoto").hidden = it.has_face_image;
    $("p-chip").src = it.has_face_image ? `/api/console/records/${it.record_id}/photo/chip` : "";
    $("p-live").src = it.has_face_image ? `/api/console/records/${it.record_id}/photo/live` : "";
  }

  async function openReferral(id) {
    try {
      const r = await api(`/api/console/referrals/${id}`);
      selected = id; $("detail").hidden = false; $("past-detail").hidden = true; $("d-id").textContent = id.slice(0, 8);
      const ul = $("d-reasons"); ul.replaceChildren(...r.reasons.map((x) => el("li", x)));
      $("d-chip").src = r.has_chip_photo ? `/api/console/referrals/${id}/photo/chip` : "";
      $("d-live").src = r.has_live_photo ? `/api/console/referrals/${id}/photo/live` : "";
      kv($("d-traveller"), r.traveller);
      const d = r.document || {}, f = r.face || {}, i = r.identity || {};
      kv($("d-checks"), { "chip read": d.read_ok === undefined ? null : (d.read_ok ? "ok" : d.read_error),
        "access control": d.access_control, "passive authentication": d.pa_verdict,
        "clone detection": d.clone_result && `${d.clone_result} (${d.clone_protocol || "—"})`,
        "MRZ vs DG1": d.mrz_mismatch_fields && (d.mrz_mismatch_fields.length ? "differs: " + d.mrz_mismatch_fields.join(", ") : "same"),
        "face": f.outcome && `${f.outcome} score ${f.score === null ? "—" : f.score.toFixed(3)} / threshold ${f.threshold === null ? "—" : f.threshold.toFixed(3)}`,
        "liveness": f.liveness, "quality": f.quality_ok === undefined ? null : (f.quality_ok ? "ok" : (f.quality_failures || []).join(", ")),
        "identity": i.outcome,
        ...(r.earlier_referrals.length ? { "earlier referrals": r.earlier_referrals.map((x) =>   // a repeat attempt
          `${x.gate_id} ${new Date(x.occurred_at).toLocaleString()}: ${x.reasons.join(", ")}`).join("; ") } : {}) });
      const can = session.can_override;
      $("override-form").querySelectorAll("button, textarea").forEach((x) => { x.disabled = !can; });
      $("override-note").hidden = can;
      document.querySelectorAll("#queue li").forEach((li) => li.classList.toggle("selected", li.dataset.id === id));
    } catch (err) { error(err.message); }
  }

  $("override-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const action = e.submitter ? e.submitter.value : "deny";
    const reason = new FormData(e.target).get("reason");
    try {
      await api(`/api/console/referrals/${selected}/override`, { method: "POST", body: { action, reason } });
      e.target.reset(); $("detail").hidden = true; selected = null; error(""); loadQueue();
    } catch (err) { error(err.message); }
  });

  // --- users ---
  async function loadUsers() {
    try {
      const users = await api("/api/console/users");
      const tb = $("user-table").querySelector("tbody"); tb.replaceChildren();
      for (const u of users) {
        const tr = el("tr"); tr.dataset.user = u.username;
        const path = `/api/console/users/${encodeURIComponent(u.username)}`;
        const change = async (what, body) => { try { await api(`${path}/${what}`, { method: "POST", body }); error(""); loadUsers(); } catch (err) { error(err.message); } };
        const own = u.username === session.username;   // a supervisor does not change their own account here
        const role = el("select"); role.name = "role"; role.disabled = own;
        for (const r of ["officer", "supervisor", "auditor"]) { const o = el("option", r); o.selected = r === u.role; role.append(o); }
        role.addEventListener("change", () => change("role", { role: role.value }));
        const b = el("button", u.disabled ? "Enable" : "Disable"); b.className = "toggle";
        b.addEventListener("click", () => change("disabled", { disabled: !u.disabled }));
        const pw = el("input"); pw.type = "password"; pw.name = "new-password"; pw.minLength = 12; pw.placeholder = "12+ characters";
        const set = el("button", "Set password"); set.className = "set-password";
        set.addEventListener("click", () => change("password", { password: pw.value }));
        const td = el("td"), tdp = el("td", undefined, "pw");
        if (!own) { td.append(b); tdp.append(pw, set); }
        const tdr = el("td"); tdr.append(role);
        tr.append(el("td", u.username), tdr, el("td", u.disabled ? "disabled" : "active"), td, tdp);
        tb.append(tr);
      }
    } catch (err) { error(err.message); }
  }
  $("user-form").addEventListener("submit", async (e) => {
    e.preventDefault(); const f = new FormData(e.target);
    try { await api("/api/console/users", { method: "POST", body: { username: f.get("username"), password: f.get("password"), role: f.get("role") } }); e.target.reset(); error(""); loadUsers(); }
    catch (err) { error(err.message); }
  });

  // --- audit ---
  function auditQuery() {
    const f = new FormData($("audit-form")); const q = new URLSearchParams();
    for (const [k, v] of f.entries()) if (v) q.set(k, (k === "since" || k === "until") ? new Date(v).toISOString() : v);
    return q;
  }
  $("audit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const rows = await api("/api/console/audit?" + auditQuery());
      const tb = $("audit-table").querySelector("tbody"); tb.replaceChildren(); $("audit-photos").hidden = true;
      for (const r of rows) {
        const tr = el("tr"); const faces = el("td");
        if (r.has_face_image) {
          const b = el("button", "Show", "faces"); faces.append(b);
          b.addEventListener("click", () => {   // each view is recorded in the audit trail
            $("a-seq").textContent = r.seq; $("audit-photos").hidden = false;
            $("a-chip").src = `/api/console/records/${r.id}/photo/chip`; $("a-live").src = `/api/console/records/${r.id}/photo/live`;
          });
        }
        tr.append(el("td", r.seq), el("td", new Date(r.occurred_at).toLocaleString()), el("td", r.event_type), el("td", r.outcome || ""),
          el("td", (r.reason_codes || []).join(", ")), el("td", r.actor || ""), el("td", (r.transaction_id || "").slice(0, 8)), faces);
        tb.append(tr);
      }
      error(rows.length ? "" : "No audit records match.");
    } catch (err) { error(err.message); }
  });
  for (const fmt of ["jsonl", "csv"]) {
    $("export-" + fmt).addEventListener("click", (e) => { e.preventDefault(); const q = auditQuery(); q.delete("document_number"); q.set("format", fmt); window.location = "/api/console/audit/export?" + q; });
  }

  // --- dashboard: small SVG charts drawn here (no library) ---
  const SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) { const e = document.createElementNS(SVGNS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; return e; }
  async function loadDashboard() {
    try {
      const d = await api("/api/console/dashboard");
      const t = d.totals;
      $("totals").replaceChildren(...[["Transactions", t.transactions], ["Passed", t.passed], ["Referred", t.referred],
        ["Mean time (s)", t.mean_seconds === null ? "—" : t.mean_seconds], ["Open referrals", d.open_referrals]].map(([k, v]) => { const x = el("div"); x.append(el("b", String(v)), el("span", k)); return x; }));
      const s = $("chart-series"); s.replaceChildren();
      const W = 640, H = 220, L = 40, B = 30, n = Math.max(d.series.length, 1);
      const max = Math.max(1, ...d.series.map((p) => p.passed + p.referred));
      const bw = Math.min((W - L - 10) / n, 60), top = 28;
      s.append(svg("line", { x1: L, y1: H - B, x2: W - 5, y2: H - B, stroke: "#999" }), svg("text", { x: 4, y: top + 4 }, String(max)), svg("text", { x: 4, y: H - B }, "0"));
      d.series.forEach((p, i) => {
        const x = L + i * bw + 2, w = Math.max(bw - 4, 2);
        const hp = (H - B - top) * p.passed / max, hr = (H - B - top) * p.referred / max;
        s.append(svg("rect", { x, y: H - B - hp, width: w, height: hp, fill: "#0a7d28" }));
        s.append(svg("rect", { x, y: H - B - hp - hr, width: w, height: hr, fill: "#b00020" }));
        if (n <= 12 || i % Math.ceil(n / 12) === 0) s.append(svg("text", { x, y: H - 10 }, new Date(p.t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
      });
      s.append(svg("rect", { x: W - 150, y: 5, width: 10, height: 10, fill: "#0a7d28" }), svg("text", { x: W - 135, y: 14 }, "passed"),
        svg("rect", { x: W - 80, y: 5, width: 10, height: 10, fill: "#b00020" }), svg("text", { x: W - 65, y: 14 }, "referred"));
      const r = $("chart-reasons"); r.replaceChildren();
      const entries = Object.entries(d.reasons); const rmax = Math.max(1, ...entries.map((e) => e[1]));
      if (!entries.length) r.append(svg("text", { x: 10, y: 20 }, "No referrals yet."));
      entries.forEach(([k, v], i) => {
        const y = 8 + i * 20, w = (W - 260) * v / rmax;
        r.append(svg("text", { x: 4, y: y + 12 }, k), svg("rect", { x: 220, y, width: w, height: 14, fill: "#b00020" }), svg("text", { x: 224 + w, y: y + 12 }, String(v)));
      });
    } catch (err) { error(err.message); }
  }

  loadSession().catch((e) => error(e.message));
})();
