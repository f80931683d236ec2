// limpet-client: a client for the limpet hub that recovers by itself.
//
// Thin on top of the official socket.io client (transports, upgrades, proxies and reconnection
// stay socket.io's). What it adds is the hub's continuity contract: after every reconnect each
// channel is re-subscribed with `since` = the last position handled, messages are delivered once
// per offset and in order (the seam between history and live included), anything the hub cannot
// recover is reported through onGap, and a publish in flight is retried with the same
// idempotency key until the hub acknowledges it.
//
// One file, ESM, no build step: Node 18+ and browsers (with an import map for "socket.io-client").
import { io } from "socket.io-client";

/** Why a gap happened (`onGap(info).reason`). */
export const GapReason = Object.freeze({
  /** The channel's history was lost and restarted (a new epoch): offsets start again. */
  EPOCH_CHANGED: "epoch-changed",
  /** The missed messages are no longer in the hub's history (its size or TTL window). */
  HISTORY_WINDOW: "history-window",
});

/** An error the hub answered with, or one of the library's own (timeouts, limits, closed). */
export class LimpetError extends Error {
  constructor(message, code = "error") {
    super(message);
    this.name = "LimpetError";
    this.code = code;
  }
}

// The hub answers these while its broker is unreachable: worth retrying, not worth failing on.
const TRANSIENT = /^(broker unavailable|internal error)/;

const copy = (p) => (p ? { epoch: p.epoch, offset: p.offset } : null);

/** The longest server-given wait honoured, in ms (a larger Retry-After is taken as this). */
const MAX_RETRY_AFTER = 300000;

/**
 * Delays between reconnection attempts: decorrelated jitter, as AWS's architecture notes
 * ("Exponential Backoff And Jitter") describe. Each delay is drawn uniformly between `min` and
 * three times the previous one, capped at `max`, so clients that lost the same replica at the
 * same instant come back spread out. `retryAfter(ms)` (a hub's 503 Retry-After or close 1013)
 * makes the next delay at least that long, with jitter up to half as long again.
 *
 * It has the interface of socket.io-client's own backoff (attempts, duration, reset, setMin,
 * setMax, setJitter), so LimpetClient puts it in the Manager's place. The twin of
 * limpet.client.backoff.Backoff; `random` is a parameter so the distribution can be tested.
 */
export class DecorrelatedBackoff {
  constructor({ min = 500, max = 5000, random = Math.random } = {}) {
    if (!(min > 0 && min <= max)) throw new RangeError("0 < min <= max is required");
    this.ms = min;
    this.max = max;
    this.random = random;
    this.attempts = 0;
    this.sleep = min;
    this.floor = 0;
  }

  /** The next delay in ms (socket.io's Manager calls this before each reconnection attempt). */
  duration() {
    this.attempts += 1;
    const upper = Math.max(this.ms, this.sleep * 3);
    let delay = Math.min(this.max, this.ms + this.random() * (upper - this.ms));
    if (this.floor > 0) {
      const floor = Math.min(this.floor, MAX_RETRY_AFTER);
      delay = Math.max(delay, floor + this.random() * floor * 0.5);
      this.floor = 0;
    }
    this.sleep = delay;
    return Math.round(delay);
  }

  /** The hub asked to wait `ms` before coming back: the next delay is at least that. */
  retryAfter(ms) {
    if (ms > 0) this.floor = ms;
  }

  reset() {
    this.attempts = 0;
    this.sleep = this.ms;
    this.floor = 0;
  }

  setMin(min) {
    this.ms = min;
  }

  setMax(max) {
    this.max = max;
  }

  setJitter() {} // the jitter is the algorithm's own
}

/**
 * What a failed connection attempt says about when to come back, in ms (0: nothing): a 503's
 * Retry-After (seconds) on a polling handshake, or a hub's close 1013 ("... retry after N s").
 */
