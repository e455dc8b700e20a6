// One soak client: an unchanged support-chat frontend on the official socket.io-client
// (reconnection with socket.io's back-off, connection state recovery, acks with timeouts), and
// the record of everything it saw, for the checker.
//
// As a frontend does: it sends messages with a `clientMessageId` and retries an unacknowledged
// one with the same id; reads what the other side sent; types; staff send reports and users mark
// them read; a page reload now and then (the socket closed, a new one opened: a new session).
// After any connect that did not recover its session it calls `chat:sync` from the last `seq`
// it holds for each of its chats (kept across reloads, as a frontend keeps it in storage).

import { frontend } from '../../js/lib/harness.js';

/** Status ranks: a message's status only moves forward. */
export const RANK = { sent: 0, delivered: 1, read: 2 };

export class ChaosClient {
  /**
   * `user` (from makeUser), `chats` its chat ids (a user's own; staff: every chat), `url` the
   * load balancer, `rng` its own seeded draw, `peers` user ids a staff member may report to.
   */
  constructor({ name, user, chats, url, rng, peers = [], intervalMs }) {
    this.name = name;
    this.user = user;
    this.staff = user.role !== 'user';
    this.chats = chats;
    this.url = url;
    this.rng = rng;
    this.peers = peers;
    this.intervalMs = intervalMs;
    /** Every connection: `{ n, at, recovered, closedAt?, reason? }`. */
    this.conns = [];
    /** Everything received: `{ t, conn, event, ... }` (message:new, syncs, reads, statuses). */
    this.log = [];
    /** Every send: `{ cmid, chatId, conn, at, attempts, ack?, ackAt?, error? }`. */
    this.sends = [];
    /** Acked reads: `{ t, chatId, messageId }`. */
    this.reads = [];
    /** The highest seq held per chat (a frontend's storage; survives reloads). */
    this.held = new Map(chats.map((c) => [c, 0]));
    this.seen = new Map(chats.map((c) => [c, new Set()]));
    this.running = false;
    this.pending = 0;
    this.sending = 0;
    this.counter = 0;
    this.timers = new Set();
  }

  get conn() {
    return this.conns.length - 1;
  }

  get connected() {
    return Boolean(this.client?.socket.connected);
  }

  /** Opens the socket (again, for a reload). */
  open() {
    const client = frontend(this.url, this.user, {
      reconnectionDelay: 300, reconnectionDelayMax: 3000, timeout: 8000,
    });
    this.client = client;
    const socket = client.socket;
    socket.on('connect', () => {
      this.conns.push({ n: this.conns.length, at: Date.now(), recovered: socket.recovered, socket: this.reloads ?? 0 });
      if (!socket.recovered) this.syncAll();
    });
    socket.on('disconnect', (reason) => {
      const c = this.conns[this.conns.length - 1];
      if (c && c.closedAt === undefined) {
        c.closedAt = Date.now();
        c.reason = reason;
      }
    });
    socket.on('connect_error', (err) => {
      this.connectErrors = (this.connectErrors ?? 0) + 1;
      this.lastConnectError = { t: Date.now(), message: String(err?.message ?? err), active: socket.active };
    });
    socket.onAny((event, data, offset) => this.receive(event, data, offset));
    return client;
  }

  receive(event, d, offset) {
    const t = Date.now();
    const conn = this.conn;
    switch (event) {
      case 'message:new': {
        const m = d.message;
        this.log.push({ t, conn, event, chatId: d.chatId, seq: m.seq, id: m.id, sender: m.senderId, status: m.status, ts: Date.parse(m.timestamp), offset });
        this.hold(d.chatId, m.seq);
        // The other side's message: read it now and then, as someone looking at the chat does.
        if (this.running && m.senderId !== this.user.id && (this.user.role === 'user') !== (m.senderRole === 'user') && this.rng() < 0.3) {
          this.read(d.chatId, m.id);
        }
        break;
      }
      case 'message:read':
        this.log.push({ t, conn, event, chatId: d.chatId, messageId: d.messageId, by: d.readBy });
        break;
      case 'message:delivered':
        this.log.push({ t, conn, event, chatId: d.chatId, messageId: d.messageId });
        break;
      case 'user:status':
        this.log.push({ t, conn, event, userId: d.userId, status: d.status });
        break;
      case 'receiveReportMessage':
        this.log.push({ t, conn, event, reportId: d.message?.id });
        if (this.running && d.message?.id) this.call('report:read', { reportId: d.message.id });
        break;
      default:
        break;
    }
  }

