// Upgrade each static SVG chart to an interactive vegaEmbed chart. If anything fails the SVG stays.
// A chart inside a closed <details> is drawn when it is opened. A spec may be stored as a patch of
// another (suite reports: {"lazarus-patch": {"base": <script id>, "ops": [[path, value] | [path], ...]}}).
// A chart wider than its box is laid out again rather than scaled down (scaling shrank its text to ~5 px
// on a phone): side-by-side panels stack, plot widths shrink, text keeps its size. A dark page gets
// dark charts.
(function () {
  "use strict";
  // On a phone, long secondary parts (the comparison's heatmaps) start folded: the page answers first.
  if (window.matchMedia && window.matchMedia("(max-width: 640px)").matches) {
    document.querySelectorAll("details.fold-narrow[open]").forEach(function (d) { d.open = false; });
  }
  // Printing opens the closed parts, except passing suite cases (one line each on paper), a suite case's
  // per-layer table (its chart shows the layers; 14 cases printed on 35 pages with everything open) and its change
  // map (its summary line says where the models part; the map took a page and a half per failing case).
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details:not([open])").forEach(function (d) {
      var passing = d.closest("details.case[data-status='passed'], details.case[data-status='skipped']");
      if (passing || d.classList.contains("model-details") || d.classList.contains("case-layers") ||
          d.classList.contains("case-change")) { return; }
      d.open = true;
      d.setAttribute("data-print-opened", "");
    });
  });
  window.addEventListener("afterprint", function () {
    document.querySelectorAll("details[data-print-opened]").forEach(function (d) {
      d.open = false;
      d.removeAttribute("data-print-opened");
    });
  });
  // Phone widths show a data table as stacked rows, each cell as "label: value". Small tables carry their
  // labels in the page; the long per-layer tables get theirs here, from the header row (a suite report
  // repeats them per case: labels in the file would add a tenth to its size). Without this script those
  // tables scroll sideways in their box.
  document.querySelectorAll("table.data:not(.topk):not(.stack):not(.no-stack)").forEach(function (table) {
    var head = table.tHead && table.tHead.rows[0];
    if (!head) { return; }
    var labels = Array.prototype.map.call(head.cells, function (th) {
      return th.textContent.replace(/\s+/g, " ").trim();
    });
    Array.prototype.forEach.call(table.tBodies, function (body) {
      Array.prototype.forEach.call(body.rows, function (row) {
        Array.prototype.forEach.call(row.cells, function (cell, i) {
          if (labels[i] && !cell.hasAttribute("data-label")) { cell.setAttribute("data-label", labels[i]); }
        });
      });
    });
    table.classList.add("stack");
  });
  if (typeof window.vegaEmbed !== "function") { return; }

  var DARK = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  var FG = "#e6e9ee", MUTED = "#aab3bf", GRID = "#2c333c";
  var DARK_CONFIG = {
    background: "#1a1a1a",
    axis: { labelColor: MUTED, titleColor: FG, gridColor: GRID, domainColor: "#5b6470", tickColor: "#5b6470" },
    legend: { labelColor: MUTED, titleColor: FG },
    header: { labelColor: MUTED, titleColor: FG },
    title: { color: FG, subtitleColor: MUTED },
    view: { stroke: "#3a424d" },
    text: { color: FG },
    rule: { color: MUTED }
  };
  // Neutral greys the specs set on marks, and their dark-page counterparts (data colours stay).
  var DARK_MARK_COLORS = {
    "#1a1a1a": FG, "#333333": "#c9d1d9", "#888888": "#9aa4b1", "#aaaaaa": "#6b7480",
    "#cccccc": "#4a525c", "#eeeeee": "#262c34", "#e6e6e6": GRID, "black": FG, "white": "#1a1a1a"
  };
  // The series palette (charts/style.py PALETTE) lightened for a dark page: text and lines in these colours
  // reach a contrast of 4.5:1 or more on the dark chart background.
  var DARK_SERIES = {
    "#1f6fb4": "#6cb2f0", "#d6562b": "#f08a5d", "#2a9d55": "#5cc77f", "#8e5bb5": "#b88ee0",
    "#b8860b": "#e0b040", "#c2185b": "#f06292", "#00838f": "#4dd0e1", "#5d6d7e": "#9aa4b1"
  };
  var COMPOSED = ["layer", "hconcat", "vconcat", "concat"];
  function darkColor(value) {
    if (typeof value !== "string") { return value; }
    var key = value.toLowerCase();
    return DARK_MARK_COLORS[key] || DARK_SERIES[key] || value;
  }

  function readSpec(source) {
    var spec = JSON.parse(source.textContent);
    var patch = spec["lazarus-patch"];
    if (!patch) { return spec; }
    spec = JSON.parse(document.getElementById(patch.base).textContent);
    patch.ops.forEach(function (op) {
      var path = op[0];
      if (!path.length) { spec = op[1]; return; }
      var parent = spec;
      for (var i = 0; i < path.length - 1; i += 1) { parent = parent[path[i]]; }
      if (op.length > 1) { parent[path[path.length - 1]] = op[1]; } else { delete parent[path[path.length - 1]]; }
    });
    return spec;
  }

  // Every view of a spec (the spec itself, its layers and concatenated parts), depth first.
  function eachView(node, visit) {
    if (!node || typeof node !== "object") { return; }
    visit(node);
    COMPOSED.forEach(function (key) {
      if (Array.isArray(node[key])) { node[key].forEach(function (child) { eachView(child, visit); }); }
    });
    if (node.spec) { eachView(node.spec, visit); }
  }

  function darken(spec) {
    var config = spec.config || {};
    Object.keys(DARK_CONFIG).forEach(function (key) {
      var value = DARK_CONFIG[key];
      config[key] = typeof value === "object" ? Object.assign({}, config[key] || {}, value) : value;
    });
    spec.config = config;
    eachView(spec, function (view) {
      // A key or panel title drawn in a fixed grey.
      if (view.title && typeof view.title === "object" && view.title.color) { view.title.color = darkColor(view.title.color); }
      // Series colours (a scale's range) and fixed colours without a condition (heatmap column labels); a
      // cell's text colour (with a condition on its cell's shade) and binned cell colours stay.
      var enc = view.encoding || {};
      ["color", "fill", "stroke"].forEach(function (key) {
        var channel = enc[key];
        if (!channel || typeof channel !== "object") { return; }
        if (typeof channel.value === "string" && !channel.condition) { channel.value = darkColor(channel.value); }
        var scale = channel.scale;
        if (scale && Array.isArray(scale.range) && scale.type !== "quantize") {
          scale.range = scale.range.map(function (c) { return DARK_SERIES[String(c).toLowerCase()] || c; });
        }
      });
      var mark = view.mark;
      if (!mark || typeof mark !== "object") { return; }
      ["color", "fill", "stroke"].forEach(function (key) {
        if (typeof mark[key] === "string") { mark[key] = darkColor(mark[key]); }
      });
    });
    return spec;
  }

  // The width the plots of a view take side by side (hconcat adds up, vconcat and layers take the widest).
  function plotWidth(node) {
    if (!node || typeof node !== "object") { return 0; }
    var sum = function (list) { return list.reduce(function (a, c) { return a + plotWidth(c); }, 0); };
    var max = function (list) { return list.reduce(function (a, c) { return Math.max(a, plotWidth(c)); }, 0); };
    if (Array.isArray(node.hconcat)) { return sum(node.hconcat); }
    if (Array.isArray(node.vconcat)) { return max(node.vconcat); }
    if (Array.isArray(node.concat)) { return max(node.concat); }
    if (typeof node.width === "number") { return node.width; }
    return Array.isArray(node.layer) ? max(node.layer) : 0;
  }

  // A title's lines wrapped to `width` px (measured in its font), each broken after a space or "/" where
  // there is one in its last two thirds (as the static SVG's key, line_plot_svg._wrapped): never cut to "…".
  var ruler = document.createElement("canvas").getContext("2d");
  function wrapped(lines, width, font) {
    ruler.font = font;
    var out = [];
    lines.forEach(function (line) {
      line = String(line);
      while (line.length > 1 && ruler.measureText(line).width > width) {
        var fits = line.length - 1;
        while (fits > 1 && ruler.measureText(line.slice(0, fits)).width > width) { fits -= 1; }
        var cut = Math.max(line.lastIndexOf(" ", fits), line.lastIndexOf("/", fits - 1) + 1);
        if (cut <= fits / 3) { cut = fits; }
        out.push(line.slice(0, cut).replace(/\s+$/, ""));
        line = line.slice(cut).replace(/^\s+/, "");
      }
      out.push(line);
    });
    return out;
  }

  // Narrower plots: view widths, and the text limits that were sized to them (heatmap cells; titles were
  // wrapped to the chart box by fitTitles). The emergence notes take their narrow rows (run_specs._note_rows:
  // planned in Python for the narrowest layout).
  function shrink(spec, factor) {
    eachView(spec, function (view) {
      if (typeof view.width === "number") { view.width = Math.round(view.width * factor); }
      var mark = view.mark;
      if (mark && typeof mark === "object" && typeof mark.limit === "number" && mark.limit > 0) {
        mark.limit = Math.max(14, Math.round(mark.limit * factor));
      }
    });
    (spec.params || []).forEach(function (param) { if (param.name === "notes_narrow") { param.value = true; } });
    return spec;
  }

  // Titles kept within their width (a panel title's limit, the width of its plot; at most the chart box's
  // `room`) by wrapping them onto more lines (a title is never cut to "…"); the key over a chart has no limit.
  function fitTitles(spec, room) {
    eachView(spec, function (view) {
      var title = view.title;
      if (!title || typeof title !== "object" || title.text === undefined) { return; }
      var width = Math.min(title.limit > 0 ? title.limit : room, room);
      if (!(width > 0)) { return; }
      var font = (title.fontWeight || "bold") + " " + (title.fontSize || 13) + "px sans-serif";
      title.text = wrapped(Array.isArray(title.text) ? title.text : [title.text], Math.max(60, width - 4), font);
      title.limit = 0;
    });
    return spec;
  }

  // Legends under the plot instead of beside it (a legend's labels can be as wide as a phone's plot).
  function legendsBelow(spec) {
    spec.config = spec.config || {};
    spec.config.legend = Object.assign({}, spec.config.legend || {}, {
      orient: "bottom", direction: "vertical", layout: { bottom: { direction: "vertical", anchor: "start" } }
    });
    eachView(spec, function (view) {
      var encoding = view.encoding || {};
      Object.keys(encoding).forEach(function (channel) {
        var legend = encoding[channel] && encoding[channel].legend;
        if (legend && typeof legend === "object") { legend.orient = "bottom"; legend.direction = "vertical"; }
      });
    });
    return spec;
  }

  function embed(live, spec) {
    return window.vegaEmbed(live, spec, { renderer: "svg", actions: false }).then(function (result) {
      var fig = live.closest("figure.chart");
      if (fig) { followCursor(fig.id, result.view); }
      var svg = live.querySelector("svg");
      return { result: result, width: svg ? parseFloat(svg.getAttribute("width")) || 0 : 0 };
    });
  }

  // Render; while the chart is wider than its box, lay it out again: stack side-by-side panels, put wide
  // legends below, then shrink the plots (down to a floor, past which the chart box scrolls sideways).
  function fitted(fig, live, spec) {
    var fit = fig.querySelector(".chart-body.fit") !== null;
    var room = fig.getBoundingClientRect().width - 18;  // the chart box's padding and border
    var target = fit ? room : room * 1.3;  // a heatmap may scroll a little: its cell text needs room
    var floor = fit ? 0.4 : 0.5;
    var tries = 0, moved = false;
    spec = fitTitles(JSON.parse(JSON.stringify(spec)), room);
    function attempt(current, drawn) {
      if (drawn.width <= target + 1 || room <= 0 || tries >= 3) { return drawn; }
      tries += 1;
      var next = JSON.parse(JSON.stringify(current));
      if (Array.isArray(next.hconcat)) {
        next.vconcat = next.hconcat;
        delete next.hconcat;
      } else if (!moved && drawn.width - plotWidth(next) > room * 0.3) {
        moved = true;
        legendsBelow(next);
      } else {
        var plots = plotWidth(next);
        if (!plots) { return drawn; }
        var factor = Math.max(floor, (target - (drawn.width - plots)) / plots);
        if (factor >= 0.99) { return drawn; }
        shrink(next, factor);
      }
      drawn.result.finalize();
      return embed(live, next).then(function (again) { return attempt(next, again); });
    }
    return embed(live, spec).then(function (drawn) { return attempt(spec, drawn); }).then(function (drawn) {
      drawn.room = room;
      return drawn;
    });
  }

  // A chart drawn for one width is laid out again when its box changes much (a phone turned sideways).
  var shown = [];
  var pending = null;
  function refit() {
    shown.forEach(function (chart) {
      var room = chart.fig.getBoundingClientRect().width - 18;
      if (chart.busy || !room || Math.abs(room - chart.drawn.room) < 40) { return; }
      chart.busy = true;
      chart.drawn.result.finalize();
      fitted(chart.fig, chart.live, chart.spec).then(function (drawn) {
        chart.drawn = drawn;
        chart.busy = false;
      }).catch(function (err) { console.warn("chart layout failed", err); });
    });
  }
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(refit, 250);
  });

  // Paper is narrower than a desktop window: a chart drawn wider than an A4 column with its panels side by side
  // (a comparison's heatmaps) is drawn once more, one drawing per panel (each may start a page), in the light
  // theme and without its switches, shown on paper only (styles.css: figure.has-paper): its text prints at
  // full size.
  var PAPER = 780;  // charts/style.py PAPER_WIDTH: wider, its text would print under 8 px
  // Drawn once the page is idle (the screen's charts first); data-paper says when it is done ("no": one panel).
  var whenIdle = window.requestIdleCallback || function (task) { return setTimeout(task, 300); };
  function forPaper(fig, source) {
    var spec = readSpec(source);
    if (!Array.isArray(spec.hconcat)) { fig.setAttribute("data-paper", "no"); return; }
    var holder = document.createElement("div");
    holder.className = "chart-paper";
    fig.querySelector(".chart-body").appendChild(holder);
    var drawings = spec.hconcat.map(function (panel) {
      var one = Object.assign({}, spec, panel);
      delete one.hconcat;
      delete one.resolve;
      // One set of switches on the page (radio inputs of one name form one group).
      one.params = (spec.params || []).map(function (param) {
        var copy = Object.assign({}, param);
        delete copy.bind;
        return copy;
      });
      var part = document.createElement("div");
      holder.appendChild(part);
      return window.vegaEmbed(part, fitTitles(one, PAPER), { renderer: "svg", actions: false });
    });
    Promise.all(drawings).then(function () {
      fig.classList.add("has-paper");
      fig.setAttribute("data-paper", "yes");
    }).catch(function (err) {
      holder.remove();
      fig.setAttribute("data-paper", "no");
      console.warn("paper copy of a chart failed", err);
    });
  }

  function draw(fig) {
    var source = document.getElementById(fig.getAttribute("data-spec"));
    var live = fig.querySelector(".chart-live");
    var still = fig.querySelector(".chart-static");
    if (!source || !live) { return; }
    var spec;
    try { spec = readSpec(source); } catch (err) { console.warn("chart spec unreadable", err); return; }
    if (DARK) { darken(spec); }
    fitted(fig, live, spec).then(function (drawn) {
      shown.push({ fig: fig, live: live, spec: spec, drawn: drawn, busy: false });
      if (drawn.width > PAPER) { whenIdle(function () { forPaper(fig, source); }); }
      live.hidden = false;
      if (still) { still.remove(); }
      fig.classList.add("is-live");
    }).catch(function (err) {
      live.remove();
      console.warn("interactive chart failed; showing the static SVG", err);
    });
  }

  // One layer cursor for the charts and the layer table. The charts' cursor (a Vega-Lite selection named
  // "cursor" on the layer) highlights the same layer's row: "run0-trajectory" -> rows "run0-layer-<n>",
  // "comparison-*" -> rows "layer-<n>"; pointing at (or focusing) a row puts the cursor on that layer in
  // every chart of the same prefix.
  var cursorRow = null;
  var cursorViews = {};  // row id prefix -> {chart id: its live view (the latest drawing)}
  function followCursor(chartId, view) {
    var prefix = chartId.replace(/-(trajectory|entropy-kl|divergence)$/, "");
    if (prefix === chartId) { return; }
    prefix = prefix === "comparison" ? "layer-" : prefix + "-layer-";
    try {
      view.data("cursor_store");  // throws for a chart without the cursor ("cursor" alone is also Vega's pointer style)
      view.addSignalListener("cursor", function (name, value) {  // {c: [layer]} or {} when cleared
        if (cursorRow) { cursorRow.classList.remove("is-cursor"); cursorRow = null; }
        var layer = value && value.c && value.c.length ? value.c[0] : null;
        var row = layer === null ? null : document.getElementById(prefix + layer);
        if (row) { row.classList.add("is-cursor"); cursorRow = row; }
      });
    } catch (err) { return; /* a chart without the cursor */ }
    if (!cursorViews[prefix]) { cursorViews[prefix] = {}; followRows(prefix); }
    cursorViews[prefix][chartId] = view;
  }
  function setCursor(prefix, layer) {  // layer null: clear
    var views = cursorViews[prefix] || {};
    Object.keys(views).forEach(function (chartId) {
      var view = views[chartId];
      // The selection's store (a point selection on the cursor rows' key "c"), as the pointer would set it.
      var store = layer === null ? [] : [{ unit: "table", fields: [{ type: "E", field: "c" }], values: [layer] }];
      try { view.data("cursor_store", store).runAsync(); } catch (err) { /* not a cursor chart */ }
    });
  }
  function followRows(prefix) {
    var pattern = new RegExp("^" + prefix.replace(/[-]/g, "\\-") + "(\\d+)$");
    function rowOf(node) {
      var row = node && node.closest ? node.closest("tr[id]") : null;
      return row && pattern.test(row.id) ? row : null;
    }
    function layerOf(event) {
      var row = rowOf(event.target);
      return row && rowOf(event.relatedTarget) !== row ? Number(pattern.exec(row.id)[1]) : null;
    }
    ["pointerover", "focusin"].forEach(function (type) {
      document.addEventListener(type, function (event) {
        var layer = layerOf(event);
        if (layer !== null) { setCursor(prefix, layer); }
      });
    });
    ["pointerout", "focusout"].forEach(function (type) {
      document.addEventListener(type, function (event) {
        if (layerOf(event) !== null) { setCursor(prefix, null); }
      });
    });
  }

  function whenShown(fig) {
    var closed = fig.parentElement && fig.parentElement.closest("details:not([open])");
    // A chart under a lens tab not chosen (.lens-switch: CSS-only tabs) is drawn when its tab is chosen.
    var panel = closed ? null : fig.closest(".lens-panel");
    if (panel && !panel.getClientRects().length) {
      var group = panel.closest(".lens-switch");
      group.addEventListener("change", function chosen() {
        if (!panel.getClientRects().length) { return; }
        group.removeEventListener("change", chosen);
        whenShown(fig);
      });
      return;
    }
    if (!closed) { draw(fig); return; }
    closed.addEventListener("toggle", function opened() {
      if (!closed.open) { return; }
      closed.removeEventListener("toggle", opened);
      whenShown(fig);
    });
  }

  document.querySelectorAll("figure.chart[data-spec]").forEach(whenShown);
})();
