import { TEST_ADMIN_TOKEN } from './tokens.js';

// vitest setupFiles: sidecars and `outrigger ctl` started by the tests send the test admin token.
process.env.OUTRIGGER_TOKEN = TEST_ADMIN_TOKEN;
