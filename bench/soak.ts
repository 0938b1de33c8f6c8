/**
 * The soak run (issue 15; `npm run bench -- soak`, not in CI): the compiled server under 30
 * minutes of mixed load (session cycles, inventory reads, wrong keys, malformed and nested bodies,
 * connections that open and drop), sampling the server's resident memory and open descriptors
 * every 10 s. It passes when no valid call failed and the second half's RSS and descriptors stay
 * within 10 % of the first half's. CINODE_SOAK_MINUTES shortens it (a trial run).
 */
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpTarget, json } from './load.js';
import { BENCH_PROJECT, configYaml, ServerProcess } from './processes.js';

const MINUTES = Number(process.env.CINODE_SOAK_MINUTES ?? 30);
const SAMPLE_EVERY_MS = 10_000;
const CLIENTS = 8;
const NODES = 64;

interface Sample {
  atS: number;
  rssMiB: number;
  fds: number;
}

function openDescriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** A connection that sends half a request and goes away: what a flaky client leaves. */
function droppedConnection(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write('GET /Session/list?key=');
      setTimeout(() => {
        socket.destroy();
        resolve();
      }, 50);
    });
    socket.on('error', () => resolve());
  });
}

export async function runSoak(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cinode-soak-'));
  const configPath = join(dir, 'cinode.yaml');
  writeFileSync(
    configPath,
    configYaml({
      database: `sqlite:${join(dir, 'cinode.db')}`,
      reaperInterval: '5s',
      nodes: NODES,
      projects: [{ ...BENCH_PROJECT, settings: { 'rate-limit': '999999/1m', 'node-quota': String(NODES) } }],
    }),
  );
  const server = await ServerProcess.cinode(configPath, join(dir, 'server.log'));
  const target = new HttpTarget(server.port, CLIENTS);
  const key = BENCH_PROJECT.key;
  const deadline = Date.now() + MINUTES * 60_000;
  const counts = { valid: 0, validFailed: 0, hostile: 0, hostile5xx: 0 };
  let failureSample: string | undefined;
  const samples: Sample[] = [];
  const started = Date.now();
  const sampler = setInterval(() => {
    samples.push({ atS: Math.round((Date.now() - started) / 1000), rssMiB: server.rssMiB(), fds: openDescriptors(server.pid) });
  }, SAMPLE_EVERY_MS);

  async function valid(path: string): Promise<ReturnType<typeof json>> {
    const answer = await target.get(path);
    counts.valid++;
    if (answer.status !== 200 && answer.status !== 503) {
      counts.validFailed++;
      failureSample ??= `${answer.status} ${answer.body.slice(0, 200)}`;
    }
    return json(answer);
  }

  async function client(n: number): Promise<void> {
    for (let i = 0; Date.now() < deadline; i++) {
      const got = (await valid(`/Node/get?key=${key}&count=1`)) as { ssid?: string } | undefined;
      if (got?.ssid) {
        await valid(`/Session/show?key=${key}&ssid=${got.ssid}`);
        await valid(`/Node/done?key=${key}&ssid=${got.ssid}`);
      }
      await valid('/Inventory');
      if (n === 0) {
        // The hostile share: wrong keys, nested values, a wrong method, a dropped connection.
        for (const path of [`/Session/list?key=wrong-${i}`, '/Node/get?key[]=x', `/Node/get?k%65y=${key}&count=[[1]]`]) {
          const answer = await target.get(path);
          counts.hostile++;
          if (answer.status >= 500) counts.hostile5xx++;
        }
        await droppedConnection(server.port);
      }
    }
  }

  process.stderr.write(`soak: ${MINUTES} min of mixed load on ${CLIENTS} clients, sampling every ${SAMPLE_EVERY_MS / 1000} s\n`);
  await Promise.all(Array.from({ length: CLIENTS }, (_, n) => client(n)));
  clearInterval(sampler);
  target.close();
  await server.stop();

  const half = Math.floor(samples.length / 2);
  const first = samples.slice(1, half); // the first sample is taken while the JIT warms up
  const second = samples.slice(half);
  const rss = { first: Math.round(median(first.map((s) => s.rssMiB))), second: Math.round(median(second.map((s) => s.rssMiB))) };
  const fds = { first: median(first.map((s) => s.fds)), second: median(second.map((s) => s.fds)) };
  const within = (a: number, b: number) => a === 0 || Math.abs(b - a) / a <= 0.1;
  const ok = counts.validFailed === 0 && counts.hostile5xx === 0 && within(rss.first, rss.second) && within(fds.first, fds.second);
  const report = { minutes: MINUTES, ...counts, failureSample, rssMiB: rss, fds, samples, ok };
  writeFileSync(join(dir, 'soak.json'), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(
    `soak ${ok ? 'passed' : 'FAILED'}: ${counts.valid} valid calls (${counts.validFailed} failed), ${counts.hostile} hostile (${counts.hostile5xx} 5xx); ` +
      `RSS median ${rss.first} -> ${rss.second} MiB, descriptors ${fds.first} -> ${fds.second}; samples in ${join(dir, 'soak.json')}\n`,
  );
  if (!ok) process.exitCode = 1;
}
