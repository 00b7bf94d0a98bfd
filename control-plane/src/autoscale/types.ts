/**
 * Shapes shared by the autoscaler, its drivers, the admin API and the dashboard.
 */

/** One evaluation that changed (or tried to change) the size of a service, with the inputs it used. */
export interface ScaleDecision {
  /** Wall-clock ms of the evaluation. */
  readonly at: number;
  readonly service: string;
  /** Instances counted when deciding. */
  readonly current: number;
  /** Mean utilization of the service's instances, 0..n (in-flight / capacity). */
  readonly utilization: number;
  /** ceil(current × utilization / target) clamped to [min, max], before stabilization. */
  readonly raw: number;
  /** What the autoscaler settled on. */
  readonly desired: number;
  readonly action: 'scale-up' | 'scale-down' | 'none';
  /** Why, in words an operator reads in the log and the dashboard. */
  readonly reason: string;
  /** Set when the driver failed to carry the action out (the size did not change). */
  readonly error?: string | undefined;
}

/** The autoscaler's state for one service, for `GET /api/autoscale` and the dashboard. */
export interface AutoscaleView {
  readonly service: string;
  readonly driver: 'process' | 'compose' | 'kubernetes';
  readonly min: number;
  readonly max: number;
  readonly targetUtilization: number;
  /** Instances the driver runs now (process: live children; others: the replicas last set or read). */
  readonly current: number;
  /** The last desired count. */
  readonly desired: number;
  /** The last utilization measured, null before the first load report. */
  readonly utilization: number | null;
  /** idle | scaling-up | draining (instances chosen for removal are draining) | cooldown */
  readonly state: 'idle' | 'scaling-up' | 'draining' | 'cooldown';
  /** Newest first, at most 20. */
  readonly decisions: readonly ScaleDecision[];
  /** Addresses drained for removal while `state` is draining. */
  readonly draining?: readonly string[] | undefined;
  /** Run-time overrides (PUT /api/autoscale/NAME) in force; cp.yaml's values apply to the others. */
  readonly overrides?: AutoscaleOverride | undefined;
}

/** Run-time changes of an autoscaled service's bounds and target (not persisted). */
export interface AutoscaleOverride {
  readonly min?: number | undefined;
  readonly max?: number | undefined;
  readonly targetUtilization?: number | undefined;
}

/** What an autoscaler driver does: make a service run `replicas` instances. */
export interface ScaleDriver {
  readonly kind: AutoscaleView['driver'];
  /** Instances it runs now, as far as it knows. */
  current(): Promise<number>;
  /**
   * Brings the service to `replicas`. For a scale-down, `remove` lists the addresses (host:port, as the
   * instances registered) the autoscaler chose and already drained; drivers that cannot choose (compose,
   * kubernetes) ignore it.
   */
  scaleTo(replicas: number, remove: readonly string[]): Promise<void>;
  /** Addresses of the instances it started, newest first (process driver; others return []). */
  addresses(): readonly string[];
  /** Stops what it started (process driver: every child) when the control plane stops. */
  close(): Promise<void>;
}
