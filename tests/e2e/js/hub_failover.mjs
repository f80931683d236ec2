// Subscribers for the failover test and benchmark (tests/e2e/hub/test_failover_storm.py,
// bench/hub/failover.py): COUNT clients on one channel (websocket), each keeping a ledger of the
// numbered messages ({n}) it was handed. argv[2]: JSON {url, channel, count, kind, concurrency}.
//   kind "limpet": limpet-client (clients/js), its defaults: decorrelated-jitter backoff
//     between 500 ms and 5 s, Retry-After and close 1013 honoured, resubscribing with `since`.
//   kind "plain": the official socket.io client, resubscribing from its last position too, but
//     with a fixed 100 ms reconnection delay and no jitter, and (as the official client does)
//     no reading of 1013: a refused attempt sits until the 20 s connect timeout.
// stdout, one JSON line each: {"event": "ready", "clients": N} once all are subscribed;
// on {"op": "report", "total": T} on stdin: {"event": "report", ...} (see report()).
import readline from "node:readline";
import { io } from "socket.io-client";
import { LimpetClient } from "../../../clients/js/limpet-client.js";

const cfg = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
/** The most message numbers a ledger holds (bounded: the test publishes far fewer), a bit each. */
const MAX_N = 65536;
const clients = [];
const examples = [];

function newLedger() {
  return {
    seen: new Uint32Array(MAX_N / 32), top: -1, count: 0, dup: 0, disorder: 0, beyond: 0,
    gaps: 0, connects: 0, subscribed: false, down: 0, downAt: 0, recoveries: [], refused: 0, timeouts: 0, errors: 0,
  };
}

function deliver(c, n) {
  if (!(Number.isInteger(n) && n >= 0 && n < MAX_N)) { c.beyond += 1; return; }
  const bit = 1 << (n & 31);
  if (c.seen[n >>> 5] & bit) { c.dup += 1; return; }
  c.seen[n >>> 5] |= bit;
  c.count += 1;
  if (n < c.top) c.disorder += 1;
  c.top = Math.max(c.top, n);
}

function lost(c, total) {
  let missing = 0;
  for (let n = 0; n < total; n++) if (!(c.seen[n >>> 5] & (1 << (n & 31)))) missing += 1;
  return missing;
}

function wentDown(c) {
  c.subscribed = false;
  if (!c.downAt) { c.downAt = Date.now(); c.down += 1; }
}

function backUp(c) {
  c.subscribed = true;
  if (c.downAt) { c.recoveries.push(Date.now() - c.downAt); c.downAt = 0; }
}

function errorKind(c, e) {
  if (String(e && e.message) === "timeout") c.timeouts += 1;
  else if (String(e && e.message) === "try again later" || (e && e.description === 1013)) c.refused += 1;
  else {
    c.errors += 1;
    const text = `${e && e.message} ${e && e.description}`;
    if (examples.length < 5 && !examples.includes(text)) examples.push(text);
  }
}

function startLimpet() {
  const c = newLedger();
  const client = new LimpetClient(cfg.url, { transports: ["websocket"] });
  c.close = () => client.close();
  client.on("disconnect", () => wentDown(c));
  client.on("connect_error", (e) => errorKind(c, e));
  client.on("connect", () => { c.connects += 1; });
  const sub = client.subscribe(cfg.channel, {
    onMessage: (m) => deliver(c, m.data && m.data.n),
    onGap: () => { c.gaps += 1; },
    onSubscribed: () => backUp(c),
  });
  clients.push(c);
  return sub.ready;
}

function startPlain() {
  const c = newLedger();
  let pos = null;
  const socket = io(cfg.url, {
    transports: ["websocket"], forceNew: true,
    reconnectionDelay: 100, reconnectionDelayMax: 100, randomizationFactor: 0,
  });
  c.close = () => socket.close();
  socket.on("disconnect", () => wentDown(c));
  socket.on("connect_error", (e) => errorKind(c, e));
  return new Promise((resolve) => {
    socket.on("connect", () => {
      c.connects += 1;
      const since = pos ? { since: pos } : {};
      socket.emit("subscribe", { channel: cfg.channel, ...since }, (ack) => {
        if (!ack || ack.error) return;
        if (pos && ack.recovered === false) c.gaps += 1;
        backUp(c);
        resolve();
      });
    });
    socket.on("message", (m) => {
      if (!m || m.channel !== cfg.channel) return;
      if (pos && m.epoch === pos.epoch && m.offset <= pos.offset) return; // a retransmission
      pos = { epoch: m.epoch, offset: m.offset };
      deliver(c, m.data && m.data.n);
    });
    clients.push(c);
  });
}

function report(total) {
  const recoveries = clients.flatMap((c) => c.recoveries).sort((a, b) => a - b);
  const sum = (f) => clients.reduce((a, c) => a + f(c), 0);
  const pct = (p) => (recoveries.length ? recoveries[Math.min(recoveries.length - 1, Math.floor(p * recoveries.length))] : 0);
  return {
    event: "report",
    clients: clients.length,
    subscribed: sum((c) => (c.subscribed ? 1 : 0)),
    went_down: sum((c) => (c.down ? 1 : 0)),
    still_down: sum((c) => (c.downAt ? 1 : 0)),
    recovered: recoveries.length,
    recovery_ms: { p50: pct(0.5), p90: pct(0.9), max: recoveries.length ? recoveries[recoveries.length - 1] : 0 },
    // refusals the client acted on (limpet-client turns a 1013 into a connect error; the
    // official client does not see one: the hub's /healthz counts what it refused)
    refused: sum((c) => c.refused),
    timeouts: sum((c) => c.timeouts),
    other_errors: sum((c) => c.errors),
    examples,
    reconnects: sum((c) => Math.max(0, c.connects - 1)),
    // the ledgers, against the T messages 0..T-1 the test published
    complete: sum((c) => (total > 0 && c.top >= total - 1 ? 1 : 0)),
    lost: total > 0 ? sum((c) => lost(c, total)) : 0,
    duplicated: sum((c) => c.dup),
    out_of_order: sum((c) => c.disorder),
    unexpected: sum((c) => c.beyond),
    gaps: sum((c) => c.gaps),
  };
}

async function main() {
  const start = cfg.kind === "plain" ? startPlain : startLimpet;
  const batch = cfg.concurrency || 100;
  for (let i = 0; i < cfg.count; i += batch) {
    const pending = [];
    for (let j = i; j < Math.min(cfg.count, i + batch); j++) pending.push(start());
    await Promise.all(pending);
  }
  out({ event: "ready", clients: clients.length });
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === "report") out(report(Number(cmd.total) || 0));
  else if (cmd.op === "exit") {
    for (const c of clients) c.close();
    process.exit(0);
  }
});
main();
