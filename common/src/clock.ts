/**
 * The only place that reads the system clock. Everything that measures or schedules time takes a Clock,
 * so timing logic can be unit-tested with a fake one.
 */
export interface Clock {
  /** Monotonic milliseconds (fractional); only differences are meaningful. */
  now(): number;
  /** Wall-clock milliseconds since the epoch, for timestamps shown to people. */
  wallNow(): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
};
