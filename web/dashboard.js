// carpool dashboard: every chart on one time axis (the server's 1 s bucket grid), one cursor
// shared by all charts, and the advisor's line from /api/v1/status. No network access beyond
// the carpool server that served this page.
'use strict';

const RANGES = {  // seconds shown, point width, refresh period
  live: {span: 120, step: 1, refresh: 1000},
  '5m': {span: 300, step: 1, refresh: 2000},
  '1h': {span: 3600, step: 10, refresh: 10000},
  '24h': {span: 86400, step: 60, refresh: 60000},
};

const pct = (v) => (v == null ? '–' : (v * 100).toFixed(1) + '%');
const num = (v) => (v == null ? '–' : Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
const secs = (v) => (v == null ? '–' : v >= 1 ? v.toPrecision(3) + 's' : (v * 1000).toPrecision(3) + 'ms');
function bytes(v) {
  if (v == null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return v.toPrecision(3) + u[i];
}
function si(v, unit) {
  if (v == null) return 'unknown';
  const p = [['P', 1e15], ['T', 1e12], ['G', 1e9], ['M', 1e6], ['k', 1e3]];
  for (const [s, f] of p) if (Math.abs(v) >= f) return (v / f).toPrecision(3) + ' ' + s + unit;
  return v.toPrecision(3) + ' ' + unit;
}

// Panels -> charts -> lines. `q` is the series query name; `fn` derives a line from others.
const PANELS = [
  {id: 'traffic', title: 'Traffic', charts: [
    {title: 'requests/s by status; requests in flight', fmt: num, lines: [
      {label: '2xx/s', q: 'http_2xx'}, {label: '4xx/s', q: 'http_4xx'},
      {label: '5xx/s', q: 'http_5xx'}, {label: 'in flight', q: 'http_in_flight'}]},
    {title: 'tokens/s', fmt: num, lines: [
      {label: 'prompt', q: 'prompt_tokens'}, {label: 'generated', q: 'generation_tokens'}]}]},
  {id: 'latency', title: 'Latency', charts: ['ttft', 'itl', 'e2e'].map((h) => ({
    title: {ttft: 'time to first token', itl: 'inter-token latency', e2e: 'end to end'}[h],
    fmt: secs, lines: ['p50', 'p90', 'p99'].map((p) => ({label: p, q: `${h}_seconds:${p}`}))}))},
  {id: 'batch', title: 'Batch', charts: [
    {title: 'sequences', fmt: num, lines: [
      {label: 'running', q: 'running'}, {label: 'waiting', q: 'waiting'},
      {label: 'per step', q: 'batch_size'}]},
    {title: 'tokens per step; preemptions/s', fmt: num, lines: [
      {label: 'tokens/step', q: 'batch_tokens'}, {label: 'preemptions/s', q: 'preemptions'}]}]},
  {id: 'compute', title: 'Compute', charts: [
    {title: 'busy, SM and tensor activity, MFU', fmt: pct, lines: [
      {label: 'busy', q: 'busy'}, {label: 'SM activity', q: 'gpu_sm_activity'},
      {label: 'tensor activity', q: 'gpu_tensor_activity'},
      {label: 'NVML gpu util', q: 'gpu_util'}, {label: 'MFU', q: 'mfu'}]}]},
  {id: 'memory', title: 'Memory', charts: [
    {title: 'device memory', fmt: bytes, lines: [
      {label: 'weights', q: 'memory_weights_bytes'},
      {label: 'KV reserved', q: 'memory_kv_reserved_bytes'},
      {label: 'KV in use', q: 'memory_kv_used_bytes'},
      {label: 'other', fn: (r) => {
        const used = r.gpu_memory_used_bytes != null ? r.gpu_memory_used_bytes
                                                     : r.process_resident_bytes;
        if (used == null || r.memory_weights_bytes == null) return null;
        return Math.max(0, used - r.memory_weights_bytes - (r.memory_kv_reserved_bytes || 0));
      }},
      {label: 'used', fn: (r) => r.gpu_memory_used_bytes != null ? r.gpu_memory_used_bytes
                                                                 : r.process_resident_bytes}]},
    {title: 'KV cache usage', fmt: pct, lines: [{label: 'KV usage', q: 'kv_usage'}]}]},
  {id: 'bandwidth', title: 'Bandwidth', charts: [
    {title: 'DRAM bandwidth utilization, MBU', fmt: pct, lines: [
      {label: 'DRAM bandwidth', q: 'gpu_dram_bandwidth'}, {label: 'MBU', q: 'mbu'}]}]},
  {id: 'replicas', title: 'Replicas', charts: [
    {title: 'replicas', fmt: num, lines: [
      {label: 'active', q: 'replicas_active'}, {label: 'starting', q: 'replicas_starting'},
      {label: 'desired', q: 'replicas_desired'}]}]},
];
const EXTRA = ['gpu_memory_used_bytes', 'process_resident_bytes'];  // inputs of derived lines

const state = {range: 'live', charts: [], timer: null, key: localStorage.getItem('carpool_key'),
               syncing: false, dateWindow: null, askKey: true, failingSince: null};

class AuthError extends Error {}

// A key is kept (localStorage) only once the server has taken it; a wrong one is dropped. After
// the prompt is cancelled the page stops asking until the key button is pressed.
async function api(path) {
  const headers = state.key ? {Authorization: 'Bearer ' + state.key} : {};
  const r = await fetch(path, {headers});
  if (r.status === 401) {
    if (state.key) { state.key = null; localStorage.removeItem('carpool_key'); }
    const k = state.askKey ? window.prompt('This carpool server needs its API key:') : null;
    if (!k) {
      state.askKey = false;
      document.getElementById('key').hidden = false;
      throw new AuthError('this server needs its API key');
    }
    state.key = k;
    return api(path);
  }
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
  if (state.key) localStorage.setItem('carpool_key', state.key);
  document.getElementById('key').hidden = true;
  return r.json();
}

function build() {
  const main = document.getElementById('panels');
  if (typeof Dygraph === 'undefined') {
    main.innerHTML = '<p class="error">This carpool was built without its charting library ' +
                     '(libjs-dygraphs); the figures are at /metrics and /api/v1/series.</p>';
    return false;
  }
  for (const p of PANELS) {
    const sec = document.createElement('section');
    sec.className = 'panel';
    sec.id = 'panel-' + p.id;
    sec.innerHTML = `<h2>${p.title}</h2>`;
    for (const c of p.charts) {
      const t = document.createElement('div');
      t.className = 'chart-title';
      t.textContent = c.title;
      const div = document.createElement('div');
      div.className = 'chart';
      const legend = document.createElement('div');
      legend.className = 'legend';
      const note = document.createElement('div');
      note.className = 'note';
      sec.append(t, div, legend, note);
      state.charts.push({panel: p.id, spec: c, div, legend, note, graph: null, shown: []});
    }
    main.appendChild(sec);
  }
  return true;
}

// Highlights the same row (the same second) on every chart but `source`; remembers its time so
// that a refresh keeps the cursor where it was.
function syncSelection(source, row) {
  if (state.syncing) return;
  state.syncing = true;
  state.hoverTime = row == null ? null : source.getValue(row, 0);
  for (const c of state.charts) {
    if (!c.graph || c.graph === source) continue;
    if (row == null) c.graph.clearSelection();
    else c.graph.setSelection(row);
  }
  state.syncing = false;
}

function syncZoom(source, minX, maxX) {
  state.dateWindow = [minX, maxX];
  for (const c of state.charts)
    if (c.graph && c.graph !== source) c.graph.updateOptions({dateWindow: [minX, maxX]});
}

function render(doc) {
  const byName = {};
  for (const s of doc.series) byName[s.name] = s.points;
  const times = (byName[doc.series[0].name] || []).map((p) => p[0]);
  const rows = times.map((t, i) => {
    const r = {};
    for (const name in byName) r[name] = byName[name][i][1];
    return r;
  });
  for (const c of state.charts) {
    const values = c.spec.lines.map((l) => rows.map((r) => (l.fn ? l.fn(r) : r[l.q])));
    // A line with no value in the whole range is unavailable here (never drawn as zero).
    const keep = values.map((v) => v.some((x) => x != null));
    const shown = c.spec.lines.filter((_, i) => keep[i]);
    const missing = c.spec.lines.filter((_, i) => !keep[i]).map((l) => l.label);
    c.note.textContent = missing.length ? 'not reported on this device: ' + missing.join(', ') : '';
    c.points = values.filter((_, i) => keep[i]).reduce((n, v) => n + v.filter((x) => x != null).length, 0);
    const data = times.map((t, i) => [new Date(t * 1000)].concat(
        values.filter((_, k) => keep[k]).map((v) => v[i])));
    const labels = ['time'].concat(shown.map((l) => l.label));
    if (!shown.length) {
      data.forEach((row) => row.push(null));
      labels.push('no data');
    }
    const opts = {
      file: data, labels, labelsDiv: c.legend, legend: 'always', connectSeparatedPoints: false,
      strokeWidth: 1.5, includeZero: true, labelsSeparateLines: false, highlightCircleSize: 3,
      axes: {y: {valueFormatter: c.spec.fmt, axisLabelFormatter: c.spec.fmt, axisLabelWidth: 64}, x: {pixelsPerLabel: 90}},
      dateWindow: state.dateWindow,
    };
    if (!c.graph || c.shownKey !== labels.join('|')) {
      if (c.graph) c.graph.destroy();
      c.shownKey = labels.join('|');
      c.graph = new Dygraph(c.div, data, Object.assign({}, opts, {
        highlightCallback: (e, x, pts, row) => syncSelection(c.graph, row),
        unhighlightCallback: () => syncSelection(c.graph, null),
        zoomCallback: (minX, maxX) => syncZoom(c.graph, minX, maxX),
      }));
    } else {
      c.graph.updateOptions(opts);
    }
  }
  if (state.hoverTime != null) {  // the new data shifted the rows: find the same second again
    const row = times.indexOf(state.hoverTime / 1000);
    state.syncing = true;
    for (const c of state.charts) {
      if (row < 0) c.graph.clearSelection();
      else c.graph.setSelection(row);
    }
    state.syncing = false;
    if (row < 0) state.hoverTime = null;
  }
}

function seriesNames() {
  const names = new Set(EXTRA);
  for (const p of PANELS) for (const c of p.charts) for (const l of c.lines) if (l.q) names.add(l.q);
  return [...names];
}

async function refreshSeries() {
  const r = RANGES[state.range];
  const status = await api('/api/v1/status');
  // Complete seconds only: the one in progress would read as a drop at the right edge.
  const to = status.now;
  const from = to - r.span;
  const doc = await api(`/api/v1/series?names=${encodeURIComponent(seriesNames().join(','))}` +
                        `&from=${from}&to=${to}&step=${r.step}`);
  render(doc);
  showStatus(status);
  document.getElementById('updated').textContent =
      'updated ' + new Date(status.now * 1000).toLocaleTimeString();
}

function showStatus(s) {
  document.getElementById('model').textContent =
      s.model ? `${s.model} (${s.architecture})` : 'loading…';
  document.getElementById('device').textContent =
      `device: ${s.device || '…'} [${s.device_label}]` +
      (s.limits.max_num_seqs ? ` · max-num-seqs ${s.limits.max_num_seqs}` +
                               ` · max-num-batched-tokens ${s.limits.max_num_batched_tokens}` : '');
  const p = s.peaks;
  document.getElementById('peaks').textContent =
      `peaks: ${si(p.flops_per_second, 'FLOP/s')} (${p.flops_source}), ` +
      `${si(p.bandwidth_bytes_per_second, 'B/s')} (${p.bandwidth_source})` +
      (p.ridge_point ? ` · ridge point ${p.ridge_point.toPrecision(3)} FLOPs/byte` : '');
  const a = document.getElementById('advice');
  a.textContent = s.advice ? s.advice.text : 'the model is loading';
  a.className = 'advice' + (s.advice && s.advice.state === 'idle' ? ' idle' : '');
}

function schedule() {
  clearTimeout(state.timer);
  const tick = async () => {
    try {
      await refreshSeries();
      state.failingSince = null;
      document.body.classList.remove('stale');
    } catch (e) {
      // The figures on screen are old: grey them and say since when, instead of the advice.
      if (state.failingSince == null) state.failingSince = new Date();
      document.body.classList.add('stale');
      const since = state.failingSince.toLocaleTimeString();
      const a = document.getElementById('advice');
      a.textContent = (e instanceof AuthError ? e.message : 'the server is unreachable') +
                      ' since ' + since + '; the charts show the last figures received';
      a.className = 'advice error';
      document.getElementById('updated').textContent = 'update failed: ' + e.message;
    }
    state.timer = setTimeout(tick, RANGES[state.range].refresh);
  };
  tick();
}

document.getElementById('key').addEventListener('click', () => {
  state.askKey = true;
  schedule();
});

document.querySelectorAll('#ranges button[data-range]').forEach((b) => b.addEventListener('click', () => {
  document.querySelectorAll('#ranges button[data-range]').forEach((x) => x.classList.remove('active'));
  b.classList.add('active');
  state.range = b.dataset.range;
  state.dateWindow = null;
  schedule();
}));

// For tests and the console: the charts, and how many values each panel shows.
window.carpoolDashboard = {
  charts: () => state.charts.map((c) => ({panel: c.panel, title: c.spec.title, graph: c.graph})),
  pointsByPanel: () => {
    const out = {};
    for (const c of state.charts) out[c.panel] = (out[c.panel] || 0) + (c.points || 0);
    return out;
  },
  selectedTimes: () => state.charts.map((c) => {
    if (!c.graph) return null;
    const row = c.graph.getSelection();
    return row < 0 ? null : c.graph.getValue(row, 0);
  }),
};

if (build()) schedule();
