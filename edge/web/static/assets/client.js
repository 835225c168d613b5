// client.js: the browser side of media-service signaling, protocol version 1
// (edge/PROTOCOL.md). An ES module with no dependencies and no build step.
//
// A MediaClient keeps one participant in one room for as long as the user
// wants to be there. Each connection to an instance is a Session: one
// WebSocket and two RTCPeerConnections, the publisher (we offer, our camera
// and microphone go up) and the subscriber (the server offers, everyone
// else comes down). When a session is lost or its instance drains, the
// client connects again with backoff and swaps the new session in, so the
// page keeps the same MediaClient, the same local media and the same events.

import { encodeDataFrame, decodeDataFrame } from "./data.js";

/** The signaling protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Leave reasons after which reconnecting would only repeat the conflict. */
const FINAL_REASONS = new Set(["duplicate_identity"]);

/** How long before a drain deadline the client leaves by itself, so its
 * session ends with its own clean leave rather than the server's 1001
 * close: a fifth of the time left, between 1 and 5 seconds. */
const DRAIN_LEAVE_MARGIN = { share: 0.2, minMs: 1000, maxMs: 5000 };

/** How long a connection attempt may take to reach `joined`: an instance
 * that accepts the connection and then says nothing must not stall the
 * reconnect loop. */
const JOIN_TIMEOUT_MS = 10000;

/** How long after our `leave` the server gets to close the WebSocket
 * before we close it ourselves. */
const LEAVE_CLOSE_WAIT_MS = 2000;

/** Backoff between connection attempts: doubling, capped, with jitter so a
 * drained instance's clients do not all return in the same instant. */
const BACKOFF = { initialMs: 500, maxMs: 8000 };

/** How many `redirect`s one connection attempt follows (the room lives on
 * another instance of the fleet). One is the rule; more cover a room that
 * moved meanwhile. Beyond it the attempt fails with redirect_loop. */
const MAX_REDIRECTS = 3;
/** Resume attempts after a lost WebSocket: the first at once, then the
 * waits double from RESUME_BACKOFF.minMs up to maxMs, until the server's
 * grace period (resume_grace_ms in joined) runs out. See PROTOCOL.md,
 * "Resuming". */
const RESUME_BACKOFF = { minMs: 100, maxMs: 2000 };
/** How often a connection that stays disconnected or failed restarts ICE:
 * each restart gathers on the network as it is now, and the browser keeps
 * checking in between, so media is back as soon as the path is. */
const ICE_RESTART_INTERVAL_MS = 2000;
/** A publisher restart offer whose answer has not come in this long is
 * given up: the next restart rolls it back and offers again, and the late
 * answer, if it comes, is ignored by its offer_id (PROTOCOL.md). */
const ICE_RESTART_ANSWER_MS = 10000;

/** How long a draining session stays after its replacement joined, at
 * most: the replacement starts in the background and is swapped in once it
 * receives everyone the draining one plays, and the draining one leaves
 * once the replacement's publisher connection is up, so the room keeps
 * receiving us while we move (make before break). */
const HANDOVER_MAX_MS = 5000;

/** The simulcast layers a camera track is sent as, lowest first, by RID
 * (edge/PROTOCOL.md: layer 0 is rid q, 1 is h, 2 is f). Each divides the
 * capture resolution and has a bitrate ceiling in the range other SFUs'
 * clients use for 180p, 360p and 720p. */
const SIMULCAST_LAYERS = [
  { rid: "q", maxBitrate: 150_000 },
  { rid: "h", maxBitrate: 500_000 },
  { rid: "f", maxBitrate: 1_700_000 },
];

/** The quality names of track_settings, lowest first (layer index). */
export const QUALITIES = ["low", "medium", "high"];

/** How long adaptive stream waits for a tile's size and visibility to
 * settle before it tells the server: a resize drag or a scroll sends one
 * track_settings, not one per frame. */
const ADAPTIVE_DEBOUNCE_MS = 250;

/**
 * simulcastEncodings is the sendEncodings for a camera captured width
 * pixels wide: three layers (a quarter, half and full size) from 640 px
 * up, two (half and full) from 320 px, and none below, where a layer
 * smaller than 160 px would show nothing useful: the track is then sent
 * as one plain encoding.
 * @returns {RTCRtpEncodingParameters[]|null}
 */
export function simulcastEncodings(width) {
  const n = width >= 640 ? 3 : width >= 320 ? 2 : 1;
  if (n < 2) return null;
  return SIMULCAST_LAYERS.slice(0, n).map((l, i) => ({
    rid: l.rid, maxBitrate: l.maxBitrate, scaleResolutionDownBy: 2 ** (n - 1 - i), active: true,
  }));
}

/** adaptiveSize is the size in device pixels a video element shows its
 * track at: what adaptive stream asks the server to cover (max_width,
 * max_height), which then forwards the smallest layer that does. */
export function adaptiveSize(video) {
  const dpr = window.devicePixelRatio || 1;
  return { maxWidth: Math.round(video.clientWidth * dpr), maxHeight: Math.round(video.clientHeight * dpr) };
}

/**
 * devToken asks a dev-mode instance for an access token.
 * It is the demo page's token provider; a real application mints tokens on
 * its own backend and passes its own provider to MediaClient.join.
 * @returns {Promise<{token: string, url: string}>}
 */
export async function devToken(room, identity, origin = location.origin) {
  const q = new URLSearchParams({ room, identity });
  let res;
  try {
    res = await fetch(`${origin}/v1/dev/token?${q}`, { cache: "no-store" });
  } catch {
    throw new ClientError("unreachable", "the service is unreachable");
  }
  if (res.status === 404) {
    throw new ClientError("dev_mode_off", "this server hands out no demo tokens (it is not in dev mode): join through your application, or add ?token=<access token> to this page's address", 0, true);
  }
  if (!res.ok) {
    throw new ClientError("token_failed", `dev token: ${await errorMessage(res)}`, retryAfterMs(res));
  }
  return res.json();
}

/** ClientError is an error the client shows the user, with the protocol's
 * code where there is one, how long to wait before trying again, and
 * whether trying again is pointless (final). */
export class ClientError extends Error {
  constructor(code, message, retryAfterMs = 0, final = false) {
    super(message);
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    this.final = final;
  }
}

async function errorMessage(res) {
  try {
    const body = await res.json();
    return body.message || body.code || res.statusText;
  } catch {
    return `${res.status} ${res.statusText}`;
  }
}

