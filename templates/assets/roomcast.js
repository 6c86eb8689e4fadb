// roomcast.js: a dependency-free client for roomcast rooms, as an ES module.
// Served at /assets/roomcast.js by every roomcast-smol. Use it from any page:
//
//   import { connect } from "https://chat.example.com/assets/roomcast.js";
//   const room = connect({ room: "lobby", on: { message: (m) => console.log(m.seq, m.user, m.text) } });
//   await room.post("hello");
//
// It listens over Server-Sent Events (read with fetch, so it sees status codes and can send a
// token) or WebSocket; after any drop it reconnects with jittered backoff and resumes after the
// last sequence number it delivered, so each message arrives once, in order, or a gap says what
// is gone. Posts carry an idempotency key and are retried safely.

/** The server sends a heartbeat every 15 s by default: this long without a byte means the
 * connection died without closing (a laptop lid, a dropped route), so reconnect. */
const SILENCE_MS = 45000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
/** A connection that stayed up this long starts the backoff over. */
const HEALTHY_AFTER_MS = 10000;
const POST_ATTEMPTS = 5;

/** A random delay in [0, min(max, first * 2^attempt)): "full jitter", so clients spread out. */
export function backoff(attempt, first = BACKOFF_FIRST_MS, max = BACKOFF_MAX_MS) {
  return Math.random() * Math.min(max, first * 2 ** Math.min(attempt, 16));
}

