/** The two configuration files outrigger reads, and the names of their shipped JSON Schemas (schemas/). */
export const CONFIG_KINDS = ['sidecar', 'control-plane'] as const;
export type ConfigKind = (typeof CONFIG_KINDS)[number];

export const SCHEMA_FILES: Readonly<Record<ConfigKind, string>> = {
  sidecar: 'sidecar.schema.json',
  'control-plane': 'control-plane.schema.json',
};
