import type { AuthorizationConfig } from '../../../common/src/config/types.js';

/**
 * A service's authorization policy, compiled once per configuration: the inbound side asks it about each
 * request with the caller's service as mutual TLS proved it (undefined for a plaintext caller). Rules are
 * tried in order and the first that matches decides; a request no rule matches gets `default`. A rule
 * matches when each of its parts that is present matches: `from` (a caller's service, or "*" for any mesh
 * caller; a plaintext caller never matches a `from`), `methods`, and `paths` (prefixes of the path without
 * its query).
 */
export interface AuthzDecision {
  readonly allowed: boolean;
  /** Index of the rule that decided, or -1 for the default. */
  readonly rule: number;
}

interface CompiledRule {
  readonly allow: boolean;
  readonly anyCaller: boolean;
  readonly from: ReadonlySet<string> | undefined;
  readonly methods: ReadonlySet<string> | undefined;
  readonly paths: readonly string[] | undefined;
}

export class Authorizer {
  private readonly rules: readonly CompiledRule[];
  private readonly byDefault: boolean;
  /** Decisions are a handful of values: made once, shared by every request. */
  private readonly decisions: readonly AuthzDecision[];
  private readonly defaultDecision: AuthzDecision;
  allowed = 0;
  denied = 0;

  constructor(readonly config: AuthorizationConfig) {
    this.rules = config.rules.map((r) => ({
      allow: r.action === 'allow',
      anyCaller: r.from?.includes('*') ?? false,
      from: r.from === undefined ? undefined : new Set(r.from),
      methods: r.methods === undefined ? undefined : new Set(r.methods),
      paths: r.paths,
    }));
    this.byDefault = config.default === 'allow';
    this.decisions = this.rules.map((r, i) => ({ allowed: r.allow, rule: i }));
    this.defaultDecision = { allowed: this.byDefault, rule: -1 };
  }

  /** Decides and counts. `target` is the request target (its query is ignored). */
  check(caller: string | undefined, method: string, target: string): AuthzDecision {
    const d = this.decide(caller, method, target);
    if (d.allowed) this.allowed++;
    else this.denied++;
    return d;
  }

  decide(caller: string | undefined, method: string, target: string): AuthzDecision {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      if (r.from !== undefined) {
        if (caller === undefined) continue;
        if (!r.anyCaller && !r.from.has(caller)) continue;
      }
      if (r.methods !== undefined && !r.methods.has(method)) continue;
      if (r.paths !== undefined && !matchesPrefix(r.paths, target)) continue;
      return this.decisions[i]!;
    }
    return this.defaultDecision;
  }
}

/** The path (before any `?`) starts with one of the prefixes. */
function matchesPrefix(prefixes: readonly string[], target: string): boolean {
  const q = target.indexOf('?');
  const end = q < 0 ? target.length : q;
  for (const p of prefixes) {
    if (p.length <= end && target.startsWith(p)) return true;
  }
  return false;
}
