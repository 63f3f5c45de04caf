// Helpers shared by the flame graph and table pages. Every string that comes from the capture
// reaches the DOM through textContent (el() below), never through innerHTML.

export function loadData() {
  const node = document.getElementById('memray-data');
  return JSON.parse(node.textContent);
}

// el('div', {class: 'x', title: t}, 'text', child...): attributes via setAttribute, text via
// text nodes, so nothing is ever parsed as HTML.
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
  return e;
}

// 1000-based units with 3 decimals, as memray prints sizes ("2.047kB", "3.341MB").
export function formatBytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return i === 0 ? v.toFixed(0) + 'B' : v.toFixed(3) + units[i];
}

export function formatCount(n) {
  return Number(n).toLocaleString('en-US');
}

export function formatDuration(us) {
  const s = Number(us) / 1e6;
  if (s < 1) return (s * 1000).toFixed(1) + ' ms';
  if (s < 120) return s.toFixed(3) + ' s';
  const m = Math.floor(s / 60);
  return m + ' min ' + (s - m * 60).toFixed(1) + ' s';
}

export function threadLabel(data, index) {
  const t = data.threads[index];
  if (!t) return 'thread ' + index;
  const name = t[1] ? ' (' + t[1] + ')' : '';
  return '0x' + (index + 1).toString(16) + name;
}

export function frameLocation(frame) {
  // frame = [function, file, line, flags]
  if (!frame[1]) return '';
  return frame[2] ? frame[1] + ':' + frame[2] : frame[1];
}

const kindText = {
  high_water_mark: 'allocations alive at the peak of the heap (high-water mark)',
  leaks: 'allocations not freed when tracking stopped (leaks)',
  temporary: 'temporary allocations',
};

const temporalText = {
  high_water_mark: 'allocations alive at the highest heap within the chosen window (its high-water mark)',
  leaks: 'allocations made within the chosen window and not freed by its end',
};

// The stats panel: command line, pid, times, totals.
export function statsPanel(data) {
  const m = data.meta;
  const rows = [
    ['Command line', m.command],
    ['Process id', m.pid],
    ['Start time', new Date(Number(m.start_ms)).toISOString().replace('T', ' ').replace('Z', ' UTC')],
    ['Duration', formatDuration(m.duration_us)],
    ['Total allocations', formatCount(m.total_allocations)],
    ['Total memory allocated', formatBytes(m.total_bytes)],
    ['Peak memory', formatBytes(m.peak_bytes) + ' (at ' + formatDuration(m.peak_time_us) + ')'],
    ['Stacks', m.native ? 'native (--native)' : 'Python'],
    ['Python allocators', m.python_allocators ? 'traced' : 'not traced (pymalloc not shown)'],
    ['Interpreter', m.python_version ? 'Python ' + m.python_version : m.executable],
    ['Showing', (data.temporal ? temporalText[data.kind] : kindText[data.kind]) || data.kind],
  ];
  const dl = el('dl', { class: 'stats', id: 'stats' });
  for (const [k, v] of rows) {
    dl.appendChild(el('dt', null, k));
    dl.appendChild(el('dd', null, String(v)));
  }
  if (m.truncated) dl.appendChild(el('dd', { class: 'warning' }, 'The capture was cut short (the process was killed).'));
  return dl;
}
