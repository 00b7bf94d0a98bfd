/** Stops `stop` on SIGTERM/SIGINT exactly once, then exits (0, or 1 when stopping failed). */
export function exitOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`outrigger: ${signal}: draining and stopping\n`);
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`outrigger: error while stopping: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Started by a supervisor with an IPC channel (the autoscaler's process driver, the demo): stop with it.
  if (process.channel !== undefined) process.once('disconnect', () => onSignal('SIGTERM'));
}
