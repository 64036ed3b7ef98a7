/* A running task's card: ask the portal for its counts and move the bar; reload once the task has finished.
   Without JavaScript a <noscript> refresh and the «Обновить» link do the same. */
(function () {
  "use strict";
  var cards = document.querySelectorAll("[data-task-status-url]");
  if (!window.fetch) {
    return;
  }
  Array.prototype.forEach.call(cards, function (card) {
    if (card.getAttribute("data-final") === "true") {
      return;
    }
    var url = card.getAttribute("data-task-status-url");
    var bar = card.querySelector("[data-task-bar]");
    var text = card.querySelector("[data-task-text]");
    var delay = 1000;

    function show(data) {
      if (bar && data.total) {
        bar.max = data.total;
        bar.value = data.done;
        bar.textContent = data.percent + " %";
      }
      if (text && data.status === "running") {
        var counts = data.total ? data.done + " из " + data.total : String(data.done || "");
        text.textContent = "Выполняется" + (counts ? ": " + counts : "") + (data.note ? " — " + data.note : "") + ".";
      }
    }

    function poll() {
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (resp) {
          if (!resp.ok) {
            throw new Error("status " + resp.status);
          }
          return resp.json();
        })
        .then(function (data) {
          if (data.finished) {
            window.location.reload();
            return;
          }
          show(data);
          window.setTimeout(poll, delay);
        })
        .catch(function () {
          delay = Math.min(delay * 2, 10000);
          window.setTimeout(poll, delay);
        });
    }

    window.setTimeout(poll, delay);
  });
})();
