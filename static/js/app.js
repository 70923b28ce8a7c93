// Portal behaviour. No inline scripts (the CSP forbids them); htmx runs with allowEval off.
(function () {
  "use strict";

  function showToast(level, message) {
    var region = document.getElementById("toasts");
    if (!region || !message) return;
    var item = document.createElement("div");
    item.className = "toast toast-" + (level || "info");
    item.setAttribute("role", level === "error" ? "alert" : "status");
    item.textContent = message;
    region.appendChild(item);
    setTimeout(function () { item.remove(); }, level === "error" ? 9000 : 5000);
  }

  document.addEventListener("toast", function (event) {
    var detail = event.detail;
    var items = Array.isArray(detail) ? detail : (detail && detail.value ? detail.value : [detail]);
    items.forEach(function (t) { if (t) showToast(t.level, t.message); });
  });

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.getResponseHeader("HX-Trigger")) return; // the server sent its own toast
    var id = xhr ? xhr.getResponseHeader("X-Request-ID") : "";
    showToast("error", "The request failed (" + (xhr ? xhr.status : "?") + ")" + (id ? " — reference " + id : "") + ".");
  });

  document.addEventListener("htmx:sendError", function () {
    showToast("error", "Network error: the portal could not be reached. Please retry.");
  });

  // Plain (non-htmx) forms that ask for confirmation.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !form.hasAttribute("hx-post") && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  // Elements with data-dialog-open / data-dialog-close drive native <dialog>s.
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog-open]");
    if (opener) {
      var dialog = document.getElementById(opener.dataset.dialogOpen);
      if (dialog && dialog.showModal) { event.preventDefault(); dialog.showModal(); }
      return;
    }
    var closer = event.target.closest("[data-dialog-close]");
    if (closer) {
      var d = closer.closest("dialog");
      if (d) { event.preventDefault(); d.close(); }
    }
  });

  // A dialog whose body was swapped in by htmx opens itself. Only the body: a late answer to a search inside a
  // dialog the user already closed must not open it again.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    var dialog = target && target.parentElement && target.parentElement.tagName === "DIALOG" ? target.parentElement : null;
    if (dialog && !dialog.open && dialog.dataset.autoOpen !== undefined && dialog.showModal) dialog.showModal();
  });

  // A table box that really scrolls sideways (.overflow-auto wider inside than out) becomes a focusable region named
  // after its table, so keyboard users can scroll it (WCAG 2.1.1); boxes that fit stay out of the tab order.
  function markScrollRegions(root) {
    (root || document).querySelectorAll(".overflow-auto").forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth + 1;
      if (scrolls && !box.hasAttribute("data-scrolls")) {
        var caption = box.querySelector("caption");
        var heading = caption ? caption.textContent.trim() : "";
        box.setAttribute("data-scrolls", "");
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", (heading ? heading + " — " : "") + "table, scrolls sideways");
      } else if (!scrolls && box.hasAttribute("data-scrolls")) {
        ["data-scrolls", "tabindex", "role", "aria-label"].forEach(function (a) { box.removeAttribute(a); });
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { markScrollRegions(); });
  document.addEventListener("htmx:afterSettle", function () { markScrollRegions(); });
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(markScrollRegions, 150);
  });

  // Tabs (WAI-ARIA tabs pattern, manual activation because a panel is fetched): one tab stop per tab list; arrow
  // keys, Home and End move focus between the tabs, Enter or Space opens the focused one.
  document.addEventListener("keydown", function (event) {
    var tab = event.target.closest ? event.target.closest("[role='tab']") : null;
    var list = tab ? tab.closest("[role='tablist']") : null;
    if (!list) return;
    if (event.key === " ") { event.preventDefault(); tab.click(); return; }
    var tabs = Array.prototype.slice.call(list.querySelectorAll("[role='tab']"));
    var index = tabs.indexOf(tab);
    var next = {ArrowRight: index + 1, ArrowDown: index + 1, ArrowLeft: index - 1, ArrowUp: index - 1,
                Home: 0, End: tabs.length - 1}[event.key];
    if (next === undefined) return;
    event.preventDefault();
    tabs[(next + tabs.length) % tabs.length].focus();
  });

  // Focus survives htmx swaps: when the focused control was replaced (a rank move, a row re-rendered, a tab strip
  // swapped out-of-band), focus goes to its counterpart in the new content — the same id, else the same name in
  // the same row — instead of falling to <body>.
  var focusBefore = null;
  document.addEventListener("htmx:beforeRequest", function () {
    var el = document.activeElement;
    if (!el || el === document.body) { focusBefore = null; return; }
    var row = el.parentElement ? el.parentElement.closest("[id]") : null;
    focusBefore = {id: el.id, name: el.getAttribute("aria-label") || el.textContent.trim(), tag: el.tagName,
                   row: row ? row.id : null};
  });
  function refocus() {
    var wanted = focusBefore;
    var active = document.activeElement;
    if (!wanted || (active && active !== document.body && document.contains(active))) return;
    var found = wanted.id ? document.getElementById(wanted.id) : null;
    if (!found && wanted.tag) {
      var scope = (wanted.row && document.getElementById(wanted.row)) || document;
      var same = Array.prototype.slice.call(scope.querySelectorAll(wanted.tag)).filter(function (el) {
        return (el.getAttribute("aria-label") || el.textContent.trim()) === wanted.name;
      });
      found = same.filter(function (el) { return !el.disabled; })[0];
      if (!found && wanted.row && scope !== document) {
        found = scope.querySelector("button:not([disabled]), a[href], input:not([disabled]):not([type=hidden]), " +
                                    "select:not([disabled]), textarea:not([disabled])");
      }
    }
    if (found && !found.disabled) found.focus();
  }
  document.addEventListener("htmx:afterSettle", refocus);

  // Dialogs: focus goes back to the control that opened the dialog. If an action re-rendered that control, to its
  // counterpart by name, else to the heading of the section it was in.
  var dialogOpener = null;
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var dialog = document.getElementById("erp-dialog");
    if (dialog && !dialog.open && elt && !elt.closest("dialog")) dialogOpener = elt;
  });
  document.addEventListener("close", function (event) {
    var dialog = event.target;
    if (!dialog || dialog.tagName !== "DIALOG" || !dialogOpener) return;
    var opener = dialogOpener;
    dialogOpener = null;
    var name = opener.getAttribute("aria-label") || opener.textContent.trim();
    var section = opener.closest("section[id]");
    var sectionId = section ? section.id : null;
    setTimeout(function () {  // after the htmx swap that closed the dialog has settled
      var target = document.contains(opener) && !opener.disabled ? opener : null;
      if (!target) {
        target = Array.prototype.slice.call(document.querySelectorAll("button, a[href]")).filter(function (el) {
          return !el.closest("dialog") && !el.disabled && (el.getAttribute("aria-label") || el.textContent.trim()) === name;
        })[0] || null;
      }
      if (!target && sectionId && document.getElementById(sectionId)) {
        target = document.getElementById(sectionId).querySelector("h2, h3");
        if (target && !target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
      }
      if (target) target.focus();
    }, 50);
  }, true);

  document.addEventListener("close-dialog", function () {
    document.querySelectorAll("dialog[open]").forEach(function (d) { d.close(); });
  });
})();

