// The checker: reads everything the soak's clients saw and everything the store holds, and
// returns the properties that failed, each with the events that show it, in this order:
//
//   stored-once        every acknowledged message is stored once, at its acked seq; seqs are
//                      unique and increasing; no (sender, clientMessageId) is stored twice
//   exactly-once       every client got every message of its chats (live, replayed or by
//                      chat:sync), and no message:new twice
//   sender-order       on every connection, each sender's messages of a chat arrive in seq
//                      order (but a save first answered UNAVAILABLE, emitted when it is found
//                      to have landed); one connection's sends are saved in emission order
//   status-forward     every status is one the rules allow, never seen to move back, and the
//                      store's final status is at least every status any client saw
//   user-status        every user:status sequence a staff client saw on one session alternates
//   presence           (checked by the soak, with a deadline: presence at the end equals the truth)
//   memory             (checked by the soak: no node's memory kept growing after the load)

import { RANK } from './frontend.mjs';

const MAX_SHOWN = 8;

export function check({ clients, store }) {
  const failures = [];
  const fail = (property, message, events) => failures.push({ property, message, events: events.slice(0, MAX_SHOWN) });

  // ---------------------------------------------------------------- stored-once
  const byId = new Map();
  for (const [chatId, messages] of store) {
    let last = 0;
    const cmids = new Map();
    for (const m of messages) {
      if (m.seq <= last) fail('stored-once', `chat ${chatId}: seq ${m.seq} after ${last}`, [m]);
      last = m.seq;
      if (byId.has(m.id)) fail('stored-once', `message ${m.id} stored twice`, [byId.get(m.id), m]);
      byId.set(m.id, m);
      if (m.clientMessageId) {
        const key = `${m.senderId}/${m.clientMessageId}`;
        if (cmids.has(key)) fail('stored-once', `clientMessageId ${key} stored twice`, [cmids.get(key), m]);
        cmids.set(key, m);
      }
    }
  }
  let acked = 0;
  for (const c of clients) {
    for (const s of c.sends) {
      if (!s.ack) continue;
      acked++;
      const m = byId.get(s.ack.id);
      if (!m) fail('stored-once', `${c.name}: acked message ${s.ack.id} (${s.cmid}, seq ${s.ack.seq}) is not stored`, [s]);
      else if (m.seq !== s.ack.seq || m.chatId !== s.chatId) fail('stored-once', `${c.name}: acked ${s.cmid} as seq ${s.ack.seq}, stored as ${m.seq}`, [s, m]);
    }
  }

  // ---------------------------------------------------------------- exactly-once
  const counts = { live: 0, replayed: 0, synced: 0, syncOverlap: 0 };
  for (const c of clients) {
    for (const chatId of c.chats) {
      const stored = store.get(chatId) ?? [];
      const news = new Map();
      const synced = new Set();
      for (const e of c.log) {
        if (e.chatId !== chatId) continue;
        if (e.event === 'message:new') {
          const conn = c.conns[e.conn];
          const replayed = conn?.recovered && e.ts < conn.at;
          counts[replayed ? 'replayed' : 'live']++;
          if (news.has(e.seq)) fail('exactly-once', `${c.name}: message:new for ${chatId} seq ${e.seq} twice`, [news.get(e.seq), e, conn]);
          news.set(e.seq, e);
        } else if (e.event === 'sync') {
          if (news.has(e.seq) || synced.has(e.seq)) counts.syncOverlap++;
          else counts.synced++;
          synced.add(e.seq);
        }
      }
      for (const m of stored) {
        if (!news.has(m.seq) && !synced.has(m.seq)) {
          const near = c.log.filter((e) => e.chatId === chatId && Math.abs((e.seq ?? 0) - m.seq) <= 2);
          fail('exactly-once', `${c.name} (${c.user.id}) never got ${chatId} seq ${m.seq} (saved ${m.timestamp})`, [m, ...near, ...c.conns.map(({ n, at, recovered, closedAt, reason }) => ({ n, at, recovered, closedAt, reason }))]);
        }
      }
    }
  }

  // ---------------------------------------------------------------- sender-order
  // A save answered UNAVAILABLE that landed after the attempt stopped looking for it
  // (src/service/unknown_saves.rs) is never emitted; clients get it through chat:sync, out of
  // the sender's live order: its sender was told it failed, so it has no place in that order.
  const late = new Set(clients.flatMap((c) => c.sends.filter((s) => s.ack && s.error === 'UNAVAILABLE').map((s) => s.ack.id)));
  for (const c of clients) {
    const last = new Map();
    for (const e of c.log) {
      if (e.event !== 'message:new' || late.has(e.id)) continue;
      const key = `${e.conn}/${e.chatId}/${e.sender}`;
      const prev = last.get(key);
      if (prev && e.seq <= prev.seq) fail('sender-order', `${c.name}: on connection ${e.conn}, ${e.sender}'s seq ${e.seq} after ${prev.seq} in ${e.chatId}`, [prev, e]);
      last.set(key, e);
    }
    const firstTry = c.sends.filter((s) => s.ack && s.attempts === 1 && s.ack.conn === s.conn);
    const byChat = new Map();
    for (const s of firstTry) {
      const key = `${s.conn}/${s.chatId}`;
      const prev = byChat.get(key);
      if (prev && s.ack.seq < prev.ack.seq) fail('sender-order', `${c.name}: ${s.cmid} emitted after ${prev.cmid} on one connection but saved before it`, [prev, s]);
      byChat.set(key, s);
    }
  }

  // ---------------------------------------------------------------- status-forward
  // Observations: `[from, to, rank]`: the status was at least `rank` by `to` (an event, an ack),
  // or exactly `rank` at some instant in [from, to] (a chat:sync answer).
  const seen = new Map();
  const observe = (id, o) => {
    if (!seen.has(id)) seen.set(id, []);
    seen.get(id).push(o);
  };
  for (const c of clients) {
    for (const e of c.log) {
      if (e.event === 'message:new' || e.event === 'sync') {
        if (!(e.status in RANK)) fail('status-forward', `${c.name}: status ${e.status} of ${e.id} is not one the rules allow`, [e]);
        observe(e.id, { exact: true, from: e.sentAt ?? e.t - 1e9, to: e.t, rank: RANK[e.status], e, who: c.name });
      } else if (e.event === 'message:read') {
        observe(e.messageId, { exact: false, to: e.t, rank: RANK.read, e, who: c.name });
      }
    }
    for (const r of c.reads) observe(r.messageId, { exact: false, to: r.t, rank: RANK.read, e: { event: 'read acked', ...r }, who: c.name });
  }
  for (const [id, obs] of seen) {
    const m = byId.get(id);
    const top = obs.reduce((a, o) => (o.rank > a.rank ? o : a), obs[0]);
    if (m && RANK[m.status] < top.rank) fail('status-forward', `message ${id}: stored as ${m.status}, but ${top.who} saw it ${Object.keys(RANK)[top.rank]}`, [top.e, m]);
    // A sync answered after (it was sent after) a higher status was known went back.
    for (const o of obs) {
      if (!o.exact) continue;
      const before = obs.find((p) => p.rank > o.rank && p.to < o.from && !p.exact);
      if (before) fail('status-forward', `message ${id}: ${o.who} synced it as ${Object.keys(RANK)[o.rank]} after ${before.who} saw it ${Object.keys(RANK)[before.rank]}`, [before.e, o.e]);
    }
  }

  // ---------------------------------------------------------------- user-status
  for (const c of clients) {
    if (!c.staff) continue;
    // A session: connections chained by recovery (a non-recovered connect starts a new one).
    let session = -1;
    const last = new Map();
    const sessionOf = c.conns.map((conn) => (conn.recovered ? session : ++session));
    for (const e of c.log) {
      if (e.event !== 'user:status') continue;
      const key = `${sessionOf[e.conn]}/${e.userId}`;
      const prev = last.get(key);
      if (prev && prev.status === e.status) fail('user-status', `${c.name}: user:status ${e.userId} ${e.status} twice in a row in one session`, [prev, e]);
      last.set(key, e);
    }
  }

  return { failures, counts: { ...counts, acked, stored: byId.size } };
}
