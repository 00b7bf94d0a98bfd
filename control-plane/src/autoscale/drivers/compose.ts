import { execFile } from 'node:child_process';
import type { Logger } from '../../../../common/src/logger.js';
import type { AutoscaleDriverConfig } from '../../config/types.js';
import type { ScaleDriver } from '../types.js';

export type ComposeDriverConfig = Extract<AutoscaleDriverConfig, { kind: 'compose' }>;

export interface ComposeDriverOptions {
  /** Environment of the compose runs (PATH decides which `docker`); default: the control plane's. */
  readonly env?: NodeJS.ProcessEnv | undefined;
  /** Gives up on one compose run after this long; default 120 s (pulling an image takes a while). */
  readonly timeoutMs?: number | undefined;
}

/**
 * The `compose` driver: `docker compose [-f FILE] [-p PROJECT] up -d --scale SERVICE=N --no-recreate SERVICE`
 * (execFile, no shell; `command` replaces `docker compose`, e.g. with `podman-compose`). Compose picks which
 * containers go on a scale-down, so `remove` is ignored: those instances drain when their sidecar gets SIGTERM from compose (it deregisters first). `current()` counts
 * `docker compose ps -q SERVICE`, or falls back to the replicas last set when that fails.
 */
export class ComposeDriver implements ScaleDriver {
  readonly kind = 'compose';
  private lastSet: number | undefined;

  constructor(
    readonly service: string,
    private readonly config: ComposeDriverConfig,
    private readonly logger: Logger,
    private readonly options: ComposeDriverOptions = {},
  ) {}

  /** The arguments common to every run, after the program (`command[0]`). */
  private base(): string[] {
    return [...this.config.command.slice(1), ...(this.config.file !== undefined ? ['-f', this.config.file] : []), ...(this.config.project !== undefined ? ['-p', this.config.project] : [])];
  }

  private run(args: readonly string[]): Promise<string> {
    const argv = [...this.base(), ...args];
    const program = this.config.command[0] ?? 'docker';
    return new Promise((resolve, reject) => {
      execFile(program, argv, { env: this.options.env ?? process.env, timeout: this.options.timeoutMs ?? 120_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) {
          const detail = String(stderr).trim().split('\n').slice(-3).join(' / ') || err.message;
          reject(new Error(`${program} ${argv.join(' ')} failed: ${detail}`));
        } else resolve(String(stdout));
      });
    });
  }

  async current(): Promise<number> {
    try {
      const out = await this.run(['ps', '-q', this.config.service]);
      return out.split('\n').filter((l) => l.trim() !== '').length;
    } catch (err) {
      if (this.lastSet === undefined) throw err;
      this.logger.debug({ service: this.service, err: (err as Error).message }, 'compose ps failed; using the replicas last set');
      return this.lastSet;
    }
  }

  async scaleTo(replicas: number, _remove: readonly string[]): Promise<void> {
    await this.run(['up', '-d', '--scale', `${this.config.service}=${replicas}`, '--no-recreate', this.config.service]);
    this.lastSet = replicas;
  }

  addresses(): readonly string[] {
    return [];
  }

  close(): Promise<void> {
    // Containers outlive the control plane on purpose.
    return Promise.resolve();
  }
}
