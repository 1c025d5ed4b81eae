// Upgrade each static SVG chart to an interactive vegaEmbed chart. If anything fails the SVG stays.
(function () {
  "use strict";
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
  if (typeof window.vegaEmbed !== "function") { return; }
  document.querySelectorAll("figure.chart[data-spec]").forEach(function (fig) {
    var source = document.getElementById(fig.getAttribute("data-spec"));
    var live = fig.querySelector(".chart-live");
    var still = fig.querySelector(".chart-static");
    if (!source || !live) { return; }
    var spec;
    try { spec = JSON.parse(source.textContent); } catch (err) { console.warn("chart spec unreadable", err); return; }
    window.vegaEmbed(live, spec, { renderer: "svg", actions: false }).then(function () {
      live.hidden = false;
      if (still) { still.remove(); }
      fig.classList.add("is-live");
    }).catch(function (err) {
      live.remove();
      console.warn("interactive chart failed; showing the static SVG", err);
    });
  });
})();
