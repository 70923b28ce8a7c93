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

  // A dialog whose content was swapped in by htmx opens itself.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    var dialog = target && target.closest ? target.closest("dialog") : null;
    if (dialog && !dialog.open && dialog.dataset.autoOpen !== undefined && dialog.showModal) dialog.showModal();
  });

  document.addEventListener("close-dialog", function () {
    document.querySelectorAll("dialog[open]").forEach(function (d) { d.close(); });
  });
})();

// A connection form that needs a passed Test: changing any value after the test disables OK again
// (the server refuses untested values anyway; this keeps the button honest).
document.addEventListener("input", function (event) {
  var form = event.target.closest ? event.target.closest("form[data-requires-test='true']") : null;
  if (!form || event.target.name === "name" || event.target.name === "description") return;
  var save = form.querySelector("#connection-save");
  var token = form.querySelector("input[name='test_token']");
  if (save && token && token.value) { save.disabled = true; token.value = ""; }
});

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
