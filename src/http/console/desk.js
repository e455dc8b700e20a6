// The development console's support desk (staff windows): the open chat's status and
// assignment with "Assign to me" and "Close chat", staff availability (live from
// `staff:availability`) with each member's open assigned chats, this window's own availability,
// and, for a superadmin, removing a user (disconnect, block, revoke tokens) and the audit log.
// console.js owns the page's state and tells this file of it with `console:start` (once signed
// in) and `console:chats` (whenever the chat list changed). Public API only, as a frontend would.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  let app = null; // { state, rest, isStaff } from console.js
  /** Staff availability: userId -> 'available' | 'away' | 'offline'. */
  const staff = new Map();
  let mine = 'available';

  document.addEventListener('console:start', ({ detail }) => {
    app = detail;
    if (!app.isStaff()) return;
    $('desk').hidden = false;
    const superadmin = app.state.me.role === 'superadmin';
    $('remove-form').hidden = !superadmin;
    $('audit').hidden = !superadmin;
    wire(app.state.socket);
    staff.set(app.state.me.id, mine);
    loadStaff();
    if (superadmin) loadAudit();
  });

  document.addEventListener('console:chats', () => {
    if (!app || !app.isStaff()) return;
    renderChatMeta();
    renderStaff();
  });

  function wire(socket) {
    socket.on('staff:availability', ({ userId, status }) => {
      staff.set(userId, status);
      if (userId === app.state.me.id) mine = status;
      renderStaff();
    });
    // A reconnect may have missed transitions: read them again.
    socket.on('connect', loadStaff);
  }

  // --- the open chat ---------------------------------------------------------------------

  function renderChatMeta() {
    const chat = app.state.chats.get(app.state.chatId);
    $('chat-actions').hidden = !chat;
    if (!chat) return;
    const assigned = chat.assignedAdmin ? `assigned to ${chat.assignedAdmin}` : 'not assigned';
    $('chat-meta').textContent = `Status ${chat.status}, priority ${chat.priority}, ${assigned}`;
    $('take-chat').disabled = chat.assignedAdmin === app.state.me.id;
    $('close-chat').disabled = chat.status === 'closed';
  }

  async function patchChat(changes) {
    try {
      await app.rest('PATCH', `/api/chats/${app.state.chatId}`, changes);
    } catch (err) {
      $('chat-meta').textContent = `Not changed: ${err.message}`;
    }
  }

  $('take-chat').addEventListener('click', () => patchChat({ assignedAdmin: app.state.me.id }));
  $('close-chat').addEventListener('click', () => patchChat({ status: 'closed' }));

  // --- availability ----------------------------------------------------------------------

  /** Staff with a socket now, and each one's availability (`GET /api/users/{id}/status`). */
  async function loadStaff() {
    try {
      const { activeUsers } = await app.rest('GET', '/api/socket/active-users?limit=1000');
      const ids = [...new Set(activeUsers.filter((s) => s.userRole !== 'user').map((s) => s.userId))];
      await Promise.all(ids.map(async (id) => {
        const status = await app.rest('GET', `/api/users/${encodeURIComponent(id)}/status`);
        if (status.availability) staff.set(id, status.availability);
      }));
      if (staff.has(app.state.me.id)) mine = staff.get(app.state.me.id);
      renderStaff();
    } catch (err) {
      $('my-availability').textContent = `Could not load staff availability: ${err.message}`;
    }
  }

  function renderStaff() {
    const open = new Map();
    for (const c of app.state.chats.values()) {
      if (c.status === 'open' && c.assignedAdmin) open.set(c.assignedAdmin, (open.get(c.assignedAdmin) || 0) + 1);
    }
    $('staff-table').tBodies[0].replaceChildren(...[...staff.entries()].sort().map(([id, status]) => {
      const tr = document.createElement('tr');
      tr.dataset.user = id;
      for (const v of [id, status, String(open.get(id) || 0)]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }));
    $('my-availability').textContent = `You are ${mine}`;
    $('toggle-availability').textContent = mine === 'away' ? 'Set me available' : 'Set me away';
  }

  $('toggle-availability').addEventListener('click', async () => {
    const status = mine === 'away' ? 'available' : 'away';
    const ack = await app.state.socket.timeout(8000).emitWithAck('staff:availability', { status })
      .catch((err) => ({ ok: false, error: { message: err.message } }));
    if (!ack.ok) {
      $('my-availability').textContent = `Not changed: ${ack.error.message}`;
      return;
    }
    mine = status;
    staff.set(app.state.me.id, status);
    renderStaff();
  });

  // --- removing a user (superadmin) ------------------------------------------------------

  $('remove-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const userId = $('remove-user').value.trim();
    const action = $('remove-action').value;
    const reason = $('remove-reason').value.trim();
    const path = `/api/users/${encodeURIComponent(userId)}`;
    try {
      let text;
      if (action === 'revoke') {
        const r = await app.rest('POST', `${path}/revoke-tokens`, {});
        text = `Tokens of ${r.userId} issued before ${r.revokedBefore} are revoked`;
      } else {
        const body = { ...(reason ? { reason } : {}), ...(action === 'block' ? { blockSecs: Number($('remove-block').value) } : {}) };
        const r = await app.rest('POST', `${path}/disconnect`, body);
        text = `Disconnected ${r.sockets} ${r.sockets === 1 ? 'socket' : 'sockets'} of ${r.userId}`;
        if (r.blockedUntil) text += `, blocked until ${r.blockedUntil}`;
      }
      $('remove-result').textContent = text;
    } catch (err) {
      $('remove-result').textContent = `Not removed: ${err.message}`;
    }
    loadAudit();
  });

  // --- the audit log (superadmin) --------------------------------------------------------

  async function loadAudit() {
    try {
      const { entries } = await app.rest('GET', '/api/audit?limit=20');
      $('audit-list').replaceChildren(...entries.map((e) => {
        const li = document.createElement('li');
        li.dataset.action = e.action;
        li.textContent = `${e.at}: ${e.actor.id} (${e.actor.role}) ${e.action} ${e.target.type} ${e.target.id}`;
        return li;
      }));
    } catch (err) {
      $('audit-list').replaceChildren(Object.assign(document.createElement('li'), { textContent: `Could not load the audit log: ${err.message}` }));
    }
  }

  $('audit-refresh').addEventListener('click', loadAudit);
})();
