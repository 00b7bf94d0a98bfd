/* global document, window, EventSource, Node, uPlot */
// Outrigger dashboard: plain ES module, no build step. Listens to /api/dashboard/events (Server-Sent
// Events, one DashboardState per event), renders every service as a card and keeps the last five minutes of
// each service's totals in memory for the charts (uPlot, served from the control plane itself).

const HISTORY_SECONDS = 300;
const STALE_AFTER_MS = 5_000;

const $ = (sel, root = document) => root.querySelector(sel);

/** Builds an element: el('td', { class: 'num', 'data-x': 1 }, 'text', child, ...). Text is never parsed as HTML. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const fmt = {
  num(v, digits = 1) {
    return v === null || v === undefined ? '–' : Number(v).toFixed(digits);
  },
  ms(v) {
    if (v === null || v === undefined) return '–';
    return v >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(1)} ms`;
  },
  pct(v) {
    return v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)} %`;
  },
  time(wallMs) {
    return new Date(wallMs).toLocaleTimeString([], { hour12: false });
  },
};

// ---------------------------------------------------------------------------------------------------------
// Connection

const conn = $('[data-testid="connection"]');
let lastEventAt = 0;

function setStatus(status, text) {
  if (conn.dataset.status === status && conn.textContent === text) return;
  conn.dataset.status = status;
  conn.textContent = text;
}

function connect() {
  const source = new EventSource('/api/dashboard/events');
  source.addEventListener('open', () => setStatus('live', 'live'));
  // Sent first on every connect: the control plane's recent samples, so the charts start filled.
  source.addEventListener('history', (ev) => {
    let history;
    try {
      history = JSON.parse(ev.data);
    } catch {
      return;
    }
    for (const [name, h] of Object.entries(history)) {
      const c = card(name);
      c.history = {
        t: h.t.map((ms) => ms / 1000),
        rps: h.rps.slice(),
        err: h.errorRate.map((e) => e * 100),
        p99: h.p99Ms.slice(),
      };
    }
  });
  source.addEventListener('state', (ev) => {
    lastEventAt = Date.now();
    setStatus('live', 'live');
    let state;
    try {
      state = JSON.parse(ev.data);
    } catch {
      return;
    }
    render(state);
  });
  source.addEventListener('error', () => {
    setStatus('reconnecting', 'reconnecting…');
    // The browser retries by itself (retry: 2000) unless the server answered with an error status.
    if (source.readyState === EventSource.CLOSED) window.setTimeout(connect, 2_000);
  });
}

// A stream that stays silent (a proxy holding it, a suspended laptop) counts as lost.
window.setInterval(() => {
  if (lastEventAt !== 0 && Date.now() - lastEventAt > STALE_AFTER_MS) setStatus('reconnecting', 'reconnecting…');
}, 1_000);

// ---------------------------------------------------------------------------------------------------------
// Charts

const CHARTS = [
  { key: 'rps', title: 'requests/s', color: '#2f5bd3', value: (t) => t.rps },
  { key: 'err', title: 'errors %', color: '#b42318', value: (t) => t.errorRate * 100 },
  { key: 'p99', title: 'p99 ms (slowest instance)', color: '#8a5a00', value: (t) => t.p99Ms },
];

function makeChart(container, spec) {
  const width = Math.max(200, container.clientWidth);
  const opts = {
    width,
    height: 110,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1] } },
    axes: [
      {
        stroke: '#667085',
        grid: { stroke: '#eef0f3' },
        ticks: { stroke: '#e3e6eb' },
        font: '11px system-ui',
        space: 70,
        size: 26,
        values: (_u, splits) => splits.map((v) => fmt.time(v * 1000)),
      },
      { stroke: '#667085', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e3e6eb' }, font: '11px system-ui', size: 44 },
    ],
    series: [{}, { label: spec.title, stroke: spec.color, width: 1.5, fill: `${spec.color}14`, points: { show: false } }],
  };
  return new uPlot(opts, [[], []], container);
}

// ---------------------------------------------------------------------------------------------------------
// Service cards

/** name → { root, charts: [{ spec, plot, container }], history: { t: [], rps: [], err: [], p99: [] } } */
const cards = new Map();

