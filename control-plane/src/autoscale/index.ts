import type { Clock } from '../../../common/src/clock.js';
import type { Timers } from '../../../common/src/timers.js';
import type { Logger } from '../../../common/src/logger.js';
import type { AutoscaleServiceConfig } from '../config/types.js';
import { ComposeDriver } from './drivers/compose.js';
import { KubernetesDriver } from './drivers/kubernetes.js';
import { ProcessDriver } from './drivers/process.js';
import type { ScaleDriver } from './types.js';

export { Autoscaler, AutoscaleInputError } from './controller.js';
export type { AutoscaleOverride, AutoscaleView, ScaleDecision, ScaleDriver } from './types.js';

/** The driver cp.yaml's `autoscale.NAME.driver` names. */
export function createDriver(service: string, config: AutoscaleServiceConfig, logger: Logger, clock: Clock, timers: Timers): ScaleDriver {
  const d = config.driver;
  switch (d.kind) {
    case 'process':
      return new ProcessDriver(service, d, logger, clock, timers);
    case 'compose':
      return new ComposeDriver(service, d, logger);
    case 'kubernetes':
      return new KubernetesDriver(service, d, logger);
  }
}
