// Bad input at every event and endpoint: each gets its documented error, nothing is saved, the
// node stays up, and a bystander socket never notices.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  api, connect, history, makeUser, openChat, startNode, waitUntil,
} from '../lib/harness.js';

function nested(depth, leaf = 'x') {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = { v };
  return v;
}

describe('bad input', () => {
  let node;
  let alice; let admin; let bystander;
  let aliceSock; let adminSock; let bystanderSock;
  let chat; let firstMessage; let report;

  before(async () => {
    node = await startNode();
    alice = makeUser('alice');
    admin = makeUser('admin', 'admin');
    bystander = makeUser('bystander', 'admin');
    chat = await openChat(node, alice);
    [aliceSock, adminSock, bystanderSock] = await Promise.all([connect(node, alice), connect(node, admin), connect(node, bystander)]);
    firstMessage = (await aliceSock.ack('message:send', { chatId: chat.id, message: { content: 'the only message' } })).message;
    report = (await adminSock.ack('sendReportMessage', { userId: alice.id, title: 'T', message: 'M', status: 'Info' })).message;
  });
  after(async () => {
    for (const c of [aliceSock, adminSock, bystanderSock]) c?.close();
    await node?.destroy();
  });

  const good = () => ({ chatId: chat.id, message: { content: 'ok' } });
  const cases = () => ({
    'message:send': [
      ['a string payload', 'hello'],
      ['a number payload', 42],
      ['null', null],
      ['an array', [1, 2]],
      ['no payload', undefined],
      ['missing chatId', { message: { content: 'x' } }],
      ['chatId of the wrong type', { chatId: 123, message: { content: 'x' } }],
      ['a malformed chatId', { chatId: 'x'.repeat(65), message: { content: 'x' } }],
      ['missing message', { chatId: chat.id }],
      ['message as a string', { chatId: chat.id, message: 'x' }],
      ['content of the wrong type', { chatId: chat.id, message: { content: 12 } }],
      ['empty content', { chatId: chat.id, message: { content: '' } }],
      ['blank content', { chatId: chat.id, message: { content: ' \n\t ' } }],
      ['5001-character content', { chatId: chat.id, message: { content: 'é'.repeat(5001) } }],
      ['an unknown type', { chatId: chat.id, message: { content: 'x', type: 'video' } }],
      ['a 65-character clientMessageId', { ...good(), clientMessageId: 'c'.repeat(65) }],
      ['a clientMessageId of the wrong type', { ...good(), clientMessageId: 7 }],
      ['a binary attachment as payload', Buffer.from([0xde, 0xad, 0xbe, 0xef])],
      ['a binary attachment as content', { chatId: chat.id, message: { content: Buffer.from('hi') } }],
      ['200 levels of nesting', { ...good(), extra: nested(200) }],
      ['200 levels of nesting as payload', nested(200)],
    ],
    'user:typing:start': [['no chatId', {}], ['a number', 5], ['a malformed chatId', { chatId: 'abc' }], ['binary', Buffer.from('x')]],
    'user:typing:stop': [['null', null], ['chatId as an object', { chatId: {} }], ['deep nesting', nested(200)]],
    'message:read': [
      ['no messageId', { chatId: chat.id }],
      ['a malformed messageId', { chatId: chat.id, messageId: 'm'.repeat(65) }],
      ['messageId of the wrong type', { chatId: chat.id, messageId: 1 }],
      ['a string', 'read it'],
    ],
    'chat:sync': [
      ['no afterSeq', { chatId: chat.id }],
      ['limit 0', { chatId: chat.id, afterSeq: 0, limit: 0 }],
      ['limit "x"', { chatId: chat.id, afterSeq: 0, limit: 'x' }],
      ['a negative afterSeq', { chatId: chat.id, afterSeq: -5 }],
      ['an array', []],
    ],
    'user:online': [['no userId', {}], ['userId of the wrong type', { userId: 9 }], ['binary', Buffer.from('me')]],
    joinUserRoom: [['an object instead of a string', { userId: alice.id }], ['no payload', undefined], ['a number', 1]],
    'report:read': [['no reportId', {}], ['a malformed reportId', { reportId: 'r'.repeat(65) }], ['reportId of the wrong type', { reportId: [] }]],
    'some:unknown:event': [['anything', { a: 1 }]],
    ['x'.repeat(300)]: [['a very long unknown event name', {}]],
  });

  test('every event answers bad input with VALIDATION in the ack', async () => {
    for (const [event, list] of Object.entries(cases())) {
      for (const [what, payload] of list) {
        const res = payload === undefined ? await aliceSock.ack(event) : await aliceSock.ack(event, payload);
        const label = `${event.slice(0, 30)}: ${what}`;
        assert.equal(res?.ok, false, label);
        assert.equal(res.error?.code, 'VALIDATION', `${label}: ${JSON.stringify(res).slice(0, 200)}`);
        assert.equal(typeof res.error.message, 'string', label);
      }
    }
    assert.ok(aliceSock.connected);
  });

  test('without an ack, bad input gets the error event { message, error, event }', async () => {
    for (const [event, list] of Object.entries(cases())) {
      for (const [what, payload] of list) {
        if (payload === undefined) aliceSock.emit(event);
        else aliceSock.emit(event, payload);
        const err = await aliceSock.waitFor('error', (e) => e.event === event);
        assert.deepEqual(Object.keys(err).sort(), ['error', 'event', 'message'], `${event}: ${what}`);
        assert.equal(err.error, 'VALIDATION', `${event}: ${what}`);
        assert.equal(typeof err.message, 'string');
      }
    }
  });

  test('bad sendReportMessage input is answered through reportMessageSent, never the error event', async () => {
    const bad = [
      'not an object', null, {}, { userId: alice.id, title: 'x'.repeat(201), message: 'm', status: 'Info' },
      { userId: alice.id, title: 't', message: 'm', status: 'info' }, Buffer.from('bin'), nested(200),
    ];
    for (const p of bad) {
      adminSock.emit('sendReportMessage', p);
      const sent = await adminSock.waitFor('reportMessageSent', (x) => x.ok === false);
      assert.equal(sent.success, false);
      assert.equal(sent.error.code, 'VALIDATION');
    }
    await adminSock.barrier();
    assert.equal(adminSock.received('error').length, 0);
  });

  test('an oversized frame (300 KiB) is refused without touching anyone else', async () => {
    const huge = { chatId: chat.id, message: { content: 'x'.repeat(300 * 1024) } };
    // over 256 KiB a WebSocket is closed before more is buffered (PROTOCOL.md, Acks and errors)
    const dropped = new Promise((resolve) => aliceSock.socket.once('disconnect', resolve));
    await assert.rejects(aliceSock.ack('message:send', huge));
    assert.match(await dropped, /^transport (close|error)$/);
    // a transport close: the client may reconnect (this harness turns automatic reconnection off)
    const back = new Promise((resolve) => aliceSock.socket.once('connect', resolve));
    aliceSock.socket.connect();
    await back;
    // over long-polling the HTTP body passes the transport's limit: only that connection closes
    const polling = await connect(node, alice, { transports: ['polling'] });
    const gone = new Promise((resolve) => polling.socket.once('disconnect', resolve));
    await assert.rejects(polling.ack('message:send', huge));
    await gone;
    assert.ok(aliceSock.connected && adminSock.connected && bystanderSock.connected);
  });

  test('nothing was saved, the node is up and the bystander never noticed', async () => {
    const saved = await history(node, alice, chat.id);
    assert.deepEqual(saved.map((m) => m.id), [firstMessage.id]);
    assert.notEqual(saved[0].status, 'read', 'no bad message:read marked anything');
    const reports = await api(node, 'GET', '/api/reports', { user: alice });
    assert.deepEqual(reports.body.reports.map((r) => r.id), [report.id]);
    assert.equal(reports.body.reports[0].isRead, false);
    await waitUntil(async () => (await api(node, 'GET', `/api/users/${alice.id}/status`, { user: admin })).body.sockets === 1,
      { what: "alice's one remaining socket" });
    assert.equal((await fetch(`${node.url}/healthz`)).status, 200);

    assert.ok(aliceSock.connected && adminSock.connected && bystanderSock.connected);
    assert.equal(bystanderSock.received('error').length, 0);
    assert.equal(bystanderSock.received('message:new').length, 1, 'only the one good message');
    const later = await aliceSock.ack('message:send', { chatId: chat.id, message: { content: 'still works' } });
    assert.equal(later.ok, true);
    assert.equal(later.message.seq, 2, 'no seq was used up by refused messages');
    await bystanderSock.waitFor('message:new', (p) => p.message.id === later.message.id);
    assert.equal((await aliceSock.ack('chat:sync', { chatId: chat.id, afterSeq: 0 })).messages.length, 2);
  });

  test('REST: non-JSON bodies, wrong types and over-long fields are 400 VALIDATION and save nothing', async () => {
    const json = { 'content-type': 'application/json' };
    const attempts = [
      ['POST', '/api/chats', '{"title": ', alice],
      ['POST', '/api/chats', 'not json at all', alice],
      ['POST', '/api/chats', JSON.stringify({ title: { nested: true } }), alice],
      ['POST', '/api/chats', JSON.stringify({ title: 'x'.repeat(201) }), alice],
      ['POST', '/api/chats', JSON.stringify({ title: nested(200) }), alice],
      ['POST', `/api/chats/${chat.id}/messages`, '<xml/>', alice],
      ['POST', `/api/chats/${chat.id}/messages`, JSON.stringify({ message: { content: 'x'.repeat(5001) } }), alice],
      ['POST', `/api/chats/${chat.id}/messages`, JSON.stringify({ message: { content: 'x' }, clientMessageId: 'c'.repeat(65) }), alice],
      ['POST', `/api/chats/${chat.id}/messages`, JSON.stringify({ message: 'x' }), alice],
      ['POST', `/api/chats/${chat.id}/messages`, JSON.stringify({}), alice],
      ['PATCH', `/api/chats/${chat.id}`, 'status=closed', admin],
      ['PATCH', `/api/chats/${chat.id}`, JSON.stringify({ priority: 3 }), admin],
      ['POST', '/api/reports', '{{', admin],
      ['POST', '/api/reports', JSON.stringify({ userId: alice.id, title: 't', message: 'm'.repeat(2001), status: 'Info' }), admin],
      ['POST', '/api/reports', JSON.stringify({ userId: 'u'.repeat(65), title: 't', message: 'm', status: 'Info' }), admin],
      ['POST', '/api/reports', JSON.stringify({ userId: alice.id, title: 't', message: 'm' }), admin],
    ];
    for (const [method, route, body, user] of attempts) {
      const res = await api(node, method, route, { user, body, headers: json });
      assert.equal(res.status, 400, `${method} ${route} ${body.slice(0, 40)}`);
      assert.equal(res.body?.error?.code, 'VALIDATION', `${method} ${route} ${body.slice(0, 40)}`);
      assert.equal(typeof res.body.error.message, 'string');
    }
    const chats = await api(node, 'GET', '/api/chats', { user: alice });
    assert.equal(chats.body.chats.length, 1, 'no chat was created');
    assert.equal(chats.body.chats[0].status, 'open');
    assert.equal(chats.body.chats[0].priority, 'medium');
    assert.equal((await history(node, alice, chat.id)).length, 2);
    assert.equal((await api(node, 'GET', '/api/reports', { user: alice })).body.reports.length, 1);
    assert.ok(bystanderSock.connected);
  });

  test('unknown routes and methods are 404 and malformed path segments 400, as JSON errors', async () => {
    for (const [method, route] of [['GET', '/api/nothing-here'], ['DELETE', '/api/chats'], ['PUT', `/api/chats/${chat.id}`]]) {
      const res = await api(node, method, route, { user: alice });
      assert.equal(res.status, 404, `${method} ${route}`);
      assert.equal(res.body?.error?.code, 'NOT_FOUND', `${method} ${route}: ${res.text}`);
    }
    for (const route of ['/api/chats/%FF', '/api/chats/%FF/messages', '/api/users/%FF/status', '/api/files/%FF']) {
      const res = await api(node, 'GET', route, { user: admin });
      assert.equal(res.status, 400, route);
      assert.equal(res.body?.error?.code, 'VALIDATION', `${route}: ${res.text}`);
    }
    const report = await api(node, 'POST', '/api/reports/%C0/read', { user: alice });
    assert.equal(report.body?.error?.code, 'VALIDATION');
    assert.equal((await fetch(`${node.url}/healthz`)).status, 200);
  });
});
