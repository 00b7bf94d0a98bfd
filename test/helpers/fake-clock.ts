import type { Clock } from '../../sidecar/src/core/clock.js';

/** A Clock whose time moves only when the test says so. */
export class FakeClock implements Clock {
  private t: number;
  private wall: number;
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
  advance(ms: number): void {
    this.t += ms;
    this.wall += ms;
  }
}
