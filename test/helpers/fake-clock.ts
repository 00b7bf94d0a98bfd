import type { Clock } from '../../common/src/clock.js';
import type { TimerHandle, Timers } from '../../common/src/timers.js';

interface Pending {
  at: number;
  seq: number;
  every: number;
  fn: () => void;
  cancelled: boolean;
}

/** A Clock and Timers whose time moves only when the test says so; `advance` runs due timers in order. */
export class FakeClock implements Clock, Timers {
  private t: number;
  private wall: number;
  private seq = 0;
  private pending: Pending[] = [];

  constructor(start = 1_000, wallStart = 1_700_000_000_000) {
    this.t = start;
    this.wall = wallStart;
  }

  now(): number {
    return this.t;
  }

  wallNow(): number {
    return this.wall;
  }

  after(ms: number, fn: () => void): TimerHandle {
    return this.schedule(ms, 0, fn);
  }

  every(ms: number, fn: () => void): TimerHandle {
    return this.schedule(ms, Math.max(ms, 1), fn);
  }

  private schedule(ms: number, every: number, fn: () => void): TimerHandle {
    const p: Pending = { at: this.t + Math.max(ms, 0), seq: this.seq++, every, fn, cancelled: false };
    this.pending.push(p);
    return {
      cancel: () => {
        p.cancelled = true;
      },
    };
  }

  /** Number of timers not yet fired or cancelled. */
  get timerCount(): number {
    return this.pending.filter((p) => !p.cancelled).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in time order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      this.pending = this.pending.filter((p) => !p.cancelled);
      let next: Pending | undefined;
      for (const p of this.pending) if (p.at <= end && (next === undefined || p.at < next.at || (p.at === next.at && p.seq < next.seq))) next = p;
      if (next === undefined) break;
      this.wall += next.at - this.t;
      this.t = next.at;
      if (next.every > 0) next.at += next.every;
      else next.cancelled = true;
      next.fn();
    }
    this.wall += end - this.t;
    this.t = end;
  }
}