/** A fresh idempotency key (letters, digits and dashes). */
export function idempotencyKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A refusal from the server: `status` (HTTP), `code` (the problem's stable name), `detail`. */
export class RoomcastError extends Error {
  constructor(status, code, detail, retryAfterMs) {
    super(detail || code || `HTTP ${status}`);
    this.name = "RoomcastError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfterMs = retryAfterMs;
  }
}

async function refusal(res) {
  let problem = {};
  try { problem = await res.json(); } catch { /* not a problem document */ }
  const header = Number(res.headers.get("Retry-After"));
  const retryAfterMs = problem.retry_after_ms ?? (header > 0 ? header * 1000 : undefined);
  return new RoomcastError(res.status, problem.code || "http-" + res.status, problem.detail || res.statusText, retryAfterMs);
}

/** Worth trying again: the server or the network failed, or asked to wait. */
const transient = (status) => status >= 500 || status === 408 || status === 429;

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

/**
 * Opens a room. Options:
 * - `room` (required): its id.
 * - `server`: the roomcast origin, e.g. "https://chat.example.com" (default: this page's). Another
 *   origin must be listed in the server's `--allowed-origins`.
 * - `token`: a bearer token from /api/v1/auth/*. Without one, the session cookie is used (same
 *   origin only).
 * - `transport`: "sse" (default) or "websocket".
 * - `since`: resume after this sequence number (default: live, from now).
 * - `on`: callbacks, all optional:
 *   `message(m)` each message once, in order ({id, room, seq, user, text, sent_at, reply_to?});
 *   `edited(e)`, `deleted(e)`, `reaction(e)` changes to message `e.of`, each once and in the
 *   same order as messages (an edit's new `text`; a reaction's `emoji`, `user` and `added`);
 *   `moderation(e)` a moderator (`e.user`) did `e.action` to `e.target` (`until` for a mute);
 *   `typing(t)` {user, expires_in_ms}: someone is typing (until then, or their next message);
 *   `presence(p)` {kind: "snapshot", users} first on every connection, then {kind: "joined"|"left", user};
 *   `gap(g)` {after, first_held}: those messages are no longer kept;
 *   `status(s)` "connecting", "live", "reconnecting" or "closed";
 *   `reconnected({after})` a drop was bridged, resuming after `after`;
 *   `restarting()` the server said it is shutting down; reconnection follows;
 *   `reset()` the room's numbering started again (its history was lost): start over;
 *   `closed(c)` the end, for good: {reason, by?, status?, detail?} where `reason` is the
 *   server's (`deleted`, `expired`, `removed`, `kicked`, `banned`, `signed-out`,
 *   `session-expired`) or a refusal's
 *   code, and `status` the HTTP status of a refusal (401: sign in again).
 * Returns {post(text, {idempotencyKey, replyTo, attachments}), upload(file, name),
 * moderate(user, action, seconds), edit(seq, text), remove(seq),
 * react(seq, emoji, added = true), typing(), markRead(seq, {keepalive}),
 * history({before, after, limit}),
 * close(), lastSeq,
 * status}.
 */
export function connect(options) {
  if (!options?.room) throw new TypeError("connect: `room` is required");
  const on = options.on || {};
  const server = (options.server || globalThis.location?.origin || "").replace(/\/$/, "");
  const crossOrigin = server !== globalThis.location?.origin;
  const transport = options.transport || "sse";
  const room = encodeURIComponent(options.room);
  const emit = (name, value) => { try { on[name]?.(value); } catch (e) { setTimeout(() => { throw e; }); } };

  let lastSeq = options.since ?? null;
  let stopped = false;
  let attempt = 0;
  let dropped = false;
  let abort = null;
  let socket = null;
  let status = null;

  const setStatus = (s) => { if (s !== status) { status = s; emit("status", s); } };
  const headers = (extra = {}) => options.token ? { ...extra, Authorization: `Bearer ${options.token}` } : extra;
  const credentials = options.token || crossOrigin ? "omit" : "same-origin";
  const since = () => (lastSeq === null ? "" : `?since=${lastSeq}`);

  function finish(closed) {
    if (stopped) return;
    stopped = true;
    abort?.abort();
    socket?.close();
    setStatus("closed");
    emit("closed", closed);
  }

  // One event from either transport. Returns false once the stream has ended.
  function handle(type, data) {
    switch (type) {
      case "message":
      case "edited":
      case "deleted":
      case "reaction":
      case "moderation":
        if (lastSeq !== null && data.seq <= lastSeq) return true; // seen before a resume
        lastSeq = data.seq;
        emit(type, data);
        return true;
      case "presence":
        emit("presence", data);
        return true;
      case "typing":
        emit("typing", data);
        return true;
      case "gap":
        lastSeq = Math.max(lastSeq ?? 0, data.first_held - 1);
        emit("gap", data);
        return true;
      case "closed":
        if (data.reason === "shutdown") { emit("restarting"); return false; }
        if (data.reason === "reset") { lastSeq = 0; emit("reset"); return false; }
        finish({ reason: data.reason, by: data.by });
        return false;
      case "error":
        emit("error", data);
        return true;
      default:
        return true; // a newer server's event: ignored
    }
  }

  function opened() {
    if (dropped) emit("reconnected", { after: lastSeq });
    dropped = false;
    setStatus("live");
    const since = Date.now();
    return () => { if (Date.now() - since > HEALTHY_AFTER_MS) attempt = 0; };
  }

  // Server-Sent Events over fetch: the status of a refusal is visible, and a token can be sent.
  async function sse() {
    abort = new AbortController();
    const res = await fetch(`${server}/api/v1/rooms/${room}/events${since()}`, {
      headers: headers({ Accept: "text/event-stream" }), credentials, signal: abort.signal, cache: "no-store",
    });
    if (!res.ok) throw await refusal(res);
    const healthy = opened();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", type = "message", data = [];
    let silence = null;
    const listen = () => { clearTimeout(silence); silence = setTimeout(() => abort.abort(), SILENCE_MS); };
    try {
      for (;;) {
        listen();
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end;
        while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, end);
          buffer = buffer.slice(buffer[end] === "\r" && buffer[end + 1] === "\n" ? end + 2 : end + 1);
          if (line === "") {
            if (data.length && !handle(type, JSON.parse(data.join("\n")))) return;
            type = "message"; data = [];
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") type = value;
            else if (field === "data") data.push(value);
          }
        }
      }
    } finally {
      clearTimeout(silence);
      healthy();
      abort.abort();
    }
  }

  function websocket() {
    return new Promise((resolve, reject) => {
      const url = new URL(`${server}/api/v1/rooms/${room}/ws${since()}`, globalThis.location?.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(url);
      socket = ws;
      let healthy = null;
      let ended = false;
      ws.onopen = () => {
        if (options.token) ws.send(JSON.stringify({ type: "auth", token: options.token }));
        healthy = opened();
      };
      ws.onmessage = (e) => {
        const frame = JSON.parse(e.data);
        // An error without a `ref` refuses the connection itself (its auth frame, say).
        if (frame.type === "error" && !frame.ref) {
          ended = true;
          reject(new RoomcastError(/token|auth/.test(frame.code) ? 401 : 400, frame.code, frame.detail));
          return ws.close();
        }
        if (!handle(frame.type, frame)) { ended = true; ws.close(); }
      };
      ws.onclose = () => {
        healthy?.();
        socket = null;
        // A handshake the server refused is only a close here: ask about the room to tell a
        // signed-out session or a missing room from a network failure.
        if (!healthy && !ended) return probe().then(resolve, reject);
        resolve();
      };
    });
  }

  /** Resolves if the room may be listened to (so a failure was the network's); throws the
   * refusal (401, 403, 404) if not. */
  async function probe() {
    const res = await fetch(`${server}/api/v1/rooms/${room}`, { headers: headers(), credentials, cache: "no-store" });
    if (!res.ok) throw await refusal(res);
  }

  async function run() {
    while (!stopped) {
      setStatus(dropped ? "reconnecting" : "connecting");
      let wait = null;
      try {
        await (transport === "websocket" ? websocket() : sse());
      } catch (e) {
        if (stopped) return;
        if (e instanceof RoomcastError && !transient(e.status)) {
          // A resume point ahead of the room: its history was lost (a restart without a store).
          if (e.code === "resume-ahead") { lastSeq = 0; emit("reset"); continue; }
          return finish({ reason: e.code, status: e.status, detail: e.detail });
        }
        wait = e?.retryAfterMs;
      }
      if (stopped) return;
      dropped = true;
      setStatus("reconnecting");
      await sleep(wait ?? backoff(attempt++));
    }
  }

  /** Sends a change; resolves to the server's answer. Retries what may not have arrived
   * (the network, 5xx, 429). */
  async function send(method, path, body) {
    let last = null;
    for (let i = 0; i < POST_ATTEMPTS; i++) {
      let res;
      try {
        res = await fetch(`${server}/api/v1/rooms/${room}/messages${path}`, {
          method,
          headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
          credentials,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        last = e; // the network: it may or may not have arrived
        await sleep(backoff(i));
        continue;
      }
      if (res.ok) return res.json();
      last = await refusal(res);
      if (!transient(res.status)) throw last;
      await sleep(last.retryAfterMs ?? backoff(i));
    }
    throw last;
  }

  /** Posts `text` (a reply to message `replyTo`, if given, carrying the uploads whose ids are
   * `attachments`); resolves to the stored message. The idempotency key makes a retry safe. */
  const post = (text, { idempotencyKey: key = idempotencyKey(), replyTo, attachments = [] } = {}) =>
    send("POST", "", {
      text, idempotency_key: key, ...(replyTo ? { reply_to: replyTo } : {}),
      ...(attachments.length ? { attachments } : {}),
    });

  /** Moderates `user` in the room: `action` one of appoint, dismiss, mute (for `seconds`),
   * unmute, kick, ban, unban; resolves to the `moderation` entry. */
  async function moderate(user, action, seconds) {
    const res = await fetch(`${server}/api/v1/rooms/${room}/moderation`, {
      method: "POST", headers: headers({ "Content-Type": "application/json" }), credentials,
      body: JSON.stringify({ target: user, action, ...(seconds ? { seconds } : {}) }),
    });
    if (!res.ok) throw await refusal(res);
    return res.json();
  }

  /** Uploads `file` (a File or Blob) to post with a message: resolves to {id, name,
   * content_type, size, url}; name the id in `post`'s `attachments`. */
  async function upload(file, name = file.name || "file") {
    const res = await fetch(`${server}/api/v1/rooms/${room}/attachments?name=${encodeURIComponent(name)}`, {
      method: "POST", headers: headers({ "Content-Type": "application/octet-stream" }), credentials, body: file,
    });
    if (!res.ok) throw await refusal(res);
    return res.json();
  }
  /** Replaces the text of one's own message `seq`. */
  const edit = (seq, text) => send("PATCH", `/${seq}`, { text });
  /** Deletes message `seq` (one's own, or any in a room one owns). */
  const remove = (seq) => send("DELETE", `/${seq}`);
  /** Adds one's `emoji` to message `seq`, or takes it back. */
  const react = (seq, emoji, added = true) =>
    send(added ? "PUT" : "DELETE", `/${seq}/reactions/${encodeURIComponent(emoji)}`);

  /** Says that this user is typing (call it every few seconds while they type); a failure
   * is not worth telling anyone about. */
  async function typing() {
    try {
      await fetch(`${server}/api/v1/rooms/${room}/typing`, { method: "POST", headers: headers(), credentials });
    } catch { /* the next keystroke tries again */ }
  }

  /** Marks the room read up to `seq` (the newest seen); resolves to {up_to, unread}.
   * `keepalive` lets it finish as the page is left. */
  async function markRead(seq, { keepalive = false } = {}) {
    const res = await fetch(`${server}/api/v1/rooms/${room}/read`, {
      method: "PUT", headers: headers({ "Content-Type": "application/json" }), credentials,
      body: JSON.stringify({ seq }), keepalive,
    });
    if (!res.ok) throw await refusal(res);
    return res.json();
  }

  /** A page of history, oldest first: `{before}` pages back, `{after}` forward, neither the
   * newest. Resolves to {messages, first_held, latest, gap?}. */
  async function history({ before, after, limit } = {}) {
    const query = new URLSearchParams();
    if (before !== undefined) query.set("before", before);
    if (after !== undefined) query.set("after", after);
    if (limit !== undefined) query.set("limit", limit);
    const res = await fetch(`${server}/api/v1/rooms/${room}/messages?${query}`, { headers: headers(), credentials });
    if (!res.ok) throw await refusal(res);
    return res.json();
  }

  run();
  return {
    post,
    edit,
    remove,
    react,
    typing,
    markRead,
    upload,
    moderate,
    history,
    close: () => finish({ reason: "closed-by-client" }),
    get lastSeq() { return lastSeq; },
    get status() { return status; },
  };
}
