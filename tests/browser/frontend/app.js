// The test frontend's page: reads its settings from the query string (api, token, chat,
// transports, user), keeps what it saw in `window.app` for the tests to wait on, and shows it.

import * as svc from './services.js';

const params = new URLSearchParams(location.search);
const api = params.get('api');
const token = params.get('token');
const transports = (params.get('transports') ?? 'polling,websocket').split(',');

const app = {
  api,
  chatId: params.get('chat'),
  connected: false,
  /** Transport names in the order the socket used them (the first, then upgrades). */
  transports: [],
  connectErrors: [],
  /** Messages of the open chat by id. */
  messages: new Map(),
  typing: {},
  reads: [],
  reports: [],
  reportReplies: [],
  errors: [],
  uploads: [],
  restErrors: [],
  /** `user:status` events (staff get them), in order. */
  statuses: [],
};
window.app = app;

const socket = svc.getSocket(api, token, { transports });

// On the Engine.IO connection's opening, not on `connect`: the upgrade may finish before the
// Socket.IO CONNECT answer arrives.
socket.io.on('open', () => {
  app.transports.push(socket.io.engine.transport.name);
  socket.io.engine.once('upgrade', (t) => {
    app.transports.push(t.name);
    render();
  });
});
socket.on('connect', () => {
  app.connected = true;
  render();
  if (app.chatId) catchUp();
});
socket.on('disconnect', () => {
  app.connected = false;
  render();
});
socket.on('connect_error', (err) => {
  app.connectErrors.push({ message: err.message, description: String(err.description ?? '') });
  render();
});
socket.on('error', (e) => app.errors.push(e));
socket.on('user:status', (s) => app.statuses.push(s));

svc.onNewMessage(({ chatId, message }) => {
  if (chatId === app.chatId) add(message);
});
svc.onTyping((t) => {
  if (t.chatId !== app.chatId) return;
  app.typing[t.userId] = t.isTyping ? t.userName : undefined;
  render();
});
svc.onRead((r) => {
  app.reads.push(r);
  render();
});
svc.onReceiveReportMessage(({ message }) => {
  app.reports.push(message);
  render();
});
svc.onReportMessageSent((reply) => app.reportReplies.push(reply));

/** Authenticated REST call on the API origin. */
async function rest(method, route, body) {
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined && !(body instanceof FormData)) headers['content-type'] = 'application/json';
  try {
    const res = await fetch(api + route, { method, headers, body: body instanceof FormData ? body : body && JSON.stringify(body) });
    const json = await res.json();
    if (!res.ok) app.restErrors.push({ route, status: res.status, json });
    return { status: res.status, json };
  } catch (e) {
    app.restErrors.push({ route, error: String(e) });
    throw e;
  }
}

/** After every (re)connect: the history once, then whatever came after the newest seq shown. */
async function catchUp() {
  if (!app.historyLoaded) {
    const { json } = await rest('GET', `/api/chats/${app.chatId}/messages?afterSeq=0&limit=100`);
    json.messages.forEach(add);
    app.historyLoaded = true;
  }
  const after = Math.max(0, ...[...app.messages.values()].map((m) => m.seq));
  const ack = await svc.syncChat(app.chatId, after);
  if (ack.ok) ack.messages.forEach(add);
  app.synced = (app.synced ?? 0) + 1;
}

function add(message) {
  app.messages.set(message.id, message);
  render();
}

/** A fileUrl as an <img src>: relative ones resolve against the API origin, not the page's. */
const fileSrc = (url) => new URL(url, api).href;

function render() {
  document.getElementById('status').textContent = app.connected ? 'online' : 'offline';
  document.getElementById('transport').textContent = app.transports.join(' > ');
  const list = document.getElementById('messages');
  const sorted = [...app.messages.values()].sort((a, b) => a.seq - b.seq);
  list.replaceChildren(...sorted.map((m) => {
    const li = document.createElement('li');
    li.dataset.seq = m.seq;
    li.dataset.id = m.id;
    li.dataset.sender = m.senderId;
    const content = document.createElement('span');
    content.className = 'content';
    content.textContent = m.content;
    li.append(content);
    if (m.type === 'file') {
      const img = document.createElement('img');
      img.alt = m.fileName;
      img.src = fileSrc(m.fileUrl);
      li.append(img);
    }
    const read = app.reads.some((r) => r.chatId === m.chatId && r.readBy !== m.senderId);
    li.dataset.read = String(read || m.status === 'read');
    return li;
  }));
  document.getElementById('typing').textContent = Object.values(app.typing).filter(Boolean).map((n) => `${n} is typing`).join(', ');
  document.getElementById('reports').replaceChildren(...app.reports.map((r) => {
    const li = document.createElement('li');
    li.textContent = `${r.status}: ${r.title}: ${r.message}`;
    return li;
  }));
}

// What the tests (and a person at the page) do.
app.send = async (content) => {
  const ack = await svc.sendMessage(app.chatId, { content });
  if (ack.ok) add(ack.message);
  return ack;
};
app.typingStart = () => svc.startTyping(app.chatId);
app.typingStop = () => svc.stopTyping(app.chatId);
app.markRead = (messageId) => svc.markRead(app.chatId, messageId);
app.joinUserRoom = (userId) => new Promise((resolve) => socket.emit('joinUserRoom', userId, resolve));
app.sendReport = (data) => svc.sendReportMessage(data);
app.rest = rest;
app.sendFile = async (fileUrl, fileName) => svc.sendMessage(app.chatId, { content: '', type: 'file', fileUrl, fileName });

document.getElementById('compose').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = document.getElementById('text');
  const content = input.value;
  input.value = '';
  await app.send(content);
});

// An upload from the file input, as a form would: multipart to the API, then a file message.
document.getElementById('file').addEventListener('change', async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const form = new FormData();
  form.append('file', file);
  const { status, json } = await rest('POST', '/api/uploads', form);
  app.uploads.push({ status, json });
  if (status === 201) app.lastFileAck = await app.sendFile(json.fileUrl, json.fileName);
});

render();
