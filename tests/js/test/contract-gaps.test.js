// The two contract gaps of issue 26, with the official socket.io-client (PROTOCOL.md, "Delivery
// status" and `user:status`): in a chat with an assigned admin, another admin's live receipt,
// history, chat:sync and confirmation deliver nothing and the assigned admin's confirmation does;
// with no staff participant, the only staff member on another node delivers live; a user whose
// only socket was on a drained node is announced offline once, by another node, after the grace
// (and not at all when they come back), and a single node drained and restarted announces them.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  api, connect, history, makeUser, openChat, startNode, startRedis, tempDataDir, waitUntil,
} from '../lib/harness.js';

const GRACE_SECS = 2;

/** Resolves when no `event` matching `pred` has arrived once a round trip is done and `ms` passed. */
async function none(client, event, pred = () => true, ms = 400) {
  await assert.rejects(client.waitFor(event, pred, ms), /no '/);
}

const statuses = async (node, who, chatId) => (await history(node, who, chatId)).map((m) => m.status);

describe('who a message is delivered to', () => {
  let redis; let a; let b;

  before(async () => {
    redis = await startRedis();
    const dataDir = tempDataDir();
    const env = (id) => ({ REDIS_URL: redis.url, NODE_ID: id });
    a = await startNode({ dataDir, env: env('gaps-a') });
    b = await startNode({ dataDir, env: env('gaps-b') });
  });
  after(async () => {
    await a?.destroy();
    await b?.destroy();
    await redis?.stop();
  });

  test('in a chat with an assigned admin, only the assigned admin delivers', async () => {
    const alice = makeUser('alice');
    const assigned = makeUser('assigned', 'admin');
    const other = makeUser('other', 'admin');
    const chat = (await api(a, 'POST', '/api/chats', { user: assigned, body: { participantId: alice.id } })).body;
    assert.equal(chat.assignedAdmin, assigned.id);
    const [user, watcher] = await Promise.all([connect(a, alice), connect(a, other)]);
    try {
      const m = (await user.ack('message:send', { chatId: chat.id, message: { content: 'help' } })).message;
      await watcher.waitFor('message:new', (p) => p.message.id === m.id);
      await none(user, 'message:delivered');
      await history(a, other, chat.id);
      assert.equal((await watcher.ack('chat:sync', { chatId: chat.id, afterSeq: 0 })).ok, true);
      assert.equal((await watcher.ack('message:delivered', { chatId: chat.id, messageId: m.id })).ok, true);
      await none(user, 'message:delivered');
      assert.deepEqual(await statuses(b, alice, chat.id), ['sent']);

      const agent = await connect(b, assigned);
      try {
        await none(user, 'message:delivered');
        assert.equal((await agent.ack('message:delivered', { chatId: chat.id, messageId: m.id })).ok, true);
        const ev = await user.waitFor('message:delivered', (p) => p.chatId === chat.id);
        assert.equal(ev.messageId, m.id);
        assert.equal(ev.deliveredTo, assigned.id);
        assert.deepEqual(await statuses(a, alice, chat.id), ['delivered']);
      } finally {
        agent.close();
      }
    } finally {
      user.close();
      watcher.close();
    }
  });

  test('with no staff participant, the only staff member on another node delivers live, once', async () => {
    const bob = makeUser('bob');
    const staff = makeUser('staff', 'admin');
    const chat = await openChat(a, bob);
    const [user, agent] = await Promise.all([connect(a, bob), connect(b, staff)]);
    try {
      await waitUntil(async () => (await api(a, 'GET', `/api/users/${staff.id}/status`, { user: staff })).body.sockets === 1,
        { what: 'staff presence seen from the sender\'s node' });
      const m = (await user.ack('message:send', { chatId: chat.id, message: { content: 'anyone?' } })).message;
      for (const s of [user, agent]) {
        const ev = await s.waitFor('message:delivered', (p) => p.chatId === chat.id);
        assert.equal(ev.messageId, m.id);
        assert.equal(ev.deliveredTo, staff.id);
      }
      await none(user, 'message:delivered');
      assert.deepEqual(await statuses(b, bob, chat.id), ['delivered']);
    } finally {
      user.close();
      agent.close();
    }
  });
});

describe('the offline a drain must not lose', () => {
  const offlineOf = (who) => (p) => p.userId === who.id && p.status === 'offline';
  const aboutUser = (who) => (p) => p.userId === who.id;

  test("a drained node's user is announced offline once, by another node, after the grace", async () => {
    const redis = await startRedis();
    const dataDir = tempDataDir();
    const env = (id) => ({
      REDIS_URL: redis.url, NODE_ID: id, OFFLINE_GRACE_SECS: String(GRACE_SECS),
      HEARTBEAT_INTERVAL_SECS: '1', PRESENCE_TTL_SECS: '3', DRAIN_DELAY_SECS: '0',
    });
    const stays = await startNode({ dataDir, env: env('stays') });
    const leaves = await startNode({ dataDir, env: env('leaves') });
    const carol = makeUser('carol');
    const dave = makeUser('dave');
    const admin = makeUser('admin', 'admin');
    const watcher = await connect(stays, admin);
    try {
      await Promise.all([connect(leaves, carol), connect(leaves, dave)]);
      await watcher.waitFor('user:status', (p) => p.userId === carol.id && p.status === 'online');
      await watcher.waitFor('user:status', (p) => p.userId === dave.id && p.status === 'online');
      const drained = Date.now();
      await leaves.stop();
      // dave comes back inside the grace (to the node that stays); carol does not.
      const back = await connect(stays, dave);
      await watcher.waitFor('user:status', offlineOf(carol), 15000);
      assert.ok(Date.now() - drained >= GRACE_SECS * 1000 - 100, 'not before the grace');
      // A few heartbeats more: nothing else about carol, nothing at all about dave.
      await none(watcher, 'user:status', aboutUser(carol), 3000);
      await watcher.barrier();
      assert.deepEqual(watcher.received('user:status', aboutUser(dave)).map((p) => p.status), ['online']);
      back.close();
    } finally {
      watcher.close();
      await leaves.destroy();
      await stays.destroy();
      await redis.stop();
    }
  });

  test('a single node drained and restarted announces the users who did not come back', async () => {
    const dataDir = tempDataDir();
    const env = { OFFLINE_GRACE_SECS: String(GRACE_SECS + 1), DRAIN_DELAY_SECS: '0' };
    const first = await startNode({ dataDir, env });
    const erin = makeUser('erin');
    const frank = makeUser('frank');
    await Promise.all([connect(first, erin), connect(first, frank)]);
    await waitUntil(async () => (await api(first, 'GET', `/api/users/${frank.id}/status`, { user: frank })).body.sockets === 1,
      { what: 'frank registered' });
    await waitUntil(async () => (await api(first, 'GET', `/api/users/${erin.id}/status`, { user: erin })).body.sockets === 1,
      { what: 'erin registered' });
    const drained = Date.now();
    await first.stop();
    const second = await startNode({ dataDir, env });
    const admin = makeUser('admin', 'admin');
    const watcher = await connect(second, admin);
    const back = await connect(second, frank);
    try {
      await watcher.waitFor('user:status', offlineOf(erin), 15000);
      assert.ok(Date.now() - drained >= (GRACE_SECS + 1) * 1000 - 100, 'not before the grace');
      await none(watcher, 'user:status', aboutUser(erin), 1000);
      assert.deepEqual(watcher.received('user:status', offlineOf(frank)), [], 'frank came back');
    } finally {
      back.close();
      watcher.close();
      await second.destroy();
    }
  });
});
