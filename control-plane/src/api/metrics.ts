import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { AutoscaleView } from '../autoscale/types.js';
import type { SubscriberView } from '../push/server.js';
import type { MemberView } from '../registry/etcd-members.js';
import type { EtcdStats } from '../registry/etcd-replica.js';
import type { InstanceView } from '../registry/registry.js';

/** What the control plane's metrics read at scrape time. */
export interface ControlPlaneMetricsSource {
  readonly version: () => number;
  readonly instances: () => readonly InstanceView[];
  readonly sidecars: () => readonly SubscriberView[];
  readonly autoscale: () => readonly AutoscaleView[];
  /** Whether this replica leads (runs computed weights and the autoscaler); always true with the file store. */
  readonly leader?: (() => boolean) | undefined;
  /** With `store.etcd`: this replica's etcd traffic and keepalive timing. */
  readonly etcd?: (() => EtcdStats) | undefined;
  /** With `store.etcd`: each etcd member and whether it answered this replica's last probe. */
  readonly etcdMembers?: (() => readonly MemberView[]) | undefined;
}

/**
 * The control plane's Prometheus metrics (`GET /metrics` on its HTTP port). Gauges are read from the
 * registry, the push server and the autoscaler when Prometheus scrapes; counters are bumped by events.
 * Names start with `outrigger_cp_`, beside prom-client's standard process metrics.
 */
export class ControlPlaneMetrics {
  readonly registry = new Registry();
  private readonly acks: Counter<'result'>;
  private readonly stateChanges: Counter<'reason'>;

  constructor(source: ControlPlaneMetricsSource) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    new Gauge({
      name: 'outrigger_cp_leader',
      help: '1 when this control-plane replica leads (computed weights, autoscaler), else 0; 1 with the file store.',
      registers: [r],
      collect() {
        this.set(source.leader === undefined || source.leader() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'outrigger_cp_state_version',
      help: 'Current version of the control plane state (bumped by every change pushed to sidecars).',
      registers: [r],
      collect() {
        this.set(source.version());
      },
    });
    new Gauge({
      name: 'outrigger_cp_sidecars_connected',
      help: 'Sidecars holding a discovery stream now.',
      registers: [r],
      collect() {
        this.set(source.sidecars().length);
      },
    });
    new Gauge({
      name: 'outrigger_cp_sidecars_behind',
      help: 'Connected sidecars whose last ACKed version is older than the last version sent to them.',
      registers: [r],
      collect() {
        this.set(source.sidecars().filter((s) => s.sentVersion !== null && s.ackedVersion !== s.sentVersion).length);
      },
    });
    new Gauge({
      name: 'outrigger_cp_instances',
      help: 'Registered instances per service and state (serving, draining, drained).',
      labelNames: ['service', 'state'],
      registers: [r],
      collect() {
        this.reset();
        for (const i of source.instances()) this.inc({ service: i.service, state: i.state });
      },
    });
    new Gauge({
      name: 'outrigger_cp_autoscale_replicas',
      help: 'Autoscaled services: instances the driver runs (current) and the last desired count.',
      labelNames: ['service', 'kind'],
      registers: [r],
      collect() {
        this.reset();
        for (const v of source.autoscale()) {
          this.set({ service: v.service, kind: 'current' }, v.current);
          this.set({ service: v.service, kind: 'desired' }, v.desired);
          this.set({ service: v.service, kind: 'min' }, v.min);
          this.set({ service: v.service, kind: 'max' }, v.max);
        }
      },
    });
    new Gauge({
      name: 'outrigger_cp_autoscale_utilization',
      help: 'Last measured mean utilization (in-flight / capacity) of an autoscaled service.',
      labelNames: ['service'],
      registers: [r],
      collect() {
        this.reset();
        for (const v of source.autoscale()) if (v.utilization !== null) this.set({ service: v.service }, v.utilization);
      },
    });
    // Since the start, unlike prom-client's nodejs_eventloop_lag_* (reset at every scrape): the worst stall
    // of a replica under load, which is what delays its etcd keepalives.
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    new Gauge({
      name: 'outrigger_cp_event_loop_delay_seconds',
      help: 'Event-loop delay since the start: max and p99.',
      labelNames: ['quantile'],
      registers: [r],
      collect() {
        this.set({ quantile: 'max' }, loop.max / 1e9);
        this.set({ quantile: '0.99' }, loop.percentile(99) / 1e9);
      },
    });
    const etcd = source.etcd;
    if (etcd !== undefined) {
      const counters: [string, string, (s: EtcdStats) => number][] = [
        ['outrigger_cp_etcd_txns_total', 'Write transactions this replica sent to etcd.', (s) => s.txns],
        ['outrigger_cp_etcd_txn_ops_total', 'Operations (puts, deletes) in those transactions.', (s) => s.txnOps],
        ['outrigger_cp_etcd_watch_responses_total', 'Watch responses applied.', (s) => s.watchResponses],
        ['outrigger_cp_etcd_watch_events_total', 'Key events in those responses.', (s) => s.watchEvents],
        ['outrigger_cp_etcd_contact_lost_total', 'Times this replica counted itself cut off from etcd (no keepalive within the lease TTL).', (s) => s.contactLost],
      ];
      for (const [name, help, pick] of counters) {
        new Counter({
          name,
          help,
          registers: [r],
          collect() {
            this.reset();
            this.inc(pick(etcd()));
          },
        });
      }
      new Gauge({
        name: 'outrigger_cp_etcd_keepalive_gap_max_seconds',
        help: 'Longest time between two successful lease keepalives since the start (contact is lost at the lease TTL).',
        registers: [r],
        collect() {
          this.set(etcd().keepaliveGapMaxMs / 1000);
        },
      });
    }
    const members = source.etcdMembers;
    if (members !== undefined) {
      new Gauge({
        name: 'outrigger_cp_etcd_member_serving',
        help: "1 when the etcd member answered this replica's last probe (a linearizable read within 500 ms), else 0.",
        labelNames: ['member'],
        registers: [r],
        collect() {
          this.reset();
          for (const m of members()) this.set({ member: m.endpoint }, m.serving ? 1 : 0);
        },
      });
    }
    this.acks = new Counter({ name: 'outrigger_cp_config_responses_total', help: 'ACKs and NACKs received from sidecars.', labelNames: ['result'], registers: [r] });
    this.stateChanges = new Counter({ name: 'outrigger_cp_state_changes_total', help: 'State changes (each bumps the version), by reason.', labelNames: ['reason'], registers: [r] });
  }

  configResponse(result: 'ack' | 'nack'): void {
    this.acks.inc({ result });
  }

  stateChanged(reason: string): void {
    this.stateChanges.inc({ reason });
  }
}
