// The chaos soak (issue 31): three switchboard nodes (target/debug/switchboard) on a Redis
// Sentinel group and the MongoDB-wire server, a few hundred clients behaving like unchanged
// frontends through a load balancer, and a nemesis from a printed seed. Afterwards the checker
// (lib/checker.mjs) proves the history right, or prints the seed and the first violated
// property with the events that show it.
//
//   CHAOS_SEED     the nemesis' (and the clients') seed; default: random, printed
//   CHAOS_SECS     how long the load runs (default 300); faults stop 15 s before its end
//   CHAOS_CLIENTS  users (default 200), each with its own chat; CHAOS_STAFF staff (default 4)
//   CHAOS_INTERVAL_MS  a client's mean time between actions (default 6000)
//   CHAOS_OUT      a directory for the history (history.json) and the nodes' logs
//
//   cd tests/js && node ../chaos/soak.mjs       (tests/steps/38-chaos.sh)

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { api, makeUser, openChat, waitUntil } from '../js/lib/harness.js';
import { check } from './lib/checker.mjs';
import { ChaosClient } from './lib/frontend.mjs';
import { describe, prng, run, schedule } from './lib/nemesis.mjs';
import { NodeSlot, startBalancer, startMongo, startSentinelGroup } from './lib/services.mjs';

const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
const secs = Number(process.env.CHAOS_SECS ?? 300);
const users = Number(process.env.CHAOS_CLIENTS ?? 200);
const staffCount = Number(process.env.CHAOS_STAFF ?? 4);
const intervalMs = Number(process.env.CHAOS_INTERVAL_MS ?? 6000);
const outDir = process.env.CHAOS_OUT;
const started = Date.now();
const lines = [];
const log = (line) => {
  const l = `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}`;
  lines.push(l);
  console.log(l);
};

log(`chaos seed ${seed} (replay: CHAOS_SEED=${seed} CHAOS_SECS=${secs} CHAOS_CLIENTS=${users})`);
const faults = schedule(seed, { from: 5000, healBy: secs * 1000 - 15000, nodes: 3 });
log(`fault schedule (${faults.length}):\n  ${faults.map(describe).join('\n  ')}`);

