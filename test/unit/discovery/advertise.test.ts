import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { defaultAdvertise } from '../../../sidecar/src/discovery/advertise.js';

const v4 = (address: string, internal: boolean): NetworkInterfaceInfo => ({ address, netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: null });
const v6 = (address: string): NetworkInterfaceInfo => ({ address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '00:00:00:00:00:00', internal: false, cidr: null, scopeid: 0 });

describe('the address an instance registers with by default', () => {
  it('is the inbound listener address when it names a host', () => {
    expect(defaultAdvertise({ host: '127.0.0.1', port: 15006 }, {})).toBe('127.0.0.1:15006');
    expect(defaultAdvertise({ host: '198.18.0.7', port: 8080 }, {})).toBe('198.18.0.7:8080');
    expect(defaultAdvertise({ host: 'fd00::7', port: 8080 }, {})).toBe('[fd00::7]:8080');
  });

  it('is the first non-internal IPv4 address for a wildcard listener (each container replica its own)', () => {
    const ifaces = { lo: [v4('127.0.0.1', true)], eth1: [v4('198.18.0.9', false)], eth0: [v6('fd00::1'), v4('198.18.0.5', false)] };
    expect(defaultAdvertise({ host: '0.0.0.0', port: 15006 }, ifaces)).toBe('198.18.0.5:15006');
    expect(defaultAdvertise({ host: '::', port: 15006 }, ifaces)).toBe('198.18.0.5:15006');
  });

  it('falls back to loopback on a machine with no other IPv4 address', () => {
    expect(defaultAdvertise({ host: '0.0.0.0', port: 15006 }, { lo: [v4('127.0.0.1', true)], eth0: [v6('fd00::1')] })).toBe('127.0.0.1:15006');
  });
});
