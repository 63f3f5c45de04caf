// HTML report tests: `memray run` a Python target with known allocations, make the flame graph
// and table pages, open them in headless Chromium (playwright-core) and check what a user sees:
// totals, search highlighting, the --temporal window, the thread filter, the hostile function
// name shown as text, sorting/search/paging of the table.
//
// usage: node test_web.cjs MEMRAY TARGET_PY NODE_MODULES
// Exit codes (meson): 0 pass, 1 fail, 77 skip (prerequisite missing, with a reason).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const [memrayArg, targetArg, nodeModules] = process.argv.slice(2);
const memray = path.resolve(memrayArg);
const target = path.resolve(targetArg);
const HOSTILE = '<img src=x onerror=alert(1)>';
const HIGHLIGHT = 'rgb(230, 0, 230)';
const chromiumPath = process.env.MEMRAY_CHROMIUM || '/usr/bin/chromium';
const python = '/usr/bin/python3';

function skip(reason) {
  console.log('SKIP: ' + reason);
  process.exit(77);
}
if (!fs.existsSync(chromiumPath)) skip(chromiumPath + ' not installed (apt-get install chromium)');
if (!fs.existsSync(python)) skip(python + ' not installed');
let chromium;
try {
  ({ chromium } = require(path.resolve(nodeModules, 'playwright-core')));
} catch (e) {
  skip('playwright-core not found in ' + nodeModules + ' (built by web/meson.build): ' + e.message);
}

let failures = 0;
let passes = 0;
function check(ok, what) {
  if (ok) passes += 1;
  else failures += 1;
  console.log((ok ? 'ok   ' : 'FAIL ') + what);
  return ok;
}
function equal(actual, expected, what) {
  return check(actual === expected, what + ': expected ' + JSON.stringify(expected) + ', got ' + JSON.stringify(actual));
}