function card(name) {
  let c = cards.get(name);
  if (c !== undefined) return c;
  const root = el('section', { class: 'service', 'data-service': name, 'data-testid': 'service' });
  const head = el('div', { class: 'service-head' });
  const chartsRow = el('div', { class: 'charts' });
  const table = el(
    'table',
    { 'data-testid': 'instances' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        ...['instance', 'address', 'state', 'eligible', 'circuit'].map((h) => el('th', {}, h)),
        ...['weight', 'cost', 'in-flight', 'latency', 'p99', 'rps', 'errors', 'cpu'].map((h) => el('th', { class: 'num' }, h)),
      ),
    ),
    el('tbody'),
  );
  const lower = el('div', { class: 'lower' });
  root.append(head, chartsRow, table, lower);
  const charts = CHARTS.map((spec) => {
    const container = el('div', { class: 'plot', 'data-testid': `chart-${spec.key}` });
    chartsRow.append(el('div', { class: 'chart' }, el('h3', {}, spec.title), container));
    return { spec, container, plot: undefined };
  });
  c = { root, head, table, lower, charts, history: { t: [], rps: [], err: [], p99: [] } };
  cards.set(name, c);
  return c;
}

function circuitBadge(state) {
  const s = state ?? 'none';
  return el('span', { class: `badge ${s}`, 'data-testid': 'circuit' }, state ?? '–');
}

function instanceRow(i) {
  const eligible = i.eligible === null ? 'unknown' : String(i.eligible);
  const mark =
    i.eligible === null
      ? el('span', { class: 'muted', title: 'no caller reports this endpoint' }, '?')
      : el('span', { class: `elig ${i.eligible ? 'yes' : 'no'}` }, i.eligible ? '✓' : '✗');
  const flags = i.health.length > 0 ? el('span', { class: 'flags' }, i.health.join(', ')) : null;
  const callers = el('span', { class: 'muted', title: 'sidecars reporting this endpoint' }, ` (${i.callers})`);
  return el(
    'tr',
    {
      'data-instance': i.address,
      'data-id': i.id ?? '',
      'data-state': i.state,
      'data-eligible': eligible,
      'data-circuit': i.circuit ?? 'none',
      'data-connected': String(i.connected),
    },
    el('td', {}, i.id ?? el('span', { class: 'muted' }, 'static'), i.connected || i.source === 'static' ? null : el('span', { class: 'badge disconnected gap', title: 'no sidecar stream' }, 'offline')),
    el('td', { class: 'mono' }, i.address),
    el('td', {}, el('span', { class: `badge ${i.state}` }, i.state)),
    el('td', { 'data-testid': 'eligible' }, mark, flags, callers),
    el('td', {}, circuitBadge(i.circuit)),
    el('td', { class: 'num', title: `weight: ${i.weightSource}` }, i.weightSource === 'configured' ? null : el('span', { class: 'tag' }, i.weightSource === 'pinned' ? 'pinned' : 'auto'), i.weight),
    el('td', { class: 'num' }, fmt.num(i.cost, 2)),
    el('td', { class: 'num', title: `mean in-flight at the instance; callers have ${i.callerInflight} in flight to it now` }, fmt.num(i.inflight)),
    el('td', { class: 'num' }, fmt.ms(i.latencyMs)),
    el('td', { class: 'num' }, fmt.ms(i.p99Ms)),
    el('td', { class: 'num' }, fmt.num(i.rps)),
    el('td', { class: 'num' }, fmt.pct(i.errorRate)),
    el('td', { class: 'num' }, fmt.pct(i.cpu)),
  );
}

function circuitsBox(svc) {
  const box = el('div', { class: 'box', 'data-testid': 'service-circuits' }, el('h3', {}, 'service circuits (per calling sidecar)'));
  if (svc.circuits.length === 0) {
    box.append(el('p', { class: 'muted' }, 'no sidecar calls this service'));
    return box;
  }
  const list = el('div', { class: 'circuits' });
  for (const c of svc.circuits) {
    list.append(el('span', { class: 'item', 'data-reporter': c.reporter ?? '', 'data-circuit': c.state }, el('span', { class: 'mono' }, c.reporter ?? '(unregistered)'), circuitBadge(c.state)));
  }
  box.append(list);
  return box;
}

