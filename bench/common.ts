// Helpers shared by the node benchmarks (bench/node.ts, bench/cluster.ts), not a benchmark itself:
// the echo contract they run, command-line options, progress logging, quantiles and the markdown table.
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const ECHO_CONTRACT = path.join(REPO_ROOT, 'examples', 'echo', 'contract');
// The environment the node gives the contract (config contract.environment and nothing else): an
// inherited NODE_EXTRA_CA_CERTS, say, would add tens of ms to every node start-up.
export const CONTRACT_ENV = { NODE_PATH: path.join(REPO_ROOT, 'node_modules') };

/** `--name=value` or `--name value` from the command line, else undefined. */
export function argValue(name: string, argv: string[] = process.argv): string | undefined {
  const flag = `--${name}`;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith(`${flag}=`)) return argv[i].slice(flag.length + 1);
    if (argv[i] === flag && i + 1 < argv.length && !argv[i + 1].startsWith('--')) return argv[i + 1];
  }
  return undefined;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A progress logger to stderr: `[name +12.3s] message`. */
export function makeLog(name: string): (msg: string) => void {
  const startedAt = performance.now();
  return (msg: string) => process.stderr.write(`[${name} +${((performance.now() - startedAt) / 1000).toFixed(1)}s] ${msg}\n`);
}

export function quantile(xs: number[], q: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}
export const p50 = (xs: number[]) => quantile(xs, 0.5);

export const fmtMs = (x: number) => (Number.isNaN(x) ? '—' : x >= 100 ? `${x.toFixed(0)} ms` : x >= 10 ? `${x.toFixed(1)} ms` : `${x.toFixed(2)} ms`);
export const fmtRate = (x: number) => `${Math.round(x).toLocaleString('en-US')}/s`;
export const fmtRejects = (m: Map<string, number>) => (m.size ? [...m].map(([r, n]) => `${r} ${n}`).join(', ') : 'none');

export function markdown(head: string[], body: string[][]): string {
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  const line = (cells: string[]) => `| ${cells.map((x, c) => x.padEnd(widths[c])).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}