function run(args, opts = {}) {
  console.log('$ ' + args.join(' '));
  const p = spawnSync(args[0], args.slice(1), { encoding: 'utf8', timeout: 120000, ...opts });
  console.log('  exit ' + p.status + (p.stderr ? '\n  stderr: ' + p.stderr.trim().split('\n').slice(-5).join('\n          ') : ''));
  return p;
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mr-web-'));
const capture = path.join(work, 'memray-web_target.bin');

async function main() {
  // ---- the capture -------------------------------------------------------------------------
  const r = run([memray, 'run', '--python', python, '-o', capture, target], { cwd: work });
  if (r.status !== 0) {
    check(false, 'memray run succeeds');
    return;
  }
  const phases = {};
  for (const line of r.stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] === 'PHASE') phases[f[1]] = { time: Number(f[2]), bytes: Number(f[3]) };
  }
  check(Object.keys(phases).length === 9, 'target printed its 9 phases');
  const statsPath = path.join(work, 'stats.json');
  run([memray, 'stats', '--json', '-o', statsPath, '-f', capture]);
  const peak = JSON.parse(fs.readFileSync(statsPath, 'utf8')).metadata.peak_memory;

  // ---- command line: default name, no overwrite without -f ---------------------------------
  const fg = path.join(work, 'memray-flamegraph-web_target.html');
  let p = run([memray, 'flamegraph', capture]);
  equal(p.stdout.trim(), 'Wrote ' + fg, 'flamegraph prints Wrote <default name next to the capture>');
  p = run([memray, 'flamegraph', capture]);
  check(p.status !== 0 && fs.existsSync(fg), 'flamegraph refuses to overwrite without -f');
  p = run([memray, 'flamegraph', '-f', '--no-web', capture]);
  check(p.status === 0, 'flamegraph -f --no-web overwrites');
  const html = fs.readFileSync(fg, 'utf8');
  check(!html.includes(HOSTILE) && !/<img/i.test(html), 'the hostile name never appears unescaped in the page source');
  check(!/(src|href)\s*=\s*["']?https?:/i.test(html), 'the page loads nothing from the network');

  const temporal = path.join(work, 'temporal.html');
  p = run([memray, 'flamegraph', '--temporal', '-o', temporal, capture]);
  check(p.status === 0, 'flamegraph --temporal');
  const temporalLeaks = path.join(work, 'temporal-leaks.html');
  p = run([memray, 'flamegraph', '--temporal', '--leaks', '-o', temporalLeaks, capture]);
  check(p.status === 0, 'flamegraph --temporal --leaks');
  p = run([memray, 'flamegraph', '--temporal', '--temporary-allocations', '-o', path.join(work, 'x.html'), capture]);
  check(p.status === 2 && p.stderr.includes("Can't create a temporal flame graph of temporary allocations"),
    'flamegraph --temporal --temporary-allocations refused as memray does');
  const table = path.join(work, 'memray-table-web_target.html');
  p = run([memray, 'table', capture]);
  equal(p.stdout.trim(), 'Wrote ' + table, 'table prints Wrote <default name>');

  // ---- options memray documents ------------------------------------------------------------
  const kindOf = (file) => JSON.parse(fs.readFileSync(file, 'utf8').match(/id="memray-data">([^]*?)<\/script>/)[1]).kind;
  for (const reporter of ['flamegraph', 'table']) {
    const out = path.join(work, reporter + '-t0.html');
    p = run([memray, reporter, '--temporary-allocation-threshold', '0', '-o', out, capture]);
    check(p.status === 0 && kindOf(out) === 'temporary', reporter + ' --temporary-allocation-threshold 0: temporary allocations');
  }
  p = run([memray, 'table', '--no-web', '-f', capture]);
  check(p.status === 0 && fs.existsSync(table), 'table --no-web (assets are inline anyway)');
  // The page never holds source lines, so every --confidential-files value gives the same data.
  const confidential = {};
  for (const v of ['all', 'none', 'default']) {
    const out = path.join(work, 'confidential-' + v + '.html');
    p = run([memray, 'flamegraph', '--confidential-files', v, '-o', out, capture]);
    check(p.status === 0, 'flamegraph --confidential-files ' + v);
    confidential[v] = fs.readFileSync(out, 'utf8').match(/id="memray-data">([^]*?)<\/script>/)[1];
  }
  check(confidential.all === confidential.none && confidential.none === confidential.default,
    '--confidential-files all, none and default give the same page data');
  check(!confidential.none.includes('keep.append(bytearray'), 'no source line in the page, even with none');
  p = run([memray, 'flamegraph', '--confidential-files', 'some', '-o', path.join(work, 'x.html'), capture]);
  check(p.status !== 0 && p.stderr.includes('confidential'), '--confidential-files some is refused');

  // ---- the browser -------------------------------------------------------------------------
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  try {
    await flamegraphChecks(browser, fg, phases, peak);
    await temporalChecks(browser, temporal, phases);
    await temporalLeaksChecks(browser, temporalLeaks, phases);
    await tableChecks(browser, table, phases);
  } finally {
    await browser.close();
  }
}

async function open(browser, file) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => {
    errors.push('dialog opened: ' + d.message());
    d.dismiss();
  });
  await page.addInitScript(() => {
    window.__alerts = 0;
    window.alert = () => { window.__alerts += 1; };
  });
  const t0 = Date.now();
  await page.goto('file://' + file);
  await page.waitForSelector('body[data-rendered]', { timeout: 60000 });
  console.log('  rendered ' + path.basename(file) + ' in ' + (Date.now() - t0) + ' ms');
  return { page, errors };
}

// Hovers the frame named `name` and returns the tooltip's numbers, or null when absent.
async function frameInfo(page, name) {
  const g = page.locator('g.frame').filter({ has: page.locator('xpath=self::*[@name=' + xpathString(name) + ']') });
  const n = await page.evaluate((nm) => [...document.querySelectorAll('g.frame')].filter((g) => g.getAttribute('name') === nm).length, name);
  if (n === 0) return null;
  await page.evaluate((nm) => {
    const g = [...document.querySelectorAll('g.frame')].find((x) => x.getAttribute('name') === nm);
    g.dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
  }, name);
  void g;
  return page.evaluate(() => {
    const t = document.getElementById('tooltip');
    return { bytes: Number(t.dataset.bytes), count: Number(t.dataset.count), text: t.textContent, visible: t.style.display === 'block' };
  });
}
function xpathString(s) {
  return s.includes("'") ? 'concat(' + s.split("'").map((x) => "'" + x + "'").join(",\"'\",") + ')' : "'" + s + "'";
}
async function frameNames(page) {
  await page.waitForTimeout(50);
  return page.evaluate(() => [...document.querySelectorAll('g.frame')].map((g) => g.getAttribute('name')));
}

