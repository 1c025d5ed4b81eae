// The case table of a suite report: sort by clicking a column header, filter by text and status; a
// link to a case opens it. Without this script the table is complete and the controls stay hidden.
(function () {
  "use strict";
  // A link to a case (#case-...) opens its section.
  function openTarget() {
    var target = location.hash.length > 1 ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();

  var table = document.getElementById("cases-table");
  var controls = document.getElementById("cases-controls");
  if (!table || !controls) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  rows.forEach(function (row, i) { row.setAttribute("data-index", String(i)); });
  var text = document.getElementById("cases-filter");
  var status = document.getElementById("cases-status");
  var shown = document.getElementById("cases-shown");

  function filter() {
    var query = text.value.trim().toLowerCase();
    var wanted = status.value;
    var count = 0;
    rows.forEach(function (row) {
      var ok = (!wanted || row.getAttribute("data-status") === wanted) &&
        (!query || row.textContent.toLowerCase().indexOf(query) >= 0);
      row.hidden = !ok;
      if (ok) { count += 1; }
    });
    shown.textContent = count + " of " + rows.length + " cases shown";
  }

  function key(row, column, numeric) {
    var cell = row.cells[column];
    if (!cell) { return null; }
    var value = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (value === "") { return null; }
    if (numeric) { var x = parseFloat(value); return isNaN(x) ? null : x; }
    return value.toLowerCase();
  }

  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function sortBy(th) {
    var descending = th.getAttribute("aria-sort") === "ascending";
    var column = th.cellIndex;
    var numeric = th.getAttribute("data-type") === "num";
    headers.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var sorted = rows.slice().sort(function (a, b) {
      var ka = key(a, column, numeric), kb = key(b, column, numeric);
      var order = 0;
      if (ka === null || kb === null) {
        order = ka === kb ? 0 : (ka === null ? 1 : -1);  // no value: last either way
      } else {
        order = ka < kb ? -1 : (ka > kb ? 1 : 0);
        if (descending) { order = -order; }
      }
      return order || parseInt(a.getAttribute("data-index"), 10) - parseInt(b.getAttribute("data-index"), 10);
    });
    sorted.forEach(function (row) { body.appendChild(row); });
  }

  headers.forEach(function (th) {
    var button = document.createElement("button");
    button.type = "button";
    while (th.firstChild) { button.appendChild(th.firstChild); }
    th.appendChild(button);
    th.setAttribute("aria-sort", "none");
    button.addEventListener("click", function () { sortBy(th); });
  });
  text.addEventListener("input", filter);
  status.addEventListener("change", filter);
  controls.hidden = false;
  filter();
})();
