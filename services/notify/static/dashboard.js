// Live list: the server sends an "alerts" event when anything in view changed; we fetch the
// rendered list of cases (with the page's filter) and swap it in, unless the coordinator is
// working in it, i.e. the focus is anywhere inside the list (then after blur): swapping it
// would take the focus away from under a keyboard user. Opened timelines stay open.
(function () {
  var box = document.getElementById("alerts");
  if (!box || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var count = document.getElementById("count");
  var updatedText = document.currentScript ? document.currentScript.dataset.updated : "";
  var pending = false;

  function busy() {
    var el = document.activeElement;
    return el && el !== box && box.contains(el);
  }

  function openCards() {
    return Array.prototype.map.call(box.querySelectorAll("details[open]"), function (d) {
      var card = d.closest("[id]");
      return card ? card.id : null;
    });
  }

  function reopen(ids) {
    ids.forEach(function (id) {
      var card = id && document.getElementById(id);
      var details = card && card.querySelector("details");
      if (details) { details.open = true; }
    });
  }

  function refresh() {
    if (busy()) { pending = true; return; }
    pending = false;
    var query = box.dataset.query ? "?" + box.dataset.query : "";
    fetch("/dashboard/alerts" + query, { credentials: "same-origin" })
      .then(function (r) { if (r.status === 401) { location.reload(); } return r.text(); })
      .then(function (html) {
        var opened = openCards();
        box.innerHTML = html;
        reopen(opened);
        var list = box.querySelector("[data-count]");
        var n = list ? list.dataset.count : "0";
        if (count) { count.textContent = "(" + n + ")"; }
        var counts = box.querySelector("[data-counts]");
        if (counts) {
          counts.dataset.counts.split(",").forEach(function (pair) {
            var parts = pair.split(":");
            var shown = document.querySelector("#per-level [data-level='" + parts[0] + "'] .number");
            if (shown) { shown.textContent = parts[1]; }
          });
        }
        if (status) { status.textContent = updatedText + ": " + n; }
      });
  }

  box.addEventListener("focusout", function () { if (pending) { setTimeout(refresh, 50); } });
  var source = new EventSource("/dashboard/events?cursor=" + encodeURIComponent(box.dataset.cursor || "0"));
  source.addEventListener("alerts", refresh);
})();
