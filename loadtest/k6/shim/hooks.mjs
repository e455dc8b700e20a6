// Module resolution hook: `k6` and `k6/<module>` resolve to this shim's stand-ins.
const MODULES = new Set(["k6", "k6/ws", "k6/metrics", "k6/crypto", "k6/http", "k6/encoding", "k6/execution"]);

export async function resolve(specifier, context, next) {
  if (MODULES.has(specifier)) {
    const file = specifier === "k6" ? "index" : specifier.slice(3);
    return { url: new URL(`./k6/${file}.mjs`, import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
