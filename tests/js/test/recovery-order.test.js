// Connection state recovery when a socket hears two nodes' events in an order other than the
// recovery log's (issue 32). Every recoverable event is appended to the log (its offset is the
// stream id) and only then broadcast; a node hands its own events to its sockets as soon as the
// append answers, and another node's when they come through Redis pub/sub. So an admin on node A
// can hear A's message (the later offset) before B's (the earlier offset, appended first but
// published later). A resume asks for "everything after my last offset", which assumes that a
// socket has heard every event before its last one:
//
// - dropped between the two, the client resumes after A's offset and B's message is never
//   replayed: lost for a frontend without chat:sync (the 2 of 501 deliveries step 60 lost once);
// - dropped after both, it resumes after B's offset and A's message is replayed: twice.
//
// Made deterministic here: node B reaches Redis through a proxy that holds Redis's answers back
// 400 ms, so B's message is in the log 400 ms before B publishes it, and A's message goes in
// between. Two nodes, a real redis-server, the official socket.io-client with listeners only.
//
// Both tests fail on the current server (they are `todo`: reported, not failing the suite) until
// each node hands events to its sockets in log order (docs/recovery.md, "Limits, stated").

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import {
  api, connect, connected, disconnected, frontend, makeUser, nextConnect, proxy, startNode, startRedis, tempDataDir,
  waitUntil,
} from '../lib/harness.js';

const TODO = 'issue 32: a node hands its own events to its sockets before earlier-logged events of other nodes; a resume after the last offset then misses or repeats them';

/** The content of the recovery log's newest entry's payload (empty if none). */
async function newestLogged(redisPort) {
  const { stdout } = await promisify(execFile)('redis-cli', ['-p', String(redisPort), 'XREVRANGE', '{sb}:rlog', '+', '-', 'COUNT', '1']);
  return stdout;
}

describe('recovery when a socket hears two nodes out of log order', () => {
  const cleanup = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });

  /**
   * Nodes A and B on one Redis (B through the slow proxy), one data directory. Users ua (on A)
   * and ub (on B) each with a chat; `admin` (a frontend: reconnection on, listeners only) on A
   * through a proxy that can cut it; `watcher` (staff) on A too, to see when B publishes.
   */
  async function arrange() {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const slow = await proxy(redis.port, { replyDelayMs: 400 });
    cleanup.push(() => slow.close());
    const dataDir = tempDataDir();
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const env = (id, port) => ({ REDIS_URL: `redis://127.0.0.1:${port}`, NODE_ID: `order-${id}` });
    const a = await startNode({ dataDir, env: env('a', redis.port) });
    cleanup.push(() => a.destroy());
    const b = await startNode({ dataDir, env: env('b', slow.port), timeout: 30000 });
    cleanup.push(() => b.destroy());
    const ua = makeUser('ua');
    const ub = makeUser('ub');
    const admin = makeUser('admin', 'admin');
    const watcherUser = makeUser('watcher', 'admin');
    const chatA = (await api(a, 'POST', '/api/chats', { user: ua, body: {} })).body;
    const chatB = (await api(a, 'POST', '/api/chats', { user: ub, body: {} })).body;
    const sa = await connect(a, ua);
    const sb = await connect(b, ub, { timeout: 10000 });
    const watcher = await connect(a, watcherUser);
    const p = await proxy(a.port);
    const sock = frontend(p.url, admin, { reconnectionDelay: 100, reconnectionDelayMax: 200 });
    for (const s of [sa, sb, watcher, sock]) cleanup.push(() => s.close());
    cleanup.push(() => p.close());
    await connected(sock);
    return { redis, chatA, chatB, sa, sb, watcher, sock, p };
  }

  /**
   * ub sends on B; once its entry is in the log (B has not published it yet: Redis's answer
   * is on its way back to B), ua sends on A, which publishes at once. The admin hears A's
   * message first. Returns both sent messages (B's once it is acknowledged).
   */
  async function twoNodesOutOfOrder({ redis, chatA, chatB, sa, sb, sock }) {
    const fromB = sb.ack('message:send', { chatId: chatB.id, message: { content: 'from node B' } });
    await waitUntil(async () => (await newestLogged(redis.port)).includes('from node B'), { timeout: 10000, every: 10, what: "B's message in the log" });
    const a = await sa.ack('message:send', { chatId: chatA.id, message: { content: 'from node A' } });
    assert.equal(a.ok, true, JSON.stringify(a));
    await sock.waitFor('message:new', (d) => d.message.id === a.message.id);
    const b = await fromB;
    assert.equal(b.ok, true, JSON.stringify(b));
    return { a: a.message, b: b.message };
  }

  /**
   * Cuts the admin's connection and holds its reconnects until `meanwhile` resolves; then it
   * comes back, recovered, and everything sent to it before the barrier has arrived.
   */
  async function dropAndResume({ sock, p }, meanwhile = async () => {}) {
    const gone = disconnected(sock);
    p.hold();
    p.cut();
    await gone;
    await meanwhile();
    const back = nextConnect(sock, 10000);
    p.release();
    await back;
    assert.equal(sock.socket.recovered, true, 'recovered');
    await sock.barrier();
  }

  const times = (client, id) => client.received('message:new', (d) => d.message.id === id).length;

  test("dropped between the two: B's message (the earlier offset, heard later) is replayed", { todo: TODO }, async () => {
    const ctx = await arrange();
    const { sock, watcher } = ctx;
    const { a, b } = await twoNodesOutOfOrder(ctx);
    // The arrangement held: the admin has A's message and not yet B's.
    assert.equal(times(sock, b.id), 0, "the admin heard B's message before A's: nothing was reordered");

    await dropAndResume(ctx, () => watcher.waitFor('message:new', (d) => d.message.id === b.id, 5000));
    assert.equal(times(sock, a.id), 1, "A's message once");
    assert.equal(times(sock, b.id), 1, "B's message (logged before A's, heard after the drop) once");
  });

  test("dropped after both: A's message (the later offset, heard first) is not replayed again", { todo: TODO }, async () => {
    const ctx = await arrange();
    const { sock } = ctx;
    const { a, b } = await twoNodesOutOfOrder(ctx);
    await sock.waitFor('message:new', (d) => d.message.id === b.id, 5000);

    await dropAndResume(ctx);
    assert.equal(times(sock, b.id), 1, "B's message once");
    assert.equal(times(sock, a.id), 1, "A's message once, not replayed after B's earlier offset");
  });
});
