// app.js: the demo page. It drives one MediaClient and renders its room:
// a tile per participant, mute controls, connection state and live stats.
//
// Query parameters: room, identity, autojoin=1, relay=1 (TURN only),
// quality=low|standard|high (camera resolution and frame rate), token (an
// access token, for an instance that is not in dev mode), simulcast=0 (send
// one layer instead of simulcast).
// For tests it exposes window.mediaClient and window.mediaDemo.snapshot().

import { MediaClient, devToken } from "./client.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);

const STATE_TEXT = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  draining: "Server restarting",
  reconnecting: "Reconnecting…",
  closed: "Left the room",
};

/** QUALITY is the camera capture of each quality setting: low saves
 * bandwidth and CPU on a weak link or machine. */
const QUALITY = {
  low: { width: { ideal: 320 }, height: { ideal: 180 }, frameRate: { ideal: 15 } },
  standard: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } },
  high: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
};

const IDENTITY_KEY = "media-service.identity";

/** tiles maps a participant id (or "local") to its rendered tile. */
const tiles = new Map();
/** shownErrors keeps every error the page showed, for tests. */
const shownErrors = [];
/** pausedTracks maps the id of each track the server paused to the
 * reason (subscription_state), for the session in use. */
const pausedTracks = new Map();
/** chat keeps the chat messages shown, for tests: {from, text, self}. */
const chat = [];
/** CHAT_TOPIC is the data topic of chat messages. */
const CHAT_TOPIC = "chat";
let client = null;
let lastStats = null;
let statsTimer = 0;

function init() {
  $("room").value = query.get("room") || "demo";
  // The name survives a reload of this tab (sessionStorage), but a new tab
  // gets its own: two tabs with one identity would push each other out.
  $("identity").value = query.get("identity") || sessionStorage.getItem(IDENTITY_KEY) ||
    `guest-${Math.random().toString(36).slice(2, 6)}`;
  $("relay").checked = query.get("relay") === "1";
  $("join-form").addEventListener("submit", (e) => { e.preventDefault(); join(); });
  $("mic").addEventListener("click", () => toggleMute("audio"));
  $("cam").addEventListener("click", () => toggleMute("video"));
  $("screen").addEventListener("click", toggleScreen);
  $("leave").addEventListener("click", leave);
  $("copy-link").addEventListener("click", copyLink);
  $("invite-copy").addEventListener("click", copyLink);
  $("chat-form").addEventListener("submit", (e) => { e.preventDefault(); sendChat(); });
  // A reload or closed tab leaves at once, so the others see us go now
  // rather than after the keepalive times out.
  addEventListener("pagehide", () => client?.leave());
  window.mediaDemo = { snapshot, join, leave };
  if (query.get("autojoin") === "1") join();
}

async function join() {
  const room = $("room").value.trim();
  const identity = $("identity").value.trim();
  if (!$("join-form").reportValidity()) return;
  sessionStorage.setItem(IDENTITY_KEY, identity);
  const video = QUALITY[query.get("quality")] ?? QUALITY.standard;
  client = new MediaClient({ relayOnly: $("relay").checked, media: { audio: true, video }, simulcast: query.get("simulcast") !== "0" });
  window.mediaClient = client;
  wire(client);
  showCall(room);
  history.replaceState(null, "", `?${new URLSearchParams({ ...Object.fromEntries(query), room })}`);
  try {
    await client.join({ room, tokens: tokenSource(room, identity) });
  } catch (err) {
    showError(err.code || "join_failed", err.message);
  }
}

/** tokenSource is where each connection attempt gets its token: the
 * token in the URL (an operator's, from `media-service token`), else the
 * instance's dev token endpoint. */