function retryAfterMs(res) {
  const s = Number(res.headers.get("Retry-After"));
  return Number.isFinite(s) && s > 0 ? s * 1000 : 0;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/**
 * MediaClient joins a room and stays in it.
 *
 * Events (all CustomEvent, details in brackets):
 *   state                {state}      idle, connecting, connected, draining, reconnecting, closed
 *   joined               {self, participants}
 *   participantjoined    {participant}
 *   participantleft      {participant}
 *   track                {participant, stream}   a participant's media arrived or changed
 *   error                {code, message}
 *   draining             {deadline, url}  url: where the room moved, when it did
 *   redirect             {url}        the room lives on another instance; following
 *   leave                {reason}     the server ended the session
 *   peerstate            {target, state} a PeerConnection's connectionState changed
 *   retry                {attempt, delayMs, code, message}  an attempt failed; the next one is in delayMs
 *   data                 {from, topic, payload, lossy}  a data message from another participant (payload: Uint8Array)
 *   speakers             {speakers}   who speaks now, loudest first: [{id, identity, level}]
 *   resumed              {}           the lost signaling connection came back as the same participant
 */
export class MediaClient extends EventTarget {
  /**
   * @param {{relayOnly?: boolean, media?: MediaStreamConstraints, simulcast?: boolean,
   *   adaptiveStream?: boolean, degradationPreference?: RTCDegradationPreference}} opts
   *   relayOnly sets iceTransportPolicy "relay": media only through TURN.
   *   simulcast (default true) sends the camera as up to three layers
   *   (simulcastEncodings), so each viewer gets the size it shows.
   *   adaptiveStream (default true) asks the server, for every video
   *   element passed to observe, for the layer its size needs, and pauses
   *   the track while the element is hidden.
   *   degradationPreference (default "maintain-resolution" with simulcast,
   *   the browser's own without) is what the encoder gives up first when
   *   the CPU or the link cannot keep up: keeping the resolution keeps
   *   every layer, and the frame rate drops instead.
   */
  constructor(opts = {}) {
    super();
    this.relayOnly = Boolean(opts.relayOnly);
    this.simulcast = opts.simulcast ?? true;
    this.adaptiveStream = opts.adaptiveStream ?? true;
    this.degradationPreference = opts.degradationPreference ?? (this.simulcast ? "maintain-resolution" : "");
    this.mediaConstraints = opts.media ?? {
      audio: true,
      video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } },
    };
    /** idle | connecting | connected | draining | reconnecting | closed */
    this.state = "idle";
    /** @type {MediaStream|null} our camera and microphone, kept across sessions */
    this.localStream = null;
    /** @type {{id: string, identity: string}|null} */
    this.self = null;
    /** @type {Map<string, {id: string, identity: string, stream: MediaStream|null}>} */
    this.participants = new Map();
    this.room = "";
    /** @type {Map<string, {id: string, kind: string, source: string, muted: boolean, participantId: string}>}
     * the room's published tracks by id, from joined, track_published and track_muted */
    this.remoteTracks = new Map();
    /** @type {MediaStream|null} our screen share (shareScreen), kept across sessions */
    this.screenStream = null;
    /** @type {Set<string>} sources of ours the server API muted (and we
     * disabled), which its unmute turns back on; the user's own mute is
     * never undone by the server */
    this.serverMuted = new Set();
    this.drainingSeen = false; // a draining message arrived at some point
    this.reconnects = 0;       // sessions adopted after the first
    this.resumes = 0;          // lost signaling connections resumed as the same participant
    this.redirects = 0;        // redirects followed, every attempt together
    this.moveURL = "";         // where a draining instance said the room went
    this.lastHandover = null;  // {waitedMs, caughtUp} of the last swap of a draining session
    this.lastClose = null;     // {code, reason, wasClean, byClient} of the last session's WebSocket
    this.lastError = null;
    /** @type {{id: string, identity: string, level: number}[]} the room's active speakers, loudest first */
    this.speakers = [];
    this.iceTransportPolicy = this.relayOnly ? "relay" : "all";

    this._session = null;
    this._tokens = null;  // async () => {token, url}
    this._wanted = false; // the user wants to be in the room
    this._loop = null;    // the running reconnect loop, if any
    this._abort = null;   // aborts the loop's waits on leave
    /** @type {Map<string, string>} track id -> quality the application chose (setTrackQuality) */
    this._chosen = new Map();
    /** @type {Map<HTMLVideoElement, {visible: boolean}>} elements adaptive stream watches */
    this._observed = new Map();
    this._resizeObs = null;
    this._intersectObs = null;
    this._adaptTimer = 0;
    this._onVisibility = () => this._scheduleAdapt();
  }

  /**
   * join enters a room. tokens is called for every connection attempt,
   * since a token may have expired by the time a reconnect needs one.
   * @param {{room: string, tokens: () => Promise<{token: string, url: string}>}} p
   */
  async join({ room, tokens }) {
    if (this._wanted) throw new ClientError("already_joined", "already in a room");
    this.room = room;
    this._tokens = tokens;
    this._wanted = true;
    this._abort = new AbortController();
    this._setState("connecting");
    await this._ensureLocalMedia();
    this._startLoop();
    await this._loop;
  }

  /** leave ends the session cleanly (a `leave`, then a 1000 close) and stops
   * reconnecting. The local camera and microphone are released. */
  leave() {
    this._wanted = false;
    this._abort?.abort();
    const s = this._session;
    this._session = null;
    s?.leave();
    this._clearRemote();
    clearTimeout(this._adaptTimer);
    this._resizeObs?.disconnect();
    this._intersectObs?.disconnect();
    document.removeEventListener("visibilitychange", this._onVisibility);
    this._resizeObs = this._intersectObs = null;
    this._observed.clear();
    this.localStream?.getTracks().forEach((t) => t.stop());
    this.localStream = null;
    this._setState("closed");
  }

  /** setMuted mutes or unmutes our "audio" or "video". A muted track sends
   * silence or black frames, so no renegotiation is needed; the server is
   * told (`mute`), stops forwarding it and tells the room. */
  setMuted(kind, muted) {
    for (const t of this.localStream?.getTracks() ?? []) {
      if (t.kind === kind) t.enabled = !muted;
    }
    const source = kind === "audio" ? "microphone" : "camera";
    this.serverMuted.delete(source); // the user's word replaces the server's
    this._session?.sendMute(source, muted);
  }

  /** _applyServerMute applies a mute or unmute the server API made of
   * our track of that source (a track_muted with reason "api"): a mute
   * disables the track; an unmute enables it again only if the mute it
   * undoes was the server's, and otherwise tells the server the user's
   * own mute stands. Emits "localmute" ({source, muted, changed}) so the
   * page shows it. */
  _applyServerMute(s, source, muted) {
    if (s !== this._session) return;
    const tracks = [...(this.localStream?.getTracks() ?? []), ...(this.screenStream?.getTracks() ?? [])]
      .filter((t) => s._sourceOf(t) === source);
    const enabled = () => tracks.some((t) => t.enabled);
    const before = enabled();
    if (muted) {
      for (const t of tracks) t.enabled = false;
      this.serverMuted.add(source);
    } else if (this.serverMuted.delete(source)) {
      for (const t of tracks) t.enabled = true;
    } else if (tracks.some((t) => !t.enabled)) {
      s.sendMute(source, true);
    }
    this._emit("localmute", { source, muted: !enabled(), changed: before !== enabled() });
  }

  /** isMuted reports whether a participant's track of that source
   * ("microphone", "camera", ...) is muted, as the server announced. */
  isMuted(participantId, source) {
    for (const t of this.remoteTracks.values()) {
      if (t.participantId === participantId && t.source === source) return t.muted;
    }
    return false;
  }

  /** shareScreen asks the browser for a screen, window or tab
   * (getDisplayMedia, with its audio when the user offers it) and
   * publishes it as screen_share (and screen_share_audio). It must run
   * from a user gesture. Ending the capture in the browser's own UI
   * stops the share. */
  async shareScreen() {
    if (this.screenStream) return;
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: true });
    this.screenStream = stream;
    for (const t of stream.getTracks()) t.addEventListener("ended", () => this.stopScreenShare());
    this._session?.publishScreen(stream);
    this._emit("screenshare", { active: true });
  }

  /** stopScreenShare ends our screen share, if any. */
  stopScreenShare() {
    const stream = this.screenStream;
    if (!stream) return;
    this.screenStream = null;
    stream.getTracks().forEach((t) => t.stop());
    this._session?.unpublish(stream);
    this._emit("screenshare", { active: false });
  }

  /**
   * sendData sends payload (a string, as UTF-8, or a Uint8Array) to the
   * participants whose identities are in to, or to everyone else in the
   * room when to is empty, on the reliable (ordered) channel or, with
   * lossy, the unordered one without retransmissions. The server's
   * refusals (data_too_large, data_rate_limited, not_permitted) come as
   * error events. Throws a ClientError data_not_open before the channel
   * is open.
   */
  sendData(payload, { topic = "", lossy = false, to = [] } = {}) {
    const dc = this._session?.data?.[lossy ? "lossy" : "reliable"];
    if (!dc || dc.readyState !== "open") throw new ClientError("data_not_open", "the data channel is not open yet");
    dc.send(encodeDataFrame({ topic, identities: to, payload }));
  }

  /** muted reports whether our track of that kind is muted (or absent). */
  muted(kind) {
    const t = this.localStream?.getTracks().find((x) => x.kind === kind);
    return !t || !t.enabled;
  }

  /**
   * setTrackQuality chooses the layer of a received video track (its
   * MediaStreamTrack id): "low", "medium" or "high"; "auto" or null hands
   * it back to adaptive stream. A choice wins over the element's size;
   * a hidden page or element still pauses the track.
   */
  setTrackQuality(trackId, quality) {
    if (quality === "auto" || quality == null) this._chosen.delete(trackId);
    else if (QUALITIES.includes(quality)) this._chosen.set(trackId, quality);
    else throw new ClientError("invalid_quality", `quality ${quality}: want low, medium, high or auto`);
    this._scheduleAdapt(0);
  }

  /** trackQuality is the choice setTrackQuality made for a track, or "auto". */
  trackQuality(trackId) {
    return this._chosen.get(trackId) ?? "auto";
  }

  /**
   * observe lets adaptive stream watch a video element that shows a
   * received stream: its rendered size picks the layer, and while it is
   * off-screen, not displayed or its page hidden, the track is paused.
   * Call it again after changing the element's srcObject; unobserve when
   * the element goes away.
   */
  observe(video) {
    if (!this._resizeObs) {
      this._resizeObs = new ResizeObserver(() => this._scheduleAdapt());
      this._intersectObs = new IntersectionObserver((entries) => {
        for (const e of entries) {
          const o = this._observed.get(e.target);
          if (o) o.visible = e.isIntersecting;
        }
        this._scheduleAdapt();
      });
      document.addEventListener("visibilitychange", this._onVisibility);
    }
    if (!this._observed.has(video)) {
      this._observed.set(video, { visible: true });
      this._resizeObs.observe(video);
      this._intersectObs.observe(video);
    }
    this._scheduleAdapt();
  }

  /** unobserve stops watching a video element. */
  unobserve(video) {
    if (!this._observed.delete(video)) return;
    this._resizeObs.unobserve(video);
    this._intersectObs.unobserve(video);
  }

  /** trackSettings is what the client wants for each received video track
   * now: {quality} (the application's choice) or {maxWidth, maxHeight}
   * (adaptive stream's), and paused, by track id. */
  trackSettings() {
    const out = new Map();
    const hidden = document.visibilityState === "hidden";
    for (const [video, o] of this._observed) {
      const track = video.srcObject?.getVideoTracks?.()[0];
      if (!track) continue;
      // Without adaptive stream an observed track goes back to the
      // server's default when the application's choice is withdrawn.
      if (!this.adaptiveStream) { out.set(track.id, { quality: "high", paused: false }); continue; }
      const { maxWidth, maxHeight } = adaptiveSize(video);
      out.set(track.id, { maxWidth, maxHeight, paused: hidden || !o.visible || maxWidth === 0 });
    }
    for (const [id, quality] of this._chosen) {
      out.set(id, { quality, paused: this.adaptiveStream && (hidden || (out.get(id)?.paused ?? false)) });
    }
    return out;
  }

  _scheduleAdapt(delay = ADAPTIVE_DEBOUNCE_MS) {
    clearTimeout(this._adaptTimer);
    this._adaptTimer = setTimeout(() => this._session?.applyTrackSettings(this.trackSettings()), delay);
  }

  /** session is the current connection, for stats. */
  get session() { return this._session; }

  /** peerStates reports the connectionState of the current session's
   * publisher and subscriber connections. */
  peerStates() {
    const pcs = this._session?.pcs ?? {};
    return { publisher: pcs.publisher?.connectionState ?? "new", subscriber: pcs.subscriber?.connectionState ?? "new" };
  }

  /**
   * stats reads getStats of both connections and sums them per participant.
   * Bitrates are over the time since the previous call, so call it on a
   * steady tick (the demo page does, once a second).
   * @returns {Promise<{local: object, remote: Object<string, object>, publisher: object, subscriber: object}|null>}
   */
  async stats() {
    const s = this._session;
    if (!s?.pcs.publisher) return null;
    const [pub, sub] = await Promise.all([s.pcs.publisher.getStats(), s.pcs.subscriber.getStats()]);
    this._rates ??= new Map();
    const out = { local: emptyTotals(), remote: {}, publisher: transportOf(pub), subscriber: transportOf(sub) };
    const owner = new Map(); // track id -> participant id
    for (const p of this.participants.values()) {
      for (const t of p.stream?.getTracks() ?? []) owner.set(t.id, p.id);
      out.remote[p.id] = { ...emptyTotals(), identity: p.identity, rttMs: out.subscriber.rttMs };
    }
    sub.forEach((r) => {
      const id = r.type === "inbound-rtp" && owner.get(r.trackIdentifier);
      if (id && out.remote[id]) addInbound(out.remote[id], r, this._rate(r.id, r.bytesReceived, r.timestamp));
    });
    out.local.rttMs = out.publisher.rttMs;
    out.local.layers = [];
    pub.forEach((r) => {
      if (r.type === "outbound-rtp") out.local.bitrateKbps += this._rate(r.id, r.bytesSent, r.timestamp);
      if (r.type === "outbound-rtp" && r.kind === "video") out.local.layers.push(outboundLayer(r));
      if (r.type === "remote-inbound-rtp") addRemoteInbound(out.local, r);
    });
    out.local.layers.sort((a, b) => a.rid.localeCompare(b.rid));
    return out;
  }

  /** _rate turns a byte counter into kbit/s since its previous reading. */
  _rate(key, bytes, ts) {
    const prev = this._rates.get(key);
    this._rates.set(key, { bytes, ts });
    if (!prev || ts <= prev.ts || bytes < prev.bytes) return 0;
    return ((bytes - prev.bytes) * 8) / (ts - prev.ts); // bytes per ms * 8 = kbit/s
  }

  async _ensureLocalMedia() {
    if (this.localStream) return;
    try {
      this.localStream = await navigator.mediaDevices.getUserMedia(this.mediaConstraints);
    } catch (err) {
      // Receive-only is still useful: say why we do not publish.
      this._emitError("media_unavailable", `camera and microphone unavailable: ${err.message}`);
    }
  }

  _startLoop() {
    if (this._loop) return;
    this._loop = this._runLoop().finally(() => { this._loop = null; });
  }

  /** _runLoop connects until a session joins, or the user leaves. It runs
   * while there is no session or the current one is draining, and swaps a
   * newly joined session in before the old one leaves (make before break). */
  async _runLoop() {
    let delay = BACKOFF.initialMs;
    for (let attempt = 1; this._wanted && (!this._session || this._session.draining); attempt++) {
      try {
        const next = await this._connect();
        if (this._session?.draining && !this._session.closed) await this._prepare(next);
        if (!this._wanted) { next.leave(); return; }
        if (next.closed) throw new ClientError("connect_failed", "the new session ended before it was used");
        this._adopt(next);
        return;
      } catch (err) {
        const code = err.code ?? "connect_failed";
        if (err.final) {
          this._wanted = false;
          this._emitError(code, err.message);
          this._setState("closed");
          return;
        }
        this.lastError = { code, message: err.message };
        if (!this._session) this._setState(this.self ? "reconnecting" : "connecting");
        const wait = Math.round(err.retryAfterMs || delay * (0.5 + Math.random() / 2));
        delay = Math.min(BACKOFF.maxMs, delay * 2);
        this._emit("retry", { attempt, delayMs: wait, code, message: err.message });
        await sleep(wait, this._abort.signal);
      }
    }
  }

  /** _connect makes one attempt: is the instance ready, a token, a
   * WebSocket, `joined`, following redirects with the same token. It
   * resolves with the joined session. A draining instance that named where
   * the room moved sends the attempt there rather than to the token's URL. */
  async _connect() {
    const tok = await this._tokens();
    let url = this.moveURL || tok.url;
    this.moveURL = "";
    for (let hops = 0; ; hops++) {
      await probeReady(url);
      const s = new Session(this, url, tok.token);
      try {
        await s.joined;
        return s;
      } catch (err) {
        if (err.code !== "redirect") throw err;
        if (hops === MAX_REDIRECTS) {
          throw new ClientError("redirect_loop", `redirected more than ${MAX_REDIRECTS} times, the last time to ${err.url}`);
        }
        this.redirects++;
        this._emit("redirect", { url: err.url });
        url = err.url;
      }
    }
  }

  /** _prepare starts a session that replaces a draining one while the
   * draining one still plays: it resolves once the new session receives
   * media from everyone the current one plays, or after HANDOVER_MAX_MS. */
  async _prepare(next) {
    next.start(this.localStream);
    const started = Date.now();
    while (Date.now() < started + HANDOVER_MAX_MS && !next.closed && this._wanted && !this._caughtUp(next)) {
      await sleep(100, this._abort.signal);
    }
    this.lastHandover = { waitedMs: Date.now() - started, caughtUp: this._caughtUp(next) };
  }

  /** _caughtUp reports whether next has a stream from a participant of
   * each identity the current session plays. */
  _caughtUp(next) {
    const have = new Set();
    for (const [id, p] of next.roster) if (next.streams.has(id)) have.add(p.identity);
    return [...this.participants.values()].every((p) => !p.stream || have.has(p.identity));
  }

  _adopt(s) {
    const old = this._session;
    if (this.self) this.reconnects++;
    this._session = s;
    s.adopted = true;
    this._clearRemote();
    this.self = s.self;
    for (const p of s.roster.values()) {
      this._addParticipant(p);
      for (const t of p.tracks ?? []) this.remoteTracks.set(t.id, { ...t, participantId: p.id });
    }
    if (!s.pcs.publisher) s.start(this.localStream);
    for (const [id, stream] of s.streams) this._onTrack(s, stream, id);
    if (old) this._handOver(old, s);
    this._scheduleAdapt(0);
    this._setState("connected");
    this._emit("joined", { self: this.self, participants: [...this.participants.values()] });
  }

  /** _handOver lets the old session leave once the new one's publisher
   * connection is up (or at once when there is nothing to publish), and
   * after HANDOVER_MAX_MS at the latest. */
  _handOver(old, s) {
    const pc = s.pcs.publisher;
    if (old.closed || !pc || !this.localStream?.getTracks().length) { old.leave(); return; }
    const done = () => { clearTimeout(t); pc.removeEventListener("connectionstatechange", check); old.leave(); };
    const check = () => { if (pc.connectionState !== "new" && pc.connectionState !== "connecting") done(); };
    const t = setTimeout(done, HANDOVER_MAX_MS);
    pc.addEventListener("connectionstatechange", check);
  }

  // Called by the session that is current; an old session's news is moot.

  _onParticipantJoined(s, p) {
    if (s === this._session) this._emit("participantjoined", { participant: this._addParticipant(p) });
  }

  _onParticipantLeft(s, p) {
    if (s !== this._session) return;
    this._dropScreen(s, p.id);
    s.left.add(p.id);
    const known = this.participants.get(p.id) ?? { ...p, stream: null };
    this.participants.delete(p.id);
    this._emit("participantleft", { participant: known });
  }

  _onTrack(s, stream, id = stream.id) {
    const owner = screenOwner(id);
    // A track of an offer made before its publisher left can surface after
    // participant_left; the next offer removes it.
    if (s !== this._session || s.left.has(owner)) return;
    // The stream id is the publishing participant's id (PROTOCOL.md); a track
    // may come before participant_joined, so make a placeholder for it. A
    // screen share is a participant of its own here ("<id>/screen"), so
    // that it gets a tile of its own.
    const identity = owner !== id ? this.participants.get(owner)?.identity ?? "" : "";
    const p = this.participants.get(id) ?? this._addParticipant({ id, identity, screen: owner !== id });
    p.stream = stream;
    this._emit("track", { participant: p, stream });
    this._scheduleAdapt();
  }

  _onData(s, buf, lossy) {
    const f = decodeDataFrame(buf);
    if (s !== this._session || !f || f.identities.length !== 1) return;
    this._emit("data", { from: f.identities[0], topic: f.topic, payload: f.payload, lossy });
  }

  _onSpeakers(s, speakers) {
    if (s !== this._session || !Array.isArray(speakers)) return;
    this.speakers = speakers;
    this._emit("speakers", { speakers });
  }

  /** _onNetwork follows the current session's network: "reconnecting"
   * while its WebSocket is being resumed or a media connection is down,
   * with every tile kept, and "connected" again once all is back. */
  _onNetwork(s) {
    if (s !== this._session || (this.state !== "connected" && this.state !== "reconnecting")) return;
    this._setState(s.resuming || s.mediaDown() ? "reconnecting" : "connected");
  }

  /** _onResumed: s's WebSocket came back; the room's state it carried
   * was applied by s as joins and leaves. */
  _onResumed(s) {
    if (s !== this._session) return;
    this.resumes++;
    this._emit("resumed", {});
    this._onNetwork(s);
  }

  _onDraining(s, deadline, url) {
    if (s !== this._session) return;
    this.drainingSeen = true;
    this.moveURL = url ?? "";
    this._setState("draining");
    this._emit("draining", { deadline, url: url ?? "" });
    this._startLoop();
  }

  _onSessionEnded(s, { reason, close }) {
    if (s.adopted) this.lastClose = close; // not an attempt that never joined
    if (s !== this._session) return;
    this._session = null;
    this._clearRemote();
    if (reason) this._emit("leave", { reason });
    if (!this._wanted) return;
    if (FINAL_REASONS.has(reason)) {
      this._wanted = false;
      this._emitError(reason, "this identity joined the room from somewhere else");
      this._setState("closed");
      return;
    }
    this._setState("reconnecting");
    this._startLoop();
  }

  _addParticipant(p) {
    const known = this.participants.get(p.id);
    if (known) {
      known.identity = p.identity || known.identity;
      return known;
    }
    const np = { id: p.id, identity: p.identity, stream: null, screen: Boolean(p.screen) };
    this.participants.set(p.id, np);
    return np;
  }

  /** _onTrackInfo records what the server says of a track: published,
   * muted or unmuted, or (gone) unpublished. */
  _onTrackInfo(s, participant, track, gone = false) {
    if (s !== this._session || !participant || !track) return;
    if (gone) {
      this.remoteTracks.delete(track.id);
      if (track.source === "screen_share") this._dropScreen(s, participant.id);
      return;
    }
    const known = this.remoteTracks.get(track.id);
    this.remoteTracks.set(track.id, { ...track, participantId: participant.id });
    if (!known || known.muted !== track.muted) this._emit("trackmuted", { participantId: participant.id, track });
  }

  /** _dropScreen removes a participant's screen-share tile. */
  _dropScreen(s, participantId) {
    const id = `${participantId}/screen`;
    s.streams.delete(id);
    const p = this.participants.get(id);
    if (!p) return;
    this.participants.delete(id);
    this._emit("participantleft", { participant: p });
  }

  _clearRemote() {
    for (const p of this.participants.values()) this._emit("participantleft", { participant: p });
    this.participants.clear();
    this.remoteTracks.clear();
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", { state });
  }

  _emitError(code, message) {
    this.lastError = { code, message };
    this._emit("error", { code, message });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** trace writes a signaling message to the console at debug level (shown
 * in DevTools under "Verbose"), without SDP bodies. */
/** screenOwner is the participant id of a tile id: "<id>/screen" is
 * that participant's screen share. */
function screenOwner(id) {
  return id.endsWith("/screen") ? id.slice(0, -"/screen".length) : id;
}

function trace(session, dir, m) {
  const what = m.type === "candidate" ? `${m.target} ${m.candidate?.candidate?.split(" ").slice(4, 8).join(" ")}`
    : m.target ?? m.participant?.identity ?? m.code ?? m.reason ?? m.deadline ?? "";
  console.debug(`media ${session.self?.id ?? "?"}: ${dir} ${m.type} ${what}`);
}

function emptyTotals() {
  return {
    bitrateKbps: 0, packetsLost: 0, rttMs: null,
    video: { framesDecoded: 0, packetsReceived: 0, frameWidth: 0, frameHeight: 0, fps: 0 },
    audio: { packetsReceived: 0 },
  };
}

function addInbound(t, r, kbps) {
  t.bitrateKbps += kbps;
  t.packetsLost += Math.max(0, r.packetsLost ?? 0);
  const k = r.kind === "video" ? t.video : t.audio;
  k.packetsReceived += r.packetsReceived ?? 0;
  if (r.kind !== "video") return;
  t.video.framesDecoded += r.framesDecoded ?? 0;
  t.video.frameWidth = r.frameWidth ?? t.video.frameWidth;
  t.video.frameHeight = r.frameHeight ?? t.video.frameHeight;
  t.video.fps = r.framesPerSecond ?? t.video.fps;
}

/** outboundLayer is what the demo page and tests show of one encoding we
 * send: its size, whether the encoder sends it, and why it is smaller
 * than asked (qualityLimitationReason: "cpu", "bandwidth" or "none"). */
function outboundLayer(r) {
  return {
    rid: r.rid ?? "", active: r.active ?? true, frameWidth: r.frameWidth ?? 0, frameHeight: r.frameHeight ?? 0,
    fps: r.framesPerSecond ?? 0, framesEncoded: r.framesEncoded ?? 0, bytesSent: r.bytesSent ?? 0,
    pliCount: r.pliCount ?? 0, qualityLimitationReason: r.qualityLimitationReason ?? "",
  };
}

function addRemoteInbound(t, r) {
  t.packetsLost += Math.max(0, r.packetsLost ?? 0);
  if (r.roundTripTime !== undefined) t.rttMs = Math.round(r.roundTripTime * 1000);
}

/** transportOf finds the selected candidate pair of a connection: its
 * round-trip time and whether media goes through a TURN relay. */
function transportOf(report) {
  let pair = null;
  report.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
  });
  if (!pair) report.forEach((r) => { if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r; });
  if (!pair) return { rttMs: null, localCandidateType: "", remoteCandidateType: "", protocol: "", availableOutgoingKbps: 0 };
  const local = report.get(pair.localCandidateId) ?? {};
  const remote = report.get(pair.remoteCandidateId) ?? {};
  return {
    rttMs: pair.currentRoundTripTime !== undefined ? Math.round(pair.currentRoundTripTime * 1000) : null,
    localCandidateType: local.candidateType ?? "",
    remoteCandidateType: remote.candidateType ?? "",
    protocol: local.relayProtocol || local.protocol || "",
    // the sender's bandwidth estimate: what simulcast layers it can afford
    availableOutgoingKbps: Math.round((pair.availableOutgoingBitrate ?? 0) / 1000),
  };
}

