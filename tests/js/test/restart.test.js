// Restart on the same DATA_DIR: SIGTERM drains (connections closed so clients reconnect, exit status 0), and the next
// node serves the same history, reports and uploads.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import {
  api, connect, history, makeUser, openChat, startNode, tempDataDir,
} from '../lib/harness.js';

describe('restart', () => {
  const dataDir = tempDataDir();
  const nodes = [];
  after(async () => {
    for (const n of nodes) await n.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('history, reports and uploads survive a SIGTERM and a restart on the same DATA_DIR; clients reconnect by themselves', async () => {
    const alice = makeUser('alice');
    const admin = makeUser('admin', 'admin');
    const first = await startNode({ dataDir });
    nodes.push(first);

    const chat = await openChat(first, alice, { title: 'Durable' });
    // reconnects by itself, as the frontends' clients do
    const sock = await connect(first, alice, { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300 });
    const sent = [];
    for (const content of ['one', 'two', 'three']) {
      sent.push((await sock.ack('message:send', { chatId: chat.id, message: { content }, clientMessageId: `d-${content}` })).message);
    }
    const report = (await api(first, 'POST', '/api/reports', { user: admin, body: { userId: alice.id, title: 'Kept', message: 'across restarts', status: 'Info' } })).body;
    const fd = new FormData();
    fd.append('file', new Blob(['persisted bytes'], { type: 'text/plain' }), 'keep.txt');
    const upload = (await api(first, 'POST', '/api/uploads', { user: alice, body: fd })).body;
    assert.equal(upload.size, 15);

    const disconnected = new Promise((resolve) => sock.socket.once('disconnect', resolve));
    const status = await first.stop();
    assert.deepEqual(status, { code: 0, signal: null }, 'a drained node exits 0');
    const reason = await disconnected;
    assert.equal(sock.connected, false);
    assert.notEqual(reason, 'io server disconnect', 'a drain must not tell clients to stay away');
    assert.equal(sock.socket.active, true, 'the client keeps trying to reconnect');

    const reconnected = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no reconnect within 10 s')), 10000);
      sock.socket.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
    });
    const second = await startNode({ dataDir, port: first.port });
    nodes.push(second);
    await reconnected;
    const resumed = await sock.ack('chat:sync', { chatId: chat.id, afterSeq: 1 });
    assert.deepEqual(resumed.messages, sent.slice(1), 'a reconnected client catches up with chat:sync');
    sock.close();
    assert.deepEqual(await history(second, alice, chat.id), sent);
    const chats = await api(second, 'GET', '/api/chats', { user: alice });
    assert.equal(chats.body.chats[0].title, 'Durable');
    assert.equal(chats.body.chats[0].lastMessage.text, 'three');
    const reports = await api(second, 'GET', '/api/reports', { user: alice });
    assert.deepEqual(reports.body.reports, [report]);
    const file = await fetch(second.url + upload.fileUrl);
    assert.equal(file.status, 200);
    assert.equal(await file.text(), 'persisted bytes');

    const again = await connect(second, alice);
    const retry = await again.ack('message:send', { chatId: chat.id, message: { content: 'two' }, clientMessageId: 'd-two' });
    assert.deepEqual(retry.message, sent[1], 'a retry after the restart still finds the first save');
    const next = await again.ack('message:send', { chatId: chat.id, message: { content: 'four' } });
    assert.equal(next.message.seq, 4);
    const fileMsg = await again.ack('message:send', { chatId: chat.id, message: { type: 'file', fileUrl: upload.fileUrl, fileName: 'keep.txt' } });
    assert.equal(fileMsg.ok, true, 'an old fileUrl is still one this deployment issued');
    again.close();
  });
});