// A connection form that needs a passed Test: only the connector's config values (cfg_*) need it, so OK is enabled
// while they equal values the server vouched for — those of the passed test (data-tested-config) or, when editing, the
// saved ones (data-saved-config) — and disabled otherwise; reverting re-enables it (the test token is kept for that).
// Secrets are never in those values: a blank secret input keeps the tested or stored one, anything typed is new.
// The server refuses untested values anyway; this keeps the button honest.
(function () {
  function typedConfig(form) {
    var typed = {};
    var secretTyped = false;
    form.querySelectorAll("[name^='cfg_']").forEach(function (input) {
      if (input.type === "password") secretTyped = secretTyped || input.value !== "";
      else if (input.type === "checkbox") typed[input.name] = input.checked ? (input.value || "1") : "";
      else typed[input.name] = input.value;
    });
    return secretTyped ? null : typed;
  }

  function same(vouched, typed) {
    var keys = Object.keys(vouched).concat(Object.keys(typed));
    return keys.every(function (key) { return (vouched[key] || "") === (typed[key] || ""); });
  }

  function onConfigChange(event) {
    var input = event.target;
    var form = input.closest ? input.closest("form[data-requires-test='true']") : null;
    if (!form || !input.name || input.name.indexOf("cfg_") !== 0) return;
    var save = form.querySelector("#connection-save");
    if (!save) return;
    var typed = typedConfig(form);
    save.disabled = !typed || !["testedConfig", "savedConfig"].some(function (name) {
      if (!form.dataset[name]) return false;
      try { return same(JSON.parse(form.dataset[name]), typed); } catch (e) { return false; }
    });
  }

  document.addEventListener("input", onConfigChange);
  document.addEventListener("change", onConfigChange);
})();

// ERP tab, compare step: "Use all CRM values" / "Use all ERP values" tick every radio of that side that may be chosen.
document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("[data-select-all]") : null;
  if (!button) return;
  var form = button.closest("form");
  if (!form) return;
  var side = button.dataset.selectAll;
  form.querySelectorAll("input[type='radio']").forEach(function (radio) {
    if (radio.value === side && !radio.disabled) radio.checked = true;
  });
});

// A lazily loaded region marked aria-busy (e.g. the ERP tab placeholder, swapped innerHTML) is no longer busy once
// its content arrived.
document.addEventListener("htmx:afterSwap", function (event) {
  var target = event.detail.target;
  if (target && target.getAttribute && target.getAttribute("aria-busy") === "true") target.removeAttribute("aria-busy");
});

// A "tick all" checkbox (data-check-all="name"): ticks or clears every checkbox of that name in its form.
document.addEventListener("change", function (event) {
  var all = event.target.closest ? event.target.closest("input[data-check-all]") : null;
  if (!all || !all.form) return;
  all.form.querySelectorAll("input[type='checkbox'][name='" + all.dataset.checkAll + "']").forEach(function (box) {
    box.checked = all.checked;
  });
});
