/**
 * `round-robin`: strict rotation over the endpoint set. Each build starts at a random offset, so sidecars
 * that receive the same endpoint list do not all send their first request to the same endpoint.
 */
import type { Endpoint } from '../core/endpoint.js';
import { randomInt, type Random } from '../../../common/src/random.js';
import { DrawPicker } from './common.js';
import type { PickerFactory } from './picker.js';

export class RoundRobinPicker extends DrawPicker {
  private cursor: number;

  constructor(endpoints: readonly Endpoint[], random: Random) {
    super(endpoints, random);
    this.cursor = endpoints.length > 0 ? randomInt(random, endpoints.length) : 0;
  }

  /** Index of the endpoint the next draw returns (for tests and the admin view). */
  get offset(): number {
    return this.cursor;
  }

  protected next(): Endpoint {
    const ep = this.endpoints[this.cursor]!;
    this.cursor = this.cursor + 1 === this.endpoints.length ? 0 : this.cursor + 1;
    return ep;
  }
}

export const roundRobinFactory: PickerFactory = (endpoints, { random }) => new RoundRobinPicker([...endpoints], random);
