#!/usr/bin/env node
// Entry point of the `outrigger` command: checks the runtime, then runs the compiled CLI.
const [major] = process.versions.node.split('.').map(Number);
if (major < 22) {
  process.stderr.write(
    `outrigger needs Node.js 22 or newer (this is ${process.version}); run it through npm (npm start, npx outrigger), ` +
      'which puts the project\'s own Node.js 24 first on the PATH.\n',
  );
  process.exit(2);
}
try {
  const { main } = await import('../dist/sidecar/src/cli.js');
  await main(process.argv.slice(2));
} catch (err) {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/sidecar/src/cli.js')) {
    process.stderr.write('outrigger is not built yet: run `npm run build` first.\n');
    process.exit(2);
  }
  throw err;
}
