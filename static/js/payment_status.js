/* Return page: while a payment is being processed, ask the portal for its status and reload once it is settled.
   Without JavaScript a <noscript> refresh and the «Проверить ещё раз» link do the same. */
(function () {
  "use strict";
  var box = document.querySelector("[data-status-url]");
  if (!box || box.getAttribute("data-final") === "true" || !window.fetch) {
    return;
  }
  var url = box.getAttribute("data-status-url");
  var shown = box.getAttribute("data-state");
  var note = box.querySelector("[data-status-note]");
  var delay = 1500;
  var giveUpAt = Date.now() + 10 * 60 * 1000;

  function schedule() {
    if (Date.now() > giveUpAt) {
      if (note) {
        note.textContent = "Ответа пока нет. Проверьте позже: деньги не потеряются, а тариф изменится сам, когда платёж подтвердится.";
      }
      return;
    }
    window.setTimeout(poll, delay);
    delay = Math.min(Math.round(delay * 1.5), 10000);
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
        if (data.final || data.state !== shown) {
          window.location.reload();
        } else {
          schedule();
        }
      })
      .catch(schedule);
  }

  schedule();
})();
