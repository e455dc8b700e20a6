// Connection state recovery across a cluster, as production runs it: a real redis-server, two
// nodes in cluster mode (REDIS_URL) and a real nginx in front with deploy/nginx/switchboard.conf
// (upstreams rewritten). The frontend is unchanged: the official socket.io-client with
// socket.io's default reconnection, listeners only, never `chat:sync`. Its node is drained
// (SIGTERM) or killed (SIGKILL); the client comes back through nginx on the other node, while
// staff there emit messages, a read receipt, a report and status changes of another user. Every
// event of the gap arrives once, in order, `socket.recovered` is true, and an admin watching
// sees no offline/online flicker of the reconnecting user (OFFLINE_GRACE_SECS at its default).
//
// A TCP proxy between the client and nginx holds the client's reconnects while the gap traffic
// is emitted, so that all of it is replayed rather than delivered live.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import {
  api, connect, connected, disconnected, frontend, makeUser, nextConnect, proxy, socketsOn, startNginx, startNode,
  startRedis, tempDataDir, waitUntil,
} from '../lib/harness.js';

/** The events an unchanged frontend listens to. */
const LISTENED = new Set(['message:new', 'receiveReportMessage', 'message:read', 'user:status']);

/** One received event as a short comparable line. */
function line(rec) {
  const d = rec.data;
  switch (rec.event) {
    case 'message:new': return `message:new ${d.message.seq}`;
    case 'message:read': return `message:read ${d.messageId}`;
    case 'receiveReportMessage': return `report ${d.message.id}`;
    default: return `user:status ${d.userId} ${d.status}`;
  }
}

/** The listened-to events `client` received from index `from` on, as lines. */
const heard = (client, from = 0) => client.events.slice(from).filter((r) => LISTENED.has(r.event)).map(line);

