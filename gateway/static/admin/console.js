/* tag-gateway console: no build step, no library. Every text from the server goes in with
   textContent (never as HTML). Writes carry the session's CSRF token in X-CSRF-Token. */
"use strict";
(function () {
  var API = "api/";            // relative to {prefix}/admin/
  var REFRESH_MS = 5000;       // the overview and the rules refresh themselves
  var KEPT_EVENTS = 500;       // live events kept in the page
  var csrf = null;
  var events = [];             // newest last
  var paused = false;
  var held = 0;                // events that arrived while paused
  var stream = null;
  var timer = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (attrs) Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (c) {
      if (c instanceof Node) { var td = el("td"); td.appendChild(c); tr.appendChild(td); }
      else tr.appendChild(el("td", c === null || c === undefined ? "" : c, {"class": "wrap"}));
    });
    return tr;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  // For the other pages' scripts (destinations.js), loaded after this one.
  window.gwConsole = {$: $, el: el, clear: clear};
  function age(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 120) return Math.round(seconds) + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    return Math.round(seconds / 3600) + " h";
  }
  function time(at) { return new Date(at * 1000).toLocaleTimeString(); }

  function api(path, options) {
    options = options || {};
    options.credentials = "same-origin";
    options.headers = options.headers || {};
    if (options.method && options.method !== "GET") options.headers["X-CSRF-Token"] = csrf || "";
    return fetch(API + path, options).then(function (response) {
      if (response.status === 401) { signedOut(true); throw new Error("signed out"); }
      if (response.status === 204) return null;
      return response.json().then(function (body) {
        if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
        return body;
      });
    });
  }

  // -- signing in and out ---------------------------------------------------------------------
  function signedOut(ended) {
    if (stream) { stream.close(); stream = null; }
    if (timer) { clearInterval(timer); timer = null; }
    $("console").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("sign-in").hidden = false;
    $("signed-out").hidden = !ended;
    $("sign-in-failed").hidden = location.search.indexOf("signin=failed") < 0;
    $("key").focus();
  }

  function start() {
    fetch(API + "session", {credentials: "same-origin"}).then(function (response) {
      if (response.status !== 200) { signedOut(false); return null; }
      return response.json();
    }).then(function (session) {
      if (!session) return;
      csrf = session.csrf_token;
      if (location.search) history.replaceState(null, "", location.pathname + location.hash);
      $("sign-in").hidden = true;
      $("console").hidden = false;
      $("sign-out").hidden = false;
      $("who").textContent = "Signed in until " + new Date(session.expires_at).toLocaleString() +
        "; answered by worker " + session.worker.index;
      show();
      refresh();
      timer = setInterval(refresh, REFRESH_MS);
      listen();
    });
  }

  $("sign-out").addEventListener("click", function () {
    fetch("sign-out", {method: "POST", credentials: "same-origin",
                       headers: {"X-CSRF-Token": csrf || ""}})
      .then(function () { signedOut(false); });
  });

  // -- pages ----------------------------------------------------------------------------------
  function show() {
    var page = (location.hash || "#overview").slice(1);
    if (!$(page) || !$(page).classList.contains("page")) page = "overview";
    document.querySelectorAll(".page").forEach(function (section) {
      section.hidden = section.id !== page;
    });
    document.querySelectorAll("nav a").forEach(function (a) {
      if (a.dataset.page === page) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    if (page === "dead-letters") loadDead("");
    if (page === "rules") api("rules").then(renderRules).catch(function () {});
    if (page === "access-keys") loadKeys("");
  }
  window.addEventListener("hashchange", show);

  // -- overview -------------------------------------------------------------------------------
  function refresh() {
    api("destinations").then(renderDestinations).catch(function () {});
    api("status").then(renderHealth).catch(function () {});
    api("traffic").then(renderTraffic).catch(function () {});
    if (!$("rules").hidden) api("rules").then(renderRules).catch(function () {});
  }

  function renderDestinations(list) {
    var body = $("destinations").tBodies[0];
    clear(body);
    list.forEach(function (d) {
      var state = d.state + (d.paused_reason ? " (" + d.paused_reason + ")" : "") +
        (d.state === "dry_run" && d.dry_run_reason ? " (" + d.dry_run_reason + ")" : "");
      body.appendChild(row([d.name, d.type, state, d.token_set ? "set" : "not set",
        d.last_delivery || "", d.last_error || "", d.queued,
        age(d.oldest_queued_age_seconds), d.dead]));
    });
    ["live-destination", "dead-destination"].forEach(function (id) {
      var select = $(id), chosen = select.value;
      var names = list.map(function (d) { return d.name; });
      var have = Array.prototype.map.call(select.options, function (o) { return o.value; });
      names.forEach(function (name) {
        if (have.indexOf(name) < 0) select.appendChild(el("option", name, {value: name}));
      });
      select.value = chosen;
    });
    $("overview-updated").textContent = "Updated " + new Date().toLocaleTimeString() +
      "; refreshes every " + REFRESH_MS / 1000 + " s.";
  }

  function renderHealth(status) {
    var dl = $("health");
    clear(dl);
    function item(name, value) { dl.appendChild(el("dt", name)); dl.appendChild(el("dd", value)); }
    item("Rule set", status.rules.rule_set + " (" + status.rules.rules + " rules, loaded " +
      (status.rules.loaded_at || "never") + ")");
    item("Last rules reload error", status.rules.last_error || "none");
    item("Config loaded", status.config.loaded_at || "");
    item("Last config reload error", status.config.last_error || "none");
    if (status.config.waiting_for_restart.length)
      item("Waiting for a restart", status.config.waiting_for_restart.join(", "));
    item("Outbox", status.outbox_unavailable || "available");
    if (status.backpressure) item("Backpressure", status.backpressure);
    status.warnings.forEach(function (w) { item("Warning", w); });
    renderProcesses(status.processes);
    item("Answered by", "worker " + status.worker.index +
      (status.worker.relays ? " (relays)" : " (does not relay)"));
  }

  // -- the whole gateway: its processes, and the chart ----------------------------------------
  function renderProcesses(processes) {
    var body = $("processes").tBodies[0];
    clear(body);
    (processes || []).forEach(function (p) {
      var tr = row([p.node + " (pid " + p.pid + ")" + (p.answered ? ", answered this page" : ""),
        p.worker, p.relays ? "yes" : "no", p.gone ? "gone" : "live",
        age(p.seen_seconds_ago) + " ago", p.started_at || "", p.version || ""]);
      tr.setAttribute("data-gone", p.gone ? "true" : "false");
      body.appendChild(tr);
    });
  }

  var SVG = "http://www.w3.org/2000/svg";
  var traffic = null;          // the last answer, drawn again when the width changes
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function renderTraffic(t) {
    traffic = t;
    var box = $("traffic-chart");
    clear(box);
    var width = Math.max(240, box.clientWidth || 600), height = 160;
    var left = 36, right = 8, top = 8, bottom = 22;
    var peak = Math.max(1, Math.max.apply(null, t.received.concat(t.delivered)));
    var n = t.minutes.length, step = (width - left - right) / Math.max(1, n - 1);
    function x(i) { return left + i * step; }
    function y(v) { return top + (height - top - bottom) * (1 - v / peak); }
    var label = "Events per minute over the last hour: " + t.received_total + " received, " +
      t.delivered_total + " delivered; at most " + peak + " in a minute.";
    var chart = svg("svg", {viewBox: "0 0 " + width + " " + height, width: width,
                            height: height, role: "img", "aria-label": label});
    chart.appendChild(svg("line", {"class": "axis", x1: left, x2: width - right,
                                   y1: y(0), y2: y(0)}));
    chart.appendChild(svg("line", {"class": "axis", x1: left, x2: width - right,
                                   y1: y(peak), y2: y(peak)}));
    chart.appendChild(svg("text", {x: left - 4, y: y(peak) + 4, "text-anchor": "end"}, peak));
    chart.appendChild(svg("text", {x: left - 4, y: y(0) + 4, "text-anchor": "end"}, 0));
    [[0, "-60 min", "start"], [Math.floor(n / 2), "-30 min", "middle"],
     [n - 1, "now", "end"]].forEach(function (tick) {
      chart.appendChild(svg("text", {x: x(tick[0]), y: height - 6, "text-anchor": tick[2]},
                            tick[1]));
    });
    ["received", "delivered"].forEach(function (kind) {
      var points = t[kind].map(function (v, i) { return x(i).toFixed(1) + "," + y(v).toFixed(1); });
      chart.appendChild(svg("polyline", {"class": kind, points: points.join(" ")}));
    });
    box.appendChild(chart);
    $("traffic-totals").textContent = "— " + t.received_total + " received, " +
      t.delivered_total + " delivered, from " + t.processes + " process" +
      (t.processes === 1 ? "" : "es") + (t.unavailable ? " (the store is unavailable: " +
      "this process only)" : "");
    var body = $("traffic-table").tBodies[0];
    clear(body);
    for (var i = n - 1; i >= 0; i--) {
      if (!t.received[i] && !t.delivered[i]) continue;
      body.appendChild(row([new Date(t.minutes[i] * 1000).toLocaleTimeString([], {
        hour: "2-digit", minute: "2-digit"}), t.received[i], t.delivered[i]]));
    }
    if (!body.rows.length) body.appendChild(row(["none in the last hour", "", ""]));
  }
  window.addEventListener("resize", function () { if (traffic) renderTraffic(traffic); });

  // -- live events ----------------------------------------------------------------------------
  function listen() {
    if (stream) stream.close();
    stream = new EventSource(API + "events/stream");
    stream.onopen = function () { $("live-state").textContent = paused ? "Paused." : "Connected."; };
    stream.onerror = function () {
      $("live-state").textContent = "Reconnecting…";
      fetch(API + "session", {credentials: "same-origin"}).then(function (r) {
        if (r.status === 401) signedOut(true);
      });
    };
    ["incoming", "outgoing", "lost"].forEach(function (kind) {
      stream.addEventListener(kind, function (message) { arrived(JSON.parse(message.data)); });
    });
  }

  function arrived(item) {
    events.push(item);
    if (events.length > KEPT_EVENTS) events.splice(0, events.length - KEPT_EVENTS);
    if (paused) { held += 1; $("live-state").textContent = "Paused; " + held + " new."; return; }
    if (matches(item)) $("events").insertBefore(describe(item), $("events").firstChild);
    var list = $("events");
    while (list.children.length > KEPT_EVENTS) list.removeChild(list.lastChild);
  }

  function destinationsOf(item) {
    if (item.kind === "outgoing") return [item.destination];
    return (item.destinations || []).concat(Object.keys(item.refused_by || {}),
                                            item.withheld_from || []);
  }

  function matches(item) {
    if (item.kind === "lost") return true;
    var dest = $("live-destination").value, name = $("live-event").value.trim().toLowerCase();
    var outcome = $("live-outcome").value;
    if (dest && destinationsOf(item).indexOf(dest) < 0) return false;
    if (outcome && item.outcome !== outcome) return false;
    if (name) {
      var names = item.kind === "outgoing" ? item.event_names : [item.event_name || ""];
      if (!names.some(function (n) { return n.toLowerCase().indexOf(name) >= 0; })) return false;
    }
    return true;
  }

  function origin(item) {   // which worker of which node saw it
    if (item.worker === undefined) return "";
    return "[worker " + item.worker + (item.node ? " on " + item.node : "") + "]";
  }

  function describe(item) {
    var li = el("li", null, {"data-outcome": item.outcome || item.kind, "data-kind": item.kind});
    var parts = [];
    if (item.kind === "lost") {
      parts.push("… " + item.count + " events were lost: they came faster than they could " +
                 "be shown", origin(item));
    } else if (item.kind === "outgoing") {
      parts.push(time(item.at), origin(item), "→", item.destination, item.outcome + ":",
                 item.events + " events (" + item.event_names.join(", ") + ")",
                 "—", item.request, "—", item.answer);
    } else {
      parts.push(time(item.at), origin(item), "←",
                 item.source === "server" ? "server event" : "browser hit");
      if (item.pixel) parts.push("pixel " + item.pixel);
      if (item.event_name) parts.push(item.event_name);
      if (item.event_id) parts.push("id " + item.event_id);
      parts.push("— " + item.outcome);
      if (item.destinations && item.destinations.length)
        parts.push("to " + item.destinations.join(", "));
      if (item.dropped_by) parts.push("by rule " + item.dropped_by);
      if (item.withheld_from && item.withheld_from.length)
        parts.push("withheld from " + item.withheld_from.join(", ") + " (consent)");
      Object.keys(item.refused_by || {}).forEach(function (name) {
        parts.push("refused by " + name + ": " + item.refused_by[name].join("; "));
      });
      if (item.reasons && item.reasons.length) parts.push("(" + item.reasons.join("; ") + ")");
      if (item.rules && item.rules.length) parts.push("rules: " + item.rules.map(function (r) {
        return r.rule + (r.did.length ? " [" + r.did.join(", ") + "]" : "");
      }).join(", "));
      if (item.user_data && item.user_data.length)
        parts.push("user data: " + item.user_data.join(", "));
      if (item.test_event_code) parts.push("test " + item.test_event_code);
    }
    li.textContent = parts.join(" ");
    return li;
  }

  function rerender() {
    var list = $("events");
    clear(list);
    for (var i = events.length - 1; i >= 0; i--) if (matches(events[i])) list.appendChild(describe(events[i]));
  }

  ["live-destination", "live-event", "live-outcome"].forEach(function (id) {
    $(id).addEventListener("input", rerender);
  });
  $("live-filters").addEventListener("submit", function (e) { e.preventDefault(); });
  $("live-pause").addEventListener("click", function () {
    paused = !paused;
    this.textContent = paused ? "Resume" : "Pause";
    this.setAttribute("aria-pressed", paused ? "true" : "false");
    $("live-state").textContent = paused ? "Paused." : "Connected.";
    if (!paused) { held = 0; rerender(); }
  });

  // -- dead letters ---------------------------------------------------------------------------
  function deadQuery() {
    var query = [], dest = $("dead-destination").value, reason = $("dead-reason").value;
    if (dest) query.push("destination=" + encodeURIComponent(dest));
    if (reason) query.push("reason=" + encodeURIComponent(reason));
    return query;
  }

  function loadDead(note) {
    api("dead-letters?" + deadQuery().concat(["limit=1000"]).join("&")).then(function (answer) {
      var body = $("dead").tBodies[0];
      clear(body);
      answer.dead_letters.forEach(function (d) {
        var box = el("input", null, {type: "checkbox", value: d.id,
                                     "aria-label": "Select dead letter " + d.id});
        var one = el("button", "Replay", {type: "button", "aria-label": "Replay dead letter " + d.id});
        one.addEventListener("click", function () { replay(["id=" + d.id]); });
        body.appendChild(row([box, d.id, d.destination, d.event_name + " (" + d.event_id + ")",
          d.reason, (d.last_error || "") + (d.fbtrace_id ? " [fbtrace_id " + d.fbtrace_id + "]" : ""),
          d.attempts, new Date(d.updated_at * 1000).toLocaleString(), one]));
      });
      $("dead-state").textContent = (typeof note === "string" ? note : "") +
        answer.dead_letters.length + " dead letters shown.";
    }).catch(function (e) { $("dead-state").textContent = "Could not load: " + e.message; });
  }

  function replay(query) {
    api("dead-letters/replay?" + query.join("&"), {method: "POST"}).then(function (answer) {
      loadDead("Replayed " + answer.replayed + " events: they are queued again. ");
    }).catch(function (e) { $("dead-state").textContent = "Replay refused: " + e.message; });
  }

  $("dead-filters").addEventListener("submit", function (e) { e.preventDefault(); loadDead(""); });
  $("replay-selected").addEventListener("click", function () {
    var ids = Array.prototype.map.call(
      document.querySelectorAll("#dead tbody input:checked"), function (b) { return "id=" + b.value; });
    if (!ids.length) { $("dead-state").textContent = "Select dead letters first."; return; }
    replay(ids);
  });
  $("replay-reason").addEventListener("click", function () {
    if (!$("dead-reason").value) { $("dead-state").textContent = "Choose a reason first."; return; }
    replay(deadQuery());
  });

  // -- rules ----------------------------------------------------------------------------------
  function renderRules(r) {
    var dl = $("rules-summary");
    clear(dl);
    function item(name, value) { dl.appendChild(el("dt", name)); dl.appendChild(el("dd", value)); }
    item("Rule set", r.rule_set);
    item("Files", r.files.join(", ") || "none");
    item("Loaded", r.loaded_at || "never");
    var passed = r.tests.filter(function (t) { return t.passed; }).length;
    item("Tests", passed + " passed, " + (r.tests.length - passed) + " failed");
    $("rules-error").hidden = !r.last_error;
    var problems = $("rules-problems");
    clear(problems);
    if (r.last_error) {
      if (r.last_error_problems.length) r.last_error_problems.forEach(function (p) {
        problems.appendChild(el("li", p.file + (p.line ? ":" + p.line : "") + " — " +
          (p.subject ? p.subject + ": " : "") + p.message + (p.hint ? "; " + p.hint : "")));
      });
      else problems.appendChild(el("li", r.last_error));
    }
    var body = $("rules-list").tBodies[0];
    clear(body);
    r.rules.forEach(function (rule) {
      body.appendChild(row([rule.name, rule.enabled ? "yes" : "no", rule.matched, rule.dropped, rule.routed]));
    });
    var tests = $("rules-tests");
    clear(tests);
    r.tests.forEach(function (t) {
      tests.appendChild(el("li", (t.passed ? "PASS " : "FAIL ") + t.file + ":" + t.line + " " + t.name +
        (t.message ? " — " + t.message : ""), {"class": t.passed ? "ok" : "error"}));
    });
  }

  // -- access keys ----------------------------------------------------------------------------
  function loadKeys(note) {
    api("access-keys").then(function (list) {
      var body = $("keys").tBodies[0];
      clear(body);
      list.forEach(function (k) {
        var action = k.source === "console" ? revokeButton(k.name) : "in config.yaml";
        body.appendChild(row([k.name, k.source, k.pixels === "*" ? "every pixel" : k.pixels.join(", "),
          k.created_at || "", action]));
      });
      $("keys-state").textContent = note + list.length + " access keys.";
    }).catch(function (e) { $("keys-state").textContent = "Could not load: " + e.message; });
  }

  function revokeButton(name) {
    var button = el("button", "Revoke", {type: "button", "aria-label": "Revoke access key " + name});
    button.addEventListener("click", function () {
      if (!window.confirm("Revoke the access key " + name + "? Backends sending with it are " +
                          "refused within a second.")) return;
      api("access-keys/" + encodeURIComponent(name), {method: "DELETE"}).then(function () {
        loadKeys("Revoked " + name + ". ");
      }).catch(function (e) { $("keys-state").textContent = "Revoke refused: " + e.message; });
    });
    return button;
  }

  function forgetKey() {  // the new key leaves the page
    $("key-made-value").value = "";
    $("key-made").hidden = true;
    $("key-copied").textContent = "";
  }

  function scopeChanged() {
    $("key-pixels").disabled = document.querySelector("input[name=key-scope]:checked").value === "all";
  }
  document.querySelectorAll("input[name=key-scope]").forEach(function (radio) {
    radio.addEventListener("change", scopeChanged);
  });

  $("key-new").addEventListener("submit", function (e) {
    e.preventDefault();
    var all = document.querySelector("input[name=key-scope]:checked").value === "all";
    var pixels = all ? "*" : $("key-pixels").value.split(",").map(function (p) { return p.trim(); })
      .filter(function (p) { return p; });
    forgetKey();
    api("access-keys", {method: "POST", headers: {"Content-Type": "application/json"},
                        body: JSON.stringify({name: $("key-name").value.trim(), pixels: pixels})})
      .then(function (made) {
        $("key-made-name").textContent = made.name + " (" +
          (made.pixels === "*" ? "every pixel" : made.pixels.join(", ")) + ")";
        $("key-made-value").value = made.key;
        $("key-made").hidden = false;
        $("key-new").reset();
        scopeChanged();
        $("key-made-value").focus();
        $("key-made-value").select();
        loadKeys("Made " + made.name + ". ");
      }).catch(function (e) { $("keys-state").textContent = "Not made: " + e.message; });
  });

  $("key-copy").addEventListener("click", function () {
    var value = $("key-made-value").value;
    function copied() { $("key-copied").textContent = "Copied."; }
    function byHand() {
      $("key-made-value").select();
      $("key-copied").textContent = document.execCommand("copy") ? "Copied." :
        "Could not copy: select the key and copy it yourself.";
    }
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(value).then(copied, byHand);
    else byHand();
  });
  $("key-done").addEventListener("click", function () { forgetKey(); $("key-name").focus(); });
  window.addEventListener("hashchange", function () { if (location.hash !== "#access-keys") forgetKey(); });

  start();
})();