export function retryAfterMs(error) {
  const context = error && error.context;
  if (context && typeof context.getResponseHeader === "function") {
    let header = null;
    try {
      header = context.getResponseHeader("Retry-After");
    } catch {
      header = null;
    }
    if (typeof header === "string" && /^\s*\d{1,6}\s*$/.test(header)) return Number(header) * 1000;
  }
  if (context && context.code === 1013) {
    const match = /retry after (\d{1,6})/.exec(String(context.reason || ""));
    return match ? Number(match[1]) * 1000 : 1000;
  }
  return 0;
}

/**
 * Sans-IO state of one channel subscription: which messages to deliver, what is a gap, when to
 * subscribe again. No sockets, no timers; the client feeds it events and acts on its answers.
 *
 * States: "idle" (not subscribed on the current connection) -> "subscribing" (a subscribe is in
 * flight: messages are dropped, the ack's recovery re-delivers them) -> "live" (each next offset is
 * delivered; an older one is a duplicate and dropped; a hole sends it back to "subscribing").
 */
export class ChannelState {
  constructor(channel, position = null) {
    this.channel = channel;
    this.position = copy(position);
    this.state = "idle";
    this.token = 0;
    this.since = null;
  }

  /** A subscribe is about to be sent. Returns {token, since} (since null: start from now). */
  subscribe() {
    this.state = "subscribing";
    this.token += 1;
    this.since = copy(this.position);
    return { token: this.token, since: copy(this.since) };
  }

  /** The connection dropped: whatever was in flight is void. */
  disconnect() {
    this.state = "idle";
    this.token += 1;
  }

  /**
   * The hub acknowledged subscribe `token` with {epoch, offset, recovered}. Returns
   * {stale: true} for an answer to an older subscribe, else {gap} (gap null when nothing was lost).
   */
  onAck(token, ack) {
    if (token !== this.token || this.state !== "subscribing") return { stale: true, gap: null };
    this.state = "live";
    const since = this.since;
    this.since = null;
    const to = { epoch: ack.epoch, offset: ack.offset };
    if (since === null) {
      this.position = to;
      return { stale: false, gap: null };
    }
    if (ack.recovered) return { stale: false, gap: null }; // the missed messages follow the ack
    this.position = to;
    if (since.epoch === to.epoch && since.offset === to.offset) return { stale: false, gap: null };
    return { stale: false, gap: this._gap(since, to) };
  }

  /**
   * A message {epoch, offset}. Returns {deliver, gap, resubscribe}: deliver it (the next
   * offset), drop it (a duplicate, or not live), or subscribe again from the position (a hole:
   * the hub refills it from history or says it cannot).
   */
  onMessage(m) {
    const result = { deliver: false, gap: null, resubscribe: false };
    if (this.state !== "live" || this.position === null) return result;
    const p = this.position;
    if (m.epoch !== p.epoch) {
      // a new history without a recovery event first: report it, then follow the new epoch
      const to = { epoch: m.epoch, offset: m.offset - 1 };
      result.gap = this._gap(p, to);
      this.position = { epoch: m.epoch, offset: m.offset };
      result.deliver = true;
      return result;
    }
    if (m.offset <= p.offset) return result; // already delivered (the seam, a retransmission)
    if (m.offset === p.offset + 1) {
      this.position = { epoch: m.epoch, offset: m.offset };
      result.deliver = true;
      return result;
    }
    result.resubscribe = true;
    return result;
  }

  /** The hub could not fill a hole of a live subscription: {epoch, offset} is where it goes on. */
  onRecovery(r) {
    if (this.state !== "live" || this.position === null) return null;
    const from = this.position;
    const to = { epoch: r.epoch, offset: r.offset };
    this.position = to;
    if (from.epoch === to.epoch && from.offset >= to.offset) return null;
    return this._gap(from, to);
  }

  _gap(from, to) {
    const reason = from.epoch === to.epoch ? GapReason.HISTORY_WINDOW : GapReason.EPOCH_CHANGED;
    return { channel: this.channel, from: copy(from), to: copy(to), reason };
  }
}

