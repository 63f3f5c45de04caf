// The table page: allocation locations (thread, size, allocator, count, location) with sorting,
// search and paging. Plain DOM, every string through textContent.
import './style.css';
import {
  el, formatBytes, formatCount, frameLocation, loadData, statsPanel, threadLabel,
} from './common.js';

const data = loadData();
const frames = data.frames;
const nRows = data.rows.length / 5;

// Rows as objects once: sorting and filtering then stay simple.
const rows = new Array(nRows);
for (let i = 0; i < nRows; i++) {
  const r = data.rows;
  const thread = r[5 * i];
  const frame = frames[r[5 * i + 2]];
  const location = frame[0] + (frameLocation(frame) ? ' at ' + frameLocation(frame) : '');
  rows[i] = {
    thread: thread < 0 ? 'merged thread' : threadLabel(data, thread),
    bytes: r[5 * i + 3],
    allocator: data.allocators[r[5 * i + 1]] || String(r[5 * i + 1]),
    count: r[5 * i + 4],
    location,
  };
  rows[i].search = (rows[i].thread + '\n' + rows[i].allocator + '\n' + location).toLowerCase();
}

const columns = [
  { key: 'thread', title: 'Thread', numeric: false },
  { key: 'bytes', title: 'Size', numeric: true, format: formatBytes },
  { key: 'allocator', title: 'Allocator', numeric: false },
  { key: 'count', title: 'Allocations', numeric: true, format: formatCount },
  { key: 'location', title: 'Location', numeric: false },
];

const state = { sortKey: 'bytes', descending: true, filter: '', page: 0, pageSize: 25 };

const app = document.getElementById('app');
app.appendChild(el('header', null,
  el('h1', null, 'memray table: ', el('span', { id: 'capture-name' }, data.meta.capture))));
app.appendChild(el('section', { class: 'stats-section' }, el('h2', null, 'Stats'), statsPanel(data)));

const searchInput = el('input', { id: 'search', type: 'search', placeholder: 'Search', size: 30 });
const pageSizeSelect = el('select', { id: 'page-size' });
for (const n of [10, 25, 50, 100, 500]) pageSizeSelect.appendChild(el('option', { value: String(n), selected: n === state.pageSize }, String(n)));
const info = el('span', { id: 'page-info' });
const prev = el('button', { id: 'prev', type: 'button' }, 'Previous');
const next = el('button', { id: 'next', type: 'button' }, 'Next');
app.appendChild(el('div', { class: 'controls' },
  el('label', null, 'Search ', searchInput),
  el('label', null, ' Rows per page ', pageSizeSelect), prev, next, info));

const headRow = el('tr');
const headers = {};
for (const c of columns) {
  const th = el('th', { 'data-key': c.key, class: c.numeric ? 'num sortable' : 'sortable', tabindex: '0' }, c.title);
  th.addEventListener('click', () => sortBy(c.key));
  headers[c.key] = th;
  headRow.appendChild(th);
}
const tbody = el('tbody');
app.appendChild(el('table', { id: 'locations', class: 'locations' }, el('thead', null, headRow), tbody));
if (data.dropped && data.dropped[0] > 0) {
  app.appendChild(el('p', { class: 'footnote' }, formatCount(data.dropped[0]) + ' smaller rows (' +
    formatBytes(data.dropped[1]) + ', ' + formatCount(data.dropped[2]) + ' allocations) are not shown.'));
}

let view = rows;

function compare(a, b) {
  const k = state.sortKey;
  const x = a[k];
  const y = b[k];
  const c = typeof x === 'number' ? x - y : (x < y ? -1 : x > y ? 1 : 0);
  return state.descending ? -c : c;
}

function refilter() {
  const t = state.filter.toLowerCase();
  view = t ? rows.filter((r) => r.search.includes(t)) : rows.slice();
  view.sort(compare);
  state.page = 0;
  draw();
}

function sortBy(key) {
  if (state.sortKey === key) state.descending = !state.descending;
  else {
    state.sortKey = key;
    state.descending = columns.find((c) => c.key === key).numeric;
  }
  view.sort(compare);
  state.page = 0;
  draw();
}

function draw() {
  const pages = Math.max(1, Math.ceil(view.length / state.pageSize));
  state.page = Math.min(state.page, pages - 1);
  const start = state.page * state.pageSize;
  const end = Math.min(view.length, start + state.pageSize);
  const frag = document.createDocumentFragment();
  for (let i = start; i < end; i++) {
    const r = view[i];
    const tr = el('tr');
    for (const c of columns) {
      const td = el('td', { class: c.numeric ? 'num' : null }, c.format ? c.format(r[c.key]) : r[c.key]);
      if (c.numeric) td.dataset.value = String(r[c.key]);
      tr.appendChild(td);
    }
    frag.appendChild(tr);
  }
  tbody.replaceChildren(frag);
  for (const c of columns) {
    const th = headers[c.key];
    th.setAttribute('aria-sort', c.key === state.sortKey ? (state.descending ? 'descending' : 'ascending') : 'none');
  }
  info.textContent = view.length === 0
    ? 'No matching rows'
    : 'Showing ' + formatCount(start + 1) + ' to ' + formatCount(end) + ' of ' + formatCount(view.length) +
      ' rows' + (view.length !== rows.length ? ' (filtered from ' + formatCount(rows.length) + ')' : '');
  prev.disabled = state.page === 0;
  next.disabled = state.page >= pages - 1;
}

searchInput.addEventListener('input', () => {
  state.filter = searchInput.value.trim();
  refilter();
});
pageSizeSelect.addEventListener('change', () => {
  state.pageSize = Number(pageSizeSelect.value);
  state.page = 0;
  draw();
});
prev.addEventListener('click', () => { state.page -= 1; draw(); });
next.addEventListener('click', () => { state.page += 1; draw(); });

refilter();
document.body.dataset.rendered = '1';
window.memrayReport = { state, data };