/** probeReady asks the instance behind a signaling URL whether it takes
 * joins, so a draining or full instance costs a cheap GET rather than a
 * failed WebSocket (whose HTTP status a browser never shows to scripts).
 * It only asks its own origin: /ready sends no CORS headers, so for another
 * origin the WebSocket attempt has to tell. */
async function probeReady(signalURL) {
  const u = new URL(signalURL, location.href);
  const origin = `${u.protocol === "wss:" ? "https:" : "http:"}//${u.host}`;
  if (origin !== location.origin) return;
  let res;
  try {
    res = await fetch(`${origin}/ready`, { cache: "no-store" });
  } catch {
    throw new ClientError("unreachable", "the service is unreachable");
  }
  if (!res.ok) {
    throw new ClientError("not_ready", `the service is restarting or full (${res.status})`, retryAfterMs(res));
  }
}

/**
 * Session is one connection to one instance: the WebSocket and the two
 * PeerConnections. It owns them from construction until close, and reports
 * to its MediaClient, which ignores it once another session replaced it.
 */
class Session {
  constructor(client, url, token) {
    this.client = client;
    this.draining = false;
    this.closed = false;
    this.self = null;
    this.roster = new Map();  // id -> participant: the room's others now
    this.streams = new Map(); // participant id -> MediaStream received
    this.pcs = {}; // target -> RTCPeerConnection
    this.chains = { publisher: Promise.resolve(), subscriber: Promise.resolve() };
    this.pending = { publisher: [], subscriber: [] }; // candidates before the remote description
    this.leaveReason = "";
    this.byClient = false;
    this.left = new Set(); // ids of participants that left during this session
    this.adopted = false;  // the client made it its current session
    this.drainTimer = 0;
    this.sentSettings = new Map(); // track id -> JSON of the last track_settings sent
    this.layerChain = Promise.resolve(); // setParameters calls, one after the other
    this.token = token;
    this.resume = null;     // {credential, graceMs} from joined, then from each resumed
    this.resuming = false;  // the WebSocket is lost and being resumed
    this.restartTimers = {}; // target -> timer of the next ICE restart while down
    this.offerSeq = 0; // the last publisher offer's offer_id
    this.pubOffer = 0; // the offer_id of the publisher offer awaiting its answer, 0 when none
    this.pubOfferAt = 0; // when it was sent (Date.now())
    this.own = new Map(); // source -> id of our track of that source, from track_published

    const u = new URL(url, location.href);
    /** the signaling URL this session joined at, without the token */
    this.url = u.href;
    this.joined = new Promise((resolve, reject) => { this._joinedResolve = resolve; this._joinedReject = reject; });
    this._use(this._open({ access_token: token }));
    this.joinTimer = setTimeout(() => {
      this._joinedReject(new ClientError("join_timeout", "the service did not answer"));
      this.ws.close();
    }, JOIN_TIMEOUT_MS);
  }

