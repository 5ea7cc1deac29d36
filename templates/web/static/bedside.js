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
  // "All normal" (issue 12.4): ticking a group puts each finding's normal value in its field,
  // so what will be recorded is on screen; the server records the same without this script.
  Array.prototype.forEach.call(document.querySelectorAll("fieldset[data-normal]"), function (group) {
    var box = group.querySelector("input.all-normal");
    var normal = JSON.parse(group.getAttribute("data-normal"));
    box.addEventListener("change", function () {
      group.classList.toggle("ticked", box.checked);
      if (!box.checked) return;
      Object.keys(normal).forEach(function (id) {
        var fields = group.querySelectorAll("[name='v_" + id + "']");
        Array.prototype.forEach.call(fields, function (f) {
          if (f.type === "radio") f.checked = f.value === normal[id];
          else if (f.type === "checkbox") f.checked = normal[id] === "yes";
          else f.value = normal[id];
        });
      });
    });
  });
  // A code in a product's scan field means it was scanned: tick "Scanned" (the server
  // infers the same when "how identified" is left blank).
  document.addEventListener("change", function (ev) {
    var t = ev.target;
    var m = t && t.name && /^v_(.+)_scan$/.exec(t.name);
    if (!m || !t.value.trim()) return;
    var radio = t.form.querySelector("input[name='v_" + m[1] + "_entry'][value='scanned']");
    if (radio) radio.checked = true;
  });
  // A staff badge scan (issue 12.4): the scanner types the user id and Enter; put it in the
  // user id field and move to the password, never submit (the password is always typed).
  var badgeScanned = function (field) {
    var id = field.value.trim();
    var user = field.form && field.form.querySelector("input[name=username]");
    if (!id || !user) return;
    user.value = id;
    var password = field.form.querySelector("input[type=password]");
    if (password) password.focus();
  };
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (ev.key !== "Enter" || !t || t.tagName !== "INPUT" || !t.hasAttribute("data-badge")) return;
    ev.preventDefault();
    badgeScanned(t);
  });
  document.addEventListener("change", function (ev) {
    if (ev.target && ev.target.hasAttribute && ev.target.hasAttribute("data-badge")) badgeScanned(ev.target);
  });
  // The tablet's camera reads the wristband or the badge where the browser has a
  // BarcodeDetector; typing (or a scanner acting as a keyboard) always works without it.
  if ("BarcodeDetector" in window && navigator.mediaDevices) {
    Array.prototype.forEach.call(document.querySelectorAll("button.camera"), function (camera) {
      var box = camera.parentElement;
      var field = box.querySelector("input[data-wristband],input[data-badge]");
      var video = box.querySelector("video.camera-view");
      if (!field || !video) return;
      camera.hidden = false;
      camera.addEventListener("click", function () {
        var detector = new window.BarcodeDetector({ formats: ["code_128", "data_matrix"] });
        navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } }).then(function (stream) {
          video.srcObject = stream;
          video.hidden = false;
          video.play();
          var stop = function () { stream.getTracks().forEach(function (t) { t.stop(); }); video.hidden = true; };
          var look = function () {
            detector.detect(video).then(function (codes) {
              if (codes.length) {
                field.value = codes[0].rawValue;
                stop();
                if (field.hasAttribute("data-badge")) badgeScanned(field); else field.focus();
                return;
              }
              window.setTimeout(look, 250);
            }, stop);
          };
          look();
        }, function () { camera.hidden = true; });
      });
    });
  }
  // An ended dose's records are made just after its closing step: ask where they stand (for two
  // minutes at most) and put their links in; "Check again" reloads the page without this.
  var box = document.querySelector("[data-records-state]");
  if (box && window.fetch) {
    var tries = 0;
    var ask = function () {
      fetch(box.getAttribute("data-records-state"), { credentials: "same-origin" }).then(function (r) {
        return r.ok ? r.json() : null;
      }).then(function (s) {
        if (s && s.state !== "pending") {
          var list = box.querySelector("ul.records");
          while (list.firstChild) list.removeChild(list.firstChild);
          s.records.forEach(function (rec) {
            var li = document.createElement("li");
            li.appendChild(document.createTextNode(rec.kind + " record · signed by " + rec.signers + " "));
            [["View", ""], ["Download", "?download=1"]].forEach(function (b) {
              var a = document.createElement("a");
              a.className = "btn";
              a.href = "/records/" + rec.sha256 + ".pdf" + b[1];
              a.textContent = b[0];
              if (b[1]) a.setAttribute("download", "");
              li.appendChild(a);
              li.appendChild(document.createTextNode(" "));
            });
            list.appendChild(li);
          });
          Array.prototype.forEach.call(box.querySelectorAll("p"), function (p) { p.remove(); });
          if (s.state === "failed") {
            var p = document.createElement("p");
            p.className = "alert warn";
            p.textContent = "Ended without records" + (s.reason ? " (" + s.reason + ")" : "") +
              ". bedside archive catch-up makes them (every server start does too).";
            box.insertBefore(p, list);
          }
          box.setAttribute("data-records", s.state);
          // The confirmation above said "being made": the server gave the words for now too.
          var note = document.getElementById("records-note");
          var now = note && note.getAttribute("data-" + s.state);
          if (now) note.textContent = now;
        } else if (++tries < 80) {
          window.setTimeout(ask, 1500);
        }
      }, function () { if (++tries < 80) window.setTimeout(ask, 1500); });
    };
    window.setTimeout(ask, 700);
  }
  // The infusion timer: elapsed time since the signed start, flagged past the planned minutes.
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
