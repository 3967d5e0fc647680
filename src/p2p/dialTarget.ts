// Configured peer addresses ("host:port", "[v6]:port") and their reconnect backoff.

export interface PeerAddress {
  host: string;
  port: number;
  /** Canonical "host:port" used as the map key (IPv6 in brackets). */
  key: string;
}

export function parsePeerAddress(s: string): PeerAddress {
  const m = typeof s === 'string' ? /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(s.trim()) : null;
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new Error(`peer address ${JSON.stringify(s)} must be "host:port" (IPv6 as "[addr]:port") with port 1-65535`);
  const host = m[1] ?? m[2];
  return { host, port, key: m[1] ? `[${host}]:${port}` : `${host}:${port}` };
}

export function peerUrl(a: PeerAddress): string {
  return `ws://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/`;
}

/** Exponential backoff with jitter: uniform in [d/2, d] where d = min(max, base * 2^attempt). */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const d = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + (random() * d) / 2);
}
