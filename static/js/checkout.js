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
