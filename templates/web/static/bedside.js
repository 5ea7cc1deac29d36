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
  // The infusion timer: minutes left to the planned stop, counted on the server's clock (the
  // one that signs), not the tablet's own. At the end the live region announces it.
  var timer = document.querySelector(".timer[data-start]");
  if (timer && timer.getAttribute("data-running") === "yes") {
    var start = Date.parse(timer.getAttribute("data-start"));
    var ends = Date.parse(timer.getAttribute("data-ends"));
    var offset = Date.parse(timer.getAttribute("data-now")) - Date.now();
    var planned = parseFloat(timer.getAttribute("data-planned"));
    var countdown = timer.querySelector(".countdown");
    var alertBox = timer.querySelector(".timer-alert");
    var deviation = timer.querySelector(".deviation");
    var announced = alertBox.textContent.trim() !== "";
    var tick = function () {
      var now = Date.now() + offset;
      var left = Math.max(0, Math.ceil((ends - now) / 1000));
      var mm = Math.floor(left / 60), ss = left % 60;
      countdown.textContent = mm + ":" + (ss < 10 ? "0" : "") + ss + " left";
      timer.classList.toggle("over", left === 0);
      if (left === 0 && !announced) {
        alertBox.textContent = "Infusion time reached (" + planned + " min): stop the infusion now.";
        announced = true;
      }
      // The same rule as the server's: minutes run, rounded, differ from the planned ones.
      var ran = Math.round((now - start) / 60000);
      var off = ran !== planned;
      var text = off ? "Stopping now is early or late (infusion ran " + ran + " min; the protocol says " +
        planned + " min): the stop form then requires the reason." : "";
      if (deviation.textContent !== text) deviation.textContent = text;
    };
    tick();
    setInterval(tick, 1000);
  }
})();
