// iu console: the one script. A part of a page marked data-refresh="URL"
// is replaced every data-every seconds by what URL answers, so that the
// overview and a running verify stay current. It waits while the page is
// hidden or while focus is inside that part (a keyboard user must not lose
// their place), stops once the part holds an element with data-final, and
// sends the person to sign in when the session has ended. Everything works
// without it: the pages are complete as served.
(function () {
  "use strict";
  function arm(el) {
    var every = Math.max(1, parseFloat(el.getAttribute("data-every")) || 5) * 1000;
    var url = el.getAttribute("data-refresh");
    function later() { window.setTimeout(tick, every); }
    function tick() {
      if (el.querySelector("[data-final]")) { return; }
      if (document.hidden || el.contains(document.activeElement)) { later(); return; }
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) {
          if (r.status === 401) {
            window.location.assign("/signin?next=" + encodeURIComponent(window.location.pathname + window.location.search));
            return null;
          }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null) { el.innerHTML = html; }
          later();
        }, later);
    }
    later();
  }
  var parts = document.querySelectorAll("[data-refresh]");
  for (var i = 0; i < parts.length; i++) { arm(parts[i]); }
})();
