#!/usr/bin/env node
// Entry point of the `outrigger` command: checks the runtime, then runs the compiled CLI.
// The oldest Node.js outrigger supports (docs/decisions.md); package.json's engines admits what the
// dependencies need, so that npm running on an older Node.js (which then runs this with the project's own
// Node.js 24) prints no warning, and this is the one place that refuses.
const MIN = [22, 12];
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < MIN[0] || (major === MIN[0] && minor < MIN[1])) {
  process.stderr.write(`outrigger needs Node.js >= ${MIN.join('.')}; this is ${process.version}\n`);
  process.exit(1);
}
// V8 flags that keep the resident memory down, which V8 reads only at start, so the process re-executes itself
// once with them (same PID). Each is added unless the `node` command line (or, where Node.js allows it,
// NODE_OPTIONS) already sets it either way.
// - A proxy allocates many short-lived objects per request; V8 would grow its young generation to tens of MB
//   for them. A 4 MB semi-space keeps the resident size far lower at no measurable cost in throughput.
// - The sidecar compiles its hot functions with TurboFan on the main thread instead of a background thread:
//   the background compiler's memory stays in that thread's malloc arena after each compile (about 7 MB of
//   private memory under load), while on the main thread it is reused. The compiles happen while the code
//   warms up; the steady state runs the same optimized code (docs/decisions.md).
// A process started with an IPC channel (by a supervisor that stops it when the channel closes) is not
// re-executed: exec would close the channel.
const nodeOptions = process.env.NODE_OPTIONS ?? '';
const given = (name) => process.execArgv.some((a) => a.replaceAll('_', '-').replace(/^--no-/, '--').split('=')[0] === name) || nodeOptions.includes(name);
const wanted = [['--max-semi-space-size', '--max-semi-space-size=4']];
if (process.argv[2] === 'sidecar') wanted.push(['--concurrent-recompilation', '--no-concurrent-recompilation']);
const flags = wanted.filter(([name]) => !given(name)).map(([, flag]) => flag);
if (flags.length > 0 && process.channel === undefined && typeof process.execve === 'function' && process.env.OUTRIGGER_NO_REEXEC !== '1') {
  process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)], process.env);
}
try {
  const { main } = await import('../dist/cli/src/cli.js');
  await main(process.argv.slice(2));
} catch (err) {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/src/cli.js')) {
    process.stderr.write('outrigger is not built yet: run `npm run build` first.\n');
    process.exit(2);
  }
  throw err;
}
