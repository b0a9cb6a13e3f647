// The worker timeline: one lane per worker, one bar per attempt, drawn into one SVG from
// the JSON in #report-data. Rows: [test, attempt, worker, start, setup, duration, status, host].
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var holder = document.getElementById("timeline");
  var tip = document.getElementById("timeline-tip");
  var pickLine = document.getElementById("timeline-pick");
  var LANE = 24, GAP = 5, LEFT = 74, RIGHT = 14, TOP = 26, BOTTOM = 8;
  var rows = data.attempts, zoom = 1, picked = -1, scale = 1, svg = null, barEls = [], setupEls = {};
  var MAX_HOPS = 300;
  var lanes = {}, attemptsOf = {}, byTest = {}, retried = [];

  rows.forEach(function (row, k) {
    attemptsOf[row[0]] = (attemptsOf[row[0]] || 0) + 1;
    (byTest[row[0]] = byTest[row[0]] || []).push(k);
  });
  data.workers.forEach(function (w, i) { lanes[w] = i; });
  Object.keys(byTest).forEach(function (test) { if (byTest[test].length > 1) retried.push(Number(test)); });

  function seconds(v) {
    if (v < 1) return v.toFixed(3) + " s";
    if (v < 60) return v.toFixed(2) + " s";
    var whole = Math.round(v);
    if (whole < 3600) return Math.floor(whole / 60) + " m " + String(whole % 60).padStart(2, "0") + " s";
    return Math.floor(whole / 3600) + " h " + String(Math.floor(whole % 3600 / 60)).padStart(2, "0") + " m";
  }
  function tickLabel(t) { return t === 0 ? "0" : t < 60 ? Number(t.toFixed(3)) + " s" : seconds(t); }
  function statusName(index) { return String(data.statuses[index] || "unknown").replace(/[^a-z_]/g, ""); }
  var STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400];
  function step(span, ticks) {  // seconds between ticks: 1-2-5 below a second, clock steps above
    var raw = span / Math.max(ticks, 1);
    if (raw < 1) {
      var power = Math.pow(10, Math.floor(Math.log10(raw)));
      return [1, 2, 5, 10].find(function (m) { return m * power >= raw; }) * power;
    }
    return STEPS.find(function (s) { return s >= raw; }) || Math.ceil(raw / 86400) * 86400;
  }

  function draw() {
    var width = Math.max(holder.clientWidth - 2, 480) * zoom;
    var span = Math.max(data.span, 0.001);
    scale = (width - LEFT - RIGHT) / span;
    var height = TOP + data.workers.length * (LANE + GAP) + BOTTOM;
    var out = ['<svg xmlns="http://www.w3.org/2000/svg" width="' + width + '" height="' + height + '">',
      '<defs><pattern id="setup-hatch" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">',
      '<rect width="4" height="4" style="fill: var(--lane)"/><rect width="2" height="4" style="fill: var(--setup)"/></pattern></defs>'];
    data.workers.forEach(function (w, i) {
      var y = TOP + i * (LANE + GAP);
      out.push('<rect class="lane" x="' + LEFT + '" y="' + y + '" width="' + (width - LEFT - RIGHT) + '" height="' + LANE + '"/>');
      out.push('<text class="wlabel" x="' + (LEFT - 8) + '" y="' + (y + LANE / 2 + 4) + '" text-anchor="end">worker ' + Number(w) + '</text>');
    });
    var every = step(span, (width - LEFT - RIGHT) / 110);
    for (var t = 0; t <= span + every / 1000; t += every) {
      var x = LEFT + t * scale;
      out.push('<line class="grid" x1="' + x + '" x2="' + x + '" y1="' + (TOP - 6) + '" y2="' + (height - BOTTOM) + '"/>');
      out.push('<text class="tick" x="' + x + '" y="' + (TOP - 10) + '" text-anchor="middle">' + tickLabel(t) + '</text>');
    }
    var bars = [];
    rows.forEach(function (row, k) {
      var y = TOP + lanes[row[2]] * (LANE + GAP), x = LEFT + row[3] * scale;
      var setupWidth = row[4] * scale, w = Math.max(row[5] * scale, 1.5);
      if (row[4] > 0) {
        out.push('<rect class="setup" data-k="' + k + '" x="' + x + '" y="' + (y + 3) + '" width="' + Math.max(setupWidth, 1) + '" height="' + (LANE - 6) + '"/>');
      }
      // Outlines only where they fit: at 20,000 attempts most bars are a pixel or two wide.
      var cls = "bar s-" + statusName(row[6]) + (w < 4 ? " thin" : row[1] > 1 ? " retry" : "");
      bars.push('<rect class="' + cls + '" data-k="' + k + '" data-test="' + row[0] + '" data-attempt="' + row[1] + '" x="' + (x + setupWidth) + '" y="' + (y + 2) + '" width="' + w + '" height="' + (LANE - 4) + '" rx="2"/>');
      if (attemptsOf[row[0]] > 1 && w >= 16) {
        bars.push('<text class="anum" x="' + (x + setupWidth + 4) + '" y="' + (y + LANE / 2 + 4) + '">' + row[1] + '</text>');
      }
    });
    if (retried.length <= MAX_HOPS) out = out.concat(hops(retried, "hop"));
    holder.innerHTML = out.concat(bars, ["</svg>"]).join("");
    svg = holder.firstChild;
    barEls = svg.querySelectorAll("rect.bar");  // in attempt order: barEls[k]
    setupEls = {};
    svg.querySelectorAll("rect.setup").forEach(function (el) { setupEls[el.getAttribute("data-k")] = el; });
    pin();
  }

  // A dashed hop from each attempt of ``tests`` to its retry: drawn for every retried test
  // when they are few, else for the pinned one only.
  function hops(tests, cls) {
    var out = [];
    tests.forEach(function (test) {
      var ks = byTest[test] || [];
      for (var i = 1; i < ks.length; i++) {
        var a = rows[ks[i - 1]], b = rows[ks[i]];
        var x1 = LEFT + (a[3] + a[4] + a[5]) * scale, y1 = TOP + lanes[a[2]] * (LANE + GAP) + LANE / 2;
        var x2 = LEFT + b[3] * scale, y2 = TOP + lanes[b[2]] * (LANE + GAP) + LANE / 2;
        out.push('<path class="' + cls + '" d="M' + x1 + " " + y1 + " L" + x2 + " " + y2 + '"/>');
      }
    });
    return out;
  }

  // Outline the pinned test's attempts (and draw its hops when not all are drawn).
  function pin() {
    svg.querySelectorAll(".picked").forEach(function (el) { el.classList.remove("picked"); });
    svg.querySelectorAll(".hop.pinned").forEach(function (el) { el.remove(); });
    if (picked < 0) return;
    (byTest[picked] || []).forEach(function (k) {
      barEls[k].classList.add("picked");
      if (setupEls[k]) setupEls[k].classList.add("picked");
    });
    if (retried.length > MAX_HOPS) svg.insertAdjacentHTML("beforeend", hops([picked], "hop pinned").join(""));
  }
  function describe(k) {
    var row = rows[k], test = row[0], lines = [];
    lines.push("attempt " + row[1] + " of " + attemptsOf[test] + " · " + statusName(row[6]).replace("_", " ") +
      (data.final[test] !== row[6] ? " (test " + statusName(data.final[test]).replace("_", " ") + ")" : ""));
    var host = (data.hosts || [])[row[7]] || "";
    lines.push("worker " + row[2] + (host ? " on " + host : "") + " · started at +" + seconds(row[3]));
    lines.push("duration " + seconds(row[5]) + (row[4] > 0 ? " · setup " + seconds(row[4]) + " before it" : ""));
    return lines;
  }
  function show(k, event) {
    var strong = document.createElement("strong");
    strong.textContent = data.tests[rows[k][0]];
    tip.replaceChildren(strong);
    describe(k).forEach(function (line) { tip.appendChild(document.createElement("div")).textContent = line; });
    tip.hidden = false;
    var x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    var y = event.clientY + 16 + tip.offsetHeight > window.innerHeight ? event.clientY - tip.offsetHeight - 10 : event.clientY + 16;
    tip.style.left = Math.max(x, 4) + "px";
    tip.style.top = y + "px";
  }
  function target(event) {
    var k = event.target.getAttribute && event.target.getAttribute("data-k");
    return k === null || k === undefined ? -1 : Number(k);
  }

  holder.addEventListener("mousemove", function (event) {
    var k = target(event);
    if (k < 0) { tip.hidden = true; return; }
    show(k, event);
  });
  holder.addEventListener("mouseleave", function () { tip.hidden = true; });
  holder.addEventListener("click", function (event) {
    var k = target(event);
    picked = k < 0 || rows[k][0] === picked ? -1 : rows[k][0];
    pin();
    pickLine.replaceChildren();
    if (picked < 0) return;
    pickLine.appendChild(document.createElement("code")).textContent = data.tests[picked];
    pickLine.appendChild(document.createTextNode(" · " + attemptsOf[picked] + " attempt(s), outlined above"));
    if (document.getElementById("test-" + picked)) {
      pickLine.appendChild(document.createTextNode(" · "));
      var link = pickLine.appendChild(document.createElement("a"));
      link.href = "#test-" + picked;
      link.textContent = "its failure below";
    }
  });
  document.querySelectorAll("[data-zoom]").forEach(function (button) {
    button.addEventListener("click", function () {
      var how = button.getAttribute("data-zoom"), centre = (holder.scrollLeft + holder.clientWidth / 2) / (holder.scrollWidth || 1);
      zoom = how === "fit" ? 1 : Math.min(Math.max(how === "in" ? zoom * 2 : zoom / 2, 1), 512);
      draw();
      holder.scrollLeft = centre * holder.scrollWidth - holder.clientWidth / 2;
    });
  });
  var pending = false;
  window.addEventListener("resize", function () {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; draw(); });
  });
  if (rows.length) draw(); else holder.textContent = "No attempts were recorded.";
})();