async function flamegraphChecks(browser, file, phases, peak) {
  const { page, errors } = await open(browser, file);
  const rootName = await page.evaluate(() => [...document.querySelectorAll('g.frame')].map((g) => g.getAttribute('name')).find((n) => n.startsWith('Total:')));
  check(!!rootName, 'the root frame is drawn: ' + rootName);
  const root = await frameInfo(page, rootName);
  equal(root && root.bytes, peak, "root tooltip total = peak memory (stats' high-water mark)");
  check(root && root.visible && root.text.includes(peak.toLocaleString('en-US') + ' bytes'), 'root tooltip text shows the exact bytes');
  for (const [fn, ph] of [['first_phase', 'first'], ['second_phase', 'second'], ['third_phase', 'third'], ['worker_allocation', 'worker']]) {
    const info = await frameInfo(page, fn);
    equal(info && info.bytes, phases[ph].bytes, fn + ' at the high-water mark');
  }
  // Hostile name: shown as text, never run.
  const hostile = await frameInfo(page, HOSTILE);
  equal(hostile && hostile.bytes, phases.hostile.bytes, 'the function named ' + HOSTILE + ' is a frame with its bytes');
  check(hostile && hostile.text.includes(HOSTILE + ':2'), 'its tooltip shows the name and file:line as text');
  await page.waitForTimeout(400);  // labels are set after the transition
  const labelled = await page.evaluate((h) => [...document.querySelectorAll('.d3-flame-graph-label')].some((d) => d.textContent === h), HOSTILE);
  check(labelled, 'the hostile name is a label text');
  const imgs = await page.evaluate(() => document.querySelectorAll('img').length);
  equal(imgs, 0, 'no <img> element was created');
  equal(await page.evaluate(() => window.__alerts), 0, 'alert() never called');

  // Search highlights the matching frame and only it.
  await page.fill('#search', 'second_phase');
  await page.waitForTimeout(100);
  const fills = await page.evaluate(() => {
    const out = {};
    for (const g of document.querySelectorAll('g.frame')) out[g.getAttribute('name')] = getComputedStyle(g.querySelector('rect')).fill;
    return out;
  });
  equal(fills.second_phase, HIGHLIGHT, 'search "second_phase" highlights it');
  check(fills.first_phase && fills.first_phase !== HIGHLIGHT, 'search leaves first_phase unhighlighted');
  const searchText = await page.textContent('#search-result');
  check(searchText.startsWith('1 matching frames') && searchText.includes('9.000MB'), 'search summary: ' + searchText);
  await page.fill('#search', '');
  await page.waitForTimeout(100);
  const cleared = await page.evaluate(() => {
    const g = [...document.querySelectorAll('g.frame')].find((x) => x.getAttribute('name') === 'second_phase');
    return getComputedStyle(g.querySelector('rect')).fill;
  });
  check(cleared !== HIGHLIGHT, 'clearing the search removes the highlight');

  // Thread filter: only the worker's allocations.
  const workerIndex = await page.evaluate(() => window.memrayReport.data.threads.findIndex((t) => t[1] === 'web-worker'));
  check(workerIndex >= 0, 'the worker thread is listed by name');
  await page.selectOption('#thread', String(workerIndex));
  let names = await frameNames(page);
  check(names.includes('worker_allocation') && !names.includes('second_phase'), 'thread filter shows the worker thread only');
  await page.selectOption('#thread', '-1');

  // Threads as first level.
  await page.check('#split-threads');
  names = await frameNames(page);
  check(names.some((n) => /^Thread 0x[0-9a-f]+ \(web-worker\)$/.test(n)), 'split threads: a node per thread');
  await page.uncheck('#split-threads');

  // Inverted: allocating functions right under the root.
  await page.check('#inverted');
  const depth1 = await page.evaluate(() => {
    const root = window.memrayReport.buildTree();
    return root.children.map((c) => c.name);
  });
  check(depth1.includes('third_phase') && depth1.includes('second_phase') && !depth1.includes('main'), 'inverted: allocating functions at the first level');
  const invertedRoot = await frameInfo(page, (await frameNames(page)).find((n) => n.startsWith('Total:')));
  equal(invertedRoot && invertedRoot.bytes, peak, 'inverted root total unchanged');
  await page.uncheck('#inverted');

  // Import system frames: shown by default, folded into their caller when hidden.
  names = await frameNames(page);
  check(names.includes('_find_and_load'), 'importlib frames are shown by default');
  // The imported module's own frame, and the frame above it.
  const importedModule = () => page.evaluate(() => {
    const root = window.memrayReport.buildTree();
    const frames = window.memrayReport.data.frames;
    const walk = (n, parent) => {
      if (n.frame !== null && frames[n.frame][0] === '<module>' && frames[n.frame][1].endsWith('web_imported_mod.py')) {
        return { value: n.value, parent: parent.name, total: root.value };
      }
      for (const c of n.children) {
        const r = walk(c, n);
        if (r) return r;
      }
      return null;
    };
    return walk(root, root);
  });
  const before = await importedModule();
  equal(before && before.value, phases.import.bytes, 'the imported module allocated its bytes');
  check(before && before.parent !== 'import_phase', 'with importlib shown, the module sits under importlib (' + (before && before.parent) + ')');
  await page.check('#hide-import');
  names = await frameNames(page);
  check(!names.some((n) => n === '_find_and_load' || n === '_load_unlocked'), 'hide import system frames removes them');
  const after = await importedModule();
  equal(after && after.value, phases.import.bytes, 'the module keeps its bytes with importlib hidden');
  equal(after && after.parent, 'import_phase', 'the imported module sits right under its importer');
  equal(after && after.total, peak, 'root total unchanged with importlib hidden');
  await page.uncheck('#hide-import');

  // Icicle/flame toggle moves the root from the top to the bottom.
  const rootY = () => page.evaluate(() => {
    const g = [...document.querySelectorAll('g.frame')].find((x) => x.getAttribute('name').startsWith('Total:'));
    return g.getBoundingClientRect().top;
  });
  const y1 = await rootY();
  await page.click('#orientation');
  await page.waitForTimeout(400);
  const y2 = await rootY();
  check(y2 > y1, 'flame orientation puts the root at the bottom (' + y1 + ' -> ' + y2 + ')');

  // Stats panel.
  const stats = await page.textContent('#stats');
  check(stats.includes('Peak memory') && stats.includes('web_target.py'), 'stats panel shows the command and peak');
  check(errors.length === 0, 'no page errors: ' + JSON.stringify(errors));
  await page.close();
}

