// POST /api/uploads and GET /api/files/{id}: signed URLs, Bearer access, the 10 MiB limit, and
// file messages that carry the issued fileUrl.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  api, connect, history, makeUser, openChat, startNode,
} from '../lib/harness.js';

function form(bytes, name, type = 'application/octet-stream', field = 'file') {
  const fd = new FormData();
  fd.append(field, new Blob([bytes], { type }), name);
  return fd;
}

describe('uploads', () => {
  let node;
  let alice; let bob; let admin;
  before(async () => {
    node = await startNode();
    alice = makeUser('alice');
    bob = makeUser('bob');
    admin = makeUser('admin', 'admin');
  });
  after(() => node?.destroy());

  test('an upload answers 201 with a signed fileUrl that works without a token', async () => {
    const bytes = randomBytes(4096);
    const res = await api(node, 'POST', '/api/uploads', { user: alice, body: form(bytes, 'photo.png', 'image/png') });
    assert.equal(res.status, 201);
    const { fileId, fileUrl, fileName, size, contentType } = res.body;
    assert.match(fileId, /^[0-9a-f]{32}$/, 'file ids are 128 random bits, not ObjectId-like');
    assert.equal(fileUrl.split('?')[0], `/api/files/${fileId}`);
    assert.match(fileUrl, /\?sig=[A-Za-z0-9_-]+$/);
    assert.equal(fileName, 'photo.png');
    assert.equal(size, 4096);
    assert.equal(contentType, 'image/png');

    const got = await fetch(node.url + fileUrl);
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('content-type'), 'image/png');
    assert.deepEqual(Buffer.from(await got.arrayBuffer()), bytes);

    const bare = `${node.url}/api/files/${fileId}`;
    const noSig = await fetch(bare);
    assert.equal(noSig.status, 401);
    assert.equal((await noSig.json()).error.code, 'UNAUTHORIZED');
    assert.equal((await fetch(`${bare}?sig=AAAA`)).status, 401);
    const otherSig = fileUrl.split('sig=')[1];
    const wrongFile = await api(node, 'POST', '/api/uploads', { user: bob, body: form(Buffer.from('other'), 'o.txt', 'text/plain') });
    assert.equal((await fetch(`${node.url}/api/files/${wrongFile.body.fileId}?sig=${otherSig}`)).status, 401, "one file's sig opens no other file");

    const withBearer = await fetch(bare, { headers: { authorization: `Bearer ${alice.token}` } });
    assert.equal(withBearer.status, 200, "the uploader's token opens the file");
    assert.deepEqual(Buffer.from(await withBearer.arrayBuffer()), bytes);
    const othersBearer = await fetch(bare, { headers: { authorization: `Bearer ${bob.token}` } });
    assert.equal(othersBearer.status, 404, "another user's token opens nothing and learns nothing");
    assert.equal((await fetch(bare, { headers: { authorization: 'Bearer not-a-token' } })).status, 401);
  });

  test('uploads need a token, a multipart body and a file field', async () => {
    assert.equal((await api(node, 'POST', '/api/uploads', { body: form(Buffer.from('x'), 'x.txt') })).status, 401);
    const wrongField = await api(node, 'POST', '/api/uploads', { user: alice, body: form(Buffer.from('x'), 'x.txt', 'text/plain', 'attachment') });
    assert.equal(wrongField.status, 400);
    assert.equal(wrongField.body.error.code, 'VALIDATION');
    const notMultipart = await api(node, 'POST', '/api/uploads', { user: alice, body: { file: 'inline' } });
    assert.equal(notMultipart.status, 400);
    assert.equal(notMultipart.body.error.code, 'VALIDATION');
    assert.equal((await api(node, 'GET', `/api/files/${'f'.repeat(32)}`, { user: alice })).status, 404);
  });

  test('an 11 MiB upload is 413 PAYLOAD_TOO_LARGE; exactly 10 MiB is accepted; the node stays up', async () => {
    const watcher = await connect(node, admin);
    const big = await api(node, 'POST', '/api/uploads', { user: alice, body: form(Buffer.alloc(11 * 1024 * 1024, 7), 'big.bin') });
    assert.equal(big.status, 413);
    assert.equal(big.body.error.code, 'PAYLOAD_TOO_LARGE');
    const limit = await api(node, 'POST', '/api/uploads', { user: alice, body: form(Buffer.alloc(10 * 1024 * 1024, 1), 'limit.bin') });
    assert.equal(limit.status, 201);
    assert.equal(limit.body.size, 10 * 1024 * 1024);
    assert.ok(watcher.connected);
    assert.equal((await fetch(`${node.url}/healthz`)).status, 200);
    watcher.close();
  });

  test('a file message may carry the issued fileUrl or an https URL; a foreign non-https URL is VALIDATION', async () => {
    const chat = await openChat(node, alice);
    const sock = await connect(node, alice);
    const up = (await api(node, 'POST', '/api/uploads', { user: alice, body: form(Buffer.from('%PDF-1.4'), 'invoice.pdf', 'application/pdf') })).body;

    const ack = await sock.ack('message:send', { chatId: chat.id, message: { type: 'file', content: '', fileUrl: up.fileUrl, fileName: 'invoice.pdf' } });
    assert.equal(ack.ok, true);
    assert.equal(ack.message.type, 'file');
    assert.equal(ack.message.fileUrl, up.fileUrl);
    assert.equal(ack.message.fileName, 'invoice.pdf');
    assert.equal(ack.message.content, '');
    const live = await sock.waitFor('message:new', (p) => p.message.id === ack.message.id);
    assert.equal(live.message.fileUrl, up.fileUrl);
    assert.equal((await fetch(node.url + live.message.fileUrl)).status, 200, 'the URL in the message opens the file');

    const https = await sock.ack('message:send', { chatId: chat.id, message: { type: 'file', content: 'see', fileUrl: 'https://cdn.example.com/a.png', fileName: 'a.png' } });
    assert.equal(https.ok, true);

    const rejects = [
      { type: 'file', fileUrl: 'http://evil.example.com/a.png', fileName: 'a.png' },
      { type: 'file', fileUrl: 'javascript:alert(1)', fileName: 'a.png' },
      { type: 'file', fileUrl: 'https://x" onerror="alert(1)', fileName: 'a.png' },
      { type: 'file', fileUrl: `https://cdn.example.com/${'a'.repeat(2100)}`, fileName: 'a.png' },
      { type: 'file', fileUrl: `/api/files/${up.fileId}?sig=forged`, fileName: 'a.png' },
      { type: 'file', fileUrl: `/api/files/${up.fileId}`, fileName: 'a.png' },
      { type: 'file', fileName: 'a.png' },
      { type: 'file', fileUrl: up.fileUrl },
      { type: 'file', fileUrl: up.fileUrl, fileName: '' },
      { type: 'file', fileUrl: up.fileUrl, fileName: 'n'.repeat(256) },
      { type: 'image', fileUrl: up.fileUrl, fileName: 'a.png' },
    ];
    for (const message of rejects) {
      const res = await sock.ack('message:send', { chatId: chat.id, message });
      assert.equal(res.ok, false, JSON.stringify(message).slice(0, 90));
      assert.equal(res.error.code, 'VALIDATION', JSON.stringify(message).slice(0, 90));
    }
    const restRes = await api(node, 'POST', `/api/chats/${chat.id}/messages`, { user: alice, body: { message: { type: 'file', fileUrl: 'http://evil.example.com/x', fileName: 'x' } } });
    assert.equal(restRes.status, 400);
    const saved = await history(node, alice, chat.id);
    assert.equal(saved.length, 2, 'only the two valid file messages were saved');
    sock.close();
  });
});
