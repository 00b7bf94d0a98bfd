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
// A proxy allocates many short-lived objects per request; V8 would grow its young generation to tens of
// MB for them. A 4 MB semi-space keeps the resident size far lower at no measurable cost in throughput.
// V8 reads the flag only at start, so the process re-executes itself once with it (same PID; an explicit
// --max-semi-space-size on the command line or in NODE_OPTIONS wins). A process started with an IPC channel
// (by a supervisor that stops it when the channel closes) is not re-executed: exec would close the channel.
const semiSpaceSet = process.execArgv.some((a) => a.startsWith('--max-semi-space-size')) || (process.env.NODE_OPTIONS ?? '').includes('--max-semi-space-size');
if (!semiSpaceSet && process.channel === undefined && typeof process.execve === 'function' && process.env.OUTRIGGER_NO_REEXEC !== '1') {
  process.execve(process.execPath, [process.execPath, '--max-semi-space-size=4', ...process.execArgv, ...process.argv.slice(1)], process.env);
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
