// Connection state recovery with the official socket.io-client, used as an unchanged frontend
// would: listeners only (no chat:sync), reconnection on. A TCP proxy in the test cuts the
// client's connection mid-traffic, or holds its reconnects while the node restarts; every
// recoverable event emitted in the gap must arrive exactly once, in order, with
// `socket.recovered` true. Controls: a client that called disconnect(), another user's pid and
// a session older than the window are not recovered.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { io } from 'socket.io-client';
import {
  Client, api, connect, connected, disconnected, frontend as open, makeUser, nextConnect, openChat, proxy, seqs,
  startNode, tempDataDir, token, waitUntil,
} from '../lib/harness.js';

/** A client as a frontend opens it: reconnection on, fast back-off for the test. */
const frontend = (url, user) => open(url, user, { reconnectionDelay: 100, reconnectionDelayMax: 300 });

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('connection state recovery', () => {
  const cleanup = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });

  test('a connection cut mid-traffic is recovered: every event of the gap once, in order', async () => {
    const node = await startNode();
    cleanup.push(() => node.destroy());
    const p = await proxy(node.port);
    cleanup.push(() => p.close());
    const alice = makeUser('alice');
    const admin = makeUser('admin', 'admin');
    const chat = await openChat(node, alice, { title: 'Blip' });
    const staff = await connect(node, admin);
    cleanup.push(() => staff.close());
    const sock = frontend(p.url, alice);
    cleanup.push(() => sock.close());
    await connected(sock);
    assert.equal(sock.socket.recovered, false, 'a first connection is a new session');

    const own = await sock.ack('message:send', { chatId: chat.id, message: { content: 'mine' } });
    assert.equal(own.ok, true);
    await sock.waitFor('message:new', (d) => d.message.seq === 1);

    const gone = disconnected(sock);
    const back = nextConnect(sock);
    const sent = [];
    for (let i = 0; i < 30; i++) {
      if (i === 10) p.cut();
      const res = await staff.ack('message:send', { chatId: chat.id, message: { content: `m${i}` } });
      assert.equal(res.ok, true);
      sent.push(res.message.seq);
      if (i === 15) {
        const read = await staff.ack('message:read', { chatId: chat.id, messageId: own.message.id });
        assert.equal(read.ok, true);
        const report = await api(node, 'POST', '/api/reports', {
          user: admin, body: { userId: alice.id, title: 'In the gap', message: 'kept', status: 'Info' },
        });
        assert.equal(report.status, 201);
      }
    }
    await gone;
    await back;
    assert.equal(sock.socket.recovered, true, 'recovered after the cut');
    await sock.barrier();

    assert.deepEqual(seqs(sock, chat.id), [1, ...sent], 'every message:new once, in order');
    assert.equal(sock.received('message:read').length, 1, 'message:read of the gap once');
    assert.equal(sock.received('receiveReportMessage').length, 1, 'the report of the gap once');
    for (const rec of sock.events.filter((r) => r.event === 'message:new')) {
      assert.equal(rec.args.length, 2, 'payload, then the offset');
      assert.equal(typeof rec.args[1], 'string');
    }
    assert.deepEqual(
      staff.received('user:status', (d) => d.userId === alice.id && d.status === 'offline'),
      [],
      'admins saw no offline for a blip',
    );

    // Live traffic after the recovery still arrives, once.
    const later = await staff.ack('message:send', { chatId: chat.id, message: { content: 'after' } });
    await sock.waitFor('message:new', (d) => d.message.seq === later.message.seq);
    assert.deepEqual(seqs(sock, chat.id), [1, ...sent, later.message.seq]);
  });

  test('controls: disconnect() ends the session; another user\'s pid is refused and leaves it to its owner', async () => {
    const node = await startNode();
    cleanup.push(() => node.destroy());
    const p = await proxy(node.port);
    cleanup.push(() => p.close());
    const alice = makeUser('alice');
    const mallory = makeUser('mallory');
    const admin = makeUser('admin', 'admin');
    const chat = await openChat(node, alice, { title: 'Controls' });
    const staff = await connect(node, admin);
    cleanup.push(() => staff.close());

    const sock = frontend(p.url, alice);
    cleanup.push(() => sock.close());
    await connected(sock);
    await staff.ack('message:send', { chatId: chat.id, message: { content: 'first' } });
    await sock.waitFor('message:new', (d) => d.message.seq === 1);
    const pid = sock.socket._pid;
    const offset = sock.socket._lastOffset;
    assert.equal(typeof pid, 'string');
    assert.equal(typeof offset, 'string');

    // Cut, and hold alice's reconnects while mallory tries her pid and the gap fills.
    p.hold();
    const gone = disconnected(sock);
    p.cut();
    await gone;
    await staff.ack('message:send', { chatId: chat.id, message: { content: 'secret' } });
    const thief = await connect(node, { token: mallory.token, pid, offset });
    thief.user = mallory;
    assert.equal(thief.socket.recovered, false, 'another user\'s pid is not recovered');
    assert.notEqual(thief.socket._pid, pid, 'mallory gets a session of her own');
    await thief.barrier();
    assert.deepEqual(thief.received('message:new'), [], 'and none of alice\'s events');
    thief.close();
    const forged = await connect(node, { token: alice.token, pid: 'x'.repeat(22), offset: '99-99' });
    assert.equal(forged.socket.recovered, false, 'a forged pid is a new session');
    forged.close();
    const junk = await connect(node, { token: alice.token, pid: { not: 'a string' }, offset: 12 });
    assert.equal(junk.socket.recovered, false, 'a malformed pid is a new session');
    junk.close();

    const back = nextConnect(sock);
    p.release();
    await back;
    assert.equal(sock.socket.recovered, true, 'the owner still recovers after the failed attempts');
    await sock.barrier();
    assert.deepEqual(seqs(sock, chat.id), [1, 2]);

    // disconnect() ends the session: connecting again is a new one, and misses the gap.
    const pidBefore = sock.socket._pid;
    sock.socket.disconnect();
    await staff.ack('message:send', { chatId: chat.id, message: { content: 'while away' } });
    const again = nextConnect(sock);
    sock.socket.connect();
    await again;
    assert.equal(sock.socket.recovered, false, 'a client that called disconnect() is not recovered');
    assert.notEqual(sock.socket._pid, pidBefore);
    await sock.barrier();
    assert.deepEqual(seqs(sock, chat.id), [1, 2], 'nothing replayed to a new session');

    // A node's metrics count the outcomes.
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    assert.match(metrics, /switchboard_recovery_attempts_total\{[^}]*outcome="foreign"[^}]*\} [1-9]/);
    assert.match(metrics, /switchboard_recovery_attempts_total\{[^}]*outcome="recovered"[^}]*\} [1-9]/);
  });

  test('a session older than the window is not recovered', async () => {
    const node = await startNode({ env: { RECOVERY_WINDOW_SECS: '1' } });
    cleanup.push(() => node.destroy());
    const p = await proxy(node.port);
    cleanup.push(() => p.close());
    const alice = makeUser('alice');
    const admin = makeUser('admin', 'admin');
    const chat = await openChat(node, alice, { title: 'Late' });
    const sock = frontend(p.url, alice);
    cleanup.push(() => sock.close());
    await connected(sock);
    await api(node, 'POST', `/api/chats/${chat.id}/messages`, { user: admin, body: { message: { content: 'before' } } });
    await sock.waitFor('message:new');

    p.hold();
    const gone = disconnected(sock);
    p.cut();
    await gone;
    const cutAt = Date.now();
    await api(node, 'POST', `/api/chats/${chat.id}/messages`, { user: admin, body: { message: { content: 'gap' } } });
    await waitUntil(() => Date.now() - cutAt > 1500, { timeout: 3000, what: 'the window to pass' });
    const back = nextConnect(sock);
    p.release();
    await back;
    assert.equal(sock.socket.recovered, false, 'past the window: a new session');
    await sock.barrier();
    assert.deepEqual(seqs(sock, chat.id), [1], 'and nothing replayed (the client catches up with chat:sync)');
  });

  test('the offline grace: a reload shows no transition; offline once after the grace; online with no socket meanwhile', async () => {
    const node = await startNode({ env: { OFFLINE_GRACE_SECS: '1' } });
    cleanup.push(() => node.destroy());
    const alice = makeUser('alice');
    const admin = makeUser('admin', 'admin');
    const staff = await connect(node, admin);
    cleanup.push(() => staff.close());
    const status = (d) => d.userId === alice.id;

    const tab = await connect(node, alice);
    assert.equal((await staff.waitFor('user:status', status)).status, 'online');
    tab.close();
    const reloaded = await connect(node, alice);
    await staff.barrier();
    reloaded.close();
    // The close reaches the node a moment later: wait until it has no socket of hers, then
    // (the grace is 1 s) she is still online.
    const during = await waitUntil(async () => {
      const r = await api(node, 'GET', `/api/users/${alice.id}/status`, { user: admin });
      return r.body.sockets === 0 && r;
    }, { timeout: 900, what: 'the node to see the close' });
    assert.equal(during.body.status, 'online', 'still online during the grace');
    assert.equal((await staff.waitFor('user:status', status, 5000)).status, 'offline');
    const afterGrace = await api(node, 'GET', `/api/users/${alice.id}/status`, { user: admin });
    assert.equal(afterGrace.body.status, 'offline');
    await staff.barrier();
    assert.deepEqual(
      staff.received('user:status', status).map((d) => d.status),
      ['online', 'offline'],
      'one online, one offline: the reload made no transition',
    );
  });

  test('a single node drained and restarted on the same DATA_DIR recovers its clients', async () => {
    const dataDir = tempDataDir();
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const first = await startNode({ dataDir });
    cleanup.push(() => first.destroy());
    const p = await proxy(first.port);
    cleanup.push(() => p.close());
    const alice = makeUser('alice');
    const admin = makeUser('admin', 'admin');
    const chat = await openChat(first, alice, { title: 'Deploy' });
    const sock = frontend(p.url, alice);
    cleanup.push(() => sock.close());
    await connected(sock);
    await api(first, 'POST', `/api/chats/${chat.id}/messages`, { user: admin, body: { message: { content: 'before' } } });
    await sock.waitFor('message:new');

    p.hold();
    const gone = disconnected(sock);
    assert.deepEqual(await first.stop(), { code: 0, signal: null });
    await gone;
    const second = await startNode({ dataDir, port: first.port });
    cleanup.push(() => second.destroy());
    const posted = [];
    for (const content of ['a', 'b', 'c']) {
      const res = await api(second, 'POST', `/api/chats/${chat.id}/messages`, { user: admin, body: { message: { content } } });
      assert.equal(res.status, 201);
      posted.push(res.body.seq);
    }
    await api(second, 'POST', '/api/reports', {
      user: admin, body: { userId: alice.id, title: 'After deploy', message: 'kept', status: 'Warning' },
    });
    const back = nextConnect(sock);
    p.release();
    await back;
    assert.equal(sock.socket.recovered, true, 'recovered across the drain and restart');
    await sock.barrier();
    assert.deepEqual(seqs(sock, chat.id), [1, ...posted]);
    assert.equal(sock.received('receiveReportMessage').length, 1);
  });

  test('a socket whose token expires is closed, reconnects with the fresh token its auth function gives, and is recovered', async () => {
    // No leeway: the transport is closed as soon as `exp` passes.
    const node = await startNode({ env: { JWT_LEEWAY_SECS: '0' } });
    cleanup.push(() => node.destroy());
    const alice = makeUser('alice');
    const admin = makeUser('admin', 'admin');
    const chat = await openChat(node, alice, { title: 'Expiry' });
    const staff = await connect(node, admin);
    cleanup.push(() => staff.close());
    const now = () => Math.floor(Date.now() / 1000);
    // A frontend whose `auth` is a function: the first token lives 2 s, later ones an hour.
    const handed = [];
    const auth = (cb) => {
      handed.push(handed.length === 0 ? now() + 2 : now() + 3600);
      cb({ token: token(alice.id, 'user', { exp: handed.at(-1), name: alice.name }) });
    };
    const socket = io(node.url, {
      auth, transports: ['websocket'], forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 300,
    });
    const sock = new Client(socket, alice);
    cleanup.push(() => sock.close());
    await connected(sock);
    assert.equal(socket.recovered, false);

    const reason = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('not closed within 4 s of exp')), (handed[0] - now() + 4) * 1000);
      socket.once('disconnect', (r) => {
        clearTimeout(t);
        resolve(r);
      });
    });
    assert.ok(now() >= handed[0], 'closed no earlier than exp');
    assert.equal(reason, 'transport close', 'the transport, so the client reconnects by itself');
    const back = nextConnect(sock);
    const sent = await staff.ack('message:send', { chatId: chat.id, message: { content: 'while away' } });
    assert.equal(sent.ok, true);
    await back;

    assert.equal(socket.recovered, true, 'the session resumed with the new token');
    assert.equal(handed.length, 2, 'one fresh token for the reconnect');
    await sock.waitFor('message:new', (d) => d.message.seq === sent.message.seq);
    await sock.barrier();
    assert.deepEqual(seqs(sock, chat.id), [sent.message.seq], 'the message of the gap once');
  });
});
