import type { Args, CommandSpec } from './args.js';
import { CONFIG_KINDS } from './kinds.js';

/**
 * The table of `outrigger` subcommands: their flags and help (read by the parser, `--help` and the completion
 * scripts), and what each runs (loaded only when it runs). `ctl` is not here: its arguments go untouched to
 * its own parser (control-plane/src/ctl/main.ts).
 */

export interface Command extends CommandSpec {
  run(args: Args): Promise<void>;
}

const HOST_PORT = 'HOST:PORT';

export const COMMANDS: readonly Command[] = [
  {
    name: 'sidecar',
    summary: 'run a sidecar proxy from a sidecar.yaml',
    description:
      'Runs a sidecar proxy beside one service instance. SIGHUP reloads FILE (a bad file is refused and the\n' +
      'running configuration stays); SIGTERM or Ctrl-C drains the requests in flight and stops.',
    options: { config: { type: 'string', short: 'c', value: 'FILE', file: true, required: true, help: 'the sidecar.yaml to run (required)' } },
    footer: 'exit status: 0 stopped, 1 invalid configuration or a listener that cannot bind, 2 usage error',
    run: async (a) => (await import('./run.js')).runSidecar(a),
  },
  {
    name: 'control-plane',
    summary: 'run the control plane (from a cp.yaml, or on defaults without one)',
    description:
      'Runs the control plane: gRPC discovery for the sidecars, the HTTP admin API and the dashboard.\n' +
      'Without --config it runs on defaults, for trying things out: gRPC on 127.0.0.1:15010, HTTP on\n' +
      '127.0.0.1:15080, state in ./outrigger-data/state.json under the working directory.',
    options: {
      config: { type: 'string', short: 'c', value: 'FILE', file: true, help: 'the cp.yaml to run (default: none, run on defaults)' },
      grpc: { type: 'string', value: HOST_PORT, help: 'listen here for sidecars (overrides listen.grpc; default 127.0.0.1:15010)' },
      http: { type: 'string', value: HOST_PORT, help: 'serve the admin API and dashboard here (overrides listen.http; default 127.0.0.1:15080)' },
    },
    footer: 'exit status: 0 stopped, 1 invalid configuration or a listener that cannot bind, 2 usage error',
    run: async (a) => (await import('./run.js')).runControlPlane(a),
  },
  {
    name: 'validate',
    summary: 'check a sidecar.yaml or cp.yaml without starting anything',
    description:
      "Checks FILE with the loader the sidecar or the control plane runs at start (every key, type and rule),\n" +
      'without binding a port or reading any state. Which file it is comes from --kind, else the\n' +
      '`# yaml-language-server: $schema=...` first line, else its top-level keys.',
    options: { kind: { type: 'string', value: 'KIND', choices: CONFIG_KINDS, help: `the file's kind: ${CONFIG_KINDS.join(' or ')} (default: detected)` } },
    positionals: [{ name: 'FILE', required: true, file: true }],
    footer: 'exit status: 0 valid, 1 invalid (each problem is printed with the file, the key and what was expected), 2 usage error',
    run: async (a) => (await import('./validate.js')).runValidate(a),
  },
  {
    name: 'schema',
    summary: 'print the JSON Schema of sidecar.yaml or cp.yaml',
    description:
      'Prints the JSON Schema (draft-07) of a configuration file, for editors and CI checks. The package\n' +
      'ships the same files in schemas/; a YAML file whose first line is\n' +
      '  # yaml-language-server: $schema=<path or URL of the schema>\n' +
      'gets completion and checks in editors that use the YAML language server (VS Code, Neovim, ...).',
    options: {},
    positionals: [{ name: 'KIND', required: true, choices: CONFIG_KINDS }],
    run: async (a) => (await import('./schema.js')).runSchema(a),
  },
  {
    name: 'completion',
    summary: 'print a bash or zsh completion script',
    description:
      'Prints a shell completion script for outrigger (subcommands, flags, ctl commands, file names).\n' +
      '  bash: source <(outrigger completion bash)      # in ~/.bashrc\n' +
      '  zsh:  source <(outrigger completion zsh)       # in ~/.zshrc, after compinit',
    options: {},
    positionals: [{ name: 'SHELL', required: true, choices: ['bash', 'zsh'] }],
    run: async (a) => (await import('./completion.js')).runCompletion(a),
  },
  {
    name: 'version',
    summary: "print the version, and the control plane's",
    description:
      "Prints this outrigger's version, then the version of the control plane at --server when it answers\n" +
      'within a second (when it does not, says so; the exit status is 0 either way).',
    options: {
      server: { type: 'string', value: HOST_PORT, help: "the control plane's HTTP address, https (default: $OUTRIGGER_CONTROL_PLANE, else 127.0.0.1:15080)" },
      'ca-file': { type: 'string', value: 'FILE', file: true, help: "the mesh CA its certificate chains to (default: $OUTRIGGER_CA_FILE, else ./outrigger-data/mesh-ca.crt if it exists)" },
      client: { type: 'boolean', help: 'print only the version of this outrigger' },
    },
    run: async (a) => (await import('./version.js')).runVersion(a),
  },
  {
    name: 'demo',
    summary: 'run a whole local mesh with its dashboard',
    description:
      'Runs a whole local mesh: the control plane with its dashboard, catalog and inventory with several\n' +
      'instances each (sized by the autoscaler), a sidecar beside each, and a gentle load. Ctrl-C stops it all.',
    options: {
      rps: { type: 'string', value: 'N', help: 'requests per second of the built-in load, 0..1000; 0 turns it off (default 20)' },
      grpc: { type: 'boolean', help: 'catalog asks inventory over gRPC (protocol: grpc) instead of HTTP/1.1' },
    },
    run: async (a) => (await import('./demo.js')).runDemo(a),
  },
  {
    name: 'demo-instance',
    summary: 'run one demo instance: demo-app and its sidecar, supervised',
    description: 'Runs one demo instance: a demo-app and its sidecar (inbound on --port), restarting either when it exits.',
    options: {
      service: { type: 'string', value: 'NAME', required: true, help: 'the service (required)' },
      port: { type: 'string', value: 'N', required: true, help: "the sidecar's inbound port, 1..65535 (required)" },
      'control-plane': { type: 'string', value: HOST_PORT, required: true, help: "the control plane's gRPC address (required)" },
      'run-dir': { type: 'string', value: 'DIR', required: true, help: 'where the sidecar configuration and pid files go (required)' },
      host: { type: 'string', value: 'HOST', help: 'the inbound listener\'s host (default 127.0.0.1)' },
      calls: { type: 'string', value: 'SERVICE', help: 'a service the app calls for each request' },
      grpc: { type: 'boolean', help: 'the app calls --calls over gRPC instead of HTTP/1.1' },
      'delay-ms': { type: 'string', value: 'N', help: 'simulated work per request, ms (default 0)' },
      capacity: { type: 'string', value: 'N', help: 'requests in flight the instance reports as full load (default 20)' },
      'token-file': { type: 'string', value: 'FILE', file: true, help: "the sidecar's join token file (default: DIR/sidecar.token when it exists, else $OUTRIGGER_TOKEN)" },
      'ca-file': { type: 'string', value: 'FILE', file: true, help: "the mesh CA the sidecar pins (default: DIR/mesh-ca.crt when it exists, else fetched with the token)" },
      'admin-port': { type: 'string', value: 'N', help: "the sidecar's admin port on 127.0.0.1, 1..65535 (default: a free one)" },
    },
    run: async (a) => (await import('./demo.js')).runDemoInstance(a),
  },
  {
    name: 'demo-app',
    summary: 'run one demo service instance',
    description:
      'Runs one demo service instance: JSON answers, GET /healthz, POST /knob?delayMs=N&failPercent=P; with\n' +
      '--calls it calls SERVICE for each request through the sidecar at --via.',
    options: {
      name: { type: 'string', value: 'NAME', required: true, help: 'the service name (required)' },
      listen: { type: 'string', value: HOST_PORT, required: true, help: 'where to listen (required)' },
      instance: { type: 'string', value: 'ID', help: 'the instance name (default: the service name)' },
      'delay-ms': { type: 'string', value: 'N', help: 'simulated work per request, ms (default 0)' },
      'fail-percent': { type: 'string', value: 'P', help: 'share of requests answered 500, 0..100 (default 0)' },
      calls: { type: 'string', value: 'SERVICE', help: 'another service to call for each request' },
      grpc: { type: 'boolean', help: 'call --calls with the gRPC call ListItems instead of GET /items' },
      via: { type: 'string', value: HOST_PORT, help: "the sidecar's outbound listener (default 127.0.0.1:15001)" },
    },
    run: async (a) => (await import('./demo.js')).runDemoApp(a),
  },
];

/** `ctl` in the command list; its own parser reads everything after the word. */
export const CTL_SUMMARY = 'operate a running control plane: services, endpoints, policies, weights, drains (`outrigger ctl help`)';

/** The commands of `outrigger ctl`, for completion. */
export const CTL_COMMANDS = ['services', 'endpoints', 'circuits', 'policy', 'weight', 'drain', 'undrain', 'sidecars', 'autoscale', 'scale', 'help'] as const;
export const CTL_FLAGS = ['--server', '--token', '--token-file', '--ca-file', '--output', '-o', '--json', '--help', '-h'] as const;
/** ctl flags whose value is a file name, and the choices of `--output`. */
export const CTL_FILE_FLAGS = ['--token-file', '--ca-file', '-f', '--file'] as const;
export const CTL_OUTPUT_CHOICES = ['json', 'yaml', 'table'] as const;

export const commandNamed = (name: string): Command | undefined => COMMANDS.find((c) => c.name === name);
