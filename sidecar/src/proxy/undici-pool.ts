import { createRequire } from 'node:module';
import type { Pool as PoolClass } from 'undici';

const require = createRequire(import.meta.url);

/**
 * undici's connection Pool, loaded on its own: importing the package root also loads fetch, WebSocket,
 * the cache and mock layers, which cost a sidecar about 13 MB of RSS it never uses. The version of undici
 * is pinned in package.json because this path is not part of its public entry points.
 */
export const Pool = require('undici/lib/dispatcher/pool.js') as typeof PoolClass;
export type Pool = PoolClass;
