/**
 * A real process killed with SIGKILL while it appends: the child (fixtures/wal-writer.ts, run through tsx)
 * saves batches with sync=true and prints each acknowledged index; the parent kills it after a bounded
 * random delay, reopens the WAL and checks every acknowledged entry is there, byte for byte. Five rounds
 * on the same directory, so each child also recovers what the previous one left.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Entry } from '@app/raft';
import { Wal } from '../src/index.js';
import { writerPayload, writerSnapshot } from './fixtures/wal-writer-data.js';
import { captureLogger, tempDirs } from './helpers.js';

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const WORKER = fileURLToPath(new URL('./fixtures/wal-writer.ts', import.meta.url));
const ROUNDS = 5;
const MAX_DELAY_MS = 300;
const START_TIMEOUT_MS = 15_000;

interface Round {
  start: number; // last index the child recovered
  term: number;
  lastAck: number; // last acknowledged index (start when none)
  snaps: number[];
  signal: NodeJS.Signals | null;
  stderr: string;
}

function runAndKill(dir: string, delayMs: number): Promise<Round> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', WORKER, dir], {
    cwd: REPO,
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const round: Round = { start: -1, term: 0, lastAck: -1, snaps: [], signal: null, stderr: '' };
  const kill = (): void => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  };
  let killTimer: NodeJS.Timeout | undefined;
  let startTimer: NodeJS.Timeout | undefined;
  return new Promise<Round>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => (round.stderr += s));
    child.stdout!.on('data', (s: string) => {
      out += s;
      let nl: number;
      while ((nl = out.indexOf('\n')) >= 0) {
        const [kind, a, b, c] = out.slice(0, nl).split(' ');
        out = out.slice(nl + 1);
        if (kind === 'start') {
          round.start = Number(a); // "start <lastIndex> term <term>"
          round.term = Number(c);
        } else if (kind === 'ack') {
          round.lastAck = Number(a);
          round.term = Number(b);
          killTimer ??= setTimeout(kill, delayMs);
        } else if (kind === 'snap') {
          round.snaps.push(Number(a));
        }
      }
    });
    startTimer = setTimeout(() => {
      kill();
      reject(new Error(`writer acknowledged nothing within ${START_TIMEOUT_MS} ms; stderr:\n${round.stderr}`));
    }, START_TIMEOUT_MS);
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      round.signal = signal;
      resolve(round);
    });
  }).finally(() => {
    clearTimeout(killTimer);
    clearTimeout(startTimer);
    kill(); // by pid, whatever happened
  });
}

function checkEntry(e: Entry): void {
  expect(Buffer.from(e.data).equals(Buffer.from(writerPayload(e.index, e.term)))).toBe(true);
}

it(`keeps every acknowledged entry across ${ROUNDS} SIGKILLs of a writing process`, async () => {
  const dir = dirs.make();
  let prevLastAck = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const delay = Math.floor(Math.random() * MAX_DELAY_MS);
    const round = await runAndKill(dir, delay);
    if (round.signal !== 'SIGKILL') throw new Error(`writer exited by itself (${round.signal}); stderr:\n${round.stderr}`);
    expect(round.lastAck).toBeGreaterThan(round.start);
    // The child recovered at least everything acknowledged before.
    expect(round.start).toBeGreaterThanOrEqual(prevLastAck);

    const logger = captureLogger();
    const { wal, recovered } = await Wal.open(dir, { logger });
    try {
      const snapIndex = recovered.snapshot?.metadata.index ?? 0;
      if (round.snaps.length > 0) expect(snapIndex).toBeGreaterThanOrEqual(Math.max(...round.snaps));
      if (recovered.snapshot) {
        const { index, term } = recovered.snapshot.metadata;
        expect(Buffer.from(recovered.snapshot.data).equals(Buffer.from(writerSnapshot(index, term).data))).toBe(true);
      }
      // Contiguous from the snapshot, every payload intact, every acknowledged index present.
      recovered.entries.forEach((e, i) => expect(e.index).toBe(snapIndex + 1 + i));
      recovered.entries.forEach(checkEntry);
      expect(wal.lastIndex).toBeGreaterThanOrEqual(round.lastAck);
      // What this round wrote carries its term: nothing acknowledged was replaced by older data.
      for (const e of recovered.entries) if (e.index > round.start && e.index <= round.lastAck) expect(e.term).toBe(round.term);
      expect(recovered.hardState.term).toBe(round.term);
    } finally {
      await wal.close();
    }
    prevLastAck = round.lastAck;
  }
});
