import type { Cluster } from '../cluster/cluster.js';
import type { Clock } from '../../../common/src/clock.js';
import type { Endpoint } from '../core/endpoint.js';
import type { Random } from '../../../common/src/random.js';
import type { Timers } from '../../../common/src/timers.js';
import type { MeshOutbound } from '../proxy/outbound.js';
import { ActiveHealthChecker, type ActiveCheckEvent, type ActiveCheckStatus } from './active/index.js';
import { OutlierDetector, type EjectionReason, type OutlierEvent, type OutlierStatus } from './outlier/detector.js';

export interface HealthSupervisorDeps {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
  readonly onActiveCheckEvent: (event: ActiveCheckEvent) => void;
  readonly onOutlierEvent: (event: OutlierEvent) => void;
  readonly onEject: (cluster: Cluster, endpoint: Endpoint, reason: EjectionReason) => void;
  /** This sidecar's mesh credentials once it has a certificate: HTTP checks of mesh endpoints use them. */
  readonly mesh?: (() => MeshOutbound | undefined) | undefined;
}

interface ClusterHealth {
  readonly checker: ActiveHealthChecker;
  readonly detector: OutlierDetector;
}

/**
 * Runs the two health sources of every cluster: active checks and outlier detection, each owning its flag.
 * Kept in step with the cluster set after every configuration change.
 */
export class HealthSupervisor {
  private readonly byCluster = new Map<Cluster, ClusterHealth>();

  constructor(private readonly deps: HealthSupervisorDeps) {}

  /** Starts sources for new clusters, re-syncs existing ones, stops those of removed clusters. */
  sync(clusters: Iterable<Cluster>): void {
    const live = new Set(clusters);
    for (const [cluster, h] of this.byCluster) {
      if (!live.has(cluster)) {
        h.checker.stop();
        h.detector.stop();
        this.byCluster.delete(cluster);
      }
    }
    for (const cluster of live) {
      const h = this.byCluster.get(cluster);
      if (h) {
        h.checker.sync();
        h.detector.sync();
        continue;
      }
      const d = this.deps;
      const detector = new OutlierDetector(cluster, {
        clock: d.clock,
        timers: d.timers,
        log: d.onOutlierEvent,
        onEject: (ep, reason) => d.onEject(cluster, ep, reason),
      });
      const checker = new ActiveHealthChecker(cluster, {
        clock: d.clock,
        timers: d.timers,
        random: d.random,
        log: d.onActiveCheckEvent,
        // A passing active check ends an outlier ejection (Envoy's successful_active_health_check_uneject_host).
        onPass: (ep) => {
          if (ep.flags !== 0) detector.unejectAfterActiveCheck(ep);
        },
        // The peer must prove to be this cluster's service, as for requests.
        mesh: () => {
          const m = d.mesh?.();
          return m === undefined ? undefined : { credentials: m.credentials, service: cluster.name, refused: m.refused };
        },
      });
      checker.start();
      detector.start();
      this.byCluster.set(cluster, { checker, detector });
    }
  }

  /** The outlier detector of a cluster when it has outlier detection configured (the request path records into it). */
  detector(cluster: Cluster): OutlierDetector | undefined {
    return cluster.config.outlierDetection === undefined ? undefined : this.byCluster.get(cluster)?.detector;
  }

  activeStatus(cluster: Cluster): readonly ActiveCheckStatus[] {
    return this.byCluster.get(cluster)?.checker.status() ?? [];
  }

  outlierStatus(cluster: Cluster, endpoint: Endpoint): OutlierStatus | undefined {
    return this.byCluster.get(cluster)?.detector.status(endpoint);
  }

  stop(): void {
    for (const h of this.byCluster.values()) {
      h.checker.stop();
      h.detector.stop();
    }
    this.byCluster.clear();
  }
}