const rng = prng(seed ^ 0x5bd1e995);
// Every wait below has its own deadline; this bounds the whole run whatever happens.
let phase = 'start-up';
setTimeout(() => {
  console.log(`\nchaos soak HUNG in ${phase}, seed ${seed} (replay: CHAOS_SEED=${seed})`);
  process.exit(2);
}, (secs + 360) * 1000).unref();
const cleanup = [];
let verdict = 1;
const slotsForLogs = [];
try {
  const mongo = await startMongo();
  cleanup.push(() => mongo.stop());
  const redis = await startSentinelGroup();
  cleanup.push(() => redis.stop());
  log(`store ${mongo.uri}; redis ${redis.url}`);
  const env = {
    REDIS_URL: redis.url,
    MONGODB_URI: mongo.uri,
    MONGODB_DATABASE: `chaos${seed}`,
    RATE_LIMIT_PER_SEC: '1000',
    MAX_SOCKETS_PER_USER: '8',
    PRESENCE_TTL_SECS: '6',
    HEARTBEAT_INTERVAL_SECS: '2',
    DRAIN_DELAY_SECS: '1',
    SHUTDOWN_GRACE_SECS: '10',
  };
  const slots = [0, 1, 2].map((i) => new NodeSlot(`chaos-${i}`, env));
  slotsForLogs.push(...slots);
  cleanup.push(() => slots.forEach((s) => s.destroy()));
  for (const s of slots) await s.start();
  const balancer = await startBalancer(slots);
  cleanup.push(() => balancer.close());
  const anyNode = () => slots.find((s) => s.alive && !s.paused) ?? slots[0];
  log(`nodes on ${slots.map((s) => s.port).join(', ')}; balancer ${balancer.url}`);

  // Users, each with a chat; staff see every chat.
  const people = [];
  for (let i = 0; i < users; i++) people.push(makeUser(`u${i}`));
  const staff = [];
  for (let i = 0; i < staffCount; i++) staff.push(makeUser(`s${i}`, 'admin'));
  const chatOf = new Map();
  for (const u of people) chatOf.set(u.id, (await openChat(slots[0].node, u)).id);
  const allChats = [...chatOf.values()];
  const clients = [
    ...people.map((u, i) => new ChaosClient({ name: `u${i}`, user: u, chats: [chatOf.get(u.id)], url: balancer.url, rng: prng(seed + i + 1), intervalMs })),
    ...staff.map((u, i) => new ChaosClient({ name: `s${i}`, user: u, chats: allChats, url: balancer.url, rng: prng(seed - i - 1), peers: people.map((p) => p.id), intervalMs: intervalMs / 2 })),
  ];
  for (const c of clients) c.open();
  await waitUntil(() => clients.every((c) => c.connected), { timeout: 60000, every: 100, what: 'every client connected' });
  log(`${clients.length} clients connected (${users} users, ${staffCount} staff, ${allChats.length} chats)`);

  // Load and nemesis.
  phase = 'load';
  let loadOver = false;
  const t0 = Date.now();
  const load = clients.map((c) => c.start());
  const nemesis = run(faults, { t0, slots, redis, mongo, balancer, rng, log, stopped: () => loadOver });
  const ticker = setInterval(() => {
    const sent = clients.reduce((n, c) => n + c.sends.length, 0);
    const ack = clients.reduce((n, c) => n + c.sends.filter((s) => s.ack).length, 0);
    const up = clients.filter((c) => c.connected).length;
    log(`load: ${sent} sent, ${ack} acked, ${up}/${clients.length} connected, nodes ${slots.map((s) => (s.alive ? (s.paused ? 'P' : 'U') : 'D')).join('')}`);
  }, 10000);
  await new Promise((r) => setTimeout(r, secs * 1000));
  loadOver = true;
  clients.forEach((c) => c.stop());
  await nemesis;
  clearInterval(ticker);
  await Promise.allSettled(load);
  log('load stopped; every fault healed');

  phase = 'quiescence';
  // Quiescence: every node up, every client connected, no call in flight, nothing arriving.
  await waitUntil(() => slots.every((s) => s.alive && !s.paused), { timeout: 30000, what: 'every node up' });
  try {
    await waitUntil(() => clients.every((c) => c.connected && c.pending === 0 && c.sending === 0), { timeout: 60000, every: 200, what: 'every client connected and answered' });
  } catch (e) {
    const stuck = clients.filter((c) => !(c.connected && c.pending === 0 && c.sending === 0));
    log(`${stuck.length} clients not settled: ${stuck.slice(0, 12).map((c) => JSON.stringify({ name: c.name, connected: c.connected, active: c.client?.socket.active, pending: c.pending, sending: c.sending, connectErrors: c.connectErrors, lastConnectError: c.lastConnectError, conns: c.conns.length, lastConn: c.conns[c.conns.length - 1] })).join('\n  ')}`);
    throw e;
  }
  let lastCount = -1;
  let quietSince = Date.now();
  await waitUntil(() => {
    const n = clients.reduce((k, c) => k + c.log.length, 0);
    if (n !== lastCount) {
      lastCount = n;
      quietSince = Date.now();
    }
    return Date.now() - quietSince > 3000;
  }, { timeout: 30000, every: 250, what: 'no more events arriving' });
  log('quiet');

  // Memory: sampled while idle; it must not keep growing.
  const samples = slots.map(() => []);
  for (let i = 0; i < 10; i++) {
    for (const [k, s] of slots.entries()) samples[k].push(await s.rss());
    await new Promise((r) => setTimeout(r, 1500));
  }

  phase = 'reading the store';
  // The store: every chat's history through the REST API, oldest first.
  const reader = staff[0];
  const store = new Map();
  for (const chatId of allChats) {
    const messages = [];
    let after = 0;
    for (let page = 0; page < 1000; page++) {
      const r = await api(anyNode().node, 'GET', `/api/chats/${chatId}/messages?afterSeq=${after}&limit=100`, { user: reader });
      if (r.status !== 200) throw new Error(`history of ${chatId}: ${r.status} ${r.text}`);
      messages.push(...r.body.messages);
      if (!r.body.hasMore || r.body.messages.length === 0) break;
      after = r.body.messages[r.body.messages.length - 1].seq;
    }
    store.set(chatId, messages);
  }

  phase = 'checking';
  const { failures, counts } = check({ clients, store });

  // Presence: every node names exactly the connected users, within the heartbeat TTL and grace.
  const truth = new Set(clients.filter((c) => c.connected).map((c) => c.user.id));
  const presence = async (slot) => {
    const r = await api(slot.node, 'GET', '/api/socket/active-users?limit=1000', { user: reader });
    return r.status === 200 ? new Set(r.body.activeUsers.map((a) => a.userId)) : new Set();
  };
  let presenceDiff = null;
  try {
    await waitUntil(async () => {
      for (const s of slots) {
        const seen = await presence(s);
        const missing = [...truth].filter((u) => !seen.has(u));
        const extra = [...seen].filter((u) => !truth.has(u));
        if (missing.length || extra.length) {
          presenceDiff = { node: s.name, missing: missing.slice(0, 8), extra: extra.slice(0, 8), missingCount: missing.length, extraCount: extra.length };
          return false;
        }
      }
      return true;
    }, { timeout: 30000, every: 500, what: 'presence to equal the truth' });
    presenceDiff = null;
  } catch {
    failures.push({ property: 'presence', message: `presence on ${presenceDiff.node} is not the truth (${presenceDiff.missingCount} connected users missing, ${presenceDiff.extraCount} extra)`, events: [presenceDiff] });
  }

  for (const [k, s] of slots.entries()) {
    const xs = samples[k].filter(Number.isFinite);
    if (xs.length < 4) continue;
    const first = Math.min(...xs.slice(0, 3));
    const last = xs[xs.length - 1];
    const growth = last - first;
    log(`${s.name} RSS while idle: ${xs.map((x) => Math.round(x / 1048576)).join(' ')} MiB`);
    if (growth > Math.max(16 * 1048576, first * 0.15)) {
      failures.push({ property: 'memory', message: `${s.name} grew ${Math.round(growth / 1048576)} MiB while idle`, events: [{ samples: xs }] });
    }
  }

  const applied = lines.filter((l) => l.includes('nemesis +')).length;
  log(`history: ${counts.acked} acked, ${counts.stored} stored; message:new live ${counts.live}, replayed ${counts.replayed}; chat:sync new ${counts.synced}, overlapping ${counts.syncOverlap}; faults applied ${applied}/${faults.length}; reconnects ${clients.reduce((n, c) => n + c.conns.length - 1, 0)} (recovered ${clients.reduce((n, c) => n + c.conns.filter((x) => x.recovered).length, 0)})`);
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(path.join(outDir, 'history.json'), JSON.stringify({
      seed, secs, faults, log: lines,
      clients: clients.map((c) => ({ name: c.name, user: c.user.id, conns: c.conns.map(({ n, at, recovered, closedAt, reason }) => ({ n, at, recovered, closedAt, reason })), sends: c.sends, log: c.log, reads: c.reads })),
      store: Object.fromEntries(store),
    }));
  }
  if (failures.length === 0) {
    log(`chaos soak PASSED (seed ${seed})`);
    verdict = 0;
  } else {
    const f = failures[0];
    console.log(`\nchaos soak FAILED, seed ${seed} (replay the faults: CHAOS_SEED=${seed})`);
    console.log(`first violated property: ${f.property}: ${f.message}`);
    console.log('events that show it:');
    for (const e of f.events) console.log(`  ${JSON.stringify(e)}`);
    const others = [...new Set(failures.map((x) => x.property))];
    console.log(`violations: ${failures.length} (${others.join(', ')})`);
  }
  for (const c of clients) c.close();
} catch (e) {
  console.log(`\nchaos soak ERROR, seed ${seed} (replay: CHAOS_SEED=${seed}): ${e.stack ?? e}`);
} finally {
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    for (const s of slotsForLogs) writeFileSync(path.join(outDir, `${s.name}.log`), `${s.pastLogs ?? ''}${s.node?.logs ?? ''}`);
  }
  for (const f of cleanup.reverse()) {
    try {
      await f();
    } catch {
      // best effort
    }
  }
}
process.exit(verdict);
