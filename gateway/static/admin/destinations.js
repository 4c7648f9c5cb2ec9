/* tag-gateway console, the Destinations page: the list (config.yaml's read-only), adding one,
   its write-only token (set, replace, clear: a password field never filled in), the token
   check's verdict, a test event, deleting. Texts from the server go in with textContent only.
   Writes carry the session's CSRF token in X-CSRF-Token. */
"use strict";
(function () {
  var API = "api/";
  var csrf = null;
  var types = {};  // type -> {vendor, account_option, credentials_name}
  var counter = 0;  // unique ids for the labels of each card's fields

  var $ = window.gwConsole.$, el = window.gwConsole.el, clear = window.gwConsole.clear;
  function visible() { return !$("console").hidden && !$("manage").hidden; }

  function call(method, path, body) {
    var headers = {};
    if (method !== "GET") headers["X-CSRF-Token"] = csrf || "";
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(API + path, {method: method, credentials: "same-origin", headers: headers,
                              body: body === undefined ? undefined : JSON.stringify(body)})
      .then(function (response) {
        if (response.status === 204) return null;
        return response.json().then(function (answer) {
          if (!response.ok) {
            var error = new Error(answer.error || ("HTTP " + response.status));
            error.problems = answer.problems || [];
            throw error;
          }
          return answer;
        });
      });
  }

  function load() {
    var ready = [];
    if (!csrf) ready.push(call("GET", "session").then(function (s) { csrf = s.csrf_token; }));
    if (!Object.keys(types).length) ready.push(call("GET", "destination-types").then(fillTypes));
    return Promise.all(ready).then(function () { return call("GET", "destinations"); })
      .then(render)
      .catch(function (e) { $("manage-state").textContent = "Could not load: " + e.message; });
  }

  function fillTypes(list) {
    var select = $("add-type");
    clear(select);
    list.forEach(function (t) {
      types[t.type] = t;
      select.appendChild(el("option", t.type + " (" + t.vendor + ")", {value: t.type}));
    });
    accountLabel();
  }

  function accountLabel() {
    var t = types[$("add-type").value];
    $("add-account-label").textContent = "Pixel or account id" +
      (t ? " (" + t.account_option + ")" : "");
    $("add-token").previousElementSibling.textContent =
      (t ? t.credentials_name : "Token") + " (optional, write-only)";
  }
  $("add-type").addEventListener("change", accountLabel);

  // -- the list -------------------------------------------------------------------------------
  function render(list) {
    var ul = $("manage-list");
    clear(ul);
    list.forEach(function (d) { ul.appendChild(card(d)); });
    $("manage-state").textContent = list.length + " destinations; updated " +
      new Date().toLocaleTimeString() + ".";
  }

  function card(d) {
    var li = el("li", null, {"data-destination": d.name});
    var console_ = d.source === "console";
    li.appendChild(el("h3", d.name + " (" + d.type + ")"));
    li.appendChild(el("p", console_ ? "Added in the console." : "From config.yaml (read-only).",
                      {"class": "muted"}));
    var dl = el("dl");
    function item(name, value) { dl.appendChild(el("dt", name)); dl.appendChild(el("dd", value)); }
    var why = d.token_problem || d.problem || d.paused_reason ||
      (d.state === "dry_run" ? d.dry_run_reason : "");
    item("State", d.state + (why ? " (" + why + ")" : ""));
    item("Token", d.token_set ? "token set" : "no token");
    if (d.token_check) {
      var verdict = d.token_check.ok === true ? "works" :
        d.token_check.ok === false ? "refused" : "not checked";
      item("Token check", verdict + ": " + d.token_check.message + " (" +
        d.token_check.checked_at + ")");
    }
    if (d.queued !== null && d.queued !== undefined) item("Queued", d.queued);
    if (d.last_error) item("Last error", d.last_error);
    li.appendChild(dl);
    var result = el("p", null, {role: "status"});
    if (console_) li.appendChild(tokenForm(d, result));
    var actions = el("div", null, {"class": "actions"});
    actions.appendChild(button("Send test event", "Send a test event to " + d.name, function () {
      result.textContent = "Sending a test event…";
      call("POST", "destinations/" + encodeURIComponent(d.name) + "/test-event")
        .then(function (v) {
          result.textContent = (v.ok ? "Test event accepted: " : "Test event refused: ") +
            v.message;
        })
        .catch(function (e) { result.textContent = "Not sent: " + e.message; });
    }));
    if (console_ && d.token_set) {
      actions.appendChild(button("Clear token", "Clear the token of " + d.name, function () {
        if (!window.confirm("Clear the token of " + d.name + "? It then runs dry: its events " +
                            "are marked as sent without being sent.")) return;
        change(call("DELETE", "destinations/" + encodeURIComponent(d.name) + "/token"),
               result, "Token cleared.");
      }));
    }
    if (console_) {
      actions.appendChild(button("Delete", "Delete destination " + d.name, function () {
        if (!window.confirm("Delete destination " + d.name + "? Its queued events stay in the " +
                            "outbox and go out if a destination of this name comes back.")) return;
        change(call("DELETE", "destinations/" + encodeURIComponent(d.name)), result, "Deleted.");
      }));
    }
    li.appendChild(actions);
    li.appendChild(result);
    return li;
  }

  function button(text, label, onClick) {
    var b = el("button", text, {type: "button", "aria-label": label});
    b.addEventListener("click", onClick);
    return b;
  }

  function tokenForm(d, result) {
    var form = el("form");
    var id = "token-" + (++counter);
    var secret = types[d.type] ? types[d.type].credentials_name : "token";
    var label = el("label", (d.token_set ? "Replace the " : "Set the ") + secret + " of " + d.name,
                   {"for": id});
    var input = el("input", null, {id: id, type: "password", autocomplete: "new-password",
                                   required: "required"});
    label.appendChild(input);
    form.appendChild(label);
    form.appendChild(el("button", d.token_set ? "Replace token" : "Set token", {type: "submit"}));
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var token = input.value;
      input.value = "";  // never kept in the page
      result.textContent = "Saving and checking the token…";
      change(call("PUT", "destinations/" + encodeURIComponent(d.name) + "/token",
                  {token: token}), result, "Token saved.");
    });
    return form;
  }

  function change(request, result, done) {
    request.then(function () {
      return load().then(function () {
        var status = document.querySelector('#manage-list [data-destination="' +
          CSS.escape(result.closest("li").dataset.destination) + '"] [role="status"]');
        if (status) status.textContent = done;
        else $("manage-state").textContent = done + " " + $("manage-state").textContent;
      });
    }).catch(function (e) { result.textContent = "Refused: " + e.message; });
  }

  // -- adding ---------------------------------------------------------------------------------
  $("add-destination").addEventListener("submit", function (e) {
    e.preventDefault();
    var state = $("add-state"), problems = $("add-problems");
    clear(problems);
    var entry = {}, text = $("add-options").value.trim();
    if (text) {
      try { entry = JSON.parse(text); } catch (err) { entry = null; }
      if (!entry || typeof entry !== "object" || Array.isArray(entry)) {
        state.textContent = "More options must be a JSON object, e.g. {\"test_event_code\": \"TEST1\"}.";
        $("add-options").focus();
        return;
      }
    }
    var type = $("add-type").value, name = $("add-name").value.trim();
    entry.type = type;
    entry.name = name;
    var account = $("add-account").value.trim();
    if (account && types[type]) entry[types[type].account_option] = account;
    var token = $("add-token").value;
    $("add-token").value = "";  // never kept in the page
    state.textContent = "Adding…";
    call("POST", "destinations", entry).then(function () {
      if (!token) return null;
      state.textContent = "Added; saving and checking the token…";
      return call("PUT", "destinations/" + encodeURIComponent(name) + "/token", {token: token});
    }).then(function () {
      state.textContent = "Added " + name + ".";
      $("add-name").value = "";
      $("add-account").value = "";
      $("add-options").value = "";
      return load();
    }).catch(function (err) {
      state.textContent = "Not added: " + err.message;
      (err.problems || []).forEach(function (p) {
        problems.appendChild(el("li", p.where + ": " + p.message));
      });
    });
  });

  $("manage-refresh").addEventListener("click", load);
  // Loaded when the page is shown (not on a timer: a refresh would wipe a token being typed).
  var watch = new MutationObserver(function () { if (visible()) load(); });
  watch.observe($("manage"), {attributes: true, attributeFilter: ["hidden"]});
  watch.observe($("console"), {attributes: true, attributeFilter: ["hidden"]});
})();
