// `k6/crypto`: hmac, sha256, randomBytes (the encodings k6 documents).
import nodeCrypto from "node:crypto";

function encode(buf, enc) {
  switch (enc) {
    case "hex":
      return buf.toString("hex");
    case "base64":
      return buf.toString("base64");
    case "base64url":
      return buf.toString("base64").replace(/\+/g, "-").replace(/\//g, "_");
    case "base64rawurl":
      return buf.toString("base64url");
    case "binary":
      return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
    default:
      throw new Error(`unsupported output encoding ${enc}`);
  }
}
const bytes = (d) => (typeof d === "string" ? Buffer.from(d, "utf8") : Buffer.from(d));
export const hmac = (alg, secret, data, enc) => encode(nodeCrypto.createHmac(alg, bytes(secret)).update(bytes(data)).digest(), enc);
export const sha256 = (data, enc) => encode(nodeCrypto.createHash("sha256").update(bytes(data)).digest(), enc);
export const randomBytes = (n) => nodeCrypto.randomBytes(n).buffer;
export default { hmac, sha256, randomBytes };
