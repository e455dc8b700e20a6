// `k6/encoding`: b64encode / b64decode with k6's std, rawstd, url and rawurl variants.
function enc(buf, variant = "std") {
  const s = buf.toString("base64");
  if (variant === "std") return s;
  if (variant === "rawstd") return s.replace(/=+$/, "");
  if (variant === "url") return s.replace(/\+/g, "-").replace(/\//g, "_");
  if (variant === "rawurl") return buf.toString("base64url");
  throw new Error(`unknown encoding ${variant}`);
}
export const b64encode = (input, variant) => enc(typeof input === "string" ? Buffer.from(input, "utf8") : Buffer.from(input), variant);
export function b64decode(input, variant = "std", format) {
  const buf = Buffer.from(input, variant.includes("url") ? "base64url" : "base64");
  return format === "s" ? buf.toString("utf8") : buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
}
export default { b64encode, b64decode };