// The window [a, b] (seconds since the start) typed into the page; the tooltip bytes of the
// phases' functions then.
async function windowedAmounts(page, a, b) {
  // Both values first, then one change event (as after typing in the second field).
  await page.evaluate(([x, y]) => {
    document.getElementById('window-start').value = x;
    document.getElementById('window-end').value = y;
    document.getElementById('window-end').dispatchEvent(new Event('change'));
  }, [a, b]);
  // The window snaps to the memory sample at or before each end (10 ms apart).
  const shown = Number(await page.inputValue('#window-end'));
  const snapped = await page.evaluate((y) => {
    const t = window.memrayReport.data.memory[0].map((v) => v / 1e6).filter((v) => v <= y);
    return t.length ? t[t.length - 1] : window.memrayReport.data.memory[0][0] / 1e6;
  }, Number(b));
  check(Math.abs(shown - snapped) < 0.0015, 'window end ' + b + ' shown as the sample before it, ' + shown);
  await page.waitForTimeout(100);
  const out = {};
  for (const fn of ['first_phase', 'second_phase', 'third_phase', 'worker_allocation', HOSTILE]) {
    const info = await frameInfo(page, fn);
    out[fn] = info ? info.bytes : 0;
  }
  return out;
}

async function temporalChecks(browser, file, phases) {
  // --temporal: what was alive at the highest heap inside the window (memray's view).
  const { page, errors } = await open(browser, file);
  const startMs = await page.evaluate(() => window.memrayReport.data.meta.start_ms);
  const rel = (ph, d) => (phases[ph].time - startMs / 1000 + d).toFixed(3);
  const windowed = (a, b) => windowedAmounts(page, a, b);
  // After the third phase's allocation ('third_alive' is printed right after it) and well
  // before its free (0.4 s later), however late a loaded machine runs it.
  const midThird = rel('third_alive', 0.05);
  const stats = await page.textContent('#stats');
  check(stats.includes('highest heap within the chosen window') && !stats.includes('(high-water mark)'),
    'temporal stats panel names the window view: ' + stats.slice(stats.indexOf('Showing')));
  let w = await windowed(rel('second', -0.05), rel('hostile', 0.1));
  equal(w.first_phase, phases.first.bytes, 'window around the second phase: first_phase (made before, alive at its peak) shown');
  equal(w.second_phase, phases.second.bytes, 'window around the second phase: second_phase');
  equal(w.worker_allocation, phases.worker.bytes, 'window around the second phase: worker_allocation');
  equal(w.third_phase, 0, 'window around the second phase: third_phase (allocated after) absent');
  check((await page.textContent('#window-text')).includes('highest heap of the window'), 'window text names the highest heap');
  w = await windowed(rel('third', -0.05), midThird);
  equal(w.third_phase, phases.third.bytes, 'window of the third phase: third_phase');
  equal(w.second_phase, phases.second.bytes, 'window of the third phase: second_phase (alive at its peak)');
  w = await windowed(rel('third', -0.05), rel('third_freed', 0.2));
  equal(w.third_phase, phases.third.bytes, 'window through the free: third_phase (alive at the peak)');
  w = await windowed(rel('third_freed', 0.1), rel('end', 1));
  equal(w.third_phase, 0, 'window after the free: third_phase absent');
  equal(w.first_phase, phases.first.bytes, 'window after the free: first_phase');
  w = await windowed('0', rel('end', 1));
  equal(w.third_phase, phases.third.bytes, 'whole capture: third_phase (the high-water mark)');
  equal(w.first_phase, phases.first.bytes, 'whole capture: first_phase');
  // The whole window is the default flame graph's high-water mark.
  const total = await page.evaluate(() => window.memrayReport.buildTree().value);
  const peak = await page.evaluate(() => window.memrayReport.data.meta.peak_bytes);
  equal(total, peak, 'whole capture: the tree holds the peak memory');
  // The plot marks the latest stretch between two samples that held the peak (while the heap
  // stays flat after the peak's last event, each stretch holds it).
  const mark = await page.evaluate(() => {
    const r = window.memrayReport;
    const h = r.state.peak[0] === 0 ? 0 : r.data.memory[0].indexOf(r.state.peak[0]);
    return { marked: r.state.peak, held: r.data.interval_peaks[h], peakUs: r.data.meta.peak_time_us };
  });
  // (events carry the time of the latest time record: a few ms of slack)
  check(mark.held === peak && mark.marked[1] + 20000 >= mark.peakUs,
    'the plot marks a stretch that held the peak, not before it: ' + JSON.stringify(mark));
  check(errors.length === 0, 'no page errors: ' + JSON.stringify(errors));
  await page.close();
}

