// Plots a control-plane scale run (the JSON `npm run bench:control-plane -- --replicas 3 --etcd --out FILE`
// writes) as a hand-written SVG, and prints its table in Markdown. No dependencies.
//
//   node bench/control-plane-scale-plot.mjs [--svg bench/control-plane-scale.svg] [RUN.json ...]
//
// Default runs: bench/control-plane-scale.json (sidecars register an instance) and, when present,
// bench/control-plane-scale-no-register.json (they only subscribe), drawn dashed.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let output = path.join(BENCH_DIR, 'control-plane-scale.svg');
const svgAt = args.indexOf('--svg');
if (svgAt >= 0) output = args.splice(svgAt, 2)[1];
const inputs = args.length > 0 ? args : [path.join(BENCH_DIR, 'control-plane-scale.json'), path.join(BENCH_DIR, 'control-plane-scale-no-register.json')].filter((f) => fs.existsSync(f));
const runs = inputs.map((f) => ({ file: f, ...JSON.parse(fs.readFileSync(f, 'utf8')) }));
const run = runs[0];
const allOk = runs.flatMap((r) => r.steps.filter((s) => s.ok));
if (allOk.length === 0) throw new Error(`${inputs.join(', ')}: no step succeeded, nothing to plot`);
const kind = (r) => (r.opts.register ? 'registering' : 'subscribe only');

const W = 960;
const H = 420;
const panel = { w: 380, h: 290, top: 70 };
const lefts = [80, 560];
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** "Nice" upper bound and tick step for 0..max. */
function niceScale(max) {
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  return { top: Math.ceil(max / step) * step, step };
}

function drawPanel(x0, title, yLabel, series) {
  const xs = [...new Set(allOk.map((s) => s.sidecars))].sort((a, b) => a - b);
  const lx = (v) => Math.log10(v);
  const [xmin, xmax] = [lx(Math.min(...xs)) - 0.15, lx(Math.max(...xs)) + 0.15];
  const ymax = Math.max(...series.flatMap((s) => s.points.map((p) => p[1])));
  const { top, step } = niceScale(ymax * 1.08 || 1);
  const X = (v) => x0 + ((lx(v) - xmin) / (xmax - xmin)) * panel.w;
  const Y = (v) => panel.top + panel.h - (v / top) * panel.h;
  const out = [];
  out.push(`<text x="${x0 + panel.w / 2}" y="${panel.top - 14}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`);
  for (let v = 0; v <= top + 1e-9; v += step) {
    out.push(`<line x1="${x0}" x2="${x0 + panel.w}" y1="${Y(v)}" y2="${Y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${x0 - 6}" y="${Y(v) + 4}" text-anchor="end" font-size="11">${+v.toFixed(2)}</text>`);
  }
  for (const v of xs) {
    out.push(`<line x1="${X(v)}" x2="${X(v)}" y1="${panel.top}" y2="${panel.top + panel.h}" stroke="#eee"/>`);
    out.push(`<text x="${X(v)}" y="${panel.top + panel.h + 16}" text-anchor="middle" font-size="11">${v.toLocaleString('en-US')}</text>`);
  }
  out.push(`<rect x="${x0}" y="${panel.top}" width="${panel.w}" height="${panel.h}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${x0 + panel.w / 2}" y="${panel.top + panel.h + 34}" text-anchor="middle" font-size="12">simulated sidecars (log scale), ${run.opts.replicas} replicas</text>`);
  out.push(`<text transform="translate(${x0 - 48},${panel.top + panel.h / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`);
  series.forEach((s, k) => {
    if (s.points.length === 0) return;
    const d = s.points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="6 4"' : ''}/>`);
    for (const [x, y] of s.points) {
      out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
      if (s.label) out.push(`<text x="${(X(x) + 6).toFixed(1)}" y="${(Y(y) - 6).toFixed(1)}" font-size="10" fill="${s.color}">${Math.round(y)}</text>`);
    }
    out.push(`<line x1="${x0 + 12}" x2="${x0 + 36}" y1="${panel.top + 16 + k * 16}" y2="${panel.top + 16 + k * 16}" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${x0 + 42}" y="${panel.top + 20 + k * 16}" font-size="11">${esc(s.name)}</text>`);
  });
  return out.join('\n');
}

