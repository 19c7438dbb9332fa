// Client-side filtering of the findings table (the shared report has no server to ask).
// Reads row text with textContent only; never writes HTML.
(function () {
  function apply(id) {
    var table = document.getElementById(id);
    if (!table) return;
    var textEl = document.querySelector('[data-filter-text="' + id + '"]');
    var minEl = document.querySelector('[data-filter-min="' + id + '"]');
    var q = textEl ? textEl.value.toLowerCase().trim() : '';
    var min = minEl && minEl.value !== '' ? parseFloat(minEl.value) : null;
    var shown = 0;
    table.querySelectorAll('tbody tr').forEach(function (tr) {
      var score = parseFloat(tr.getAttribute('data-score'));
      var ok = (!q || tr.textContent.toLowerCase().indexOf(q) >= 0) &&
               (min === null || (!isNaN(score) && score >= min));
      tr.classList.toggle('hidden', !ok);
      if (ok) shown++;
    });
    var counter = document.querySelector('[data-filter-count="' + id + '"]');
    if (counter) counter.textContent = String(shown);
  }
  document.querySelectorAll('[data-filter-text],[data-filter-min]').forEach(function (el) {
    var id = el.getAttribute('data-filter-text') || el.getAttribute('data-filter-min');
    el.addEventListener('input', function () { apply(id); });
    el.addEventListener('change', function () { apply(id); });
  });
  // Following a link to a collapsed section (the report's finding details) opens it.
  function openTarget(hash) {
    var id = decodeURIComponent((typeof hash === 'string' ? hash : location.hash).slice(1));
    var el = id && document.getElementById(id);
    if (!el) return;
    var d = el.tagName === 'DETAILS' ? el : el.querySelector('details');
    for (var p = el; p; p = p.parentElement) { if (p.tagName === 'DETAILS') p.open = true; }
    if (d) d.open = true;
    el.scrollIntoView();
  }
  window.addEventListener('hashchange', function () { openTarget(); });
  // hashchange fires after the click returns; opening on the click itself means the
  // details are already open when the browser scrolls to them.
  document.addEventListener('click', function (ev) {
    var a = ev.target.closest && ev.target.closest('a[href^="#"]');
    if (a) openTarget(a.getAttribute('href'));
  });
  openTarget();
  document.documentElement.setAttribute('data-chunky-js', 'ready');
})();
