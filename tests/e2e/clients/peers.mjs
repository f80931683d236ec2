// limpet-client under Node through a rolling restart, with the plain socket.io client as its twin.
// Usage: node peers.mjs URL CHANNEL TOTAL GATE,GATE,...
// stdout, one JSON object per line: {"event":"ready"}, {"event":"gate","n":N} (then it waits for a
// "go" line on stdin), {"event":"done", subs: [{offsets, data, gaps, connects}], twin: [offsets], acks}
import readline from "node:readline";
import { io } from "socket.io-client";
import { LimpetClient } from "../../../clients/js/limpet-client.js";

const [url, channel, totalArg, gatesArg] = process.argv.slice(2);
const total = Number(totalArg);
const gates = new Set((gatesArg || "").split(",").filter(Boolean).map(Number));
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fast = { reconnectionDelay: 100, reconnectionDelayMax: 1000 };

const goes = [];
let goWaiter = null;
readline.createInterface({ input: process.stdin }).on("line", () => {
  if (goWaiter) { const w = goWaiter; goWaiter = null; w(); } else goes.push(1);
});
const go = () => (goes.length ? (goes.shift(), Promise.resolve()) : new Promise((r) => (goWaiter = r)));

// three subscribers, one per transport setting; no reconnect code of their own
const subs = [{}, { transports: ["websocket"] }, { transports: ["polling"] }].map((opts) => {
  const record = { offsets: [], data: [], gaps: [], connects: 0 };
  const client = new LimpetClient(url, { ...fast, ...opts });
  client.on("connect", () => record.connects++);
  const sub = client.subscribe(channel, {
    onMessage: (m) => { record.offsets.push(m.offset); record.data.push(m.data.n); },
    onGap: (g) => record.gaps.push(g),
  });
  return { client, sub, record };
});

// the twin: the official client alone, subscribing again after each reconnect, from "now"
const twin = [];
const plain = io(url, { transports: ["websocket"], forceNew: true });
plain.on("connect", () => plain.emit("subscribe", { channel }));
plain.on("message", (m) => m.channel === channel && twin.push(m.offset));
plain.on("disconnect", (reason) => { if (reason === "io server disconnect") plain.connect(); });

const publisher = new LimpetClient(url, fast);
await Promise.all(subs.map((s) => s.sub.ready));
await new Promise((resolve) => (plain.connected ? resolve() : plain.once("connect", resolve)));
out({ event: "ready" });

const acks = [];
for (let n = 0; n < total; n++) {
  if (gates.has(n)) { out({ event: "gate", n }); await go(); }
  const ack = await publisher.publish(channel, { n });
  acks.push(ack.offset);
}
const deadline = Date.now() + 30000;
while (subs.some((s) => s.record.offsets.length < total) && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 20));
}
out({ event: "done", subs: subs.map((s) => s.record), twin, acks });
for (const s of subs) s.client.close();
publisher.close();
plain.close();
process.exit(0);
