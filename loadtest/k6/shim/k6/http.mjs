// `k6/http`: synchronous requests, like k6's (the network thread does the I/O).
import { add, newId, post, take } from "../runtime.mjs";

function request(method, url, body, params = {}) {
  const id = newId();
  const headers = { ...(params.headers ?? {}) };
  if (body !== null && body !== undefined && typeof body === "object" && !(body instanceof ArrayBuffer)) {
    body = new URLSearchParams(body).toString();
    headers["Content-Type"] ??= "application/x-www-form-urlencoded";
  }
  post({ op: "http", id, method, url, body, headers });
  let r;
  while (!r) r = take(id, 1000).find((e) => e.ev === "http");
  add("http_reqs", "counter", 1);
  add("http_req_duration", "trend", r.duration, true);
  add("http_req_failed", "rate", r.status === 0 || r.status >= 400);
  return {
    status: r.status,
    body: r.body,
    headers: r.headers,
    error: r.error ?? "",
    timings: { duration: r.duration },
    json(selector) {
      const v = JSON.parse(r.body);
      return selector ? selector.split(".").reduce((o, k) => o?.[k], v) : v;
    },
  };
}
export const get = (url, params) => request("GET", url, null, params);
export const post_ = (url, body, params) => request("POST", url, body, params);
export const del = (url, body, params) => request("DELETE", url, body, params);
export const patch = (url, body, params) => request("PATCH", url, body, params);
export { post_ as post };
export default { get, post: post_, del, patch, request };
