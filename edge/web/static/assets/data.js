// data.js: the data frame of edge/PROTOCOL.md ("Data"), both directions.
//
//   version (1) | topic length, topic | identity count, (length, identity)… | payload
//
// From a client the identities are the destinations (none: everyone else
// in the room); from the server, exactly one: the sender's.

const FRAME_VERSION = 1;
const enc = new TextEncoder();

/** encodeDataFrame builds a frame. payload is a string (sent as UTF-8) or
 * a Uint8Array. Throws a RangeError when the topic or an identity is
 * longer than 255 bytes, an identity is empty, or there are more than
 * 255 identities. */
export function encodeDataFrame({ topic = "", identities = [], payload = new Uint8Array() }) {
  const t = enc.encode(topic);
  const ids = identities.map((i) => enc.encode(i));
  const body = typeof payload === "string" ? enc.encode(payload) : payload;
  if (t.length > 255 || ids.length > 255 || ids.some((i) => i.length < 1 || i.length > 255)) {
    throw new RangeError("data frame: topic or identity longer than 255 bytes, or an empty identity");
  }
  const out = new Uint8Array(3 + t.length + ids.reduce((n, i) => n + 1 + i.length, 0) + body.length);
  let o = 0;
  out[o++] = FRAME_VERSION;
  out[o++] = t.length;
  out.set(t, o); o += t.length;
  out[o++] = ids.length;
  for (const i of ids) { out[o++] = i.length; out.set(i, o); o += i.length; }
  out.set(body, o);
  return out;
}

/** decodeDataFrame parses a frame (an ArrayBuffer or Uint8Array) into
 * {topic, identities, payload}, or returns null when it is not one. */
export function decodeDataFrame(buf) {
  const b = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  const dec = new TextDecoder("utf-8", { fatal: true });
  let o = 1;
  const str = () => {
    const n = b[o++];
    if (n === undefined || o + n > b.length) throw new RangeError("truncated");
    const s = dec.decode(b.subarray(o, o + n));
    o += n;
    return s;
  };
  try {
    if (b.length < 3 || b[0] !== FRAME_VERSION) return null;
    const topic = str();
    const count = b[o++];
    if (count === undefined) return null;
    const identities = [];
    for (let i = 0; i < count; i++) identities.push(str());
    return { topic, identities, payload: b.subarray(o) };
  } catch {
    return null;
  }
}