  hold(chatId, seq) {
    const seen = this.seen.get(chatId);
    if (!seen) return;
    seen.add(seq);
    let h = this.held.get(chatId);
    while (seen.has(h + 1)) h++;
    this.held.set(chatId, h);
  }

  /** An event with an ack and a timeout; resolves with the ack body, or `{ timeout }`. */
  call(event, payload, timeout = 8000) {
    this.pending++;
    return this.client.socket.timeout(timeout).emitWithAck(event, payload)
      .catch((e) => ({ timeout: String(e?.message ?? e) }))
      .finally(() => { this.pending--; });
  }

  /** `chat:sync` from what it holds, for every chat, page after page. */
  async syncAll() {
    const conn = this.conn;
    for (const chatId of this.chats) {
      for (let page = 0; page < 50; page++) {
        const sentAt = Date.now();
        const r = await this.call('chat:sync', { chatId, afterSeq: this.held.get(chatId), limit: 500 });
        if (!r?.ok) break;
        for (const m of r.messages) {
          this.log.push({ t: Date.now(), sentAt, conn, event: 'sync', chatId, seq: m.seq, id: m.id, sender: m.senderId, status: m.status });
          this.hold(chatId, m.seq);
        }
        if (!r.hasMore || r.messages.length === 0) break;
      }
    }
  }

  async read(chatId, messageId) {
    const r = await this.call('message:read', { chatId, messageId });
    if (r?.ok) this.reads.push({ t: Date.now(), chatId, messageId });
  }

  /** Sends a message; retries it with the same clientMessageId until acked (at most 6 tries). */
  async send(chatId) {
    const cmid = `${this.name}-${this.counter++}`;
    const rec = { cmid, chatId, conn: this.conn, at: Date.now(), attempts: 0 };
    this.sends.push(rec);
    this.sending++;
    try {
      await this.retry(rec);
    } finally {
      this.sending--;
    }
  }

  async retry(rec) {
    const { cmid, chatId } = rec;
    while (rec.attempts < 6) {
      rec.attempts++;
      const r = await this.call('message:send', { chatId, message: { content: `m ${cmid}` }, clientMessageId: cmid });
      if (r?.ok) {
        rec.ack = { id: r.message.id, seq: r.message.seq, conn: this.conn };
        rec.ackAt = Date.now();
        return;
      }
      rec.error = r?.error?.code ?? r?.timeout ?? 'no answer';
      if (r?.error && !['UNAVAILABLE', 'INTERNAL', 'RATE_LIMITED'].includes(r.error.code)) return;
      // A retry's back-off goes on after the load stops (a frontend keeps its outbox).
      await new Promise((r) => setTimeout(r, 500 + this.rng() * 1500));
    }
  }

  /** Waits `ms`, or until `stop()`. */
  pause(ms) {
    return new Promise((resolve) => {
      const w = { resolve };
      w.timer = setTimeout(() => {
        this.timers.delete(w);
        resolve();
      }, ms);
      this.timers.add(w);
    });
  }

  /** The load: until `stop()`, one action every `intervalMs` on average. */
  async start() {
    this.running = true;
    while (this.running) {
      await this.pause(this.intervalMs * (0.5 + this.rng()));
      if (!this.running) break;
      const r = this.rng();
      const chatId = this.chats[Math.floor(this.rng() * this.chats.length)];
      if (r < 0.7) {
        // Typing, then the message: a frontend's usual order.
        this.client.emit('user:typing:start', { chatId });
        this.send(chatId).then(() => this.client.emit('user:typing:stop', { chatId }));
      } else if (r < 0.8 && this.staff && this.peers.length) {
        const userId = this.peers[Math.floor(this.rng() * this.peers.length)];
        this.call('sendReportMessage', { userId, title: 'Order update', message: `report from ${this.name}`, status: 'Info' });
      } else if (r < 0.83) {
        this.reload();
      }
    }
  }

  /** A page reload: the old socket closed by the client, a new one (a new session). */
  reload() {
    this.reloads = (this.reloads ?? 0) + 1;
    this.client.socket.disconnect();
    this.open();
  }

  stop() {
    this.running = false;
    for (const w of this.timers) {
      clearTimeout(w.timer);
      w.resolve();
    }
    this.timers.clear();
  }

  close() {
    this.stop();
    this.client?.socket.disconnect();
  }
}
