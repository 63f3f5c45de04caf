// The flame graph page: builds every view (threads, inverted, hidden frames, --temporal windows)
// from the compact data the memray binary embeds (see src/report/html_report.hpp for the layout)
// and draws it with d3-flame-graph; the memory plot is uPlot.
import { select } from 'd3-selection';
import flamegraph from 'd3-flame-graph/src/flamegraph.js';
import 'd3-flame-graph/src/flamegraph.css';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import {
  el, formatBytes, formatCount, formatDuration, frameLocation, loadData, statsPanel, threadLabel,
} from './common.js';

const FLAG_NATIVE = 1;
const FLAG_IRRELEVANT = 2;
const FLAG_IMPORT = 4;
const OTHER_FRAME = 1;
const HIGHLIGHT = '#e600e6';

const data = loadData();
const frames = data.frames;
const nNodes = data.nodes.length / 2;
const nodeParent = new Int32Array(nNodes);
const nodeFrame = new Int32Array(nNodes);
for (let i = 0; i < nNodes; i++) {
  nodeParent[i] = data.nodes[2 * i];
  nodeFrame[i] = data.nodes[2 * i + 1];
}
const nLocs = data.locs.length / 4;
const times = data.memory[0];

const state = {
  thread: -1,
  split: !!data.split_threads,
  inverted: !!data.inverted,
  icicle: true,
  hideIrrelevant: true,
  hideImport: false,
  search: '',
  // --temporal window as memory-sample indices (inclusive), the whole capture at first
  window: [0, Math.max(0, times.length - 1)],
  // --temporal high-water mark: [from, to] (microseconds) in which the window's peak was reached
  peak: null,
};

// ---- amounts per location ------------------------------------------------------------------

