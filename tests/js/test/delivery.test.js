// Delivery status with the official socket.io-client (docs/delivery.md): a user's message to
// staff on another node (two nodes on a real redis-server) becomes `delivered` with one
// `message:delivered`; an offline recipient keeps it `sent` until they fetch it; the client's
// `message:delivered` and its refusal for non-participants; read implies delivered; every node's
// history agrees.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  api, connect, history, isTimestamp, makeUser, openChat, startNode, startRedis, tempDataDir, waitUntil,
} from '../lib/harness.js';

/** Resolves when no `event` matching `pred` arrives within `ms` (rejects if one does). */
async function none(client, event, pred = () => true, ms = 400) {
  await assert.rejects(client.waitFor(event, pred, ms), /no 'message:delivered'|no '/);
}

describe('delivery status', () => {
  let redis; let a; let b;

  before(async () => {
    redis = await startRedis();
    const dataDir = tempDataDir();
    const env = (id) => ({ REDIS_URL: redis.url, NODE_ID: id });
    a = await startNode({ dataDir, env: env('js-a') });
    b = await startNode({ dataDir, env: env('js-b') });
  });
  after(async () => {
    await a?.destroy();
    await b?.destroy();
    await redis?.stop();
  });

  test("a user's message to staff on another node is delivered once, and every node agrees", async () => {
    const alice = makeUser('alice');
    const admin = makeUser('admin', 'admin');
    const chat = (await api(b, 'POST', '/api/chats', { user: admin, body: { participantId: alice.id } })).body;
    const [staffB, staffA, user] = await Promise.all([connect(b, admin), connect(a, admin), connect(a, alice)]);
    try {
      await waitUntil(async () => (await api(a, 'GET', `/api/users/${admin.id}/status`, { user: admin })).body.sockets === 2,
        { what: 'staff presence on both nodes' });
      const sent = (await user.ack('message:send', { chatId: chat.id, message: { content: 'hi staff' } })).message;
      assert.equal(sent.status, 'sent');
      for (const s of [user, staffA, staffB]) {
        const ev = await s.waitFor('message:delivered', (p) => p.chatId === chat.id);
        assert.equal(ev.messageId, sent.id);
        assert.equal(ev.deliveredTo, admin.id);
        assert.ok(isTimestamp(ev.deliveredAt));
      }
      await none(staffB, 'message:delivered', (p) => p.chatId === chat.id);
      for (const node of [a, b]) {
        assert.deepEqual((await history(node, alice, chat.id)).map((m) => m.status), ['delivered']);
        assert.deepEqual((await history(node, admin, chat.id)).map((m) => m.status), ['delivered']);
      }
    } finally {
      for (const s of [staffB, staffA, user]) s.close();
    }
  });

  test("staff whose only socket is on another node: the sender's node decides the delivery live, once", async () => {
    const bob = makeUser('bob');
    const admin = makeUser('admin2', 'admin');
    const chat = (await api(b, 'POST', '/api/chats', { user: admin, body: { participantId: bob.id } })).body;
    const [staffB, user] = await Promise.all([connect(b, admin), connect(a, bob)]);
    try {
      await waitUntil(async () => (await api(a, 'GET', `/api/users/${admin.id}/status`, { user: admin })).body.sockets === 1,
        { what: 'staff presence seen from the sender\'s node' });
      const sent = (await user.ack('message:send', { chatId: chat.id, message: { content: 'anyone there?' } })).message;
      assert.equal(sent.status, 'sent');
      for (const s of [user, staffB]) {
        const ev = await s.waitFor('message:delivered', (p) => p.chatId === chat.id);
        assert.equal(ev.messageId, sent.id);
        assert.equal(ev.deliveredTo, admin.id);
      }
      await none(staffB, 'message:delivered', (p) => p.chatId === chat.id);
      for (const node of [a, b]) {
        assert.deepEqual((await history(node, bob, chat.id)).map((m) => m.status), ['delivered']);
      }
    } finally {
      for (const s of [staffB, user]) s.close();
    }
  });

  test('an offline recipient keeps it sent until they fetch it; read implies delivered; never back', async () => {
    const bob = makeUser('bob');
    const admin = makeUser('admin', 'admin');
    const chat = await openChat(a, bob);
    const user = await connect(a, bob);
    try {
      const m1 = (await user.ack('message:send', { chatId: chat.id, message: { content: 'one' } })).message;
      const m2 = (await user.ack('message:send', { chatId: chat.id, message: { content: 'two' } })).message;
      await none(user, 'message:delivered');
      assert.deepEqual((await history(b, bob, chat.id)).map((m) => m.status), ['sent', 'sent']);

      const staff = await connect(b, admin);
      try {
        await none(user, 'message:delivered');
        const synced = await staff.ack('chat:sync', { chatId: chat.id, afterSeq: 0 });
        assert.equal(synced.ok, true);
        const ev = await user.waitFor('message:delivered', (p) => p.chatId === chat.id);
        assert.equal(ev.messageId, m2.id);
        assert.equal(ev.deliveredTo, admin.id);
        assert.deepEqual((await history(a, bob, chat.id)).map((m) => m.status), ['delivered', 'delivered']);

        assert.equal((await staff.ack('message:read', { chatId: chat.id, messageId: m1.id })).ok, true);
        await user.waitFor('message:read', (p) => p.messageId === m1.id);
        for (const node of [a, b]) {
          assert.deepEqual((await history(node, admin, chat.id)).map((m) => m.status), ['read', 'delivered']);
        }
        await none(user, 'message:delivered');
      } finally {
        staff.close();
      }
    } finally {
      user.close();
    }
  });

  test('message:delivered from the client: the other side confirms, non-participants are refused', async () => {
    const carol = makeUser('carol');
    const eve = makeUser('eve');
    const admin = makeUser('admin', 'admin');
    const chat = await openChat(a, carol);
    const [user, stranger] = await Promise.all([connect(a, carol), connect(b, eve)]);
    try {
      const m = (await user.ack('message:send', { chatId: chat.id, message: { content: 'confirm' } })).message;
      const refused = await stranger.ack('message:delivered', { chatId: chat.id, messageId: m.id });
      assert.equal(refused.ok, false);
      assert.equal(refused.error.code, 'FORBIDDEN');
      assert.equal((await user.ack('message:delivered', { chatId: chat.id, messageId: m.id })).ok, true);
      await none(user, 'message:delivered');
      assert.deepEqual((await history(a, carol, chat.id)).map((x) => x.status), ['sent']);

      const staff = await connect(b, admin);
      try {
        assert.equal((await staff.ack('message:delivered', { chatId: chat.id, messageId: m.id })).ok, true);
        const ev = await user.waitFor('message:delivered', (p) => p.chatId === chat.id);
        assert.equal(ev.messageId, m.id);
        assert.deepEqual((await history(b, carol, chat.id)).map((x) => x.status), ['delivered']);
      } finally {
        staff.close();
      }
    } finally {
      user.close();
      stranger.close();
    }
  });
});
