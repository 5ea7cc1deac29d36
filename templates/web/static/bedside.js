// Optional enhancements; every page works without this file.
(function () {
  "use strict";
  // A barcode scanner types like a keyboard and ends with Enter: move to the next field
  // instead of submitting a half-filled step.
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (ev.key !== "Enter" || !t || t.tagName !== "INPUT" || !t.hasAttribute("data-scan")) return;
    ev.preventDefault();
    var fields = Array.prototype.slice.call(t.form.querySelectorAll("input:not([type=hidden]),select,button"));
    var next = fields[fields.indexOf(t) + 1];
    if (next) next.focus();
  });
  // The infusion timer: elapsed time since the signed start, flagged past the planned minutes.
  var timer = document.querySelector(".timer[data-start]");
  if (timer) {
    var start = Date.parse(timer.getAttribute("data-start"));
    // Count on the server's clock (the one that signs), not the tablet's own.
    var offset = Date.parse(timer.getAttribute("data-now")) - Date.now();
    var planned = parseFloat(timer.getAttribute("data-minutes")) * 60;
    var out = timer.querySelector(".elapsed");
    var tick = function () {
      var s = Math.max(0, Math.floor((Date.now() + offset - start) / 1000));
      var mm = Math.floor(s / 60), ss = s % 60;
      out.textContent = mm + ":" + (ss < 10 ? "0" : "") + ss + " elapsed";
      timer.classList.toggle("over", s > planned);
    };
    tick();
    setInterval(tick, 1000);
  }
})();