// Memory-sample index of time t (the sample at or before it).
function sampleAt(t) {
  let lo = 0;
  let hi = times.length - 1;
  if (hi < 0 || t <= times[0]) return 0;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// The (grouped) interval of [a, b] with the highest heap, the latest on ties.
function peakInterval(a, b) {
  const peaks = data.interval_peaks || [];
  let h = Math.min(a, Math.max(0, peaks.length - 1));
  for (let i = h; i <= b && i < peaks.length; i++) if (peaks[i] >= peaks[h]) h = i;
  return h;
}

function locationAmounts() {
  const bytes = new Float64Array(nLocs);
  const count = new Float64Array(nLocs);
  if (!data.temporal) {
    for (let i = 0; i < nLocs; i++) {
      bytes[i] = data.locs[4 * i + 2];
      count[i] = data.locs[4 * i + 3];
    }
    return { bytes, count };
  }
  const g = data.interval_group || 1;
  const a = Math.floor(state.window[0] / g);
  const b = Math.floor(state.window[1] / g);
  const iv = data.intervals;
  if (data.kind === 'high_water_mark') {
    // What was alive at the window's highest heap: the shares of its highest interval (the
    // latest on ties, as the whole capture's high-water mark), runs [first, end).
    const h = peakInterval(a, b);
    for (let k = 0; k < iv.length; k += 5) {
      const end = iv[k + 2];
      if (iv[k + 1] <= h && (end < 0 || end > h)) {
        bytes[iv[k]] += iv[k + 3];
        count[iv[k]] += iv[k + 4];
      }
    }
    return { bytes, count };
  }
  // --leaks: allocated in the window and not freed before its end.
  for (let k = 0; k < iv.length; k += 5) {
    const at = iv[k + 1];
    const freed = iv[k + 2];
    if (at >= a && at <= b && (freed < 0 || freed > b)) {
      bytes[iv[k]] += iv[k + 3];
      count[iv[k]] += iv[k + 4];
    }
  }
  return { bytes, count };
}

// ---- the displayed tree --------------------------------------------------------------------

function hidden(f) {
  const flags = frames[f][3];
  return (state.hideIrrelevant && (flags & FLAG_IRRELEVANT) !== 0) ||
    (state.hideImport && (flags & FLAG_IMPORT) !== 0);
}

function buildTree() {
  const { bytes, count } = locationAmounts();
  // Display nodes in flat arrays; key < 0 marks a thread node.
  const dKey = [0];
  const dParent = [-1];
  const dKids = [new Map()];
  const dBytes = [0];
  const dCount = [0];
  const child = (p, key) => {
    let c = dKids[p].get(key);
    if (c === undefined) {
      c = dKey.length;
      dKey.push(key);
      dParent.push(p);
      dKids.push(new Map());
      dBytes.push(0);
      dCount.push(0);
      dKids[p].set(key, c);
    }
    return c;
  };
  const threadBase = (t) => (state.split ? child(0, -(t + 1)) : 0);
  const memos = new Map();

  for (let i = 0; i < nLocs; i++) {
    const b = bytes[i];
    const n = count[i];
    if (b === 0 && n === 0) continue;
    const thread = data.locs[4 * i + 1];
    if (state.thread >= 0 && thread !== state.thread) continue;
    const node = data.locs[4 * i];
    const base = threadBase(thread);
    if (state.inverted) {
      // Innermost frame first: callers of each allocating function below it.
      let cur = base;
      dBytes[cur] += b;
      dCount[cur] += n;
      for (let x = node; x !== 0; x = nodeParent[x]) {
        const f = nodeFrame[x];
        if (hidden(f)) continue;
        cur = child(cur, f);
        dBytes[cur] += b;
        dCount[cur] += n;
      }
      if (base !== 0) {
        dBytes[0] += b;
        dCount[0] += n;
      }
      continue;
    }
    // Display node of each tree node, memoised per base (one per thread when split).
    let memo = memos.get(base);
    if (!memo) {
      memo = new Int32Array(nNodes).fill(-1);
      memo[0] = base;
      memos.set(base, memo);
    }
    const path = [];
    let x = node;
    while (memo[x] < 0) {
      path.push(x);
      x = nodeParent[x];
    }
    let cur = memo[x];
    for (let k = path.length - 1; k >= 0; k--) {
      const y = path[k];
      const f = nodeFrame[y];
      if (!hidden(f)) cur = child(cur, f);
      memo[y] = cur;
    }
    dBytes[cur] += b;
    dCount[cur] += n;
  }
  if (!state.inverted) {
    // Children are created after their parents: one backwards pass sums the totals.
    for (let d = dKey.length - 1; d > 0; d--) {
      dBytes[dParent[d]] += dBytes[d];
      dCount[dParent[d]] += dCount[d];
    }
  }
  // Objects for d3-flame-graph.
  const objs = new Array(dKey.length);
  for (let d = 0; d < dKey.length; d++) {
    const key = dKey[d];
    let name;
    let frame = null;
    if (d === 0) name = 'Total: ' + formatBytes(dBytes[0]) + ' in ' + formatCount(dCount[0]) + ' allocations';
    else if (key < 0) name = 'Thread ' + threadLabel(data, -key - 1);
    else {
      frame = key;
      name = frames[key][0];
    }
    objs[d] = { name, value: dBytes[d], count: dCount[d], frame, thread: key < 0 ? -key - 1 : null, children: [] };
    if (d > 0) objs[dParent[d]].children.push(objs[d]);
  }
  return objs[0];
}

// ---- tooltip and details -------------------------------------------------------------------

let mouseX = 0;
let mouseY = 0;
document.addEventListener('mousemove', (e) => {
  mouseX = e.clientX;
  mouseY = e.clientY;
});

const tooltipEl = el('div', { id: 'tooltip', class: 'tooltip', role: 'tooltip' });
let rootValue = 0;

function describe(d) {
  const o = d.data;
  const lines = [];
  if (o.frame !== null) {
    const f = frames[o.frame];
    lines.push(['title', f[0]]);
    if (o.frame === OTHER_FRAME) {
      lines.push(['', 'Call paths below ' + (data.merged_nodes ? 'a small share' : '') +
        ' of the total, merged to keep the page small']);
    }
    const loc = frameLocation(f);
    if (loc) lines.push(['location', loc]);
    if (f[3] & FLAG_NATIVE) lines.push(['', 'native frame']);
  } else if (o.thread !== null) {
    lines.push(['title', 'Thread ' + threadLabel(data, o.thread)]);
    lines.push(['', 'tid ' + data.threads[o.thread][0]]);
  } else {
    lines.push(['title', 'All allocations of this view']);
  }
  const share = rootValue > 0 ? (100 * d.value / rootValue).toFixed(2) + '%' : '-';
  lines.push(['size', 'Size: ' + formatBytes(d.value) + ' (' + formatCount(d.value) + ' bytes)']);
  lines.push(['count', 'Allocations: ' + formatCount(o.count)]);
  lines.push(['share', 'Share: ' + share + ' of the total']);
  return lines;
}

function tooltip() {}
tooltip.show = (d) => {
  tooltipEl.replaceChildren();
  for (const [cls, text] of describe(d)) tooltipEl.appendChild(el('div', { class: cls || null }, text));
  tooltipEl.dataset.bytes = String(d.value);
  tooltipEl.dataset.count = String(d.data.count);
  tooltipEl.style.display = 'block';
  const w = tooltipEl.offsetWidth;
  const x = mouseX + 16 + w > window.innerWidth ? Math.max(0, mouseX - w - 16) : mouseX + 16;
  tooltipEl.style.left = x + 'px';
  tooltipEl.style.top = (mouseY + 16) + 'px';
  return tooltip;
};
tooltip.hide = () => {
  tooltipEl.style.display = 'none';
  return tooltip;
};

// ---- page layout ---------------------------------------------------------------------------

const app = document.getElementById('app');
const kindTitle = { high_water_mark: 'peak memory', leaks: 'leaks', temporary: 'temporary allocations' };
const header = el('header', null,
  el('h1', null, 'memray flame graph: ', el('span', { id: 'capture-name' }, data.meta.capture)),
  el('p', { class: 'subtitle' }, data.temporal ? 'temporal view (select a window on the memory plot)' : (kindTitle[data.kind] || data.kind)));
app.appendChild(header);

const top = el('div', { class: 'top' });
const plotBox = el('div', { id: 'memory-plot', class: 'plot' });
top.appendChild(el('section', { class: 'plot-section' }, el('h2', null, 'Memory over time'), plotBox));
top.appendChild(el('section', { class: 'stats-section' }, el('h2', null, 'Stats'), statsPanel(data)));
app.appendChild(top);

const windowText = el('span', { id: 'window-text' });
const startInput = el('input', { id: 'window-start', type: 'number', step: 'any', min: '0', title: 'window start (seconds)' });
const endInput = el('input', { id: 'window-end', type: 'number', step: 'any', min: '0', title: 'window end (seconds)' });
if (data.temporal) {
  app.appendChild(el('div', { class: 'controls', id: 'temporal-controls' },
    el('label', null, 'Window from ', startInput, ' s'),
    el('label', null, ' to ', endInput, ' s'),
    el('button', { id: 'window-reset', type: 'button', onclick: () => setWindow(0, times.length - 1) }, 'Whole capture'),
    windowText));
}

const searchInput = el('input', { id: 'search', type: 'search', placeholder: 'Search functions or files', size: 30 });
const threadSelect = el('select', { id: 'thread' }, el('option', { value: '-1' }, 'All threads'));
data.threads.forEach((t, i) => threadSelect.appendChild(el('option', { value: String(i) }, threadLabel(data, i))));
const check = (id, label, checked) => {
  const input = el('input', { id, type: 'checkbox', checked });
  return [input, el('label', { class: 'check' }, input, ' ' + label)];
};
const [irrelevantBox, irrelevantLabel] = check('hide-irrelevant', 'Hide irrelevant frames', state.hideIrrelevant);
const [importBox, importLabel] = check('hide-import', 'Hide import system frames', state.hideImport);
const [invertedBox, invertedLabel] = check('inverted', 'Inverted', state.inverted);
const [splitBox, splitLabel] = check('split-threads', 'Threads as first level', state.split);
const orientButton = el('button', { id: 'orientation', type: 'button' }, 'Flame');
const resetButton = el('button', { id: 'reset-zoom', type: 'button' }, 'Reset zoom');
const searchResult = el('span', { id: 'search-result' });
app.appendChild(el('div', { class: 'controls' },
  searchInput, searchResult, resetButton, orientButton, threadSelect,
  irrelevantLabel, importLabel, invertedLabel, splitLabel));
const details = el('div', { id: 'details', class: 'details' }, ' ');
app.appendChild(details);
const chartBox = el('div', { id: 'chart', class: 'chart' });
app.appendChild(chartBox);
app.appendChild(el('p', { class: 'footnote', id: 'merged-note' },
  data.merged_nodes > 0
    ? formatCount(data.merged_nodes) + ' of ' + formatCount(data.full_nodes) +
      ' call-tree nodes with a small share of the total were merged into "<other>".'
    : ''));
document.body.appendChild(tooltipEl);

// ---- the chart -----------------------------------------------------------------------------

let chart = null;

function colorFor(d) {
  if (d.highlight) return HIGHLIGHT;
  const o = d.data;
  if (o.frame === null) return o.thread !== null ? '#9ecae1' : '#bdbdbd';
  if (o.frame === OTHER_FRAME) return '#d9d9d9';
  const f = frames[o.frame];
  // Stable warm colours from the name; native frames cooler.
  let h = 0;
  for (let i = 0; i < f[0].length; i++) h = (h * 31 + f[0].charCodeAt(i)) | 0;
  const r = (Math.abs(h) % 55);
  if (f[3] & FLAG_NATIVE) return 'rgb(' + (80 + r) + ',' + (150 + r) + ',' + (200) + ')';
  return 'rgb(' + 230 + ',' + (100 + r * 2) + ',' + (40 + r) + ')';
}

function matches(d, term) {
  if (!term) return false;
  const o = d.data;
  if (o.frame === null) return false;
  const f = frames[o.frame];
  const t = term.toLowerCase();
  return f[0].toLowerCase().includes(t) || f[1].toLowerCase().includes(t);
}

function render() {
  const t0 = performance.now();
  const root = buildTree();
  rootValue = root.value;
  chartBox.replaceChildren();
  const width = Math.max(400, chartBox.clientWidth || document.body.clientWidth - 32);
  chart = flamegraph()
    .width(width)
    .cellHeight(18)
    .transitionDuration(200)
    .minFrameSize(1)
    .inverted(state.icicle)
    .sort((a, b) => b.value - a.value)
    .selfValue(false)
    .tooltip(tooltip)
    .setColorMapper((d) => colorFor(d))
    .setSearchMatch(matches)
    .setSearchHandler((results, sum, total) => {
      searchResult.textContent = state.search
        ? formatCount(results.length) + ' matching frames, ' + formatBytes(sum) + ' (' +
          (total > 0 ? (100 * sum / total).toFixed(2) : '0') + '%)'
        : '';
    })
    .setDetailsHandler((text) => {
      details.textContent = text || ' ';
    })
    .label((d) => {
      const o = d.data;
      const loc = o.frame !== null ? frameLocation(frames[o.frame]) : '';
      return d.data.name + (loc ? ' at ' + loc : '') + ': ' + formatBytes(d.value) + ', ' +
        formatCount(o.count) + ' allocations';
    });
  select(chartBox).datum(root).call(chart);
  if (state.search) chart.search(state.search);
  else searchResult.textContent = '';
  chartBox.dataset.rootBytes = String(root.value);
  chartBox.dataset.rootCount = String(root.count);
  chartBox.dataset.renderMs = (performance.now() - t0).toFixed(1);
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

searchInput.addEventListener('input', () => {
  state.search = searchInput.value.trim();
  if (!chart) return;
  if (state.search) chart.search(state.search);
  else {
    chart.clear();
    searchResult.textContent = '';
  }
});
resetButton.addEventListener('click', () => chart && chart.resetZoom());
orientButton.addEventListener('click', () => {
  state.icicle = !state.icicle;
  orientButton.textContent = state.icicle ? 'Flame' : 'Icicle';
  render();
});
threadSelect.addEventListener('change', () => {
  state.thread = Number(threadSelect.value);
  render();
});
irrelevantBox.addEventListener('change', () => { state.hideIrrelevant = irrelevantBox.checked; render(); });
importBox.addEventListener('change', () => { state.hideImport = importBox.checked; render(); });
invertedBox.addEventListener('change', () => { state.inverted = invertedBox.checked; render(); });
splitBox.addEventListener('change', () => { state.split = splitBox.checked; render(); });

// ---- memory plot and the --temporal window -------------------------------------------------

let plot = null;

function setWindow(a, b) {
  const last = Math.max(0, times.length - 1);
  a = Math.max(0, Math.min(last, a));
  b = Math.max(a, Math.min(last, b));
  state.window = [a, b];
  const ta = times.length ? times[a] / 1e6 : 0;
  const tb = times.length ? times[b] / 1e6 : 0;
  startInput.value = ta.toFixed(3);
  endInput.value = tb.toFixed(3);
  if (data.kind === 'high_water_mark') {
    const g = data.interval_group || 1;
    const h = peakInterval(Math.floor(a / g), Math.floor(b / g));
    // The first interval also holds what came before the first sample, the last what came
    // after its sample.
    const from = h === 0 ? 0 : times[h * g];
    const to = times[(h + 1) * g];
    state.peak = [from, to === undefined ? Number(data.meta.duration_us) : to];
    windowText.textContent = ' showing the allocations alive at the highest heap of the window, ' +
      formatBytes((data.interval_peaks || [])[h] || 0) + ', held between ' + formatDuration(from) +
      (to === undefined ? ' and the end' : ' and ' + formatDuration(to));
    if (plot) plot.redraw(false);
  } else {
    windowText.textContent = ' showing allocations made between ' + formatDuration(times[a] || 0) +
      ' and ' + formatDuration(times[b] || 0) + ' and still alive at the end of it';
  }
  render();
}

function windowFromInputs() {
  const ta = Number(startInput.value) * 1e6;
  const tb = Number(endInput.value) * 1e6;
  if (!Number.isFinite(ta) || !Number.isFinite(tb)) return;
  setWindow(sampleAt(ta), sampleAt(tb));
}
startInput.addEventListener('change', windowFromInputs);
endInput.addEventListener('change', windowFromInputs);

function drawPlot() {
  if (times.length === 0) {
    plotBox.appendChild(el('p', null, 'No memory samples in this capture.'));
    return;
  }
  const xs = Float64Array.from(times, (t) => t / 1e6);
  const width = Math.max(300, plotBox.clientWidth || 600);
  const opts = {
    width,
    height: 200,
    cursor: data.temporal ? { drag: { x: true, y: false, setScale: false } } : { drag: { x: true, y: false } },
    select: { show: true },
    scales: { x: { time: false } },
    axes: [
      { label: 'seconds' },
      { values: (u, vals) => vals.map((v) => formatBytes(v).replace(/\.?0+(?=[kMGTP]B$)/, '')), size: 90 },
    ],
    series: [
      { label: 'time (s)', value: (u, v) => (v == null ? '-' : v.toFixed(3)) },
      { label: 'RSS', stroke: '#3182bd', width: 1.5, value: (u, v) => (v == null ? '-' : formatBytes(v)) },
      { label: 'Heap', stroke: '#e6550d', width: 1.5, value: (u, v) => (v == null ? '-' : formatBytes(v)) },
    ],
    hooks: data.temporal ? {
      // The stretch in which the window's high-water mark was reached, as memray marks it.
      draw: [(u) => {
        if (!state.peak) return;
        const x0 = Math.max(u.bbox.left, u.valToPos(state.peak[0] / 1e6, 'x', true));
        const x1 = Math.min(u.bbox.left + u.bbox.width, u.valToPos(state.peak[1] / 1e6, 'x', true));
        u.ctx.save();
        u.ctx.fillStyle = 'rgba(251, 255, 0, 0.35)';
        u.ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
        u.ctx.restore();
      }],
      setSelect: [(u) => {
        if (u.select.width <= 0) return;
        const t0 = u.posToVal(u.select.left, 'x') * 1e6;
        const t1 = u.posToVal(u.select.left + u.select.width, 'x') * 1e6;
        setWindow(sampleAt(t0), sampleAt(t1));
      }],
    } : {},
  };
  plot = new uPlot(opts, [xs, data.memory[1], data.memory[2]], plotBox);
  window.addEventListener('resize', () => plot.setSize({ width: Math.max(300, plotBox.clientWidth), height: 200 }));
}

drawPlot();
if (data.temporal) setWindow(0, times.length - 1);
else render();

// For tests and the curious: the current state and tree, read-only.
window.memrayReport = { state, data, buildTree, render, setWindow, plot: () => plot };