function tokenSource(room, identity) {
  const token = query.get("token");
  if (!token) return () => devToken(room, identity);
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/v1/rtc`;
  return async () => ({ token, url });
}

function leave() {
  client?.leave();
  clearInterval(statsTimer);
  for (const id of [...tiles.keys()]) removeTile(id);
  $("call").hidden = true;
  $("controls").hidden = true;
  $("room-info").hidden = true;
  $("chat").hidden = true;
  $("lobby").hidden = false;
  setBanner(null);
}

function wire(c) {
  c.addEventListener("state", (e) => renderState(e.detail.state));
  c.addEventListener("peerstate", () => renderState(c.state));
  c.addEventListener("joined", onJoined);
  c.addEventListener("participantjoined", (e) => addTile(e.detail.participant));
  c.addEventListener("participantleft", (e) => removeTile(e.detail.participant.id));
  c.addEventListener("track", (e) => {
    attach(addTile(e.detail.participant), e.detail.stream);
    renderRemoteMute(e.detail.participant.id);
  });
  c.addEventListener("subscriptionstate", (e) => markPaused(e.detail));
  c.addEventListener("trackmuted", (e) => renderRemoteMute(e.detail.participantId));
  c.addEventListener("localmute", (e) => {
    renderMute();
    const what = e.detail.source.replaceAll("_", " ");
    if (e.detail.changed) toast(`The host ${e.detail.muted ? "muted" : "unmuted"} your ${what}`);
  });
  c.addEventListener("screenshare", (e) => $("screen").setAttribute("aria-pressed", String(e.detail.active)));
  c.addEventListener("error", (e) => showError(e.detail.code, e.detail.message));
  c.addEventListener("retry", (e) => onRetry(e.detail));
  c.addEventListener("data", (e) => onData(e.detail));
  c.addEventListener("speakers", (e) => renderSpeakers(e.detail.speakers));
  c.addEventListener("resumed", () => toast("Reconnected"));
  c.addEventListener("draining", () => setBanner("draining", "This server is restarting. You stay in the call and move to a new server automatically."));
}

function onRetry({ attempt, delayMs, message }) {
  if (client.state === "draining") return; // the call goes on; the draining banner says enough
  const secs = Math.max(1, Math.round(delayMs / 1000));
  const text = message.charAt(0).toUpperCase() + message.slice(1);
  setBanner("retrying", `${text}. Trying again in ${secs} s (attempt ${attempt}).`);
}

function onJoined(e) {
  // A new session's subscriber connection starts with nothing paused.
  pausedTracks.clear();
  for (const t of tiles.values()) renderPaused(t);
  const local = addTile({ id: "local", identity: e.detail.self.identity }, true);
  if (client.localStream) attach(local, client.localStream);
  renderMute();
  for (const p of e.detail.participants) { addTile(p); renderRemoteMute(p.id); }
  if (client.reconnects > 0) toast("Reconnected");
  clearInterval(statsTimer);
  statsTimer = setInterval(updateStats, 1000);
}

function showCall(room) {
  $("lobby").hidden = true;
  $("call").hidden = false;
  $("controls").hidden = false;
  $("room-info").hidden = false;
  $("chat").hidden = false;
  $("room-name").textContent = room;
  document.title = `${room} · media-service`;
}

function renderState(state) {
  document.body.dataset.state = state;
  updateCount();
  const media = state === "connected" ? mediaState() : "ok";
  $("state-text").textContent = { pending: "Connecting media…", failed: "Media connection failed" }[media] ?? STATE_TEXT[state] ?? state;
  $("status").dataset.media = media;
  if (state === "connected") setBanner(null);
  if (state === "reconnecting") setBanner("reconnecting", "Connection lost. Reconnecting…");
}

/** mediaState sums up both PeerConnections: "ok" once what should flow
 * does (a subscriber still "new" has had nothing to receive yet). */
function mediaState() {
  const { publisher, subscriber } = client.peerStates();
  const publishing = Boolean(client.localStream);
  if (publisher === "failed" || subscriber === "failed") return "failed";
  if (publishing && publisher !== "connected") return "pending";
  if (subscriber !== "new" && subscriber !== "connected") return "pending";
  return "ok";
}

function addTile(p, local = false) {
  let t = tiles.get(p.id);
  if (!t) {
    const el = $("tile-template").content.firstElementChild.cloneNode(true);
    t = { el, video: el.querySelector("video"), local, participant: p };
    el.dataset.participantId = p.id;
    el.classList.toggle("local", local);
    el.classList.toggle("screen", Boolean(p.screen));
    el.dataset.source = p.screen ? "screen_share" : "camera";
    el.querySelector(".screen-badge").hidden = !p.screen;
    t.video.muted = local; // never play our own microphone back
    t.video.addEventListener("playing", () => { el.dataset.playing = "true"; });
    const picker = el.querySelector(".quality");
    picker.hidden = local;
    picker.addEventListener("change", () => {
      const track = videoTrackOf(t);
      if (track) client.setTrackQuality(track.id, picker.value);
    });
    // Clicking a tile shows it alone, at the size of the call area (and
    // adaptive stream asks for the layer that size needs).
    t.video.addEventListener("click", () => spotlight(p.id));
    tiles.set(p.id, t);
    if (local) $("grid").prepend(el); else $("invite").before(el);
    updateCount();
  }
  t.participant = p;
  const name = p.identity || "…";
  t.el.dataset.identity = p.identity;
  t.el.querySelector(".name").textContent = local ? `${name} (you)` : p.screen ? `${name} (screen)` : name;
  t.el.querySelector(".avatar span").textContent = initials(name);
  return t;
}

/** spotlight shows one tile over the whole call area, or the grid again
 * when that tile is already shown so. */
function spotlight(id) {
  const on = $("grid").dataset.spotlight !== id;
  $("grid").dataset.spotlight = on ? id : "";
  for (const [tid, t] of tiles) t.el.classList.toggle("spotlit", on && tid === id);
}

/** markPaused keeps what the server's bandwidth allocation last said of a
 * track (paused for congestion: our downlink cannot carry even its lowest
 * layer; or resumed) and shows it on the tile whose video is that track.
 * The server may pause a new track before the page has it (the
 * subscriber offer is still being answered): attach shows the mark then. */
function markPaused({ trackId, reason }) {
  if (reason) pausedTracks.set(trackId, reason); else pausedTracks.delete(trackId);
  for (const t of tiles.values()) if (videoTrackOf(t)?.id === trackId) renderPaused(t);
}

/** renderPaused marks a tile whose video track the server paused, and
 * clears the mark of one it did not. */
function renderPaused(t) {
  const reason = pausedTracks.get(videoTrackOf(t)?.id) ?? "";
  t.el.dataset.paused = reason;
  t.el.querySelector(".paused-badge").hidden = reason === "";
}

function videoTrackOf(t) {
  return t.video.srcObject?.getVideoTracks()[0] ?? null;
}

function removeTile(id) {
  const t = tiles.get(id);
  if (!t) return;
  if ($("grid").dataset.spotlight === id) spotlight(id);
  client?.unobserve(t.video);
  t.video.srcObject = null;
  t.el.remove();
  tiles.delete(id);
  updateCount();
}

function updateCount() {
  const n = tiles.size;
  $("grid").dataset.tiles = String(n);
  // Invite others only while connected: alone because disconnected is not
  // alone in the room.
  $("invite").hidden = !(n === 1 && tiles.has("local") && client?.state === "connected");
  $("count").dataset.count = String(n);
  $("count").textContent = `${n} ${n === 1 ? "person" : "people"}`;
}

function attach(t, stream) {
  // Every track of a participant comes in its one stream: a video that
  // joins the stream shown already (after its audio) may have been
  // paused by the server before it came, and its mark must show then.
  if (t.video.srcObject === stream) return renderPaused(t);
  t.video.srcObject = stream;
  renderPaused(t);
  if (!t.local) {
    client.observe(t.video);
    const track = videoTrackOf(t);
    t.el.querySelector(".quality").value = track ? client.trackQuality(track.id) : "auto";
  }
  t.video.play().catch(() => {
    // Autoplay with sound needs a user gesture (autojoin has none): play
    // muted and offer to turn the sound on.
    t.video.muted = true;
    t.video.play().catch(() => {});
    offerSound();
  });
}

function offerSound() {
  if ($("banner").dataset.kind === "sound") return;
  setBanner("sound", "Sound is off until you click.", "Turn sound on", () => {
    for (const t of tiles.values()) if (!t.local) { t.video.muted = false; t.video.play().catch(() => {}); }
    setBanner(null);
  });
}

function toggleMute(kind) {
  if (!client) return;
  client.setMuted(kind, !client.muted(kind));
  renderMute();
}

/** toggleScreen starts or stops sharing our screen. */
function toggleScreen() {
  if (!client) return;
  if (client.screenStream) { client.stopScreenShare(); return; }
  client.shareScreen().catch((err) => showError("screen_share", `Screen sharing failed: ${err.message}`));
}

/** renderRemoteMute shows a participant's mute state, as the server
 * announced it, on its tile. */
function renderRemoteMute(id) {
  const t = tiles.get(id);
  if (!t || t.local || t.participant.screen) return;
  t.el.querySelector(".muted-badge").hidden = !client.isMuted(id, "microphone");
  t.el.classList.toggle("camera-off", client.isMuted(id, "camera"));
}

/** renderMute shows the client's mute state on the buttons and our tile. */
function renderMute() {
  const audio = client.muted("audio");
  const video = client.muted("video");
  $("mic").setAttribute("aria-pressed", String(audio));
  $("mic").title = audio ? "Unmute microphone" : "Mute microphone";
  $("cam").setAttribute("aria-pressed", String(video));
  $("cam").title = video ? "Turn camera on" : "Turn camera off";
  const local = tiles.get("local");
  if (!local) return;
  local.el.classList.toggle("camera-off", video);
  local.el.querySelector(".muted-badge").hidden = !audio;
}

/** sendChat sends the chat box's text to everyone over the reliable data
 * channel, and shows it. */
function sendChat() {
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !client) return;
  try {
    client.sendData(text, { topic: CHAT_TOPIC });
  } catch (err) {
    showError(err.code || "data_failed", err.message);
    return;
  }
  input.value = "";
  addChat(client.self?.identity ?? "", text, true);
}

function onData({ from, topic, payload }) {
  if (topic !== CHAT_TOPIC) return;
  addChat(from, new TextDecoder().decode(payload), false);
}

function addChat(from, text, self) {
  chat.push({ from, text, self });
  const li = document.createElement("li");
  li.classList.toggle("self", self);
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = self ? "you" : from;
  li.append(who, text);
  $("chat-log").append(li);
  li.scrollIntoView({ block: "end" });
}

/** renderSpeakers outlines the tiles of who speaks now. */
function renderSpeakers(speakers) {
  const ids = new Set(speakers.map((s) => s.id));
  for (const [id, t] of tiles) t.el.classList.toggle("speaking", ids.has(id === "local" ? client.self?.id : id));
}

async function updateStats() {
  if (!client || client.state === "closed") return;
  let s = null;
  try { s = await client.stats(); } catch { /* a session closing under us: show no numbers */ }
  lastStats = s;
  if (!s) {
    for (const t of tiles.values()) clearStats(t);
    return;
  }
  for (const [id, t] of tiles) {
    const st = id === "local" ? s.local : s.remote[id];
    if (st) renderStats(t, st, id === "local");
  }
}

function clearStats(t) {
  for (const el of t.el.querySelectorAll("[data-stat]")) el.textContent = "–";
}

function renderStats(t, st, local) {
  const set = (k, v) => { t.el.querySelector(`[data-stat="${k}"]`).textContent = v; };
  set("bitrate", `${local ? "↑" : "↓"} ${formatRate(st.bitrateKbps)}`);
  set("lost", `${st.packetsLost} lost`);
  set("rtt", st.rttMs === null ? "RTT –" : `RTT ${st.rttMs} ms`);
  set("res", resolutionText(st, local));
}

/** resolutionText is the size of the video received, or for our own tile
 * the size of each layer we send. */
function resolutionText(st, local) {
  if (!local) return st.video.frameWidth ? `${st.video.frameWidth}×${st.video.frameHeight}` : "–";
  const sizes = (st.layers ?? []).filter((l) => l.frameWidth).map((l) => `${l.frameWidth}×${l.frameHeight}`);
  return sizes.length ? `↑ ${sizes.join(" ")}` : "–";
}

function formatRate(kbps) {
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mb/s` : `${Math.round(kbps)} kb/s`;
}

