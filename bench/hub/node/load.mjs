// The benchmark's load generator, the same for every system under test: the official socket.io
// client (websocket transport) for S subscribers spread round-robin over the replicas, and P
// publishers (one per replica, round-robin) that publish messages at a fixed rate, each stamped
// with its send time. Prints one JSON line of results on stdout.
// Phases run one after another on the same connections: e.g. "steady" (a rate every system keeps
// up with: its latency is the system's, not a queue's) then "saturate" (more than it can take:
// delivered/s is its capacity).
// With "storm", every subscriber connects first and then all of them subscribe at the same moment
// (the burst a deploy or a reconnect wave causes); subscribe errors are counted, not fatal, and
// every phase reports lost = expected - delivered (a refused subscribe is expected nothing).
// argv[2]: JSON {urls, subscribers, channels, publishers, phases: [{name, rate, messages}],
//                drainSeconds, settleSeconds, connectConcurrency, storm, channelPrefix}
import { io } from "socket.io-client";
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";

const cfg = JSON.parse(process.argv[2]);
const { urls, subscribers, channels, publishers } = cfg;
const drainMs = (cfg.drainSeconds ?? 10) * 1000;
const concurrency = cfg.connectConcurrency ?? 50;
const settleMs = (cfg.settleSeconds ?? 60) * 1000;
const log = (msg) => process.stderr.write(`[load] ${msg}\n`);
const channelPrefix = cfg.channelPrefix ?? "bench-";
const channelName = (c) => `${channelPrefix}${c}`;

// CPU seconds (user+system) the replicas under test have used so far: the cost of a phase.
const ticks = 100; // USER_HZ, 100 on every Linux the benchmark runs on
function replicaCpu() {
  let total = 0;
  for (const pid of cfg.pids ?? []) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(")").pop().trim().split(" ");
      total += (Number(f[11]) + Number(f[12])) / ticks;
    } catch { /* gone */ }
  }
  return total;
}

const sockets = [];
function connect(url) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports: ["websocket"], reconnection: false, forceNew: true, timeout: 20000 });
    sockets.push(socket);
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (e) => reject(new Error(`connect ${url}: ${e && e.message}`)));
  });
}
function request(socket, event, payload, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    socket.timeout(timeoutMs).emit(event, payload, (err, ack) => {
      if (err) reject(new Error(`${event} timed out`));
      else if (ack && ack.error) reject(new Error(`${event}: ${ack.error}`));
      else resolve(ack);
    });
  });
}

// Subscribers per channel, to know how many deliveries each message must produce.
const perChannel = new Array(channels).fill(0);
for (let i = 0; i < subscribers; i++) perChannel[i % channels]++;

// One phase at a time; a delivery counts for the phase its message was sent in.
let phase = null;
let lastEvent = 0, otherEvents = 0;
const disconnects = {}; // subscribers the server dropped (no reconnection here), by reason
let closing = false;
const eventCounts = {}; // every event the subscribers received, by name, over the whole run
const onMessage = (m) => {
  const now = performance.now();
  const d = m && m.data;
  if (!phase || !d || d.phase !== phase.name || typeof d.t !== "number") return;
  if (phase.delivered < phase.latencies.length) phase.latencies[phase.delivered] = now - d.t;
  else phase.extra++;
  phase.delivered++;
  phase.lastRecv = now;
  if (phase.delivered >= phase.expected && phase.done) phase.done();
};

// A phase ends when every delivery arrived, or after drainSeconds (the phase's own, else the
// run's), or, with quietSeconds, once nothing has arrived for that long after the last publish:
// a system still delivering is waited for, one that stopped is not.
async function runPhase(pubs, name, rate, messages, drainSeconds, quietSeconds) {
  let expected = 0;
  for (let k = 0; k < messages; k++) expected += perChannel[k % channels];
  const ph = phase = { name, expected, delivered: 0, extra: 0, lastRecv: 0, done: null,
    latencies: new Float64Array(expected + 16) };
  const finished = new Promise((resolve) => { ph.done = resolve; });
  const cpu0 = process.cpuUsage();
  const replica0 = replicaCpu();
  let sent = 0, acked = 0, ackErrors = 0;
  const firstSend = performance.now();
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(messages, Math.floor(((performance.now() - firstSend) / 1000) * rate) + 1);
      while (sent < due) {
        const k = sent++;
        pubs[k % pubs.length].emit("publish",
          { channel: channelName(k % channels), data: { phase: name, k, t: performance.now() } },
          (ack) => { if (ack && ack.error) ackErrors++; else acked++; });
      }
      if (sent >= messages) resolve(); else setTimeout(tick, 2);
    };
    tick();
  });
  const lastSend = performance.now();
  const quiet = new Promise((resolve) => {
    if (!quietSeconds) return;
    const check = () => {
      if (performance.now() - Math.max(ph.lastRecv, lastSend) > quietSeconds * 1000) resolve();
      else setTimeout(check, 100);
    };
    check();
  });
  const drain = drainSeconds ? drainSeconds * 1000 : drainMs;
  let timer;
  await Promise.race([finished, quiet, new Promise((r) => { timer = setTimeout(r, drain); })]);
  clearTimeout(timer);
  const cpu = process.cpuUsage(cpu0);
  const replicaCpuSeconds = replicaCpu() - replica0;
  const n = Math.min(ph.delivered, ph.latencies.length);
  const sorted = Float64Array.from(ph.latencies.subarray(0, n)).sort();
  const pct = (q) => (n ? sorted[Math.min(n - 1, Math.floor(q * n))] : null);
  const span = (ph.lastRecv > firstSend ? ph.lastRecv - firstSend : 0) / 1000;
  phase = null;
  return {
    rate, messages, sent, acked, ackErrors, expected, delivered: ph.delivered,
    extra: ph.extra, complete: ph.delivered === expected,
    lost: Math.max(0, expected - ph.delivered),
    publishSeconds: (lastSend - firstSend) / 1000, spanSeconds: span,
    deliveredPerSecond: span ? ph.delivered / span : 0,
    offeredPerSecond: (expected / messages) * rate,
    latencyMs: { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: n ? sorted[n - 1] : null },
    loadCpuSeconds: (cpu.user + cpu.system) / 1e6,
    replicaCpuSeconds,
    replicaCpuMsPer1000: ph.delivered ? (1e6 * replicaCpuSeconds) / ph.delivered : null,
  };
}

