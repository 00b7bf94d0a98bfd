export { ActiveHealthChecker, JITTER, type ActiveCheckEvent, type ActiveCheckStatus, type ActiveHealthCheckerDeps } from './checker.js';
export { checkKind, grpcProber, httpProber, proberFor, tcpProber, HEALTH_CHECK_USER_AGENT, type HttpCheckConfig, type ProbeResult, type Prober, type ProberDeps } from './probe.js';