function initials(name) {
  return name.split(/[\s._-]+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("") || "?";
}

function setBanner(kind, text, action, onAction) {
  const b = $("banner");
  b.hidden = !kind;
  b.dataset.kind = kind ?? "";
  b.textContent = text ?? "";
  if (action) {
    const btn = document.createElement("button");
    btn.type = "button";
    btn.textContent = action;
    btn.addEventListener("click", onAction, { once: true });
    b.append(btn);
  }
}

function showError(code, message) {
  shownErrors.push({ code, message });
  toast(message, "error");
}

function toast(text, kind = "info") {
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.textContent = text;
  $("toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 3000);
}

async function copyLink() {
  const url = `${location.origin}/?room=${encodeURIComponent($("room-name").textContent)}`;
  try {
    await navigator.clipboard.writeText(url);
    toast("Link copied");
  } catch {
    toast(url);
  }
}

/** snapshot is the page's state for tests: what the user would see, read
 * from the elements and the client rather than scraped from text. */
function snapshot() {
  return {
    state: client?.state ?? "idle",
    room: client?.room ?? "",
    self: client?.self ?? null,
    peers: client?.peerStates() ?? {},
    banner: $("banner").hidden ? "" : $("banner").dataset.kind,
    drainingSeen: client?.drainingSeen ?? false,
    reconnects: client?.reconnects ?? 0,
    resumes: client?.resumes ?? 0,
    redirects: client?.redirects ?? 0,
    url: client?.session?.url ?? "",
    handover: client?.lastHandover ?? null,
    lastClose: client?.lastClose ?? null,
    lastError: client?.lastError ?? null,
    muted: { audio: client?.muted("audio") ?? false, video: client?.muted("video") ?? false },
    sharing: Boolean(client?.screenStream),
    errors: shownErrors,
    chat,
    speakers: client?.speakers ?? [],
    transport: lastStats ? { publisher: lastStats.publisher, subscriber: lastStats.subscriber } : null,
    receivers: client?.session?.pcs.subscriber?.getTransceivers().length ?? 0,
    visibility: document.visibilityState,
    trackSettings: Object.fromEntries(client?.session?.sentSettings ?? []),
    tiles: [...tiles.values()].map((t) => tileSnapshot(t)),
  };
}

function tileSnapshot(t) {
  const st = t.local ? lastStats?.local : lastStats?.remote[t.participant.id];
  return {
    id: t.participant.id,
    identity: t.participant.identity,
    local: t.local,
    speaking: t.el.classList.contains("speaking"),
    screen: Boolean(t.participant.screen),
    audioMuted: !t.el.querySelector(".muted-badge").hidden,
    tracks: t.video.srcObject?.getTracks().length ?? 0,
    videoWidth: t.video.videoWidth,
    videoHeight: t.video.videoHeight,
    framesDecoded: st?.video.framesDecoded ?? 0,
    frameWidth: st?.video.frameWidth ?? 0,
    frameHeight: st?.video.frameHeight ?? 0,
    renderedWidth: t.video.clientWidth,
    trackId: videoTrackOf(t)?.id ?? "",
    quality: t.el.querySelector(".quality").value,
    sentLayers: t.local ? (st?.layers ?? []) : [],
    videoPacketsReceived: st?.video.packetsReceived ?? 0,
    audioPacketsReceived: st?.audio.packetsReceived ?? 0,
    bitrateKbps: st?.bitrateKbps ?? 0,
  };
}

init();
