/* Checkout: the pay button says what choosing it will do — «Получить счёт» for an invoice, the card page for a card.
   Without JavaScript the button reads «Продолжить» until a way to pay is chosen, and works the same. */
(function () {
  "use strict";
  var button = document.querySelector(".button-pay[data-label-invoice]");
  if (!button) {
    return;
  }
  var radios = document.querySelectorAll('input[name="payer_type"]');
  function update() {
    for (var i = 0; i < radios.length; i++) {
      if (radios[i].checked) {
        var label = button.getAttribute("data-label-" + radios[i].value);
        if (label) {
          button.textContent = label;
        }
      }
    }
  }
  for (var i = 0; i < radios.length; i++) {
    radios[i].addEventListener("change", update);
  }
  update();
})();

/* An upgrade that may raise prepaid later periods too: ticking one changes the order's total, so the page says the
   new figure at once and the form carries it (the server prices it again and refuses a figure it did not show).
   Without JavaScript the server answers with the new total to confirm. */
(function () {
  "use strict";
  var form = document.getElementById("checkout-form");
  if (!form || !form.hasAttribute("data-base-amount")) {
    return;
  }
  var boxes = document.querySelectorAll('input[name="topup"][form="checkout-form"]');
  var base = parseInt(form.getAttribute("data-base-amount"), 10);
  var balance = parseInt(form.getAttribute("data-balance"), 10) || 0;
  var shown = form.querySelector('input[name="shown_amount"]');
  var button = form.querySelector(".button-pay");
  function rub(kopecks) {
    var r = Math.floor(kopecks / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, "\u00a0");
    var k = ("0" + (kopecks % 100)).slice(-2);
    return r + "," + k + "\u00a0₽";
  }
  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) {
      el.textContent = text;
    }
  }
  function update() {
    var amount = base;
    var covers = form.getAttribute("data-base-covers");
    for (var i = 0; i < boxes.length; i++) {
      if (boxes[i].checked) {
        amount += parseInt(boxes[i].getAttribute("data-amount"), 10);
        covers += boxes[i].getAttribute("data-covers");
      }
    }
    var fromBalance = Math.min(balance, amount);
    var due = amount - fromBalance;
    if (shown) {
      shown.value = String(amount);
    }
    setText("checkout-total", rub(due));
    setText("checkout-covers", covers);
    setText("checkout-amount", rub(amount));
    setText("checkout-from-balance", "−" + rub(fromBalance));
    if (button && due > 0 && button.hasAttribute("data-label-invoice")) {
      button.setAttribute("data-label-invoice", "Получить счёт · " + rub(due));
      button.setAttribute("data-label-card", "Перейти к оплате картой · " + rub(due));
      var chosen = form.querySelector('input[name="payer_type"]:checked');
      var label = chosen ? button.getAttribute("data-label-" + chosen.value) : null;
      button.textContent = label || "Продолжить · " + rub(due);
    } else if (button) {
      button.textContent = due > 0 ? button.textContent.replace(/·.*$/, "· " + rub(due)) : "Оплатить с баланса · " + rub(amount);
    }
  }
  for (var i = 0; i < boxes.length; i++) {
    boxes[i].addEventListener("change", update);
  }
})();
