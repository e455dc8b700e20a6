// /api/chats: open, list (unreadCount, filters, cursor pages), read, update, history and
// posting messages, with each endpoint's authorization rules and status codes.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  OBJECT_ID, api, connect, history, isTimestamp, makeUser, openChat, startNode, token, uid,
} from '../lib/harness.js';

describe('REST chats', () => {
  let node;
  let alice; let bob; let admin; let admin2;
  before(async () => {
    node = await startNode();
    alice = makeUser('alice');
    bob = makeUser('bob');
    admin = makeUser('admin', 'admin');
    admin2 = makeUser('super', 'superadmin');
  });
  after(() => node?.destroy());

  test('POST /api/chats: a user opens a support chat for themself (201 Chat)', async () => {
    const res = await api(node, 'POST', '/api/chats', { user: alice, body: { title: 'Broken login', priority: 'high' } });
    assert.equal(res.status, 201);
    const c = res.body;
    assert.match(c.id, OBJECT_ID);
    assert.deepEqual(c.participants, [alice.id]);
    assert.equal(c.chatType, 'support');
    assert.equal(c.title, 'Broken login');
    assert.equal(c.status, 'open');
    assert.equal(c.priority, 'high');
    assert.equal(c.assignedAdmin, undefined);
    assert.equal(c.lastMessage, undefined);
    assert.ok(isTimestamp(c.createdAt));
    assert.ok(isTimestamp(c.updatedAt));

    const plain = await api(node, 'POST', '/api/chats', { user: alice, body: {} });
    assert.equal(plain.status, 201);
    assert.equal(typeof plain.body.title, 'string');
    assert.equal(plain.body.priority, 'medium');
    const noBody = await api(node, 'POST', '/api/chats', { user: alice });
    assert.equal(noBody.status, 201);

    const forOther = await api(node, 'POST', '/api/chats', { user: alice, body: { participantId: bob.id } });
    assert.equal(forOther.status, 403);
  });

  test('POST /api/chats: staff open a chat with { participantId } and are its assignedAdmin and a participant', async () => {
    const res = await api(node, 'POST', '/api/chats', { user: admin, body: { participantId: bob.id, title: 'Follow-up' } });
    assert.equal(res.status, 201);
    assert.deepEqual(new Set(res.body.participants), new Set([bob.id, admin.id]));
    assert.equal(res.body.assignedAdmin, admin.id);
    const missing = await api(node, 'POST', '/api/chats', { user: admin, body: {} });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.code, 'VALIDATION');
  });

  test('POST /api/chats: no or bad token is 401; bad fields are 400 VALIDATION and create nothing', async () => {
    const carl = makeUser('carl');
    assert.equal((await api(node, 'POST', '/api/chats', { body: {} })).status, 401);
    const expired = await api(node, 'POST', '/api/chats', { token: token(carl.id, 'user', { exp: 1000 }), body: {} });
    assert.equal(expired.status, 401);
    assert.equal(expired.body.error.code, 'UNAUTHORIZED');
    assert.equal((await api(node, 'POST', '/api/chats', { token: 'garbage', body: {} })).status, 401);
    for (const body of [{ title: 'x'.repeat(201) }, { title: '   ' }, { title: 7 }, { priority: 'urgent' }, [1, 2], 'str']) {
      const res = await api(node, 'POST', '/api/chats', { user: carl, body: typeof body === 'string' ? JSON.stringify(body) : body, headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 400, JSON.stringify(body).slice(0, 40));
      assert.equal(res.body.error.code, 'VALIDATION');
    }
    const edge = await api(node, 'POST', '/api/chats', { user: carl, body: { title: 't'.repeat(200) } });
    assert.equal(edge.status, 201);
    const list = await api(node, 'GET', '/api/chats', { user: carl });
    assert.equal(list.body.chats.length, 1, 'only the valid one was created');
  });

  test('GET /api/chats: users see their own chats, staff see all; status filter; unreadCount', async () => {
    const dora = makeUser('dora');
    const eve = makeUser('eve');
    const doraChat = await openChat(node, dora, { title: 'Dora asks' });
    const eveChat = await openChat(node, eve, { title: 'Eve asks' });
    const doraSock = await connect(node, dora);
    const m1 = await doraSock.ack('message:send', { chatId: doraChat.id, message: { content: 'hi' } });
    const staffMsgs = [];
    for (const t of ['hello', 'how can I help?']) {
      const r = await api(node, 'POST', `/api/chats/${doraChat.id}/messages`, { user: admin, body: { message: { content: t } } });
      staffMsgs.push(r.body);
    }

    const mine = await api(node, 'GET', '/api/chats', { user: dora });
    assert.equal(mine.status, 200);
    assert.deepEqual(mine.body.chats.map((c) => c.id), [doraChat.id]);
    assert.equal(mine.body.nextCursor, null);
    assert.equal(mine.body.chats[0].unreadCount, 2, 'two staff messages unread by dora');
    assert.equal(mine.body.chats[0].lastMessage.text, 'how can I help?');
    assert.equal(mine.body.chats[0].lastMessage.sender, admin.id);
    assert.ok(isTimestamp(mine.body.chats[0].lastMessage.createdAt));

    const staffView = await api(node, 'GET', '/api/chats?limit=100', { user: admin2 });
    const ids = staffView.body.chats.map((c) => c.id);
    assert.ok(ids.includes(doraChat.id) && ids.includes(eveChat.id));
    const adminView = await api(node, 'GET', '/api/chats?limit=100', { user: admin });
    assert.equal(adminView.body.chats.find((c) => c.id === doraChat.id).unreadCount, 1, "dora's message, unread by the admin");
    assert.ok(!(await api(node, 'GET', '/api/chats', { user: eve })).body.chats.some((c) => c.id === doraChat.id));

    await doraSock.ack('message:read', { chatId: doraChat.id, messageId: staffMsgs[1].id });
    assert.equal((await api(node, 'GET', '/api/chats', { user: dora })).body.chats[0].unreadCount, 0);
    assert.ok(m1.ok);

    await api(node, 'PATCH', `/api/chats/${eveChat.id}`, { user: admin, body: { status: 'closed' } });
    const closed = await api(node, 'GET', '/api/chats?status=closed&limit=100', { user: admin });
    assert.ok(closed.body.chats.every((c) => c.status === 'closed'));
    assert.ok(closed.body.chats.some((c) => c.id === eveChat.id));
    const open = await api(node, 'GET', '/api/chats?status=open', { user: eve });
    assert.deepEqual(open.body.chats, []);
    assert.equal((await api(node, 'GET', '/api/chats?status=archived', { user: eve })).status, 400);
    assert.equal((await api(node, 'GET', '/api/chats?limit=0', { user: eve })).status, 400);
    assert.equal((await api(node, 'GET', '/api/chats?cursor=%%%', { user: eve })).status, 400);
    assert.equal((await api(node, 'GET', '/api/chats')).status, 401);
    doraSock.close();
  });

  test('GET /api/chats: cursor pages walk every chat once, most recently updated first', async () => {
    const finn = makeUser('finn');
    const made = [];
    for (let i = 0; i < 5; i++) made.push((await openChat(node, finn, { title: `chat ${i}` })).id);
    const seen = [];
    let cursor = null;
    for (let i = 0; i < 10; i++) {
      const res = await api(node, 'GET', `/api/chats?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { user: finn });
      assert.equal(res.status, 200);
      assert.ok(res.body.chats.length <= 2);
      seen.push(...res.body.chats.map((c) => c.id));
      cursor = res.body.nextCursor;
      if (!cursor) break;
    }
    assert.equal(cursor, null);
    assert.deepEqual(seen, [...made].reverse());
  });

  test('GET /api/chats/{id}: participants and staff; others 403 revealing nothing; 404; malformed 400', async () => {
    const c = await openChat(node, alice, { title: 'Secret title 4711' });
    assert.equal((await api(node, 'GET', `/api/chats/${c.id}`, { user: alice })).body.id, c.id);
    assert.deepEqual((await api(node, 'GET', `/api/chats/${c.id}`, { user: admin })).body, c);
    const other = await api(node, 'GET', `/api/chats/${c.id}`, { user: bob });
    assert.equal(other.status, 403);
    assert.equal(other.body.error.code, 'FORBIDDEN');
    assert.ok(!other.text.includes('4711') && !other.text.includes(alice.id));
    assert.deepEqual(Object.keys(other.body), ['error']);
    assert.equal((await api(node, 'GET', `/api/chats/${'c'.repeat(24)}`, { user: alice })).status, 404);
    assert.equal((await api(node, 'GET', '/api/chats/nope', { user: alice })).status, 400);
    assert.equal((await api(node, 'GET', `/api/chats/${c.id}`)).status, 401);
  });

  test('PATCH /api/chats/{id}: staff only; an assigned admin becomes a participant', async () => {
    const c = await openChat(node, alice);
    const helper = makeUser('helper', 'admin');
    const res = await api(node, 'PATCH', `/api/chats/${c.id}`, { user: admin, body: { status: 'closed', priority: 'low', assignedAdmin: helper.id } });
    assert.equal(res.status, 200);
    assert.equal(res.body.status, 'closed');
    assert.equal(res.body.priority, 'low');
    assert.equal(res.body.assignedAdmin, helper.id);
    assert.ok(res.body.participants.includes(helper.id));
    assert.ok(res.body.participants.includes(alice.id));
    const reopened = await api(node, 'PATCH', `/api/chats/${c.id}`, { user: admin2, body: { status: 'open' } });
    assert.equal(reopened.body.status, 'open');
    assert.equal(reopened.body.priority, 'low', 'untouched fields stay');

    const byUser = await api(node, 'PATCH', `/api/chats/${c.id}`, { user: alice, body: { status: 'closed' } });
    assert.equal(byUser.status, 403);
    for (const body of [{ status: 'gone' }, { priority: 'extreme' }, { assignedAdmin: 'a'.repeat(65) }, { status: 1 }]) {
      const bad = await api(node, 'PATCH', `/api/chats/${c.id}`, { user: admin, body });
      assert.equal(bad.status, 400, JSON.stringify(body));
    }
    assert.equal((await api(node, 'PATCH', `/api/chats/${'d'.repeat(24)}`, { user: admin, body: { status: 'open' } })).status, 404);
    const now = (await api(node, 'GET', `/api/chats/${c.id}`, { user: admin })).body;
    assert.equal(now.status, 'open');
    assert.equal(now.priority, 'low');
  });

  test('GET messages: newest first by default and with beforeSeq, oldest first with afterSeq, limit default 50 max 100', async () => {
    const c = await openChat(node, alice);
    for (let i = 1; i <= 120; i += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, j) => j + i).map((n) => api(node, 'POST', `/api/chats/${c.id}/messages`, {
        user: alice, body: { message: { content: `m${n}` }, clientMessageId: `cm-${c.id}-${n}` },
      })));
    }
    const url = (q) => `/api/chats/${c.id}/messages${q}`;
    const latest = await api(node, 'GET', url(''), { user: alice });
    assert.equal(latest.status, 200);
    assert.equal(latest.body.messages.length, 50);
    assert.equal(latest.body.messages[0].seq, 120);
    assert.equal(latest.body.messages[49].seq, 71);
    assert.equal(latest.body.hasMore, true);

    const before = await api(node, 'GET', url('?beforeSeq=4&limit=2'), { user: alice });
    assert.deepEqual(before.body.messages.map((m) => m.seq), [3, 2]);
    assert.equal(before.body.hasMore, true);
    const first = await api(node, 'GET', url('?beforeSeq=3&limit=5'), { user: admin });
    assert.deepEqual(first.body.messages.map((m) => m.seq), [2, 1]);
    assert.equal(first.body.hasMore, false);

    const afterSeq = await api(node, 'GET', url('?afterSeq=117'), { user: alice });
    assert.deepEqual(afterSeq.body.messages.map((m) => m.seq), [118, 119, 120]);
    assert.equal(afterSeq.body.hasMore, false);

    const clamped = await api(node, 'GET', url('?limit=1000&afterSeq=0'), { user: alice });
    assert.equal(clamped.body.messages.length, 100);
    assert.equal(clamped.body.hasMore, true);

    for (const q of ['?limit=0', '?limit=x', '?beforeSeq=-1', '?afterSeq=abc', '?beforeSeq=3&afterSeq=1']) {
      const bad = await api(node, 'GET', url(q), { user: alice });
      assert.equal(bad.status, 400, q);
      assert.equal(bad.body.error.code, 'VALIDATION', q);
    }
    const outsider = await api(node, 'GET', url(''), { user: bob });
    assert.equal(outsider.status, 403);
    assert.ok(!outsider.text.includes('m1'));
    assert.equal((await api(node, 'GET', url(''))).status, 401);
  });

  test('POST messages: 201 Message delivered live; 200 with the first save on a clientMessageId retry', async () => {
    const c = await openChat(node, alice);
    const aliceSock = await connect(node, alice);
    const adminSock = await connect(node, admin);
    const cmid = uid('svc');
    const res = await api(node, 'POST', `/api/chats/${c.id}/messages`, { user: admin, body: { message: { content: 'from a back-end service' }, clientMessageId: cmid } });
    assert.equal(res.status, 201);
    assert.equal(res.body.seq, 1);
    assert.equal(res.body.senderId, admin.id);
    assert.equal(res.body.senderRole, 'admin');
    assert.equal(res.body.clientMessageId, cmid);
    assert.ok(isTimestamp(res.body.timestamp));
    for (const s of [aliceSock, adminSock]) {
      const live = await s.waitFor('message:new', (p) => p.message.id === res.body.id);
      assert.deepEqual(live, { chatId: c.id, message: res.body });
    }
    const retry = await api(node, 'POST', `/api/chats/${c.id}/messages`, { user: admin, body: { message: { content: 'from a back-end service' }, clientMessageId: cmid } });
    assert.equal(retry.status, 200);
    assert.deepEqual(retry.body, res.body);
    await Promise.all([aliceSock.barrier(), adminSock.barrier()]);
    assert.equal(aliceSock.received('message:new', (p) => p.message.id === res.body.id).length, 1);
    assert.equal((await history(node, alice, c.id)).length, 1);

    const byUser = await api(node, 'POST', `/api/chats/${c.id}/messages`, { user: alice, body: { message: { content: 'user via REST' } } });
    assert.equal(byUser.status, 201);
    assert.equal(byUser.body.seq, 2);
    const outsider = await api(node, 'POST', `/api/chats/${c.id}/messages`, { user: bob, body: { message: { content: 'intruder' } } });
    assert.equal(outsider.status, 403);
    assert.equal((await api(node, 'POST', `/api/chats/${'e'.repeat(24)}/messages`, { user: admin, body: { message: { content: 'x' } } })).status, 404);
    assert.equal((await history(node, alice, c.id)).length, 2);
    aliceSock.close();
    adminSock.close();
  });
});