  /** _open opens a WebSocket to the session's URL with params. */
  _open(params) {
    const u = new URL(this.url);
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
    return new WebSocket(u);
  }

  /** _use makes ws the session's WebSocket. */
  _use(ws) {
    this.ws = ws;
    ws.onmessage = (e) => this._onMessage(e.data);
    ws.onclose = (e) => this._onClose(e);
    ws.onerror = () => {}; // onclose follows with the code
  }

  /** _mayResume reports whether a close of the WebSocket is a loss to
   * resume from: abnormal (no close frame: a reset, a dead network), in a
   * session the client uses and the server has not ended. */
  _mayResume(e) {
    return e.code === 1006 && this.adopted && !this.byClient && !this.leaveReason && Boolean(this.resume?.credential)
      && this.client._session === this;
  }

  /** _resumeLoop reconnects with the resume credential until it works or
   * the grace period ends; then the session ends as any lost one does. */
  async _resumeLoop(lost) {
    this.resuming = true;
    this.client._onNetwork(this);
    const deadline = Date.now() + this.resume.graceMs;
    for (let wait = 0; Date.now() < deadline && !this.byClient && this.client._session === this;
      wait = Math.min(RESUME_BACKOFF.maxMs, Math.max(RESUME_BACKOFF.minMs, wait * 2))) {
      await sleep(wait);
      if (await this._tryResume(deadline)) return;
    }
    this.resuming = false;
    this.resume = null;
    this._onClose(lost);
  }

