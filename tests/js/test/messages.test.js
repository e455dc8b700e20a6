// message:send / message:new, clientMessageId retries, message:read and chat:sync, with the
// authorization of each: participants and staff only, nothing revealed to anyone else.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  OBJECT_ID, api, connect, history, isTimestamp, makeUser, openChat, startNode, uid,
} from '../lib/harness.js';

/** Checks the Message shape of PROTOCOL.md. */
function assertMessage(m, { chatId, sender, content, seq }) {
  assert.match(m.id, OBJECT_ID);
  assert.equal(m.chatId, chatId);
  assert.equal(m.seq, seq);
  assert.equal(m.senderId, sender.id);
  assert.equal(m.senderName, sender.name);
  assert.equal(m.senderRole, sender.role);
  assert.equal(m.content, content);
  assert.equal(m.type, 'text');
  assert.ok(isTimestamp(m.timestamp), `timestamp ${m.timestamp} is RFC 3339 UTC`);
  assert.ok(Math.abs(Date.parse(m.timestamp) - Date.now()) < 60_000);
  assert.equal(m.status, 'sent');
}

/** Posts `n` messages through REST, a few at a time. */
async function postMany(node, user, chatId, n) {
  for (let i = 0; i < n; i += 25) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 25); j++) {
      batch.push(api(node, 'POST', `/api/chats/${chatId}/messages`, { user, body: { message: { content: `bulk ${j}` } } }));
    }
    for (const r of await Promise.all(batch)) assert.equal(r.status, 201);
  }
}