function autoscaleBox(a) {
  const box = el('div', { class: 'box autoscale', 'data-testid': 'autoscale', 'data-state': a ? a.state : 'off' }, el('h3', {}, 'autoscaler'));
  if (a === null) {
    box.append(el('p', { class: 'muted' }, 'not autoscaled'));
    return box;
  }
  box.append(
    el(
      'dl',
      {},
      el('dt', {}, 'min / max'),
      el('dd', {}, `${a.min} / ${a.max}`),
      el('dt', {}, 'target'),
      el('dd', {}, fmt.pct(a.targetUtilization)),
      el('dt', {}, 'current → desired'),
      el('dd', { 'data-testid': 'autoscale-size' }, `${a.current} → ${a.desired}`),
      el('dt', {}, 'utilization'),
      el('dd', {}, fmt.pct(a.utilization)),
      el('dt', {}, 'state'),
      el('dd', {}, el('span', { class: `badge ${a.state}` }, a.state)),
      el('dt', {}, 'driver'),
      el('dd', {}, a.driver),
    ),
  );
  const list = el('ul', { class: 'decisions', 'data-testid': 'decisions' });
  for (const d of a.decisions.slice(0, 10)) {
    list.append(
      el(
        'li',
        {},
        el('span', { class: 'muted' }, fmt.time(d.at)),
        el('span', { class: 'act' }, d.action),
        `${d.current} → ${d.desired}: ${d.reason}`,
        d.error ? el('span', { class: 'err' }, ` (failed: ${d.error})`) : null,
      ),
    );
  }
  if (a.decisions.length === 0) list.append(el('li', { class: 'muted' }, 'no decisions yet'));
  box.append(list);
  return box;
}

function renderService(svc, at) {
  const c = card(svc.name);
  const t = svc.totals;
  c.head.replaceChildren(
    el('h2', {}, svc.name),
    el('span', { class: 'pill', title: `policy: ${svc.policySource}` }, svc.lb),
    el(
      'div',
      { class: 'totals', 'data-testid': 'totals' },
      el('span', {}, el('b', {}, fmt.num(t.rps)), ' req/s'),
      el('span', {}, el('b', {}, fmt.pct(t.errorRate)), ' errors'),
      el('span', {}, 'p99 ', el('b', {}, fmt.ms(t.p99Ms))),
      el('span', {}, el('b', {}, `${t.eligible}/${t.instances}`), ' eligible'),
    ),
  );
  const rows = svc.instances.map(instanceRow);
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 13, class: 'muted' }, 'no instances')));
  c.table.tBodies[0].replaceChildren(...rows);
  c.lower.replaceChildren(circuitsBox(svc), autoscaleBox(svc.autoscale));

  const h = c.history;
  const x = at / 1000;
  if (h.t.length === 0 || x > h.t[h.t.length - 1]) {
    h.t.push(x);
    h.rps.push(CHARTS[0].value(t));
    h.err.push(CHARTS[1].value(t));
    h.p99.push(CHARTS[2].value(t));
    while (h.t.length > 0 && h.t[0] < x - HISTORY_SECONDS) for (const k of ['t', 'rps', 'err', 'p99']) h[k].shift();
  }
  for (const ch of c.charts) {
    if (ch.plot === undefined && ch.container.isConnected) ch.plot = makeChart(ch.container, ch.spec);
    ch.plot?.setData([h.t, h[ch.spec.key]]);
  }
}

function render(state) {
  $('[data-testid="cp-version"]').textContent = state.version;
  $('[data-testid="state-version"]').textContent = String(state.stateVersion);
  $('[data-testid="sidecars"]').textContent = `${state.sidecars.connected} connected, ${state.sidecars.reporting} reporting`;
  $('[data-testid="updated"]').textContent = fmt.time(state.generatedAt);
  const main = $('#services');
  const seen = new Set();
  const order = [];
  for (const svc of state.services) {
    seen.add(svc.name);
    order.push(card(svc.name).root);
  }
  for (const [name, c] of cards) {
    if (seen.has(name)) continue;
    for (const ch of c.charts) ch.plot?.destroy();
    cards.delete(name);
  }
  if (order.length === 0) main.replaceChildren(el('p', { class: 'empty' }, 'No services registered yet.'));
  else if (order.some((r, i) => main.children[i] !== r) || main.children.length !== order.length) main.replaceChildren(...order);
  for (const svc of state.services) renderService(svc, state.generatedAt);
  document.body.dataset.ready = 'true';
}

window.addEventListener('resize', () => {
  for (const c of cards.values()) for (const ch of c.charts) ch.plot?.setSize({ width: Math.max(200, ch.container.clientWidth), height: 110 });
});

connect();