async function temporalLeaksChecks(browser, file, phases) {
  // --temporal --leaks: allocated in the window and still alive at its end.
  const { page, errors } = await open(browser, file);
  const startMs = await page.evaluate(() => window.memrayReport.data.meta.start_ms);
  const rel = (ph, d) => (phases[ph].time - startMs / 1000 + d).toFixed(3);
  const windowed = (a, b) => windowedAmounts(page, a, b);
  // After the third phase's allocation ('third_alive' is printed right after it) and well
  // before its free (0.4 s later), however late a loaded machine runs it.
  const midThird = rel('third_alive', 0.05);
  let w = await windowed(rel('second', -0.05), rel('hostile', 0.1));
  equal(w.second_phase, phases.second.bytes, 'window around the second phase: second_phase');
  equal(w.worker_allocation, phases.worker.bytes, 'window around the second phase: worker_allocation');
  equal(w.first_phase, 0, 'window around the second phase: first_phase (allocated before) absent');
  equal(w.third_phase, 0, 'window around the second phase: third_phase (allocated after) absent');
  w = await windowed(rel('third', -0.05), midThird);
  equal(w.third_phase, phases.third.bytes, 'window ending before the free: third_phase alive');
  equal(w.second_phase, 0, 'window of the third phase: second_phase absent');
  w = await windowed(rel('third', -0.05), rel('third_freed', 0.2));
  equal(w.third_phase, 0, 'window ending after the free: third_phase gone');
  w = await windowed('0', rel('end', 1));
  equal(w.first_phase, phases.first.bytes, 'whole capture: first_phase (never freed)');
  equal(w.third_phase, 0, 'whole capture: third_phase (freed) absent');

  // The brush on the memory plot sets the window too.
  const box = await page.evaluate((t) => {
    const u = window.memrayReport.plot();
    const r = u.over.getBoundingClientRect();
    return { x0: r.left + u.valToPos(t[0], 'x'), x1: r.left + u.valToPos(t[1], 'x'), y: r.top + r.height / 2 };
  }, [Number(rel('third', -0.05)), Number(midThird)]);
  await page.mouse.move(box.x0, box.y);
  await page.mouse.down();
  await page.mouse.move((box.x0 + box.x1) / 2, box.y, { steps: 5 });
  await page.mouse.move(box.x1, box.y, { steps: 5 });
  await page.mouse.up();
  await page.waitForTimeout(150);
  const third = await frameInfo(page, 'third_phase');
  equal(third && third.bytes, phases.third.bytes, 'brushing the third phase on the plot shows third_phase');
  const second = await frameInfo(page, 'second_phase');
  equal(second, null, 'brushing the third phase hides second_phase');
  check(errors.length === 0, 'no page errors: ' + JSON.stringify(errors));
  await page.close();
}

