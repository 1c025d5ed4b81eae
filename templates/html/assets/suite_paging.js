// Paging for long suites: the overview table shows 50 rows at a time and the case list 25 cases, so a
// suite of thousands of cases stays quick to read. suite.js filters and sorts first; paging acts on the
// rows its filter leaves visible, in their current order. A link to a case (#case-...) turns to the page
// that holds it. Without this script everything is on one page (and --static has no scripts at all).
(function () {
  "use strict";
  var TABLE_PAGE = 50;
  var CASE_PAGE = 25;

  function pager(holder, items, size, noun) {
    var all = items();
    if (!holder || all.length <= size) { return null; }
    var page = 0;
    var previous = document.createElement("button");
    var next = document.createElement("button");
    var label = document.createElement("span");
    previous.type = next.type = "button";
    previous.textContent = "‹ previous";
    next.textContent = "next ›";
    label.setAttribute("role", "status");
    label.setAttribute("aria-live", "polite");
    holder.appendChild(previous);
    holder.appendChild(document.createTextNode(" "));
    holder.appendChild(label);
    holder.appendChild(document.createTextNode(" "));
    holder.appendChild(next);
    holder.hidden = false;

    function shown() { return items().filter(function (el) { return !el.hidden; }); }
    function render() {
      var list = shown();
      var pages = Math.max(1, Math.ceil(list.length / size));
      page = Math.min(Math.max(0, page), pages - 1);
      var first = page * size;
      items().forEach(function (el) { el.style.display = "none"; });
      list.slice(first, first + size).forEach(function (el) { el.style.display = ""; });
      label.textContent = "page " + (page + 1) + " of " + pages + " (" + noun + " " +
        (list.length ? first + 1 : 0) + "–" + Math.min(list.length, first + size) + " of " + list.length + ")";
      previous.disabled = page === 0;
      next.disabled = page >= pages - 1;
    }
    previous.addEventListener("click", function () { page -= 1; render(); });
    next.addEventListener("click", function () { page += 1; render(); });
    render();
    return {
      reset: function () { page = 0; render(); },
      show: function (el) {  // turn to the page holding el; true when it is one of the paged items
        var index = shown().indexOf(el);
        if (index < 0) { return false; }
        page = Math.floor(index / size);
        render();
        return true;
      }
    };
  }

  var table = document.getElementById("cases-table");
  var tablePager = table ? pager(document.getElementById("cases-pager"), function () {
    return Array.prototype.slice.call(table.tBodies[0].rows);
  }, TABLE_PAGE, "cases") : null;
  if (tablePager) {
    // suite.js's own handlers (filter, sort) run first: they were registered first.
    ["cases-filter", "cases-status"].forEach(function (id) {
      var control = document.getElementById(id);
      if (control) { control.addEventListener(id === "cases-filter" ? "input" : "change", tablePager.reset); }
    });
    if (table.tHead) { table.tHead.addEventListener("click", tablePager.reset); }
  }

  var list = document.getElementById("cases");
  var casePager = list ? pager(document.getElementById("case-pager"), function () {
    return Array.prototype.slice.call(list.querySelectorAll("details.case"));
  }, CASE_PAGE, "cases") : null;

  function turnToTarget() {
    var target = location.hash.length > 1 ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    var section = target && target.closest ? target.closest("details.case") : null;
    if (casePager && section && casePager.show(section)) {
      section.open = true;
      target.scrollIntoView();
    }
  }
  window.addEventListener("hashchange", turnToTarget);
  turnToTarget();
})();
