/** Helpers shared by the benchmarks: conditions of a run, latency histograms, timing. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import * as hdr from 'hdr-histogram-js';

export type Histogram = hdr.Histogram;

/** Latencies in microseconds, 1 µs to 2 min, 3 significant digits. */
export function latencyHistogram(): Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

export function elapsedUs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1000;
}

export function ms(us: number): string {
  return us >= 100_000 ? `${(us / 1000).toFixed(0)} ms` : `${(us / 1000).toFixed(2)} ms`;
}

export function latencySummary(h: Histogram): string {
  return `p50 ${ms(h.getValueAtPercentile(50))}, p99 ${ms(h.getValueAtPercentile(99))}, max ${ms(h.maxValue)}`;
}

export function rate(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function sleep(msec: number): Promise<void> {
  return new Promise((r) => setTimeout(r, msec));
}

/** The file system type and device holding `dir` (Linux `df -PT`), or 'unknown'. */
export function filesystemOf(dir: string): string {
  try {
    const out = execFileSync('df', ['-PT', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const cols = out.trim().split('\n')[1]?.split(/\s+/);
    if (cols && cols.length >= 7) return `${cols[1]} on ${cols[0]} (mounted at ${cols[6]})`;
  } catch {
    // not Linux, or no df
  }
  return 'unknown';
}

export function machineConditions(): string[] {
  const c = cpus();
  return [
    `node ${process.version} on ${process.platform} ${release()}`,
    `CPU: ${c[0]?.model.trim() ?? 'unknown'} × ${c.length}, RAM ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${loadAverage()}`,
  ];
}

/** The 1/5/15-minute load averages: other work on the machine skews every figure. */
export function loadAverage(): string {
  return `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ')}`;
}

/** The first line a command prints (e.g. its version), or "<cmd>: unknown". */
export function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).split('\n')[0].trim();
  } catch {
    return `${cmd}: unknown`;
  }
}

/** The installed version of an npm package, or 'unknown'. */
export function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(new URL(`../../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Percentiles of a latency histogram (µs) in ms. */
export const p50 = (h: Histogram): number => h.getValueAtPercentile(50) / 1000;
export const p99 = (h: Histogram): number => h.getValueAtPercentile(99) / 1000;
export const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
export const round = (x: number, d = 3): number => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : NaN);

/** commander argument parsers. */
export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`expected a positive integer, got ${v}`);
  return n;
}

export function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, got ${v}`);
  return n;
}
