import { readFile } from 'node:fs/promises';
import { type IncomingMessage, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Logger } from '../../../../common/src/logger.js';
import type { AutoscaleDriverConfig } from '../../config/types.js';
import type { ScaleDriver } from '../types.js';

export type KubernetesDriverConfig = Extract<AutoscaleDriverConfig, { kind: 'kubernetes' }>;

const REQUEST_TIMEOUT_MS = 15_000;

/** An answer of the API server that is not 2xx, with its Status message. */
export class KubernetesApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'KubernetesApiError';
  }
}

interface Answer {
  readonly status: number;
  readonly body: string;
}

/** The parts of an autoscaling/v1 Scale the driver reads. */
interface Scale {
  readonly spec?: { readonly replicas?: number };
  readonly status?: { readonly replicas?: number };
}

/**
 * The `kubernetes` driver: reads and sets `spec.replicas` of a Deployment through its scale subresource
 * (`GET`/`PATCH /apis/apps/v1/namespaces/NS/deployments/NAME/scale`, a JSON merge patch), with the bearer
 * token of `tokenFile` (read at every request: projected service-account tokens rotate) and the CA of
 * `caFile`. The Deployment's controller picks the pods to remove, so `remove` is ignored; a removed pod
 * drains through its sidecar, which deregisters on SIGTERM. `current()` is `spec.replicas` (what the
 * Deployment is asked to run), as the Kubernetes HPA counts it.
 */
export class KubernetesDriver implements ScaleDriver {
  readonly kind = 'kubernetes';
  private ca: Promise<Buffer> | undefined;
  private lastSet: number | undefined;

  constructor(
    readonly service: string,
    private readonly config: KubernetesDriverConfig,
    private readonly logger: Logger,
  ) {}

  /** The scale subresource's path. */
  get path(): string {
    return `/apis/apps/v1/namespaces/${encodeURIComponent(this.config.namespace)}/deployments/${encodeURIComponent(this.config.deployment)}/scale`;
  }

  async current(): Promise<number> {
    const scale = (await this.call('GET')) as Scale;
    const n = scale.spec?.replicas ?? 0;
    return n;
  }

  async scaleTo(replicas: number, _remove: readonly string[]): Promise<void> {
    const scale = (await this.call('PATCH', JSON.stringify({ spec: { replicas } }))) as Scale;
    this.lastSet = scale.spec?.replicas ?? replicas;
    this.logger.debug({ service: this.service, deployment: this.config.deployment, replicas: this.lastSet }, 'deployment scale set');
  }

  addresses(): readonly string[] {
    return [];
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private async call(method: 'GET' | 'PATCH', body?: string): Promise<unknown> {
    const url = new URL(this.path, this.config.apiServer);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.config.tokenFile !== undefined) {
      let token: string;
      try {
        token = (await readFile(this.config.tokenFile, 'utf8')).trim();
      } catch (err) {
        throw new Error(`kubernetes: cannot read tokenFile ${this.config.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
      }
      headers['authorization'] = `Bearer ${token}`;
    }
    if (body !== undefined) {
      headers['content-type'] = 'application/merge-patch+json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    let ca: Buffer | undefined;
    if (this.config.caFile !== undefined && url.protocol === 'https:') {
      const file = this.config.caFile;
      this.ca ??= readFile(file).catch((err: NodeJS.ErrnoException) => {
        this.ca = undefined;
        throw new Error(`kubernetes: cannot read caFile ${file}: ${err.code ?? err.message}`, { cause: err });
      });
      ca = await this.ca;
    }
    const what = `${method} ${url.pathname}`;
    let answer: Answer;
    try {
      answer = await send(url, method, headers, body, ca, !this.config.insecureSkipTlsVerify);
    } catch (err) {
      throw new Error(`kubernetes: ${what} at ${url.origin} failed: ${(err as Error).message}`, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer.body) as unknown;
    } catch {
      parsed = undefined;
    }
    if (answer.status < 200 || answer.status > 299) {
      const status = parsed as { message?: unknown; reason?: unknown } | undefined;
      const reason = typeof status?.reason === 'string' ? status.reason : '';
      const message = typeof status?.message === 'string' ? status.message : answer.body.slice(0, 200);
      const hint =
        answer.status === 403
          ? ' (the control plane\'s service account needs a Role with get and patch on deployments/scale; see docs/autoscaling.md)'
          : answer.status === 409
            ? ' (someone else changed the Deployment at the same time; the next evaluation tries again)'
            : answer.status === 401
              ? ' (check tokenFile)'
              : '';
      throw new KubernetesApiError(answer.status, reason, `kubernetes: ${what} answered ${answer.status}${reason !== '' ? ` ${reason}` : ''}: ${message}${hint}`);
    }
    if (parsed === undefined) throw new Error(`kubernetes: ${what} answered ${answer.status} without JSON`);
    return parsed;
  }
}

function send(url: URL, method: string, headers: Record<string, string>, body: string | undefined, ca: Buffer | undefined, verify: boolean): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const options = { method, headers, timeout: REQUEST_TIMEOUT_MS };
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    };
    const req =
      url.protocol === 'https:'
        ? httpsRequest(url, { ...options, ...(ca !== undefined ? { ca } : {}), rejectUnauthorized: verify }, onResponse)
        : httpRequest(url, options, onResponse);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end(body);
  });
}