async function main() {
  const t0 = performance.now();
  // Connect and subscribe, a bounded number in flight at a time (storm: connect only).
  let next = 0;
  const subs = [];
  async function worker() {
    while (next < subscribers) {
      const i = next++;
      const socket = await connect(urls[i % urls.length]);
      socket.on("message", onMessage);
      socket.on("disconnect", (reason) => { if (!closing) disconnects[reason] = (disconnects[reason] ?? 0) + 1; });
      socket.onAny((event) => {
        lastEvent = performance.now();
        eventCounts[event] = (eventCounts[event] ?? 0) + 1;
        if (event !== "message") otherEvents++;
      });
      subs[i] = socket;
      if (!cfg.storm) await request(socket, "subscribe", { channel: channelName(i % channels) });
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, subscribers) }, worker));
  let storm = null;
  if (cfg.storm) {
    // every subscribe at once; each answer counted (an error ack or a timeout is not fatal here)
    const t = performance.now();
    const answers = await Promise.allSettled(
      subs.map((socket, i) => request(socket, "subscribe", { channel: channelName(i % channels) })));
    const failed = answers.filter((a) => a.status === "rejected");
    // a refused subscribe was told to its client (not a silent loss): expect nothing for it
    perChannel.fill(0);
    answers.forEach((a, i) => { if (a.status === "fulfilled") perChannel[i % channels]++; });
    storm = { subscribes: answers.length, failed: failed.length,
      firstError: failed.length ? String(failed[0].reason && failed[0].reason.message) : null,
      seconds: (performance.now() - t) / 1000 };
    log(`storm: ${answers.length} subscribes at once, ${failed.length} failed, ${storm.seconds.toFixed(1)}s`);
  }
  const pubs = [];
  for (let p = 0; p < publishers; p++) pubs.push(await connect(urls[p % urls.length]));
  const setupSeconds = (performance.now() - t0) / 1000;
  log(`${subscribers} subscribers on ${channels} channel(s) ready in ${setupSeconds.toFixed(1)}s`);
  // Settle: wait until the servers have stopped sending anything (e.g. presence join events a
  // system sends on subscribe), so the phases measure fan-out and not a backlog; bounded.
  const t1 = performance.now();
  lastEvent = Math.max(lastEvent, t1);
  while (performance.now() - lastEvent < 1000 && performance.now() - t1 < settleMs) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const settleSeconds = (performance.now() - t1) / 1000;
  log(`settled in ${settleSeconds.toFixed(1)}s (${otherEvents} non-message events received)`);
  const result = { subscribers, channels, publishers, setupSeconds, settleSeconds,
    setupEvents: otherEvents, storm, phases: {} };
  for (const ph of cfg.phases) {
    result.phases[ph.name] = await runPhase(pubs, ph.name, ph.rate, ph.messages, ph.drain, ph.quiet);
    const r = result.phases[ph.name];
    if (Object.keys(disconnects).length) log(`subscribers disconnected so far: ${JSON.stringify(disconnects)}`);
    log(`${ph.name}: ${r.delivered}/${r.expected} in ${r.spanSeconds.toFixed(1)}s, p50 ${r.latencyMs.p50} p99 ${r.latencyMs.p99}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  result.eventCounts = eventCounts;
  result.disconnects = disconnects;
  closing = true;
  process.stdout.write(JSON.stringify(result) + "\n");
  for (const s of sockets) s.disconnect();
  setTimeout(() => process.exit(0), 200);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.message || e) }) + "\n");
  for (const s of sockets) s.disconnect();
  setTimeout(() => process.exit(1), 200);
});