  /** _tryResume makes one resume attempt; it resolves true once the server
   * said `resumed` on the new WebSocket, which then is the session's. */
  async _tryResume(deadline) {
    let token = this.token;
    try { token = (await this.client._tokens()).token; } catch { /* the one we joined with may still do */ }
    return new Promise((resolve) => {
      const ws = this._open({ access_token: token, participant: this.self.id, resume: this.resume.credential });
      const timer = setTimeout(() => ws.close(), Math.max(0, Math.min(JOIN_TIMEOUT_MS, deadline - Date.now())));
      ws.onerror = () => {};
      ws.onclose = () => { clearTimeout(timer); resolve(false); };
      ws.onmessage = (e) => {
        let m;
        try { m = JSON.parse(e.data); } catch { m = null; }
        clearTimeout(timer);
        if (m?.type !== "resumed" || this.byClient) { ws.onclose = () => resolve(false); ws.close(); return; }
        this._use(ws);
        this.resuming = false;
        this._onResumed(m);
        resolve(true);
      };
    });
  }

  /** _onResumed applies `resumed`: the new credential, the room as it is
   * now (as joins and leaves against what this session knew), a publisher
   * offer the lost connection swallowed rolled back, and ICE restarts
   * where media is down too. */
  _onResumed(m) {
    trace(this, "recv", m);
    this.resume = { credential: m.resume ?? "", graceMs: m.resume_grace_ms ?? 0 };
    const now = new Map((m.participants ?? []).map((p) => [p.id, p]));
    for (const p of [...this.roster.values()]) if (!now.has(p.id)) this._dispatch({ type: "participant_left", participant: p });
    for (const p of now.values()) if (!this.roster.has(p.id)) this._dispatch({ type: "participant_joined", participant: p });
    const pub = this.pcs.publisher;
    if (pub?.signalingState === "have-local-offer") {
      this._serial("publisher", () => pub.setLocalDescription({ type: "rollback" }));
    }
    this.client._onResumed(this);
    for (const target of ["publisher", "subscriber"]) if (this._down(target)) this._restartLoop(target);
  }

