/* The over-limit warning as a modal dialog. Without JavaScript the same text is a banner at the top of the page;
   with it, <html class="js"> hides that banner (portal.css) and the dialog opens instead. Closing it (Esc or
   «Понятно») hides it for this page only: it is rendered again on the next one. */
(function () {
  "use strict";

  var root = document.documentElement;
  root.classList.add("js");

  var FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

  function focusables(dialog) {
    return Array.prototype.filter.call(dialog.querySelectorAll(FOCUSABLE), function (el) {
      return el.offsetWidth > 0 || el.offsetHeight > 0 || el === document.activeElement;
    });
  }

  // showModal() makes the page behind inert; this also keeps Tab from leaving the dialog for the browser's UI.
  function keepFocusInside(dialog, event) {
    if (event.key !== "Tab") {
      return;
    }
    var items = focusables(dialog);
    if (!items.length) {
      event.preventDefault();
      return;
    }
    var first = items[0];
    var last = items[items.length - 1];
    var active = document.activeElement;
    if (event.shiftKey && (active === first || !dialog.contains(active))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (active === last || !dialog.contains(active))) {
      event.preventDefault();
      first.focus();
    }
  }

  function open() {
    var dialog = document.getElementById("over-limit-dialog");
    if (!dialog) {
      return;
    }
    var banner = document.getElementById("limit-banner");
    if (typeof dialog.showModal !== "function") {
      // A browser without <dialog>: keep the banner, which says the same.
      if (banner) {
        banner.classList.remove("has-dialog");
      }
      return;
    }
    var before = document.activeElement;
    dialog.addEventListener("keydown", function (event) {
      keepFocusInside(dialog, event);
    });
    dialog.addEventListener("close", function () {
      if (before && typeof before.focus === "function" && before !== document.body) {
        before.focus();
      }
    });
    try {
      dialog.showModal();
    } catch (err) {
      if (banner) {
        banner.classList.remove("has-dialog");
      }
      return;
    }
    var preferred = dialog.querySelector("[autofocus]");
    if (preferred && document.activeElement !== preferred) {
      preferred.focus();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", open);
  } else {
    open();
  }
})();
