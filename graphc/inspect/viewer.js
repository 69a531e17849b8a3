// graphc graph viewer: places the groups laid out by graphc/inspect/viewer.py and draws them.
// No network, no libraries: plain DOM, one SVG scene, one canvas minimap.
(function () {
  "use strict";
  var T0 = performance.now();
  var D = JSON.parse(document.getElementById("graphc-data").textContent);
  var N = D.nodes, G = D.groups;
  var COLORS = {input: "#c9f2d9", param: "#fff1b8", state: "#eadcff", const: "#eeeeee",
                forward: "#dbe9ff", backward: "#ffd9d6", optimizer: "#e6d6ff"};
  var PAD = 10, HEAD = 22, GAPX = 14, GAPY = 26, LEAF_H = 34;
  var groupById = {};
  G.forEach(function (g, i) { g.index = i; groupById[g.id] = g; g.children = []; });
  G.forEach(function (g) { if (g.parent !== null) G[g.parent].children.push(g); });
  var parentOf = new Array(N.length);           // node index -> group index
  G.forEach(function (g, gi) {
    g.layers.forEach(function (row) { row.forEach(function (it) {
      if (typeof it === "number") parentOf[it] = gi; }); });
  });
  var users = N.map(function () { return []; }), ins = N.map(function () { return []; });
  D.edges.forEach(function (e) { users[e[0]].push(e[1]); ins[e[1]].push(e[0]); });

  // ---- which groups are open ----------------------------------------------------------------
  var open = {0: true};
  (function initialOpen() {            // open level by level while the screen stays readable
    var frontier = [G[0]], visible = 0;
    G[0].layers.forEach(function (r) { visible += r.length; });
    while (frontier.length) {
      var next = [];
      frontier.forEach(function (g) { g.children.forEach(function (c) { next.push(c); }); });
      var extra = 0;
      next.forEach(function (c) { var k = 0; c.layers.forEach(function (r) { k += r.length; }); extra += k - 1; });
      if (!next.length || visible + extra > 120) break;
      next.forEach(function (c) { open[c.index] = true; });
      visible += extra; frontier = next;
    }
  })();

  // ---- sizes and placement (per group, only for what is visible) -----------------------------
  function label(n) { return n.kind === "const" ? "const " + n.type : n.op; }
  function leafW(n) { return Math.max(70, Math.min(230, 7 * Math.max(label(n).length, n.name.length) + 14)); }
  function groupTitle(g) {
    var t = g.title || D.name;
    return t + "  (" + g.size + " nodes)";
  }
  var box = {};     // item key -> {x, y, w, h} absolute
  function key(it) { return typeof it === "number" ? "n" + it : it; }
  function measure(g) {             // size of an open group from its children's sizes
    var rows = g.layers.map(function (row) {
      return row.map(function (it) {
        var sz;
        if (typeof it === "number") sz = {w: leafW(N[it]), h: LEAF_H};
        else {
          var c = groupById[it];
          sz = open[c.index] ? measure(c) : {w: Math.max(120, 7 * groupTitle(c).length + 20), h: 40};
        }
        sz.it = it; return sz;
      });
    });
    var w = 0, h = 0;
    rows.forEach(function (r) {
      var rw = 0, rh = 0;
      r.forEach(function (s) { rw += s.w + GAPX; rh = Math.max(rh, s.h); });
      r.w = rw - GAPX; r.h = rh; w = Math.max(w, r.w); h += rh + GAPY;
    });
    g._rows = rows;
    g._w = Math.max(w + 2 * PAD, 7 * groupTitle(g).length + 30);
    g._h = Math.max(h - GAPY, 0) + 2 * PAD + HEAD;
    return {w: g._w, h: g._h};
  }
  function place(g, x, y) {
    box["g" + g.index] = {x: x, y: y, w: g._w, h: g._h};
    var cy = y + HEAD + PAD;
    g._rows.forEach(function (r) {
      var cx = x + (g._w - r.w) / 2;
      r.forEach(function (s) {
        var k = key(s.it);
        var yy = cy + (r.h - s.h) / 2;
        if (typeof s.it !== "number" && open[groupById[s.it].index]) place(groupById[s.it], cx, yy);
        else box[k] = {x: cx, y: yy, w: s.w, h: s.h};
        cx += s.w + GAPX;
      });
      cy += r.h + GAPY;
    });
  }
  function visibleOf(i) {          // the drawn box standing for node i: itself or a closed group
    var g = parentOf[i], rep = "n" + i;
    var chain = [];
    while (g !== null && g !== undefined) { chain.push(g); g = G[g].parent; }
    for (var k = chain.length - 1; k >= 0; k--) if (!open[chain[k]]) return "g" + chain[k];
    return rep;
  }

  // ---- drawing -------------------------------------------------------------------------------
  var svg = document.getElementById("svg"), scene = document.getElementById("scene");
  var view = {x: 0, y: 0, s: 1}, selected = null, hits = {};
  function esc(t) { return String(t).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
  function short(t, n) { t = String(t); return t.length > n ? t.slice(0, n - 1) + "\u2026" : t; }
  function fmt(n) {
    if (n === undefined) return "";
    var u = [["T", 1e12], ["G", 1e9], ["M", 1e6], ["k", 1e3]];
    for (var i = 0; i < u.length; i++) if (Math.abs(n) >= u[i][1]) return (n / u[i][1]).toPrecision(3) + " " + u[i][0];
    return String(n);
  }
  function fmtB(n) {
    var u = [["GiB", 1 << 30], ["MiB", 1 << 20], ["KiB", 1 << 10]];
    for (var i = 0; i < u.length; i++) if (Math.abs(n) >= u[i][1]) return (n / u[i][1]).toPrecision(3) + " " + u[i][0];
    return n + " B";
  }
  var edgesDrawn = [];
  function render() {
    box = {};
    measure(G[0]); place(G[0], 0, 0);
    var out = [];
    // groups first (under), then edges, then leaves
    Object.keys(box).forEach(function (k) {
      if (k[0] !== "g") return;
      var b = box[k], g = G[+k.slice(1)], isOpen = !!open[g.index];
      if (g.index === 0) return;
      var cls = "grp" + (isOpen ? "" : " closed") + (selected === k ? " sel" : "");
      out.push('<g class="tog" data-k="' + k + '"><rect class="' + cls + '" x="' + b.x + '" y="' + b.y +
               '" width="' + b.w + '" height="' + b.h + '" rx="6"/>' +
               '<text class="gt" x="' + (b.x + 8) + '" y="' + (b.y + 15) + '">' +
               (isOpen ? "\u25be " : "\u25b8 ") + esc(groupTitle(g)) + "</text></g>");
    });
    var seen = {};
    edgesDrawn = [];
    D.edges.forEach(function (e) {
      var a = visibleOf(e[0]), b = visibleOf(e[1]);
      if (a === b || seen[a + ">" + b]) return;
      seen[a + ">" + b] = 1;
      var p = box[a], q = box[b];
      if (!p || !q) return;
      var x1 = p.x + p.w / 2, y1 = p.y + p.h, x2 = q.x + q.w / 2, y2 = q.y;
      var dy = Math.max(20, Math.abs(y2 - y1) / 2);
      edgesDrawn.push([a, b]);
      out.push('<path class="e" data-a="' + a + '" data-b="' + b + '" d="M' + x1 + "," + y1 + " C" + x1 + "," +
               (y1 + dy) + " " + x2 + "," + (y2 - dy) + " " + x2 + "," + y2 + '"/>');
    });
    Object.keys(box).forEach(function (k) {
      if (k[0] !== "n") return;
      var b = box[k], i = +k.slice(1), n = N[i];
      var cls = "n" + (selected === k ? " sel" : "") + (hits[i] ? " hit" : "");
      out.push('<g class="leaf" data-k="' + k + '"><rect class="' + cls + '" x="' + b.x + '" y="' + b.y +
               '" width="' + b.w + '" height="' + b.h + '" fill="' + (COLORS[n.kind] || "#fff") + '"/>' +
               '<text x="' + (b.x + b.w / 2) + '" y="' + (b.y + 14) + '" text-anchor="middle" font-weight="600">' +
               esc(short(label(n), 30)) + '</text><text x="' + (b.x + b.w / 2) + '" y="' + (b.y + 27) +
               '" text-anchor="middle">' + esc(short(n.name, 32)) + "</text></g>");
    });
    scene.innerHTML = out.join("");
    applyView();
  }
  function applyView() {
    scene.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.s + ")");
    drawMinimap();
  }
  function fit() {
    var b = box.g0, r = svg.getBoundingClientRect();
    var s = Math.min((r.width - 20) / b.w, (r.height - 20) / b.h, 1.5);
    view.s = s; view.x = (r.width - b.w * s) / 2 - b.x * s; view.y = 10 - b.y * s;
    applyView();
  }
  function centerOn(k, zoom) {
    var b = box[k], r = svg.getBoundingClientRect();
    if (!b) return;
    if (zoom) view.s = Math.max(view.s, 0.9);
    view.x = r.width / 2 - (b.x + b.w / 2) * view.s; view.y = r.height / 2 - (b.y + b.h / 2) * view.s;
    applyView();
  }

  // ---- minimap ---------------------------------------------------------------------------------
  var mini = document.getElementById("minimap"), mctx = mini.getContext("2d"), mscale = 1;
  function drawMinimap() {
    var b = box.g0; if (!b) return;
    mscale = Math.min(mini.width / b.w, mini.height / b.h);
    mctx.clearRect(0, 0, mini.width, mini.height);
    Object.keys(box).forEach(function (k) {
      var q = box[k];
      if (k === "g0") return;
      if (k[0] === "g") { mctx.strokeStyle = "#99a"; mctx.strokeRect(q.x * mscale, q.y * mscale, q.w * mscale, q.h * mscale); return; }
      mctx.fillStyle = COLORS[N[+k.slice(1)].kind] || "#ccc";
      mctx.fillRect(q.x * mscale, q.y * mscale, Math.max(1, q.w * mscale), Math.max(1, q.h * mscale));
    });
    var r = svg.getBoundingClientRect();
    mctx.strokeStyle = "#e00"; mctx.lineWidth = 1.5;
    mctx.strokeRect(-view.x / view.s * mscale, -view.y / view.s * mscale, r.width / view.s * mscale, r.height / view.s * mscale);
    mctx.lineWidth = 1;
  }
  mini.addEventListener("click", function (ev) {
    var rr = mini.getBoundingClientRect(), r = svg.getBoundingClientRect();
    var gx = (ev.clientX - rr.left) / mscale, gy = (ev.clientY - rr.top) / mscale;
    view.x = r.width / 2 - gx * view.s; view.y = r.height / 2 - gy * view.s; applyView();
  });

  // ---- pan and zoom ----------------------------------------------------------------------------
  var drag = null;
  svg.addEventListener("pointerdown", function (ev) { drag = {x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false}; });
  window.addEventListener("pointermove", function (ev) {
    if (!drag) return;
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    view.x = drag.vx + dx; view.y = drag.vy + dy; applyView();
  });
  window.addEventListener("pointerup", function () { setTimeout(function () { drag = null; }, 0); });
  function zoomAt(f, cx, cy) {
    var s = Math.max(0.02, Math.min(4, view.s * f)); f = s / view.s;
    view.x = cx - (cx - view.x) * f; view.y = cy - (cy - view.y) * f; view.s = s; applyView();
  }
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = svg.getBoundingClientRect();
    zoomAt(ev.deltaY < 0 ? 1.15 : 1 / 1.15, ev.clientX - r.left, ev.clientY - r.top);
  }, {passive: false});
  function zoomCenter(f) { var r = svg.getBoundingClientRect(); zoomAt(f, r.width / 2, r.height / 2); }
  document.getElementById("zin").onclick = function () { zoomCenter(1.25); };
  document.getElementById("zout").onclick = function () { zoomCenter(0.8); };
  document.getElementById("fit").onclick = fit;
  document.getElementById("expand").onclick = function () {
    if (N.length > 3000 && !confirm(N.length + " nodes: expanding everything may be slow. Continue?")) return;
    G.forEach(function (g) { open[g.index] = true; }); render(); fit();
  };
  document.getElementById("collapse").onclick = function () { open = {0: true}; render(); fit(); };

  // ---- selection and side panel ----------------------------------------------------------------
  var side = document.getElementById("side");
  function row(k, v) { return "<tr><td>" + esc(k) + "</td><td>" + v + "</td></tr>"; }
  function link(i) { return '<a data-n="' + i + '">' + esc(N[i].name) + "</a>"; }
  function showNode(i) {
    var n = N[i], t = [];
    t.push(row("op", esc(n.op)), row("kind", esc(n.kind)), row("type", esc(n.type)));
    if (n.shape) t.push(row("shape", esc("(" + n.shape.join(", ") + ")")));
    if (n.scope) t.push(row("scope", esc(n.scope)));
    t.push(row("source", esc(n.source || "?")));
    if (n.origin) t.push(row("provenance", esc(n.origin)));
    if (n.flops !== undefined) t.push(row("FLOPs", esc(fmt(n.flops))));
    if (n.bytes) t.push(row("output bytes", esc(fmtB(n.bytes))));
    if (n.live) t.push(row("live in step", esc(fmtB(n.live)) + (n.peak ? " (the step's peak)" : "")));
    if (n.saved) t.push(row("saved", "kept for the backward pass"));
    if (n.output) t.push(row("graph output", esc(n.output)));
    if (n.attrs) Object.keys(n.attrs).forEach(function (k) { t.push(row("attr " + k, esc(n.attrs[k]))); });
    t.push(row("inputs", ins[i].map(link).join(", ") || "-"));
    t.push(row("users", users[i].map(link).join(", ") || "-"));
    side.innerHTML = "<h2>%" + esc(n.name) + "</h2><table>" + t.join("") + "</table>";
  }
  function showGroup(gi) {
    var g = G[gi], f = {forward: 0, backward: 0, optimizer: 0}, bytes = 0;
    (function walk(h) {
      h.layers.forEach(function (r) { r.forEach(function (it) {
        if (typeof it === "number") { var n = N[it]; if (n.part && n.flops) f[n.part] += n.flops; bytes += n.bytes || 0; }
        else walk(groupById[it]);
      }); });
    })(g);
    var path = [], h = g;
    while (h && h.index !== 0) { path.unshift(h.title); h = G[h.parent]; }
    side.innerHTML = "<h2>" + esc(path.join(" / ")) + "</h2><table>" + row("nodes", g.size) +
      row("forward FLOPs", fmt(f.forward)) + row("backward FLOPs", fmt(f.backward)) +
      row("optimizer FLOPs", fmt(f.optimizer)) + row("output bytes", fmtB(bytes)) + "</table>";
  }
  side.addEventListener("click", function (ev) {
    var a = ev.target.closest("a[data-n]"); if (a) reveal(+a.dataset.n);
  });
  scene.addEventListener("click", function (ev) {
    if (drag && drag.moved) return;
    var el = ev.target.closest("[data-k]"); if (!el) return;
    var k = el.dataset.k;
    if (k[0] === "g") {
      var gi = +k.slice(1), b = box[k], r = svg.getBoundingClientRect();
      var onTitle = (ev.clientY - r.top - view.y) / view.s - b.y < HEAD || !open[gi];
      selected = k; showGroup(gi);
      if (onTitle) { open[gi] = !open[gi]; render(); centerOn(k); } else render();
    } else { selected = k; showNode(+k.slice(1)); render(); highlight(k); }
  });
  function highlight(k) {
    scene.querySelectorAll("path.e").forEach(function (p) {
      p.classList.toggle("near", p.dataset.a === k || p.dataset.b === k);
    });
  }
  function reveal(i) {
    var g = parentOf[i];
    while (g !== null && g !== undefined) { open[g] = true; g = G[g].parent; }
    selected = "n" + i; showNode(i); render(); centerOn("n" + i, true); highlight("n" + i);
  }

  // ---- search ----------------------------------------------------------------------------------
  var search = document.getElementById("search"), results = document.getElementById("results");
  var found = [];
  search.addEventListener("input", function () {
    var q = search.value.trim().toLowerCase();
    hits = {}; found = [];
    if (q) N.forEach(function (n, i) {
      if (n.name.toLowerCase().indexOf(q) >= 0 || n.op.toLowerCase().indexOf(q) >= 0 ||
          (n.source && n.source.toLowerCase().indexOf(q) >= 0)) { hits[i] = 1; found.push(i); }
    });
    results.innerHTML = found.slice(0, 200).map(function (i) {
      var n = N[i];
      return '<div role="option" data-n="' + i + '">' + esc(n.name) + " <small>" + esc(n.op) +
             (n.source ? " @ " + esc(n.source) : "") + "</small></div>";
    }).join("") + (found.length > 200 ? "<div>\u2026 " + (found.length - 200) + " more</div>" : "") +
      (q && !found.length ? "<div>no node matches</div>" : "");
    results.style.display = q ? "block" : "none";
    render();
  });
  search.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && found.length) { reveal(found[0]); results.style.display = "none"; }
    if (ev.key === "Escape") results.style.display = "none";
  });
  results.addEventListener("click", function (ev) {
    var d = ev.target.closest("[data-n]"); if (!d) return;
    reveal(+d.dataset.n); results.style.display = "none";
  });

  // ---- start -----------------------------------------------------------------------------------
  document.getElementById("legend").innerHTML = ["forward", "backward", "optimizer", "input", "param", "state", "const"]
    .map(function (k) { return '<span style="background:' + COLORS[k] + '">' + k + "</span>"; }).join("");
  document.getElementById("report").textContent = D.report || "";
  render(); fit();
  window.addEventListener("resize", function () { if (selected === null) fit(); else applyView(); });
  // `page.html#search=model.py:14` opens with that search done and its first match shown
  var m = /^#search=(.+)$/.exec(location.hash);
  if (m) {
    search.value = decodeURIComponent(m[1]);
    search.dispatchEvent(new Event("input"));
    if (found.length) reveal(found[0]);
  }
  window.graphcViewer = {renderMs: performance.now() - T0, nodes: N.length, reveal: reveal,
                         visible: function () { return scene.querySelectorAll("g.leaf").length; }};
  document.body.setAttribute("data-rendered", String(Math.round(window.graphcViewer.renderMs)));
})();
