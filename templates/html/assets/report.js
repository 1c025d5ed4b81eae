// Upgrade each static SVG chart to an interactive vegaEmbed chart. If anything fails the SVG stays.
// A chart inside a closed <details> is drawn when it is opened. A spec may be stored as a patch of
// another (suite reports: {"lazarus-patch": {"base": <script id>, "ops": [[path, value] | [path], ...]}}).
(function () {
  "use strict";
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
  if (typeof window.vegaEmbed !== "function") { return; }

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

  function draw(fig) {
    var source = document.getElementById(fig.getAttribute("data-spec"));
    var live = fig.querySelector(".chart-live");
    var still = fig.querySelector(".chart-static");
    if (!source || !live) { return; }
    var spec;
    try { spec = readSpec(source); } catch (err) { console.warn("chart spec unreadable", err); return; }
    window.vegaEmbed(live, spec, { renderer: "svg", actions: false }).then(function (result) {
      live.hidden = false;
      if (still) { still.remove(); }
      fig.classList.add("is-live");
      followCursor(fig.id, result.view);
    }).catch(function (err) {
      live.remove();
      console.warn("interactive chart failed; showing the static SVG", err);
    });
  }

  // The charts' layer cursor (a Vega-Lite selection named "cursor" on the layer) highlights the same layer's
  // row in the layer table: "run0-trajectory" -> rows "run0-layer-<n>", "comparison-*" -> rows "layer-<n>".
  var cursorRow = null;
  function followCursor(chartId, view) {
    var prefix = chartId.replace(/-(trajectory|entropy-kl|divergence)$/, "");
    if (prefix === chartId) { return; }
    prefix = prefix === "comparison" ? "layer-" : prefix + "-layer-";
    try {
      view.addSignalListener("cursor", function (name, value) {  // {c: [layer]} or {} when cleared
        if (cursorRow) { cursorRow.classList.remove("is-cursor"); cursorRow = null; }
        var layer = value && value.c && value.c.length ? value.c[0] : null;
        var row = layer === null ? null : document.getElementById(prefix + layer);
        if (row) { row.classList.add("is-cursor"); cursorRow = row; }
      });
    } catch (err) { /* a chart without the cursor */ }
  }

  function whenShown(fig) {
    var closed = fig.parentElement && fig.parentElement.closest("details:not([open])");
    if (!closed) { draw(fig); return; }
    closed.addEventListener("toggle", function opened() {
      if (!closed.open) { return; }
      closed.removeEventListener("toggle", opened);
      whenShown(fig);
    });
  }

  document.querySelectorAll("figure.chart[data-spec]").forEach(whenShown);
})();