  /** mediaDown reports whether a media connection is disconnected or failed. */
  mediaDown() { return this._down("publisher") || this._down("subscriber"); }

  _down(target) {
    const st = this.pcs[target]?.connectionState;
    return st === "disconnected" || st === "failed";
  }

  /** _restartLoop restarts ICE on target's connection now and every
   * ICE_RESTART_INTERVAL_MS while it stays down. */
  _restartLoop(target) {
    if (this.restartTimers[target]) return;
    const tick = () => {
      if (this.closed || !this._down(target)) { delete this.restartTimers[target]; return; }
      this._restartICE(target);
      this.restartTimers[target] = setTimeout(tick, ICE_RESTART_INTERVAL_MS);
    };
    // A connection that is only disconnected may come back on its own
    // (the same network returns): give it one interval first. A failed
    // one restarts at once.
    const failed = this.pcs[target]?.connectionState === "failed";
    this.restartTimers[target] = setTimeout(tick, failed ? 0 : ICE_RESTART_INTERVAL_MS);
  }

  /** _restartICE restarts ICE on one connection (PROTOCOL.md, "ICE
   * restarts"): the publisher offers with new credentials, the subscriber
   * asks the server to. Only with the signaling up and nothing outstanding:
   * a restart offer lost with the WebSocket would leave the publisher
   * waiting for an answer that never comes. */
  _restartICE(target) {
    const pc = this.pcs[target];
    if (!pc?.remoteDescription || this.ws.readyState !== WebSocket.OPEN) return;
    if (target === "subscriber") { this.send({ type: "ice_restart", target }); return; }
    this._serial("publisher", async () => {
      if (pc.signalingState === "have-local-offer" && Date.now() - this.pubOfferAt >= ICE_RESTART_ANSWER_MS) {
        this.pubOffer = 0;
        await pc.setLocalDescription({ type: "rollback" });
      }
      if (pc.signalingState !== "stable") return;
      const offer = await pc.createOffer({ iceRestart: true });
      await pc.setLocalDescription(offer);
      this._sendOffer(offer);
    });
  }

  /** _sendOffer sends a publisher offer numbered with a fresh offer_id:
   * only the answer or refusal echoing it applies to it (PROTOCOL.md,
   * "Offer ids"). */
  _sendOffer(offer) {
    this.pubOffer = ++this.offerSeq;
    this.pubOfferAt = Date.now();
    this.send({ type: "offer", target: "publisher", sdp: offer.sdp, sources: this._offerSources(), offer_id: this.pubOffer });
  }

