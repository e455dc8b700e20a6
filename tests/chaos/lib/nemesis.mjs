// The nemesis: a schedule of faults drawn from a seed before the soak starts (the same seed
// gives the same schedule, whatever happens while it runs), and the executor that applies it.
//
// Faults: SIGKILL, SIGTERM or SIGSTOP of a node (restarted, or continued, after the fault's
// duration), a Redis Sentinel failover, a cut of a share of the client connections at the load
// balancer, a stall of the store (SIGSTOP of secantusd-py). At most one node is out at a time,
// so the cluster always has two nodes to serve; every fault is healed before `healBy`.

/** mulberry32: a small seeded PRNG; `rng()` is uniform in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KINDS = [
  ['kill', 3], ['term', 2], ['stop', 2], ['failover', 1], ['cut', 3], ['stall', 2],
];

/**
 * The schedule for `seed`: faults between `from` and `healBy` ms of the soak, sorted by start.
 * Each is `{ at, kind, node?, ms, share? }`: `ms` how long it lasts (node down or paused, store
 * stalled), `share` the share of connections a cut drops.
 */
export function schedule(seed, { from, healBy, nodes }) {
  const rng = prng(seed);
  const between = (lo, hi) => Math.round(lo + rng() * (hi - lo));
  const weights = KINDS.reduce((s, [, w]) => s + w, 0);
  const faults = [];
  let at = from;
  let nodeFreeAt = 0;
  let redisFreeAt = 0;
  let storeFreeAt = 0;
  for (;;) {
    at += between(2500, 7000);
    let r = rng() * weights;
    let kind = KINDS[0][0];
    for (const [k, w] of KINDS) {
      if ((r -= w) < 0) {
        kind = k;
        break;
      }
    }
    const fault = { at, kind };
    if (kind === 'kill' || kind === 'term' || kind === 'stop') {
      fault.node = Math.floor(rng() * nodes);
      fault.ms = kind === 'stop' ? between(1000, 8000) : between(1500, 6000);
    } else if (kind === 'stall') {
      fault.ms = between(500, 4000);
    } else if (kind === 'cut') {
      fault.share = Math.round((0.1 + rng() * 0.5) * 100) / 100;
    }
    // A node fault ends (node back, with margin for a drain and a start) before the next.
    const end = at + (fault.ms ?? 0) + (kind === 'failover' ? 15000 : 0);
    if (end + 8000 > healBy) break;
    if (fault.node !== undefined) {
      if (at < nodeFreeAt) continue;
      nodeFreeAt = end + 6000;
    }
    if (kind === 'failover') {
      if (at < redisFreeAt) continue;
      redisFreeAt = end;
    }
    if (kind === 'stall') {
      if (at < storeFreeAt) continue;
      storeFreeAt = end + 2000;
    }
    faults.push(fault);
  }
  return faults;
}

/** One line per fault, for the log and for comparing two runs of a seed. */
export function describe(f) {
  const who = f.node !== undefined ? ` node-${f.node}` : '';
  const how = f.ms !== undefined ? ` for ${f.ms} ms` : f.share !== undefined ? ` ${Math.round(f.share * 100)}% of connections` : '';
  return `+${(f.at / 1000).toFixed(1)}s ${f.kind}${who}${how}`;
}

/**
 * Applies `faults` from `t0` (Date.now() base): each at its time; node faults one after another
 * (a late one waits for the one before, and says so). `env` gives the slots, the Sentinel
 * group, the store, the balancer and the soak's draw for cuts. Resolves when every fault is
 * applied and healed; `log(line)` records what happened and when.
 */
export async function run(faults, { t0, slots, redis, mongo, balancer, rng, log, stopped }) {
  let nodeChain = Promise.resolve();
  let redisChain = Promise.resolve();
  const tasks = [];
  const at = (ms) => new Promise((r) => setTimeout(r, Math.max(0, t0 + ms - Date.now())));
  for (const f of faults) {
    await at(f.at);
    if (stopped()) break;
    const line = describe(f);
    const apply = async () => {
      const late = Date.now() - (t0 + f.at);
      log(`nemesis ${line}${late > 1000 ? ` (applied ${late} ms late)` : ''}`);
      switch (f.kind) {
        case 'kill':
        case 'term': {
          const slot = slots[f.node];
          await slot.signal(f.kind === 'kill' ? 'SIGKILL' : 'SIGTERM');
          await at(f.at + f.ms);
          await slot.start();
          log(`nemesis node-${f.node} back`);
          break;
        }
        case 'stop': {
          const slot = slots[f.node];
          await slot.signal('SIGSTOP');
          await at(f.at + f.ms);
          await slot.signal('SIGCONT');
          log(`nemesis node-${f.node} continued`);
          break;
        }
        case 'failover':
          await redis.failOver();
          log('nemesis failover done');
          break;
        case 'stall':
          mongo.pause();
          await at(f.at + f.ms);
          mongo.resume();
          log('nemesis store resumed');
          break;
        case 'cut':
          log(`nemesis cut ${balancer.cut(() => rng() < f.share)} connections`);
          break;
        default:
          throw new Error(`unknown fault ${f.kind}`);
      }
    };
    if (f.node !== undefined) {
      nodeChain = nodeChain.then(apply);
      tasks.push(nodeChain);
    } else if (f.kind === 'failover') {
      redisChain = redisChain.then(apply);
      tasks.push(redisChain);
    } else {
      tasks.push(apply());
    }
  }
  await Promise.all(tasks);
}
