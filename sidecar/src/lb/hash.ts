/**
 * Small, dependency-free 32-bit string hash for the consistent-hashing pickers (ring-hash, maglev).
 *
 * FNV-1a over the string's UTF-16 code units (identical to byte-wise FNV-1a for Latin-1 text), seeded by
 * folding the seed into the offset basis, then murmur3's `fmix32` finalizer. FNV-1a alone has weak
 * avalanche in its high bits for short, similar keys ("10.0.0.1:80_0", "_1", ...); the finalizer fixes
 * that, which matters because the ring and the Maglev table use the full 32-bit value.
 *
 * Reads the string in place: no allocation, so it is safe on the per-request path.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** murmur3's 32-bit finalizer: every input bit affects every output bit. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Unsigned 32-bit hash of `key`; different seeds give independent hash functions. */
export function hash32(key: string, seed = 0): number {
  let h = (FNV_OFFSET ^ fmix32(seed)) >>> 0;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return fmix32(h);
}
