// /healthz, /readyz and /metrics.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { api, connect, connectRefused, makeUser, openChat, startNode } from '../lib/harness.js';

describe('operations endpoints', () => {
  let node;
  before(async () => {
    node = await startNode();
  });
  after(() => node?.destroy());

  test('/healthz answers 200 without a token', async () => {
    const res = await fetch(`${node.url}/healthz`);
    assert.equal(res.status, 200);
  });

  test('/readyz is 200 while the store and adapter are reachable', async () => {
    const res = await api(node, 'GET', '/readyz');
    assert.equal(res.status, 200);
    // Anyone learns ready or not, nothing more (docs/security.md).
    assert.deepEqual(res.body, { ready: true });
  });

  test('/metrics is Prometheus text with switchboard_ metrics that move with traffic', async () => {
    const alice = makeUser('alice');
    const chat = await openChat(node, alice);
    const sock = await connect(node, alice);
    await sock.ack('message:send', { chatId: chat.id, message: { content: 'counted' } });
    await sock.ack('message:send', { chatId: 'bad' });
    await connectRefused(node, 'not-a-token');

    const res = await fetch(`${node.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/plain/);
    const text = await res.text();
    const names = new Set(text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]));
    assert.ok(names.size >= 5);
    for (const n of names) assert.match(n, /^switchboard_/);
    const samples = text.split('\n').filter((l) => l && !l.startsWith('#'));
    // Label values may hold braces (route templates such as /api/chats/{chat_id}).
    const sample = /^switchboard_[a-z_]+(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (?:[-+0-9.eE]+|NaN|[+-]Inf)$/;
    for (const line of samples) assert.match(line, sample);
    assert.ok(samples.some((l) => l.startsWith('switchboard_events_received_total') && l.includes('message:send')));
    assert.ok(samples.some((l) => l.startsWith('switchboard_http_requests_total')));
    assert.ok(samples.some((l) => l.startsWith('switchboard_connections_total') && l.includes('unauthorized')));
    assert.ok(!text.includes(alice.id), 'no user ids in labels');
    assert.ok(!text.includes(chat.id), 'no chat ids in labels');
    sock.close();
  });

  test("CORS_ORIGINS='*' answers preflights and long-polling requests from any origin", async () => {
    const pre = await fetch(`${node.url}/api/chats`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    assert.ok(pre.status < 300);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.match(pre.headers.get('access-control-allow-headers'), /authorization/i);
    const poll = await fetch(`${node.url}/socket.io/?EIO=4&transport=polling`, { headers: { origin: 'https://app.example.com' } });
    assert.equal(poll.status, 200);
    assert.equal(poll.headers.get('access-control-allow-origin'), '*');
    assert.match(await poll.text(), /"sid"/);
  });
});
