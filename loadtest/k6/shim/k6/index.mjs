// `k6`: check, sleep, group, fail.
import { add, block, checkTally } from "../runtime.mjs";

export function check(value, sets, _tags) {
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    let ok;
    try {
      ok = typeof fn === "function" ? !!fn(value) : !!fn;
    } catch {
      ok = false;
    }
    add("checks", "rate", ok);
    const t = checkTally.get(name) ?? { passes: 0, fails: 0 };
    ok ? t.passes++ : t.fails++;
    checkTally.set(name, t);
    all &&= ok;
  }
  return all;
}
export const sleep = (secs) => block(Number(secs) * 1000);
export const group = (_name, fn) => fn();
export function fail(msg) {
  throw new Error(msg);
}
export default { check, sleep, group, fail };
