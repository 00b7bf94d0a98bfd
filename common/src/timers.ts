/**
 * Scheduling, injected like the Clock so timing logic (health-check intervals, ejection sweeps, breaker
 * windows) runs under a fake clock in unit tests. Real timers are unref'd: they never keep a process alive.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Timers {
  /** Runs `fn` once after `ms`. */
  after(ms: number, fn: () => void): TimerHandle;
  /** Runs `fn` every `ms` until cancelled. */
  every(ms: number, fn: () => void): TimerHandle;
}

export const systemTimers: Timers = {
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  every(ms, fn) {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};
