// Auto-refresh: every data-refresh-seconds, fetch this page again (same URL, same credentials)
// and swap in its <main>; the server renders everything, this only replaces it. The outcome is
// shown in #refresh-note and in <body data-refresh="armed|ok|error" data-refreshes="N">.
(function () {
  "use strict";
  var main = document.getElementById("dashboard");
  var note = document.getElementById("refresh-note");
  if (!main || !note || !window.fetch || !window.DOMParser) {
    return;  // the <noscript> meta refresh is for browsers without it
  }
  var seconds = Math.max(2, Number(main.getAttribute("data-refresh-seconds")) || 30);
  var count = 0;
  function show(state, text) {
    document.body.setAttribute("data-refresh", state);
    note.textContent = text;
  }
  function swap(response, text) {
    var page = new DOMParser().parseFromString(text, "text/html");
    var fresh = page.getElementById("dashboard");
    if (!fresh) {
      throw new Error("the server answered HTTP " + response.status);
    }
    fresh = document.adoptNode(fresh);
    main.replaceWith(fresh);
    main = fresh;
    count += 1;
    document.body.setAttribute("data-refreshes", String(count));
    if (response.ok) {
      show("ok", "updated " + new Date().toLocaleTimeString() + "; refreshes every " + seconds + " s");
    } else {
      show("error", "the server answered HTTP " + response.status + "; retrying");
    }
  }
  function refresh() {
    window.fetch(window.location.href, {
      cache: "no-store",
      credentials: "same-origin",
      headers: { "Accept": "text/html" }
    })
      .then(function (response) {
        return response.text().then(function (text) { swap(response, text); });
      })
      .catch(function (error) {
        show("error", "refresh failed (" + error.message + "); retrying in " + seconds + " s");
      })
      .then(function () { window.setTimeout(refresh, seconds * 1000); });
  }
  show("armed", "refreshes every " + seconds + " s");
  window.setTimeout(refresh, seconds * 1000);
}());