/** A random idempotency key: Web Crypto where there is one (browsers, Node 19+), else Math.random. */
export function newIdempotencyKey() {
  const bytes = new Uint8Array(16);
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One channel of a LimpetClient (see LimpetClient.subscribe). */
export class Subscription {
  constructor(client, channel, options) {
    this.client = client;
    this.channel = channel;
    this.options = options;
    this.core = new ChannelState(channel, options.position || null);
    this.active = true;
    this._retry = null;
    this.ready = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.ready.catch(() => {}); // a rejection is also reported through onError
  }

  /** {epoch, offset} of the last message handled (or of the subscribe point): persist it. */
  get position() {
    return copy(this.core.position);
  }

  /** Publish to this channel (see LimpetClient.publish). */
  publish(data, options = {}) {
    return this.client.publish(this.channel, data, options);
  }

  /** Stop receiving this channel. */
  unsubscribe() {
    if (!this.active) return;
    this._end(new LimpetError(`unsubscribed from ${this.channel}`, "unsubscribed"));
    this.client._unsubscribe(this);
  }

  _end(error) {
    this.active = false;
    clearTimeout(this._retry);
    this._reject(error);
  }

  _send(socket) {
    if (!this.active) return;
    const { token, since } = this.core.subscribe();
    const payload = { channel: this.channel };
    if (since) payload.since = since;
    if (this.options.presence) payload.presence = true;
    socket.emit("subscribe", payload, (ack) => this._onAck(socket, token, since, ack));
  }

  _onAck(socket, token, since, ack) {
    if (!this.active || !ack || typeof ack !== "object") return;
    if (ack.error) {
      if (TRANSIENT.test(ack.error) && this.core.token === token) {
        this._retry = setTimeout(() => socket.connected && this._send(socket), 500);
        return;
      }
      const error = new LimpetError(`subscribe ${this.channel}: ${ack.error}`, "refused");
      this.client._unsubscribe(this);
      this._end(error);
      this.client._callback(this.options.onError, error);
      return;
    }
    const outcome = this.core.onAck(token, ack);
    if (outcome.stale) return;
    if (outcome.gap) this.client._callback(this.options.onGap, outcome.gap);
    const info = { channel: this.channel, epoch: ack.epoch, offset: ack.offset, recovered: !!ack.recovered, resumed: since !== null, since };
    this.client._callback(this.options.onSubscribed, info);
    this._resolve(this.position);
  }

  _onMessage(socket, m) {
    const r = this.core.onMessage(m);
    if (r.gap) this.client._callback(this.options.onGap, r.gap);
    if (r.deliver) this.client._callback(this.options.onMessage, m);
    if (r.resubscribe) this._send(socket);
  }

  _onRecovery(r) {
    const gap = this.core.onRecovery(r);
    if (gap) this.client._callback(this.options.onGap, gap);
  }
}

/**
 * A connection to a limpet hub (or to a proxy in front of its replicas) that keeps every
 * subscription and every publish alive across disconnects.
 */
export class LimpetClient {
  /**
   * @param url the hub (or proxy) URL
   * @param options socket.io-client options, passed through, plus `token` (sent as auth.token),
   *   `publishTimeout` (ms, default 30000: a publish not acknowledged by then is rejected; keep
   *   it below the hub's --idempotency-ttl) and `maxPendingPublishes` (default 1000).
   */
  constructor(url, options = {}) {
    const { token, publishTimeout = 30000, maxPendingPublishes = 1000, ...ioOptions } = options;
    if (token !== undefined) {
      ioOptions.auth = typeof ioOptions.auth === "object" && ioOptions.auth ? { ...ioOptions.auth, token } : { token };
    }
    this.publishTimeout = publishTimeout;
    this.maxPendingPublishes = maxPendingPublishes;
    this.subscriptions = new Map();
    this.pending = [];
    this.closed = false;
    this.connection = 0;
    this.listeners = new Map();
    const socket = (this.socket = io(url, {
      forceNew: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      ...ioOptions,
    }));
    const manager = socket.io;
    this.backoff = new DecorrelatedBackoff({
      min: manager.reconnectionDelay(),
      max: manager.reconnectionDelayMax(),
    });
    manager.backoff = this.backoff;
    watchTryAgainLater(manager);
    socket.on("connect", () => this._onConnect());
    socket.on("disconnect", (reason) => this._onDisconnect(reason));
    socket.on("connect_error", (error) => this._onConnectError(error));
    socket.on("message", (m) => m && this.subscriptions.get(m.channel)?._onMessage(socket, m));
    socket.on("recovery", (r) => r && this.subscriptions.get(r.channel)?._onRecovery(r));
    socket.on("join", (p) => this._onPresence("join", p));
    socket.on("leave", (p) => this._onPresence("leave", p));
    socket.on("overflow", (o) => this._emit("overflow", o));
  }

  /** True while a connection to the hub is up. */
  get connected() {
    return this.socket.connected;
  }

  /**
   * Listen to the connection's life: "connect" {id, reconnect}, "disconnect" {reason},
   * "connect_error" {message}, "overflow" {reason}, "error" (an exception thrown by a callback).
   */
  on(event, listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(listener);
    return this;
  }

  off(event, listener) {
    this.listeners.get(event)?.delete(listener);
    return this;
  }

  /**
   * Subscribe to `channel`. options: onMessage(msg) with each offset once and in order;
   * onGap({channel, from, to, reason}) when the hub could not recover; position {epoch, offset}
   * to resume from; presence (receive join/leave) with onPresence(event); onSubscribed(info) after
   * each (re)subscribe; onError(error) when the hub refuses the channel.
   */
  subscribe(channel, options = {}) {
    if (this.closed) throw new LimpetError("client is closed", "closed");
    if (this.subscriptions.has(channel)) {
      throw new LimpetError(`already subscribed to ${channel}; unsubscribe first`, "subscribed");
    }
    const sub = new Subscription(this, channel, options);
    this.subscriptions.set(channel, sub);
    if (this.socket.connected) sub._send(this.socket);
    return sub;
  }

  /**
   * Publish `data` to `channel`; resolves with {epoch, offset} (and duplicate: true when the hub
   * had already stored this key). Sent again with the same idempotency key after every reconnect
   * until acknowledged, so it is stored once.
   */
  publish(channel, data, { idempotencyKey } = {}) {
    if (this.closed) return Promise.reject(new LimpetError("client is closed", "closed"));
    if (this.pending.length >= this.maxPendingPublishes) {
      return Promise.reject(
        new LimpetError(`${this.pending.length} publishes already wait for the hub (maxPendingPublishes)`, "full"),
      );
    }
    return new Promise((resolve, reject) => {
      const entry = { channel, data, key: idempotencyKey ?? newIdempotencyKey(), resolve, reject, sentOn: 0, retry: null };
      entry.timer = setTimeout(() => {
        this._settle(entry);
        reject(new LimpetError(`publish to ${channel} not acknowledged within ${this.publishTimeout} ms`, "timeout"));
      }, this.publishTimeout);
      this.pending.push(entry);
      this._sendPublish(entry);
    });
  }

  /** Close the connection; pending publishes are rejected, subscriptions end. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const entry of [...this.pending]) {
      this._settle(entry);
      entry.reject(new LimpetError("client closed before the hub acknowledged", "closed"));
    }
    for (const sub of this.subscriptions.values()) sub._end(new LimpetError("client closed", "closed"));
    this.subscriptions.clear();
    this.socket.disconnect();
  }

  _sendPublish(entry) {
    const socket = this.socket;
    if (!socket.connected || entry.sentOn === this.connection) return;
    const connection = (entry.sentOn = this.connection);
    socket.emit("publish", { channel: entry.channel, data: entry.data, idempotency_key: entry.key }, (ack) => {
      if (!this.pending.includes(entry) || entry.sentOn !== connection) return;
      if (ack && ack.error) {
        if (TRANSIENT.test(ack.error)) {
          entry.sentOn = 0;
          entry.retry = setTimeout(() => this._sendPublish(entry), 500);
          return;
        }
        this._settle(entry);
        entry.reject(new LimpetError(`publish to ${entry.channel}: ${ack.error}`, "refused"));
        return;
      }
      this._settle(entry);
      entry.resolve(ack);
    });
  }

  _settle(entry) {
    clearTimeout(entry.timer);
    clearTimeout(entry.retry);
    const i = this.pending.indexOf(entry);
    if (i >= 0) this.pending.splice(i, 1);
  }

  _unsubscribe(sub) {
    if (this.subscriptions.get(sub.channel) !== sub) return;
    this.subscriptions.delete(sub.channel);
    if (this.socket.connected) this.socket.emit("unsubscribe", { channel: sub.channel });
  }

  _onConnect() {
    this.connection += 1;
    this._emit("connect", { id: this.socket.id, reconnect: this.connection > 1 });
    for (const sub of this.subscriptions.values()) sub._send(this.socket);
    for (const entry of [...this.pending]) this._sendPublish(entry);
  }

  _onDisconnect(reason) {
    for (const sub of this.subscriptions.values()) sub.core.disconnect();
    for (const entry of this.pending) entry.sentOn = 0;
    this._emit("disconnect", { reason });
    // socket.io reconnects by itself after a network loss, but not when the server closed the
    // session (a replica shutting down, an overflow): the hub contract says reconnect anyway.
    if (!this.closed && reason === "io server disconnect") this.socket.connect();
  }

  _onConnectError(error) {
    this.backoff.retryAfter(retryAfterMs(error));
    this._emit("connect_error", { message: String(error && error.message), data: error && error.data });
    if (this.socket.active) return; // socket.io retries by itself
    // refused by the hub (a bad token): nothing will change by retrying
    const failure = new LimpetError(`connection refused: ${(error && error.message) || error}`, "refused");
    for (const sub of this.subscriptions.values()) {
      sub._end(failure);
      this._callback(sub.options.onError, failure);
    }
    this.subscriptions.clear();
    for (const entry of [...this.pending]) {
      this._settle(entry);
      entry.reject(failure);
    }
  }

  _onPresence(type, p) {
    if (!p) return;
    const sub = this.subscriptions.get(p.channel);
    if (sub && sub.options.presence) this._callback(sub.options.onPresence, { type, ...p });
  }

  _emit(event, info) {
    for (const listener of this.listeners.get(event) ?? []) this._callback(listener, info);
  }

  // A callback that throws must not break delivery: report it and carry on.
  _callback(fn, arg) {
    if (typeof fn !== "function") return;
    try {
      fn(arg);
    } catch (error) {
      const listeners = this.listeners.get("error");
      if (listeners && listeners.size) for (const l of listeners) l(error);
      else console.error("limpet-client: a callback threw", error);
    }
  }
}

/**
 * A hub refuses a WebSocket handshake it has no room for by closing it with 1013 (Try Again
 * Later) before Engine.IO's OPEN packet. engine.io-client reports such a close as a plain
 * "close" of a connection that never opened, which socket.io's Manager does not listen to
 * before the open: the attempt would sit until its connect timeout (20 s). Each attempt's
 * engine is watched here, and that close is turned into the connect error it is (with the
 * close event as its context, for retryAfterMs), so the Manager backs off and retries at once.
 */
function watchTryAgainLater(manager) {
  const watch = (engine) => {
    if (!engine || typeof engine.on !== "function" || engine.__limpetWatched) return;
    engine.__limpetWatched = true;
    engine.on("close", (reason, details) => {
      const context = details && details.context;
      if (manager._readyState !== "opening" || !context || context.code !== 1013) return;
      const error = new Error("try again later");
      error.type = "TransportError";
      error.description = 1013;
      error.context = context;
      engine.emitReserved("error", error);
    });
  };
  watch(manager.engine); // the Manager opened its first engine in its constructor
  const open = manager.open.bind(manager);
  manager.open = (fn) => {
    const result = open(fn);
    watch(manager.engine);
    return result;
  };
}

export default LimpetClient;