describe('messages', () => {
  let node;
  let alice; let bob; let admin; let admin2;
  let aliceTab1; let aliceTab2; let bobSock; let adminSock; let admin2Sock;
  let chat; let bobChat;

  before(async () => {
    // postMany writes hundreds of messages as one user: far past the default REST write budget
    node = await startNode({ env: { RATE_LIMIT_PER_SEC: '1000' } });
    alice = makeUser('alice');
    bob = makeUser('bob');
    admin = makeUser('admin', 'admin');
    admin2 = makeUser('super', 'superadmin');
    chat = await openChat(node, alice, { title: 'Order 17 never arrived' });
    bobChat = await openChat(node, bob);
    [aliceTab1, aliceTab2, bobSock, adminSock, admin2Sock] = await Promise.all([
      connect(node, alice), connect(node, alice), connect(node, bob), connect(node, admin), connect(node, admin2),
    ]);
  });
  after(async () => {
    for (const c of [aliceTab1, aliceTab2, bobSock, adminSock, admin2Sock]) c?.close();
    await node?.destroy();
  });

  const everyone = () => [aliceTab1, aliceTab2, bobSock, adminSock, admin2Sock];
  const barriers = () => Promise.all(everyone().map((c) => c.barrier()));

  test('message:send saves, acks { ok, message } and reaches every participant and admin socket exactly once', async () => {
    const ack = await aliceTab1.ack('message:send', { chatId: chat.id, message: { content: '  where is my order?  ' } });
    assert.equal(ack.ok, true);
    assertMessage(ack.message, { chatId: chat.id, sender: alice, content: 'where is my order?', seq: 1 });
    for (const s of [aliceTab1, aliceTab2, adminSock, admin2Sock]) {
      const ev = await s.waitFor('message:new', (p) => p.message.id === ack.message.id);
      assert.equal(ev.chatId, chat.id);
      assert.deepEqual(ev.message, ack.message);
    }
    await barriers();
    for (const s of [aliceTab1, aliceTab2, adminSock, admin2Sock]) {
      assert.equal(s.received('message:new', (p) => p.message.id === ack.message.id).length, 1);
    }
    assert.equal(bobSock.received('message:new', (p) => p.chatId === chat.id).length, 0, 'a non-participant never hears of it');
  });

  test('a staff participant (in both its user room and admins) gets each message:new once per socket', async () => {
    const res = await api(node, 'POST', '/api/chats', { user: admin, body: { participantId: alice.id } });
    assert.equal(res.status, 201);
    const staffChat = res.body;
    const adminTab2 = await connect(node, admin);
    const ack = await aliceTab1.ack('message:send', { chatId: staffChat.id, message: { content: 'to my assigned admin' } });
    await Promise.all([adminSock, adminTab2].map((s) => s.waitFor('message:new', (p) => p.message.id === ack.message.id)));
    await Promise.all([adminSock.barrier(), adminTab2.barrier()]);
    for (const s of [adminSock, adminTab2]) assert.equal(s.received('message:new', (p) => p.message.id === ack.message.id).length, 1);
    adminTab2.close();
  });

  test('seq counts 1, 2, 3 in save order, for users and staff alike', async () => {
    const a2 = await aliceTab2.ack('message:send', { chatId: chat.id, message: { content: 'second', type: 'text' } });
    const a3 = await adminSock.ack('message:send', { chatId: chat.id, message: { content: 'looking into it' } });
    assert.equal(a2.message.seq, 2);
    assertMessage(a3.message, { chatId: chat.id, sender: admin, content: 'looking into it', seq: 3 });
    const ev = await aliceTab1.waitFor('message:new', (p) => p.message.id === a3.message.id);
    assert.equal(ev.message.senderRole, 'admin');
    const saved = await history(node, alice, chat.id);
    assert.deepEqual(saved.map((m) => m.seq), [1, 2, 3]);
    assert.deepEqual(saved.map((m) => m.content), ['where is my order?', 'second', 'looking into it']);
  });

  test('a clientMessageId retry returns the first save, emits nothing and uses up no seq', async () => {
    const cmid = uid('cmid');
    const first = await aliceTab1.ack('message:send', { chatId: chat.id, message: { content: 'once only' }, clientMessageId: cmid });
    assert.equal(first.ok, true);
    assert.equal(first.message.clientMessageId, cmid);
    await adminSock.waitFor('message:new', (p) => p.message.id === first.message.id);
    // the retry comes from another tab (as after a reconnect) and even with different content
    const retry = await aliceTab2.ack('message:send', { chatId: chat.id, message: { content: 'once only' }, clientMessageId: cmid });
    assert.deepEqual(retry, first);
    const next = await aliceTab1.ack('message:send', { chatId: chat.id, message: { content: 'after the retry' } });
    assert.equal(next.message.seq, first.message.seq + 1);
    await barriers();
    for (const s of [aliceTab1, aliceTab2, adminSock, admin2Sock]) {
      assert.equal(s.received('message:new', (p) => p.message.id === first.message.id).length, 1);
    }
    const saved = await history(node, alice, chat.id);
    assert.equal(saved.filter((m) => m.content === 'once only').length, 1);
  });

  test('concurrent retries of one clientMessageId from two tabs and REST save exactly one message', async () => {
    const c = await openChat(node, alice);
    const cmid = uid('race');
    const body = { chatId: c.id, message: { content: 'sent twice at once' }, clientMessageId: cmid };
    const results = await Promise.all([
      aliceTab1.ack('message:send', body), aliceTab2.ack('message:send', body),
      aliceTab1.ack('message:send', body), aliceTab2.ack('message:send', body),
      api(node, 'POST', `/api/chats/${c.id}/messages`, { user: alice, body: { message: body.message, clientMessageId: cmid } }),
    ]);
    const rest = results.pop();
    assert.ok([200, 201].includes(rest.status));
    const ids = new Set([...results.map((r) => r.message.id), rest.body.id]);
    assert.equal(ids.size, 1, 'every retry got the same message');
    assert.equal((await history(node, alice, c.id)).length, 1);
    await Promise.all([adminSock.barrier(), aliceTab1.barrier()]);
    assert.equal(adminSock.received('message:new', (p) => p.chatId === c.id).length, 1);
    assert.equal(aliceTab1.received('message:new', (p) => p.chatId === c.id).length, 1);
  });

  test('the same clientMessageId from another sender is a different message', async () => {
    const cmid = uid('shared');
    const fromBob = await bobSock.ack('message:send', { chatId: bobChat.id, message: { content: 'bob says' }, clientMessageId: cmid });
    const fromAlice = await aliceTab1.ack('message:send', { chatId: chat.id, message: { content: 'alice says' }, clientMessageId: cmid });
    assert.equal(fromBob.ok, true);
    assert.equal(fromAlice.ok, true);
    assert.notEqual(fromBob.message.id, fromAlice.message.id);
  });

  test('a non-participant is FORBIDDEN everywhere in the chat and learns nothing about it', async () => {
    const before = await history(node, alice, chat.id);
    const attempts = {
      'message:send': { chatId: chat.id, message: { content: 'let me in' } },
      'user:typing:start': { chatId: chat.id },
      'user:typing:stop': { chatId: chat.id },
      'message:read': { chatId: chat.id, messageId: before[0].id },
      'chat:sync': { chatId: chat.id, afterSeq: 0 },
    };
    for (const [event, payload] of Object.entries(attempts)) {
      const res = await bobSock.ack(event, payload);
      assert.equal(res.ok, false, event);
      assert.equal(res.error.code, 'FORBIDDEN', event);
      const text = JSON.stringify(res);
      for (const secret of [alice.id, chat.title, before[0].content]) assert.ok(!text.includes(secret), `${event} reveals ${secret}`);
      assert.deepEqual(Object.keys(res).sort(), ['error', 'ok']);
    }
    // without an ack the refusal is an `error` event
    bobSock.emit('message:send', { chatId: chat.id, message: { content: 'no ack' } });
    const err = await bobSock.waitFor('error', (e) => e.event === 'message:send');
    assert.deepEqual(Object.keys(err).sort(), ['error', 'event', 'message']);
    assert.equal(err.error, 'FORBIDDEN');
    assert.deepEqual((await history(node, alice, chat.id)).map((m) => m.id), before.map((m) => m.id), 'nothing was saved');
    await barriers();
    assert.equal(bobSock.received('message:new', (p) => p.chatId === chat.id).length, 0);
    assert.equal(bobSock.received('user:typing', (p) => p.chatId === chat.id).length, 0);
    assert.equal(bobSock.received('message:read', (p) => p.chatId === chat.id).length, 0);
  });

  test('limits count Unicode code points, and the limits themselves are accepted', async () => {
    const c = await openChat(node, alice);
    const emoji = '\u{1F600}'; // two UTF-16 units, one code point
    const atLimit = await aliceTab1.ack('message:send', { chatId: c.id, message: { content: emoji.repeat(5000) }, clientMessageId: 'k'.repeat(64) });
    assert.equal(atLimit.ok, true, JSON.stringify(atLimit.error));
    assert.equal([...atLimit.message.content].length, 5000);
    const over = await aliceTab1.ack('message:send', { chatId: c.id, message: { content: emoji.repeat(5001) } });
    assert.equal(over.error.code, 'VALIDATION');
    const file = await aliceTab1.ack('message:send', { chatId: c.id, message: { type: 'file', fileUrl: 'https://cdn.example.com/f', fileName: emoji.repeat(255) } });
    assert.equal(file.ok, true, JSON.stringify(file.error));
    assert.equal((await history(node, alice, c.id)).length, 2);
  });

  test('a chat that does not exist is NOT_FOUND, a malformed chat id is VALIDATION', async () => {
    const missing = await aliceTab1.ack('message:send', { chatId: 'a'.repeat(24), message: { content: 'hello?' } });
    assert.equal(missing.error.code, 'NOT_FOUND');
    const malformed = await aliceTab1.ack('message:send', { chatId: 'not-an-id', message: { content: 'hello?' } });
    assert.equal(malformed.error.code, 'VALIDATION');
  });

  test('message:read marks what the reader did not send, tells participants and admins, and shows in history', async () => {
    const c = await openChat(node, alice);
    const m1 = (await aliceTab1.ack('message:send', { chatId: c.id, message: { content: 'one' } })).message;
    const m2 = (await aliceTab1.ack('message:send', { chatId: c.id, message: { content: 'two' } })).message;
    const m3 = (await adminSock.ack('message:send', { chatId: c.id, message: { content: 'three from staff' } })).message;
    const m4 = (await aliceTab1.ack('message:send', { chatId: c.id, message: { content: 'four' } })).message;

    const ack = await adminSock.ack('message:read', { chatId: c.id, messageId: m2.id });
    assert.equal(ack.ok, true);
    for (const s of [aliceTab1, aliceTab2, adminSock, admin2Sock]) {
      const ev = await s.waitFor('message:read', (p) => p.chatId === c.id && p.messageId === m2.id);
      assert.equal(ev.readBy, admin.id);
      assert.ok(isTimestamp(ev.readAt));
    }
    // staff and alice are online: what is not read is delivered (docs/delivery.md)
    await aliceTab1.waitFor('message:delivered', (p) => p.messageId === m3.id);
    await aliceTab1.waitFor('message:delivered', (p) => p.messageId === m4.id);
    let saved = await history(node, alice, c.id);
    assert.deepEqual(saved.map((m) => [m.seq, m.status]), [[1, 'read'], [2, 'read'], [3, 'delivered'], [4, 'delivered']]);

    // reading again changes nothing and is still announced
    assert.equal((await adminSock.ack('message:read', { chatId: c.id, messageId: m1.id })).ok, true);
    await aliceTab1.waitFor('message:read', (p) => p.messageId === m1.id && p.readBy === admin.id);

    // the user reads up to the newest: only the staff message changes (she sent the others)
    assert.equal((await aliceTab2.ack('message:read', { chatId: c.id, messageId: m4.id })).ok, true);
    const ev = await admin2Sock.waitFor('message:read', (p) => p.messageId === m4.id);
    assert.equal(ev.readBy, alice.id);
    saved = await history(node, alice, c.id);
    assert.deepEqual(saved.map((m) => [m.seq, m.status]), [[1, 'read'], [2, 'read'], [3, 'read'], [4, 'delivered']]);
    assert.equal(m3.status, 'sent');

    // without an ack, success is silent and a failure is an `error` event
    aliceTab1.emit('message:read', { chatId: c.id, messageId: 'f'.repeat(24) });
    const err = await aliceTab1.waitFor('error', (e) => e.event === 'message:read');
    assert.equal(err.error, 'NOT_FOUND');
    await barriers();
    assert.equal(bobSock.received('message:read', (p) => p.chatId === c.id).length, 0);
  });

  test('a message id from another chat is NOT_FOUND for message:read', async () => {
    const other = (await bobSock.ack('message:send', { chatId: bobChat.id, message: { content: 'mine' } })).message;
    const res = await aliceTab1.ack('message:read', { chatId: chat.id, messageId: other.id });
    assert.equal(res.ok, false);
    assert.equal(res.error.code, 'NOT_FOUND');
    const bobView = await history(node, bob, bobChat.id);
    assert.ok(bobView.every((m) => m.status !== 'read'));
  });

  test('chat:sync returns what follows afterSeq, oldest first, with hasMore, limit default 100 and max 500', async () => {
    const c = await openChat(node, alice);
    await postMany(node, alice, c.id, 501);

    const small = await aliceTab1.ack('chat:sync', { chatId: c.id, afterSeq: 3, limit: 2 });
    assert.equal(small.ok, true);
    assert.deepEqual(small.messages.map((m) => m.seq), [4, 5]);
    assert.equal(small.hasMore, true);

    const byDefault = await aliceTab1.ack('chat:sync', { chatId: c.id, afterSeq: 0 });
    assert.equal(byDefault.messages.length, 100);
    assert.deepEqual(byDefault.messages.map((m) => m.seq), Array.from({ length: 100 }, (_, i) => i + 1));
    assert.equal(byDefault.hasMore, true);

    const clamped = await adminSock.ack('chat:sync', { chatId: c.id, afterSeq: 0, limit: 100000 });
    assert.equal(clamped.messages.length, 500);
    assert.equal(clamped.hasMore, true);

    const tail = await adminSock.ack('chat:sync', { chatId: c.id, afterSeq: 1, limit: 500 });
    assert.equal(tail.messages.length, 500);
    assert.equal(tail.messages.at(-1).seq, 501);
    assert.equal(tail.hasMore, false);

    const caughtUp = await aliceTab1.ack('chat:sync', { chatId: c.id, afterSeq: 501 });
    assert.deepEqual(caughtUp, { ok: true, messages: [], hasMore: false });

    for (const limit of [0, -3, 'x', 2.5, true, {}]) {
      const res = await aliceTab1.ack('chat:sync', { chatId: c.id, afterSeq: 0, limit });
      assert.equal(res.ok, false, `limit ${JSON.stringify(limit)}`);
      assert.equal(res.error.code, 'VALIDATION', `limit ${JSON.stringify(limit)}`);
    }
    for (const afterSeq of [-1, 'x', null, undefined]) {
      const res = await aliceTab1.ack('chat:sync', { chatId: c.id, afterSeq });
      assert.equal(res.error?.code, 'VALIDATION', `afterSeq ${JSON.stringify(afterSeq)}`);
    }
  });

  test('a client that was offline catches up with exactly the messages it missed', async () => {
    const c = await openChat(node, alice);
    const tab = await connect(node, alice);
    const seen = (await tab.ack('message:send', { chatId: c.id, message: { content: 'before going offline' } })).message;
    tab.close();
    const missed = [];
    for (const content of ['while', 'you', 'were away']) {
      missed.push((await adminSock.ack('message:send', { chatId: c.id, message: { content } })).message);
    }
    const back = await connect(node, alice);
    // alice's other tabs got them live, so their status may have become `delivered` since
    // the acks (docs/delivery.md); everything else is exactly what was sent
    const sansStatus = (ms) => ms.map(({ status, ...m }) => m);
    const sync = await back.ack('chat:sync', { chatId: c.id, afterSeq: seen.seq });
    assert.deepEqual({ ...sync, messages: sansStatus(sync.messages) }, { ok: true, messages: sansStatus(missed), hasMore: false });
    assert.ok(sync.messages.every((m) => ['sent', 'delivered'].includes(m.status)));
    const rest = await api(node, 'GET', `/api/chats/${c.id}/messages?afterSeq=${seen.seq}`, { user: alice });
    assert.deepEqual({ ...rest.body, messages: sansStatus(rest.body.messages) }, { messages: sansStatus(missed), hasMore: false });
    assert.ok(rest.body.messages.every((m) => m.status === 'delivered'), 'delivered by now, on every call');
    back.close();
  });

  test('a sender receives its own messages in the order it sent them', async () => {
    const c = await openChat(node, alice);
    const acks = await Promise.all(
      Array.from({ length: 10 }, (_, i) => aliceTab1.ack('message:send', { chatId: c.id, message: { content: `n${i}` } })),
    );
    assert.ok(acks.every((a) => a.ok));
    const last = acks.map((a) => a.message).sort((x, y) => x.seq - y.seq).at(-1);
    await adminSock.waitFor('message:new', (p) => p.message.id === last.id);
    const seqs = adminSock.received('message:new', (p) => p.chatId === c.id).map((p) => p.message.seq);
    assert.deepEqual(seqs, Array.from({ length: 10 }, (_, i) => i + 1));
    const contents = adminSock.received('message:new', (p) => p.chatId === c.id).map((p) => p.message.content);
    assert.deepEqual(contents, Array.from({ length: 10 }, (_, i) => `n${i}`));
  });
});
