// Live updates: the server announces each new snapshot on an event stream;
// the page then fetches its live part, rendered by the server, and swaps it in.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var url = live.getAttribute("data-fragment");
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status === 401) { window.location.href = "/login"; return null; }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html !== null && html !== undefined) { live.innerHTML = html; }
    }).catch(function () { /* the next update retries */ }).finally(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }
  var last = null;
  var es = new EventSource("/events");
  es.addEventListener("update", function (e) {
    if (last !== null && e.data !== last) { refresh(); }
    last = e.data;
  });
})();
