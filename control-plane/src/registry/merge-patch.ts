/**
 * JSON Merge Patch (RFC 7386), as `PATCH /api/services/NAME/policy` applies it to a policy: a patch that is
 * an object merges into the target key by key, recursively; `null` deletes a key; anything else (a string,
 * a number, an array) replaces what was there. Neither argument is modified.
 */

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const out: Record<string, unknown> = {};
  // defineProperty, not assignment: a key "__proto__" from JSON stays a plain key (which validation refuses).
  const put = (key: string, value: unknown): void => void Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  if (isObject(target)) for (const [key, value] of Object.entries(target)) put(key, value);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else put(key, mergePatch(Object.hasOwn(out, key) ? out[key] : undefined, value));
  }
  return out;
}