async function tableChecks(browser, file, phases) {
  const { page, errors } = await open(browser, file);
  const sizes = () => page.evaluate(() => [...document.querySelectorAll('#locations tbody tr')].map((tr) => Number(tr.children[1].dataset.value)));
  const locations = () => page.evaluate(() => [...document.querySelectorAll('#locations tbody tr')].map((tr) => tr.children[4].textContent));
  let s = await sizes();
  equal(s[0], phases.third.bytes, 'table: biggest row first (third_phase)');
  check((await locations())[0].startsWith('third_phase at '), 'table: its location names the function');
  check(s.every((v, i) => i === 0 || s[i - 1] >= v), 'table: sorted by size, descending');
  await page.click('th[data-key="bytes"]');
  s = await sizes();
  check(s.length > 1 && s.every((v, i) => i === 0 || s[i - 1] <= v), 'table: click on Size sorts ascending');
  await page.click('th[data-key="location"]');
  const locs = await locations();
  check(locs.every((v, i) => i === 0 || locs[i - 1] <= v), 'table: click on Location sorts by location');
  await page.fill('#search', 'second_phase');
  await page.waitForTimeout(50);
  s = await sizes();
  equal(JSON.stringify(s), JSON.stringify([phases.second.bytes]), 'table: search "second_phase" leaves its row');
  await page.fill('#search', 'onerror');
  await page.waitForTimeout(50);
  const hostileRows = await locations();
  check(hostileRows.length === 1 && hostileRows[0].startsWith(HOSTILE + ' at ' + HOSTILE + ':2'), 'table: the hostile row shows its name as text');
  equal(await page.evaluate(() => document.querySelectorAll('img').length), 0, 'table: no <img> created');
  await page.fill('#search', '');
  await page.selectOption('#page-size', '10');
  const info = await page.textContent('#page-info');
  const total = await page.evaluate(() => window.memrayReport.data.rows.length / 5);
  if (total > 10) {
    check(info.startsWith('Showing 1 to 10 of '), 'table: paging info ' + info);
    await page.click('#next');
    check((await page.textContent('#page-info')).startsWith('Showing 11 to '), 'table: next page');
  } else {
    check(info === 'Showing 1 to ' + total + ' of ' + total + ' rows', 'table: one page ' + info);
  }
  equal(await page.evaluate(() => window.__alerts), 0, 'table: alert() never called');
  check(errors.length === 0, 'table: no page errors: ' + JSON.stringify(errors));
  await page.close();
}

main().then(() => {
  if (failures) {
    console.log('web: ' + failures + ' check(s) failed, ' + passes + ' passed (files kept in ' + work + ')');
    process.exit(1);
  }
  console.log('web: all ' + passes + ' checks passed');
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(0);
}, (e) => {
  console.log('FAIL exception: ' + (e && e.stack || e));
  console.log('files kept in ' + work);
  process.exit(1);
});