const mb = (kb) => kb / 1024;
const okOf = (r) => r.steps.filter((s) => s.ok);
const latency = drawPanel(lefts[0], 'Policy change → last sidecar ACK', 'milliseconds', runs.flatMap((r, k) => [
  { name: `p99, ${kind(r)}`, color: '#c0392b', dash: k > 0, label: true, points: okOf(r).map((s) => [s.sidecars, s.p99Ms]) },
  { name: `p50, ${kind(r)}`, color: '#2471a3', dash: k > 0, label: true, points: okOf(r).map((s) => [s.sidecars, s.p50Ms]) },
]));
const memory = drawPanel(lefts[1], 'Memory per replica (mean of the replicas)', 'MB', [
  ...runs.flatMap((r, k) => [
    { name: `VmRSS, ${kind(r)}`, color: '#7d3c98', dash: k > 0, label: true, points: okOf(r).map((s) => [s.sidecars, mean(s.memory.map((m) => mb(m.rssKb)))]) },
    { name: `RssAnon, ${kind(r)}`, color: '#229954', dash: k > 0, label: true, points: okOf(r).map((s) => [s.sidecars, mean(s.memory.map((m) => mb(m.anonKb)))]) },
  ]),
  { name: 'VmRSS before any sidecar', color: '#999', dash: true, points: okOf(run).map((s) => [s.sidecars, mean(s.idle.map((m) => mb(m.rssKb)))]) },
]);
const m = run.machine;
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">Outrigger control plane on etcd: ${run.opts.replicas} replicas, every sidecar subscribed to the changed service</text>
<text x="${W / 2}" y="42" text-anchor="middle" font-size="11" fill="#555">${esc(`${m.date.slice(0, 10)}, commit ${m.commit}, ${m.nproc} CPUs (${m.cpu}), load average at start ${m.loadavg} (shared with CI); ${run.opts.changes} changes per step`)}</text>
${latency}
${memory}
</svg>
`;
fs.writeFileSync(output, svg);

const fmt = (n) => (n === 'timeout' ? 'timeout' : Number.isFinite(n) ? String(Math.round(n)) : '–');
const rows = runs.flatMap((r) => r.steps.map((s) => ({ ...s, kind: kind(r) }))).map((s) => {
  const per = (k, src) => (s[src] ? s[src].map((x) => fmt(x[k] / 1024)).join(' / ') : '–');
  const e = s.etcdConnect;
  const etcdCols = e ? `${e.map((x) => fmt(x?.loopMaxMs)).join(' / ')} | ${e.map((x) => fmt(x?.keepaliveGapMaxMs)).join(' / ')} | ${e.map((x) => (x ? `${x.txns} (${x.txnOps})` : '–')).join(' / ')}` : '– | – | –';
  return `| ${s.sidecars.toLocaleString('en-US')} | ${s.kind} | ${s.replicas} | ${s.ok ? fmt(s.p50Ms) : 'failed'} | ${s.ok ? fmt(s.p99Ms) : 'failed'} | ${s.ok ? fmt(s.maxMs) : '–'} | ${per('rssKb', 'memory')} | ${per('anonKb', 'memory')} | ${per('hwmKb', 'memory')} | ${per('rssKb', 'idle')} | ${fmt(s.allAckedMs)} | ${etcdCols} | ${s.ok ? `${s.changes.length}, 0 timeouts, 0 stream errors` : esc(s.error ?? `${s.timeouts} timeouts, ${s.streamErrors} stream errors`)} |`;
});
process.stdout.write(`| sidecars | sidecars do | replicas | p50 ms | p99 ms | max ms | VmRSS MB per replica | RssAnon MB per replica | VmHWM MB per replica | VmRSS MB before sidecars | all connected ms | event-loop delay max ms per replica | longest keepalive gap ms per replica | etcd txns (ops) per replica | changes |
| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
${rows.join('\n')}
`);
process.stderr.write(`wrote ${path.relative(process.cwd(), output)}\n`);