describe('connection state recovery across two nodes behind nginx', () => {
  const cleanup = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });

  /**
   * Two nodes on one data directory and their own Redis, nginx in front. A drain keeps serving
   * (`/readyz` 503) for DRAIN_DELAY_SECS before it closes its sockets; presence finds a killed
   * node dead within PRESENCE_TTL_SECS.
   */
  async function cluster(name) {
    // Each cluster its own Redis, as each cluster its own store: nodes sharing a Redis are one
    // cluster to presence, and a node of the other test (still running until `after`) would
    // claim this cluster's due offlines and announce them from a store that has none of its
    // chats (admins hear them through the shared adapter, chat partners do not).
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const dataDir = tempDataDir();
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const env = (id) => ({
      REDIS_URL: redis.url,
      NODE_ID: `${name}-${id}`,
      DRAIN_DELAY_SECS: '6',
      SHUTDOWN_GRACE_SECS: '15',
      PRESENCE_TTL_SECS: '3',
      HEARTBEAT_INTERVAL_SECS: '1',
    });
    const nodes = [await startNode({ dataDir, env: env('a') }), await startNode({ dataDir, env: env('b') })];
    for (const n of nodes) cleanup.push(() => n.destroy());
    const lb = await startNginx(nodes);
    cleanup.push(() => lb.stop());
    return { nodes, lb };
  }

  /**
   * Alice's frontend through a proxy to nginx, connected; staff `admin` watching on the node she
   * is not on; `carol` (staff, offline) a participant of alice's chat, so alice hears her status.
   * Alice's own message is seq 1. Returns who is where.
   */
  async function arrange(name) {
    const { nodes, lb } = await cluster(name);
    const alice = makeUser('alice');
    const admin = makeUser('admin', 'admin');
    const carol = makeUser('carol', 'admin');
    const opened = await api(nodes[0], 'POST', '/api/chats', { user: carol, body: { participantId: alice.id } });
    assert.equal(opened.status, 201, opened.text);
    const chat = opened.body;
    const p = await proxy(lb.port);
    cleanup.push(() => p.close());
    const sock = frontend(p.url, alice);
    cleanup.push(() => sock.close());
    await connected(sock);
    assert.equal(sock.socket.recovered, false, 'a first connection is a new session');
    const counts = await waitUntil(async () => {
      const c = await Promise.all(nodes.map(socketsOn));
      return c[0] + c[1] === 1 && c;
    }, { what: "alice's socket on one node" });
    const [doomed, survivor] = counts[0] === 1 ? nodes : [nodes[1], nodes[0]];
    const staff = await connect(survivor, admin);
    cleanup.push(() => staff.close());
    const own = await sock.ack('message:send', { chatId: chat.id, message: { content: 'mine' } });
    assert.equal(own.ok, true, JSON.stringify(own));
    await staff.waitFor('message:new', (d) => d.message.id === own.message.id);
    await sock.barrier();
    return { nodes, lb, p, alice, admin, carol, chat, sock, own, doomed, survivor, staff };
  }

  /**
   * Staff on `survivor` emit the gap's traffic: two messages, a read of alice's message, a
   * report to alice, carol coming online, a third message. Resolves with the lines alice must
   * hear, in order, and carol's socket.
   */
  async function gapTraffic({ survivor, staff, admin, alice, carol, chat, own }) {
    const expected = [];
    const send = async (content) => {
      const res = await staff.ack('message:send', { chatId: chat.id, message: { content } });
      assert.equal(res.ok, true, JSON.stringify(res));
      expected.push(`message:new ${res.message.seq}`);
    };
    await send('gap 1');
    await send('gap 2');
    const read = await staff.ack('message:read', { chatId: chat.id, messageId: own.message.id });
    assert.equal(read.ok, true, JSON.stringify(read));
    expected.push(`message:read ${own.message.id}`);
    const report = await api(survivor, 'POST', '/api/reports', {
      user: admin, body: { userId: alice.id, title: 'In the gap', message: 'kept', status: 'Info' },
    });
    assert.equal(report.status, 201, report.text);
    expected.push(`report ${report.body.id}`);
    const carolSock = await connect(survivor, carol);
    await staff.waitFor('user:status', (d) => d.userId === carol.id && d.status === 'online');
    expected.push(`user:status ${carol.id} online`);
    await send('gap 3');
    return { expected, carolSock };
  }

  /**
   * Carol leaves; once the admin hears her offline (OFFLINE_GRACE_SECS later), any offline of
   * alice that an earlier moment started would have come too. Alice hears carol's offline live.
   */
  async function noFlicker({ staff, sock, carol, alice, carolSock }) {
    carolSock.close();
    await staff.waitFor('user:status', (d) => d.userId === carol.id && d.status === 'offline', 15000);
    await sock.waitFor('user:status', (d) => d.userId === carol.id && d.status === 'offline', 5000);
    await staff.barrier();
    assert.deepEqual(staff.received('user:status', (d) => d.userId === alice.id), [],
      'the admin saw no offline/online of alice');
  }

  test('SIGTERM: a client that reconnects while its node drains comes back on the other node, recovered, with every event of the gap once', async () => {
    const a = await arrange('term');
    const { sock, doomed, survivor, lb, p } = a;
    const mark = sock.events.length;

    // Act: drain alice's node; while it still serves (`/readyz` 503), her connection drops.
    doomed.child.kill('SIGTERM');
    await waitUntil(async () => (await fetch(`${doomed.url}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 503,
      { what: 'the drain to begin' });
    // A frontend opening now (another user's new tab) must get in, on the other node.
    const dave = makeUser('dave');
    const tab = frontend(lb.url, dave);
    cleanup.push(() => tab.close());
    tab.socket.on('connect_error', (e) => { tab.connectError = e.message; });
    await connected(tab, 15000).catch((e) => {
      throw new Error(`a new frontend during the drain: ${e.message} (connect_error: ${tab.connectError})`);
    });
    p.hold();
    const gone = disconnected(sock);
    p.cut();
    await gone;
    const { expected, carolSock } = await gapTraffic(a);
    let drainingAtReconnect;
    const back = nextConnect(sock, 20000);
    sock.socket.once('connect', () => { drainingAtReconnect = doomed.alive; });
    let refused;
    sock.socket.on('connect_error', (e) => { refused = e.message; });
    p.release();
    await back.catch((e) => {
      throw new Error(`${e.message}; connect_error: ${refused}`);
    });

    // Assert
    assert.equal(drainingAtReconnect, true, 'the reconnect happened while the node drained');
    assert.equal(sock.socket.recovered, true, 'recovered on the other node');
    assert.ok((await socketsOn(survivor)) >= 2, 'alice and dave are on the surviving node');
    await sock.barrier();
    assert.deepEqual(heard(sock, mark), expected, 'every event of the gap once, in order');
    assert.deepEqual(await doomed.exited, { code: 0, signal: null }, 'the drained node exits cleanly');
    await noFlicker({ ...a, carolSock });
    tab.close();
  });

  test('SIGKILL: the client of a killed node comes back through nginx on the other node, recovered, with every event of the gap once', async () => {
    const a = await arrange('kill');
    const { sock, doomed, survivor, alice, admin, p } = a;
    const mark = sock.events.length;

    // Act: hold alice's reconnects, kill her node; nginx loses its upstream connection and
    // closes hers.
    p.hold();
    const gone = disconnected(sock);
    doomed.child.kill('SIGKILL');
    await gone;
    const { expected, carolSock } = await gapTraffic(a);
    const back = nextConnect(sock, 20000);
    p.release();
    await back;

    // Assert
    assert.equal(doomed.alive, false);
    assert.equal(sock.socket.recovered, true, 'recovered on the other node');
    await sock.barrier();
    assert.deepEqual(heard(sock, mark), expected, 'every event of the gap once, in order');
    // The dead node's socket of alice is reaped from presence (her count drops to the one she
    // has now); the offline grace of that reap is what noFlicker waits out.
    await waitUntil(async () => (await api(survivor, 'GET', `/api/users/${alice.id}/status`, { user: admin })).body.sockets === 1,
      { timeout: 15000, what: "the dead node's socket of alice to be reaped" });
    await noFlicker({ ...a, carolSock });
  });
});
