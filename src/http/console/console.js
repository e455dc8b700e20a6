// Switchboard's development console: sign in as a user, staff or a superadmin (the node mints the
// token, in development and for this machine only), open a support chat, chat with the other
// window, see typing, delivery and read states, send report messages, and watch who is online on
// which node. Everything goes through the public API (REST and Socket.IO), as a frontend would.
// The chat list is live (`chat:created`, `chat:updated`); desk.js adds the support desk's views,
// told of this page's state by the `console:start` and `console:chats` events.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    me: null, // { id, name, role }
    token: null,
    node: null,
    socket: null,
    chats: new Map(),
    chatId: null,
    /** The open chat's messages by id. */
    messages: new Map(),
    /** Who is typing in the open chat: userId -> name. */
    typing: new Map(),
    reports: [],
    typingSince: 0,
    typingTimer: null,
  };
  const isStaff = () => state.me && state.me.role !== 'user';

  async function rest(method, path, body) {
    const res = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${state.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(json.error ? `${json.error.code}: ${json.error.message}` : `HTTP ${res.status}`);
    return json;
  }

  // --- signing in ------------------------------------------------------------------------

  /** Where this browser keeps the console code (shared by its windows, unlike the identity). */
  const CODE_KEY = 'switchboard-console-code';
  $('signin-code').value = localStorage.getItem(CODE_KEY) || '';

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('signin-name').value;
    const role = new FormData(e.target).get('role');
    const code = $('signin-code').value.trim();
    $('signin-error').textContent = '';
    try {
      const res = await fetch('/console/token', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, role, code }),
      });
      const json = await res.json();
      if (!res.ok) {
        // A restarted node prints a new code: forget the one this browser kept.
        if (res.status === 403) localStorage.removeItem(CODE_KEY);
        throw new Error(json.error ? json.error.message : `HTTP ${res.status}`);
      }
      // Every window of this browser signs in with the same code: keep it for the next one.
      localStorage.setItem(CODE_KEY, code);
      // Per window: two windows are two identities; a reload keeps this one.
      sessionStorage.setItem('switchboard-console', JSON.stringify(json));
      start(json);
    } catch (err) {
      $('signin-error').textContent = `Could not sign in: ${err.message}`;
    }
  });

  function start({ token, user, node }) {
    state.token = token;
    state.me = user;
    state.node = node;
    const role = { user: 'user', admin: 'staff', superadmin: 'superadmin' }[user.role] || user.role;
    $('whoami').textContent = `Signed in as ${user.name} (${user.id}, ${role}) on node ${node}`;
    $('signin').hidden = true;
    $('workspace').hidden = false;
    $('new-chat').hidden = isStaff();
    $('report-form').hidden = !isStaff();
    connect();
    loadChats();
    loadReports();
    document.dispatchEvent(new CustomEvent('console:start', { detail: { state, rest, isStaff } }));
    if (isStaff()) {
      loadOnline();
      setInterval(loadOnline, 5000);
    } else {
      $('online-note').textContent = 'The list of who is online is for staff: sign in as staff in another window to see it.';
    }
  }

  // --- the socket ------------------------------------------------------------------------

  function connect() {
    const socket = io({ auth: { token: state.token } });
    state.socket = socket;
    const connection = () => {
      $('connection').textContent = socket.connected ? `online (${socket.io.engine.transport.name})` : 'offline';
    };
    socket.on('connect', () => {
      connection();
      socket.io.engine.once('upgrade', connection);
      if (state.chatId) catchUp();
      if (isStaff()) loadOnline();
    });
    socket.on('disconnect', (reason) => {
      connection();
      // Removed by staff: socket.io-client does not reconnect by itself.
      if (reason === 'io server disconnect') $('connection').textContent = 'offline (disconnected by the server)';
    });
    socket.on('connect_error', (err) => {
      $('connection').textContent = `offline (${err.message})`;
      // An expired token (a day later) or another node's secret: sign in again.
      if (err.message.startsWith('UNAUTHORIZED')) {
        sessionStorage.removeItem('switchboard-console');
        socket.disconnect();
        location.reload();
      }
    });
    socket.on('message:new', ({ chatId, message }) => {
      if (!state.chats.has(chatId)) loadChats();
      if (chatId === state.chatId) {
        add(message);
        acknowledge();
      }
    });
    socket.on('user:typing', ({ chatId, userId, userName, isTyping }) => {
      if (chatId !== state.chatId) return;
      if (isTyping) state.typing.set(userId, userName);
      else state.typing.delete(userId);
      renderTyping();
    });
    socket.on('message:read', ({ chatId, messageId, readBy }) => advance(chatId, messageId, readBy, 'read'));
    socket.on('message:delivered', ({ chatId, messageId, deliveredTo }) => advance(chatId, messageId, deliveredTo, 'delivered'));
    socket.on('user:status', () => { if (isStaff()) loadOnline(); });
    // The live chat list: a chat opened or changed anywhere in the cluster.
    socket.on('chat:created', ({ chat }) => updateChat(chat));
    socket.on('chat:updated', ({ chat }) => updateChat(chat));
    socket.on('receiveReportMessage', ({ message }) => {
      state.reports.unshift(message);
      renderReports();
    });
    socket.on('report:read', ({ reportId, readAt }) => {
      const r = state.reports.find((x) => x.id === reportId);
      if (r) Object.assign(r, { isRead: true, readAt });
      renderReports();
    });
  }

  // --- chats -----------------------------------------------------------------------------

  async function loadChats() {
    const { chats } = await rest('GET', '/api/chats?limit=50');
    state.chats = new Map(chats.map((c) => [c.id, c]));
    renderChats();
  }

  $('new-chat').addEventListener('click', async () => {
    const chat = await rest('POST', '/api/chats', { title: `Support for ${state.me.name}` });
    state.chats.set(chat.id, chat);
    renderChats();
    openChat(chat.id);
  });

  /** A chat as `chat:created` / `chat:updated` carry it (its unread count is kept). */
  function updateChat(chat) {
    state.chats.set(chat.id, { ...state.chats.get(chat.id), ...chat });
    renderChats();
  }

  function renderChats() {
    const chats = [...state.chats.values()].sort((a, b) => (b.updatedAt || '').localeCompare(a.updatedAt || ''));
    $('chat-list').replaceChildren(...chats.map((c) => {
      const li = document.createElement('li');
      li.dataset.id = c.id;
      const b = document.createElement('button');
      b.type = 'button';
      const assigned = c.assignedAdmin ? `assigned to ${c.assignedAdmin}` : 'unassigned';
      b.textContent = `${c.title} (${c.participants.join(', ')}) · ${c.status} · ${c.priority} · ${assigned}${c.unreadCount ? ` · ${c.unreadCount} unread` : ''}`;
      b.setAttribute('aria-current', String(c.id === state.chatId));
      b.addEventListener('click', () => openChat(c.id));
      li.append(b);
      return li;
    }));
    document.dispatchEvent(new CustomEvent('console:chats'));
  }

  async function openChat(chatId) {
    state.chatId = chatId;
    state.messages.clear();
    state.typing.clear();
    const chat = state.chats.get(chatId);
    $('chat-title').textContent = chat ? chat.title : 'Chat';
    $('compose').hidden = false;
    renderChats();
    renderTyping();
    const user = chat && chat.participants.find((p) => p !== state.me.id);
    if (isStaff() && user && !$('report-user').value) $('report-user').value = user;
    const { messages } = await rest('GET', `/api/chats/${chatId}/messages?afterSeq=0&limit=100`);
    messages.forEach(add);
    acknowledge();
    $('compose-text').focus();
  }

  /** After a reconnect: what the open chat got meanwhile. */
  async function catchUp() {
    const afterSeq = Math.max(0, ...[...state.messages.values()].map((m) => m.seq));
    const ack = await state.socket.timeout(8000).emitWithAck('chat:sync', { chatId: state.chatId, afterSeq }).catch(() => null);
    if (ack && ack.ok) ack.messages.forEach(add);
    acknowledge();
  }

  function add(message) {
    const known = state.messages.get(message.id);
    // Status only moves forward: a late copy never takes a check away.
    if (known && rank(known.status) > rank(message.status)) message.status = known.status;
    state.messages.set(message.id, message);
    renderMessages();
  }

  const rank = (s) => ({ sent: 0, delivered: 1, read: 2 })[s] ?? 0;

  /** `message:read` / `message:delivered`: every message up to `messageId` not sent by `by`. */
  function advance(chatId, messageId, by, status) {
    if (chatId !== state.chatId) return;
    const upTo = state.messages.get(messageId);
    if (!upTo) return;
    for (const m of state.messages.values()) {
      if (m.seq <= upTo.seq && m.senderId !== by && rank(m.status) < rank(status)) m.status = status;
    }
    renderMessages();
  }

  /** Tells the other side that this window shows their messages (delivered, then read). */
  function acknowledge() {
    if (!state.chatId || !state.socket || !state.socket.connected) return;
    const theirs = [...state.messages.values()].filter((m) => m.senderId !== state.me.id).sort((a, b) => b.seq - a.seq)[0];
    if (!theirs || theirs.status === 'read') return;
    // `message:delivered` is optional for clients; a node without it answers VALIDATION.
    state.socket.timeout(8000).emitWithAck('message:delivered', { chatId: state.chatId, messageId: theirs.id }).catch(() => {});
    if (document.visibilityState === 'visible') {
      state.socket.emit('message:read', { chatId: state.chatId, messageId: theirs.id });
    }
  }
  document.addEventListener('visibilitychange', acknowledge);

  const CHECKS = { sent: '✓', delivered: '✓✓', read: '✓✓' };

  function renderMessages() {
    const list = $('messages');
    const sorted = [...state.messages.values()].sort((a, b) => a.seq - b.seq);
    list.replaceChildren(...sorted.map((m) => {
      const li = document.createElement('li');
      li.dataset.id = m.id;
      li.dataset.seq = m.seq;
      const mine = m.senderId === state.me.id;
      li.className = mine ? 'mine' : '';
      const sender = document.createElement('span');
      sender.className = 'sender';
      sender.textContent = mine ? 'You' : m.senderName;
      const content = document.createElement('span');
      content.className = 'content';
      content.textContent = m.content;
      li.append(sender, content);
      if (m.type === 'file' && m.fileUrl) {
        const img = document.createElement('img');
        img.src = m.fileUrl;
        img.alt = m.fileName || 'attachment';
        li.append(img);
      }
      if (mine && m.status) {
        const status = document.createElement('span');
        status.className = `status ${m.status}`;
        status.dataset.status = m.status;
        status.textContent = `${CHECKS[m.status] || ''} ${m.status}`;
        li.append(status);
      }
      return li;
    }));
    list.scrollTop = list.scrollHeight;
  }

  function renderTyping() {
    const names = [...state.typing.values()];
    $('typing').textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
  }

  $('compose').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('compose-text');
    const content = input.value.trim();
    if (!content) return;
    input.value = '';
    stopTyping();
    const ack = await state.socket.timeout(8000).emitWithAck('message:send', {
      chatId: state.chatId,
      message: { content },
      clientMessageId: crypto.randomUUID(),
    }).catch((err) => ({ ok: false, error: { message: err.message } }));
    if (ack.ok) add(ack.message);
    else $('typing').textContent = `Not sent: ${ack.error.message}`;
  });

  // Typing: one start per 2 s while keys are pressed, a stop after 2 s without any.
  $('compose-text').addEventListener('input', () => {
    if (!state.chatId) return;
    const now = Date.now();
    if (now - state.typingSince > 2000) {
      state.socket.emit('user:typing:start', { chatId: state.chatId });
      state.typingSince = now;
    }
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(stopTyping, 2000);
  });

  function stopTyping() {
    clearTimeout(state.typingTimer);
    if (state.typingSince && state.chatId) state.socket.emit('user:typing:stop', { chatId: state.chatId });
    state.typingSince = 0;
  }

  // --- report messages -------------------------------------------------------------------

  async function loadReports() {
    if (isStaff()) return;
    const { reports } = await rest('GET', '/api/reports?limit=50');
    state.reports = reports;
    renderReports();
  }

  $('report-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {
      userId: $('report-user').value.trim(),
      title: $('report-title').value,
      message: $('report-message').value,
      status: $('report-status').value,
    };
    const reply = await state.socket.timeout(8000).emitWithAck('sendReportMessage', body)
      .catch((err) => ({ success: false, error: { message: err.message } }));
    $('report-result').textContent = reply.success
      ? `Report sent to ${reply.message.userId}`
      : `Report not sent: ${reply.error.message}`;
  });

  function renderReports() {
    $('report-list').replaceChildren(...state.reports.map((r) => {
      const li = document.createElement('li');
      li.dataset.id = r.id;
      li.textContent = `${r.status}: ${r.title}: ${r.message} (from ${r.sentByName}) `;
      if (r.isRead) {
        const read = document.createElement('span');
        read.className = 'status read';
        read.textContent = '✓ read';
        li.append(read);
      } else if (!isStaff()) {
        const b = document.createElement('button');
        b.type = 'button';
        b.textContent = 'Mark read';
        b.addEventListener('click', () => state.socket.emit('report:read', { reportId: r.id }));
        li.append(b);
      }
      return li;
    }));
  }

  // --- who is online ---------------------------------------------------------------------

  async function loadOnline() {
    try {
      const { activeUsers, count, users } = await rest('GET', '/api/socket/active-users?limit=100');
      $('online-note').textContent = `${users} ${users === 1 ? 'user' : 'users'} online, ${count} ${count === 1 ? 'socket' : 'sockets'}`;
      $('online-table').hidden = false;
      $('online-table').tBodies[0].replaceChildren(...activeUsers.map((s) => {
        const tr = document.createElement('tr');
        tr.dataset.user = s.userId;
        for (const v of [s.userId, s.userName, s.userRole, s.node]) {
          const td = document.createElement('td');
          td.textContent = v;
          tr.append(td);
        }
        return tr;
      }));
    } catch (err) {
      $('online-note').textContent = `Could not load who is online: ${err.message}`;
    }
  }

  // A reload keeps this window's identity.
  const kept = sessionStorage.getItem('switchboard-console');
  if (kept) start(JSON.parse(kept));
})();
