// Seeds fuzz/corpus/handshake_auth and fuzz/corpus/domain_parsers from real traffic: a node
// (target/debug/switchboard) and the official socket.io-client, as a frontend uses them. Every
// packet the client writes is recorded (wrapping the socket's `packet`): the CONNECT packets' auth
// objects (with `pid` and `offset` once a cut connection is recovered) and the events; and the
// REST query strings a console sends while paging (with the `nextCursor`s the node returned).
//
//   cd tests/js && node ../../fuzz/seed-corpus.mjs      (needs tests/js's node_modules)
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  REPO_ROOT, api, frontend, connected, makeUser, nextConnect, openChat, proxy, startNode, waitUntil,
} from '../tests/js/lib/harness.js';

const out = (target) => path.join(REPO_ROOT, 'fuzz', 'corpus', target);
const seeds = { handshake_auth: new Set(), domain_parsers: new Set() };

/** Records every packet the client's socket writes, encoded as the parser encodes it. */
function record(client) {
  const socket = client.socket;
  const packet = socket.packet.bind(socket);
  socket.packet = (p) => {
    // socket.io-parser writes a packet's data with JSON.stringify (CONNECT: the auth object
    // with `pid` and `offset` on a resume; EVENT: `[name, ...args]`).
    if (p.type === 0 && p.data) seeds.handshake_auth.add(JSON.stringify(p.data));
    if (p.type === 2) seeds.domain_parsers.add(JSON.stringify(p.data));
    return packet(p);
  };
}

const node = await startNode({ env: { RECOVERY_WINDOW_SECS: "120" }, timeout: 120000 });
const cut = await proxy(node.port);
try {
  const alice = makeUser('alice');
  const admin = makeUser('admin', 'admin');
  const chat = await openChat(node, alice);
  const a = frontend(cut.url, alice, { reconnectionDelay: 100, reconnectionDelayMax: 200 });
  const s = frontend(node.url, admin);
  record(a);
  record(s);
  await connected(a);
  await connected(s);
  const sent = await a.ack('message:send', { chatId: chat.id, message: { content: ' hello ' }, clientMessageId: 'c-1' });
  await s.ack('message:send', { chatId: chat.id, message: { content: 'a file', type: 'file', fileUrl: 'https://cdn.example.com/a.png', fileName: 'a.png' } });
  a.emit('user:typing:start', { chatId: chat.id });
  a.emit('user:typing:stop', { chatId: chat.id });
  await s.ack('message:read', { chatId: chat.id, messageId: sent.message.id });
  await s.ack('message:delivered', { chatId: chat.id, messageId: sent.message.id });
  await a.ack('chat:sync', { chatId: chat.id, afterSeq: 0, limit: 50 });
  await a.ack('chat:sync', { chatId: chat.id, afterSeq: '1', limit: 1.0 });
  const report = await s.ack('sendReportMessage', { userId: alice.id, orderId: 'o-1', title: 'Refund', message: 'Your refund is on its way', status: 'Info' });
  await a.ack('report:read', { reportId: report.message.id });
  await s.ack('staff:availability', { status: 'away' });
  a.emit('user:online', { userId: alice.id });
  a.emit('joinUserRoom', alice.id);
  // A cut connection: socket.io-client resumes with `pid` and `offset`.
  await waitUntil(() => a.received('message:new').length >= 2, { what: 'two messages' });
  const back = nextConnect(a);
  cut.cut();
  await back;
  await a.ack('message:send', { chatId: chat.id, message: { content: 'after the cut' } });
  // A console paging through lists: the cursors the node hands out.
  for (let i = 0; i < 3; i++) await openChat(node, makeUser('bob'));
  const queries = ['limit=2', 'limit=20&status=open', 'beforeSeq=3&limit=50', 'afterSeq=0&limit=100', 'limit=1000', 'updatedAfter=2026-01-01T00:00:00Z'];
  const page = await api(node, 'GET', '/api/chats?limit=2', { user: admin });
  if (page.body?.nextCursor) queries.push(`limit=2&cursor=${page.body.nextCursor}`);
  const reports = await api(node, 'GET', `/api/reports?userId=${alice.id}&unread=true&limit=1`, { user: admin });
  queries.push(`userId=${alice.id}&unread=true&limit=1`);
  if (reports.body?.nextCursor) queries.push(`userId=${alice.id}&cursor=${reports.body.nextCursor}`);
  for (const q of queries) seeds.domain_parsers.add(q);
  a.close();
  s.close();
} finally {
  cut.close();
  await node.destroy();
}
for (const [target, set] of Object.entries(seeds)) {
  mkdirSync(out(target), { recursive: true });
  for (const seed of set) {
    const name = `seed-${createHash('sha1').update(seed).digest('hex').slice(0, 12)}`;
    writeFileSync(path.join(out(target), name), seed);
  }
  console.log(`${target}: ${set.size} seeds`);
}
process.exit(0);
