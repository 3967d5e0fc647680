// Temporary bans with exponential growth (reference §9.15: HotPocket never bans peers). Keys are
// "key:<pubkey hex>" for authenticated peers and "addr:<ip>" for connections that misbehaved before
// proving a key, since an unauthenticated connection has no better identity.
export interface BanEntry {
  strikes: number;
  untilMs: number;
}

export class BanList {
  private readonly entries = new Map<string, BanEntry>();

  constructor(
    readonly baseMs: number,
    readonly maxMs: number,
    readonly maxEntries = 4096,
  ) {}

  /** Bans `key` for base * 2^(strikes-1), capped; returns the ban length in ms. */
  ban(key: string, nowMs: number): number {
    const prev = this.entries.get(key);
    // Strikes are forgotten once a peer behaved for as long as the longest ban.
    const strikes = prev && nowMs - prev.untilMs < this.maxMs ? prev.strikes + 1 : 1;
    const ms = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(strikes - 1, 40));
    this.entries.delete(key);
    this.entries.set(key, { strikes, untilMs: nowMs + ms });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    return ms;
  }

  /** Remaining ban in ms, 0 when not banned. */
  remainingMs(key: string, nowMs: number): number {
    const e = this.entries.get(key);
    return e && e.untilMs > nowMs ? e.untilMs - nowMs : 0;
  }

  list(nowMs: number): Array<{ target: string; strikes: number; remainingMs: number }> {
    const out: Array<{ target: string; strikes: number; remainingMs: number }> = [];
    for (const [target, e] of this.entries) if (e.untilMs > nowMs) out.push({ target, strikes: e.strikes, remainingMs: e.untilMs - nowMs });
    return out;
  }
}
