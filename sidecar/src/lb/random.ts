/** `random`: uniform over the endpoint set. */
import type { Endpoint } from '../core/endpoint.js';
import type { Random } from '../../../common/src/random.js';
import { DrawPicker } from './common.js';
import type { PickerFactory } from './picker.js';

class RandomPicker extends DrawPicker {
  constructor(endpoints: readonly Endpoint[], random: Random) {
    super(endpoints, random);
  }

  protected next(): Endpoint {
    return this.endpoints[Math.floor(this.random.next() * this.endpoints.length)]!;
  }
}

export const randomFactory: PickerFactory = (endpoints, { random }) => new RandomPicker([...endpoints], random);
