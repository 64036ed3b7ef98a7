/* The header on a phone: the navigation and the person's menu fold behind one «Меню» button (a disclosure:
   aria-expanded says whether it is open). Without JavaScript the header stays unfolded, as on a wide screen. */
(function () {
  "use strict";

  document.documentElement.classList.add("js-menu");

  function setUp() {
    var button = document.querySelector(".menu-toggle");
    var menu = button && document.getElementById(button.getAttribute("aria-controls"));
    if (!menu) {
      return;
    }
    function set(open) {
      button.setAttribute("aria-expanded", open ? "true" : "false");
      menu.classList.toggle("is-open", open);
    }
    button.addEventListener("click", function () {
      set(button.getAttribute("aria-expanded") !== "true");
    });
    // Escape closes it wherever focus is (on the button itself, or inside the menu).
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
        set(false);
        button.focus();
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