  /** _onOfferRefused rolls the publisher connection back from a refused
   * offer (an ICE restart at the session's candidate bound, a track over
   * the limit), so it is stable again and the next restart or change
   * can offer; a refusal of an offer already replaced is ignored. */
  _onOfferRefused(m) {
    if (m.offer_id && m.offer_id !== this.pubOffer) return;
    this.pubOffer = 0;
    const pc = this.pcs.publisher;
    this._serial("publisher", async () => {
      if (pc?.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
    });
  }

  /** start builds the PeerConnections once the session is adopted, and
   * publishes the local tracks. */
  start(localStream) {
    const cfg = { iceServers: this.iceServers, iceTransportPolicy: this.client.iceTransportPolicy, bundlePolicy: "max-bundle" };
    for (const target of ["publisher", "subscriber"]) {
      const pc = new RTCPeerConnection(cfg);
      pc.onicecandidate = (e) => {
        if (e.candidate && e.candidate.candidate) this.send({ type: "candidate", target, candidate: e.candidate.toJSON() });
      };
      pc.onconnectionstatechange = () => this._onPeerState(target, pc.connectionState);
      this.pcs[target] = pc;
    }
    this.pcs.subscriber.ontrack = (e) => {
      if (!e.streams[0]) return;
      if (this.client.remoteTracks.get(e.track.id)?.source?.startsWith("screen_share")) {
        e.streams[0].removeTrack(e.track); // the camera's tile shows the camera only
        return this._onScreenTrack(e.streams[0].id, e.track);
      }
      e.track.addEventListener("ended", () => this.sentSettings.delete(e.track.id));
      this.streams.set(e.streams[0].id, e.streams[0]);
      this.client._onTrack(this, e.streams[0]);
    };
    this._openData();
    if (localStream && localStream.getTracks().length) this._addTracks(localStream, this.client.simulcast);
    if (this.client.screenStream) this._addTracks(this.client.screenStream, false);
    this._negotiate(); // with no tracks, the data channels alone
    // Messages that arrived between joined and start (an early subscriber
    // offer) were queued; play them now.
    for (const m of this.early ?? []) this._dispatch(m);
    this.early = null;
  }

  /** _addTracks adds stream's tracks to the publisher connection. */
  _addTracks(stream, simulcast) {
    const pc = this.pcs.publisher;
    for (const track of stream.getTracks()) {
      const init = { direction: "sendonly", streams: [stream] };
      const encodings = track.kind === "video" && simulcast ? simulcastEncodings(track.getSettings().width ?? 0) : null;
      if (encodings) init.sendEncodings = encodings;
      pc.addTransceiver(track, init);
    }
  }

  /** _openData creates the two data channels, pre-negotiated with the
   * server (PROTOCOL.md, "Data"), before the first publisher offer. */
  _openData() {
    const pc = this.pcs.publisher;
    this.data = {
      reliable: pc.createDataChannel("_reliable", { negotiated: true, id: 0, ordered: true }),
      lossy: pc.createDataChannel("_lossy", { negotiated: true, id: 1, ordered: false, maxRetransmits: 0 }),
    };
    for (const [kind, dc] of Object.entries(this.data)) {
      dc.binaryType = "arraybuffer";
      dc.onmessage = (e) => this.client._onData(this, e.data, kind === "lossy");
    }
  }

  /** _negotiate sends a publisher offer naming each track's source. */
  _negotiate() {
    const pc = this.pcs.publisher;
    this._serial("publisher", async () => {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      this._sendOffer(offer);
      await this._setDegradation();
    });
  }

  /** _offerSources names the source of each track the publisher
   * connection sends, by mid, for an offer. */
  _offerSources() {
    const sources = {};
    for (const t of this.pcs.publisher.getTransceivers()) {
      if (t.mid !== null && t.sender.track) sources[t.mid] = this._sourceOf(t.sender.track);
    }
    return sources;
  }

  /** _sourceOf names a local track's source. */
  _sourceOf(track) {
    const screen = this.client.screenStream?.getTracks().includes(track);
    if (track.kind === "audio") return screen ? "screen_share_audio" : "microphone";
    return screen ? "screen_share" : "camera";
  }

  /** publishScreen adds a screen share to a running session. */
  publishScreen(stream) {
    if (!this.pcs.publisher) return; // start publishes it
    this._addTracks(stream, false);
    this._negotiate();
  }

  /** unpublish removes stream's tracks from the publisher connection. */
  unpublish(stream) {
    const pc = this.pcs.publisher;
    if (!pc || pc.signalingState === "closed") return;
    const tracks = stream.getTracks();
    for (const t of pc.getTransceivers()) {
      if (t.sender.track && tracks.includes(t.sender.track)) pc.removeTrack(t.sender);
    }
    this._negotiate();
  }

  /** sendMute tells the server our track of that source is (un)muted. */
  sendMute(source, muted) {
    const id = this.own.get(source);
    if (id) this.send({ type: "mute", track_id: id, muted });
  }

  /** _onScreenTrack gives a participant's screen-share tracks a stream
   * and a tile of their own. */
  _onScreenTrack(participantId, track) {
    const id = `${participantId}/screen`;
    let stream = this.streams.get(id);
    if (!stream) this.streams.set(id, stream = new MediaStream());
    stream.addTrack(track);
    this.client._onTrack(this, stream, id);
  }

  /** _onTrackMessage handles track_published, track_muted and
   * track_unpublished: ours give the id to mute by (and a mute made
   * before the track was announced is sent now) and carry the server
   * API's mutes of our tracks, the others' update the client's view of
   * the room. */
  _onTrackMessage(m) {
    if (!m.participant || !m.track) return;
    if (m.participant.id === this.self?.id) {
      if (m.type === "track_muted" && m.reason === "api") this.client._applyServerMute(this, m.track.source, m.track.muted);
      if (m.type !== "track_published") return;
      this.own.set(m.track.source, m.track.id);
      const local = this.client.localStream?.getTracks().find((t) => this._sourceOf(t) === m.track.source);
      if (local && !local.enabled && !m.track.muted) this.sendMute(m.track.source, true);
      return;
    }
    this.client._onTrackInfo(this, m.participant, m.track, m.type === "track_unpublished");
  }

  /** _setDegradation applies the client's degradationPreference to the
   * video senders, where the browser supports it. */
  async _setDegradation() {
    const pref = this.client.degradationPreference;
    if (!pref) return;
    for (const t of this.pcs.publisher.getTransceivers()) {
      if (t.sender.track?.kind !== "video") continue;
      await this._updateSender(t.sender, (p) => { p.degradationPreference = pref; });
    }
  }

  /** _updateSender changes a sender's parameters, one change at a time
   * (a setParameters must finish before the next getParameters). A
   * browser that refuses a change keeps sending as before: that is logged,
   * not shown, since the call goes on. */
  _updateSender(sender, change) {
    this.layerChain = this.layerChain.then(async () => {
      const p = sender.getParameters();
      change(p);
      await sender.setParameters(p);
    }).catch((err) => console.debug(`media ${this.self?.id}: setParameters: ${err.message}`));
    return this.layerChain;
  }

  /** _onLayers follows the server's dynacast: the encodings of the track
   * sent on that mid are active exactly when their RID is listed. */
  _onLayers(m) {
    if (!Array.isArray(m.active)) return;
    const t = this.pcs.publisher?.getTransceivers().find((x) => x.mid === m.mid);
    if (!t) return;
    const want = new Set(m.active);
    this._updateSender(t.sender, (p) => {
      for (const e of p.encodings ?? []) if (e.rid) e.active = want.has(e.rid);
    });
  }

  /** applyTrackSettings sends track_settings for every received track
   * whose wanted settings differ from what was last sent. Tracks this
   * session does not receive are left out: the server would answer
   * unknown_track. */
  applyTrackSettings(wanted) {
    const received = new Set();
    for (const s of this.streams.values()) for (const t of s.getVideoTracks()) received.add(t.id);
    for (const [id, w] of wanted) {
      if (!received.has(id)) continue;
      const msg = { type: "track_settings", track_id: id, quality: w.quality, max_width: w.maxWidth, max_height: w.maxHeight, paused: w.paused };
      const key = JSON.stringify(msg);
      if (this.sentSettings.get(id) === key) continue;
      this.sentSettings.set(id, key);
      this.send(msg);
    }
  }

  send(msg) {
    trace(this, "send", msg);
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** leave ends the session from our side. The protocol has the server
   * close the WebSocket after a `leave`; closing it ourselves at once would
   * race our close frame against the server's and can reset the
   * connection. Only if the server does not close it in time do we. */
  leave() {
    if (this.closed || this.byClient) return;
    this.byClient = true;
    if (this.ws.readyState !== WebSocket.OPEN) {
      this.ws.close(1000, "leave");
      return;
    }
    this.send({ type: "leave" });
    this.leaveTimer = setTimeout(() => this.ws.close(1000, "leave"), LEAVE_CLOSE_WAIT_MS);
  }

  _onMessage(data) {
    let m;
    try { m = JSON.parse(data); } catch { return; }
    if (!m || typeof m.type !== "string") return;
    trace(this, "recv", m);
    if (this.byClient) return; // we left: nothing more to negotiate
    if (m.type === "joined") return this._onJoined(m);
    if (m.type === "redirect" && !this.self) return this._onRedirect(m);
    if (!this.pcs.publisher && this.early) { this.early.push(m); return; }
    this._dispatch(m);
  }

  _onJoined(m) {
    if (m.protocol !== undefined && m.protocol !== PROTOCOL_VERSION) {
      this._joinedReject(new ClientError("protocol", `server speaks protocol ${m.protocol}, client ${PROTOCOL_VERSION}`));
      this.leave();
      return;
    }
    clearTimeout(this.joinTimer);
    this.self = m.participant;
    for (const p of m.participants ?? []) this.roster.set(p.id, p);
    this.iceServers = m.ice_servers ?? [];
    this.resume = m.resume ? { credential: m.resume, graceMs: m.resume_grace_ms ?? 0 } : null;
    this.early = [];
    this._joinedResolve(this);
  }

  /** _onRedirect: the room lives elsewhere. The attempt fails with code
   * "redirect" and the URL, which _connect follows; the server closes the
   * WebSocket (1000) after it. */
  _onRedirect(m) {
    clearTimeout(this.joinTimer);
    let url = "";
    try {
      const u = new URL(m.url);
      if (u.protocol === "ws:" || u.protocol === "wss:") url = u.href;
    } catch { /* not a URL: refused below */ }
    const err = url ? new ClientError("redirect", `the room is at ${url}`)
      : new ClientError("bad_redirect", "the service redirected to something that is not a ws:// or wss:// URL");
    err.url = url;
    this._joinedReject(err);
    this.byClient = true;
    this.ws.close(1000, "redirect");
  }

  _dispatch(m) {
    switch (m.type) {
      case "offer": return this._onOffer(m);
      case "answer": return this._onAnswer(m);
      case "candidate": return this._onCandidate(m);
      case "participant_joined":
        if (m.participant) this.roster.set(m.participant.id, m.participant);
        return this.client._onParticipantJoined(this, m.participant);
      case "participant_left":
        if (m.participant) {
          this.roster.delete(m.participant.id);
          this.streams.delete(m.participant.id);
          this.streams.delete(`${m.participant.id}/screen`);
        }
        return this.client._onParticipantLeft(this, m.participant);
      case "layers": return this._onLayers(m);
      case "speakers": return this.client._onSpeakers(this, m.speakers);
      case "subscription_state":
        // What the server's bandwidth allocation did to a track we
        // receive: paused for congestion (reason), or capped at a quality.
        return this.client._emit("subscriptionstate", { trackId: m.track_id, reason: m.reason ?? "", quality: m.quality ?? "" });
      case "track_published": case "track_muted": case "track_unpublished":
        return this._onTrackMessage(m);
      case "error":
        if (m.target === "publisher") this._onOfferRefused(m);
        // A track_settings for a track the server removed meanwhile (its
        // publisher left) is a race, not something to show the user.
        if (m.code === "unknown_track") return console.debug(`media ${this.self?.id}: ${m.message}`);
        return this.client._emitError(m.code, m.message);
      case "draining": return this._onDraining(m);
      case "leave": this.leaveReason = m.reason; return;
    }
  }

  _onOffer(m) {
    if (m.target !== "subscriber") return this.client._emitError("bad_offer", `unexpected offer for ${m.target}`);
    const pc = this.pcs.subscriber;
    this._serial("subscriber", async () => {
      await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
      await this._flushCandidates("subscriber");
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      this.send({ type: "answer", target: "subscriber", sdp: answer.sdp, offer_id: m.offer_id });
    });
  }

  _onAnswer(m) {
    if (m.target !== "publisher") return this.client._emitError("bad_answer", `unexpected answer for ${m.target}`);
    // The answer to an offer that was replaced (refused, or given up on
    // by a restart) must not be applied to the offer outstanding now.
    if (m.offer_id && m.offer_id !== this.pubOffer) return console.debug(`media ${this.self?.id}: answer to offer ${m.offer_id} ignored`);
    this.pubOffer = 0;
    const pc = this.pcs.publisher;
    this._serial("publisher", async () => {
      await pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
      await this._flushCandidates("publisher");
    });
  }

  _onCandidate(m) {
    const pc = this.pcs[m.target];
    if (!pc || !m.candidate) return;
    this._serial(m.target, async () => {
      if (!pc.remoteDescription) { this.pending[m.target].push(m.candidate); return; }
      await pc.addIceCandidate(m.candidate);
    });
  }

  async _flushCandidates(target) {
    const list = this.pending[target];
    this.pending[target] = [];
    for (const c of list) await this.pcs[target].addIceCandidate(c);
  }

  /** _onPeerState reports a connection's state, and restarts ICE on one
   * that went disconnected or failed: the network changed, and the session
   * stays the same participant. If no restart brings it back within the
   * server's grace, the server ends the session (ice_failed) and the
   * client joins anew. */
  _onPeerState(target, state) {
    console.debug(`media ${this.self?.id}: ${target} ${state}`);
    this.client._emit("peerstate", { target, state });
    if (this.closed) return;
    if (this._down(target)) this._restartLoop(target);
    this.client._onNetwork(this);
  }

  _onDraining(m) {
    this.draining = true;
    const deadline = Date.parse(m.deadline);
    // Stay until just before the deadline (the call goes on meanwhile), then
    // leave cleanly unless a new session has replaced this one by then.
    const left = Number.isFinite(deadline) ? deadline - Date.now() : 0;
    const margin = Math.min(DRAIN_LEAVE_MARGIN.maxMs, Math.max(DRAIN_LEAVE_MARGIN.minMs, left * DRAIN_LEAVE_MARGIN.share));
    const wait = Math.max(0, left - margin);
    this.drainTimer = setTimeout(() => this.leave(), wait);
    this.client._onDraining(this, m.deadline, typeof m.url === "string" ? m.url : "");
  }

  /** _serial runs one negotiation step of a connection after the previous
   * one, so an offer, its candidates and the next offer never interleave. */
  _serial(target, fn) {
    this.chains[target] = this.chains[target].then(fn).catch((err) => {
      if (!this.closed && !this.byClient) this.client._emitError("negotiation_failed", `${target}: ${err.message}`);
    });
  }

  _onClose(e) {
    console.debug(`media ${this.self?.id}: closed ${e.code} clean=${e.wasClean} by_client=${this.byClient}`);
    if (!this.resuming && this._mayResume(e)) { this._resumeLoop(e); return; }
    this.closed = true;
    for (const t of Object.values(this.restartTimers)) clearTimeout(t);
    clearTimeout(this.joinTimer);
    clearTimeout(this.drainTimer);
    clearTimeout(this.leaveTimer);
    this._closePeers();
    const close = {
      code: e.code, reason: e.reason, wasClean: e.wasClean, byClient: this.byClient, leaveReason: this.leaveReason,
      peers: { publisher: this.pcs.publisher?.connectionState ?? "", subscriber: this.pcs.subscriber?.connectionState ?? "" },
    };
    if (!this.self) {
      this._joinedReject(new ClientError("connect_failed", `signaling closed before joining (code ${e.code})`));
    }
    this.client._onSessionEnded(this, { reason: this.leaveReason, close });
  }

  _closePeers() {
    for (const pc of Object.values(this.pcs)) pc.close();
  }
}
