// Subscribers for the rebalance test and benchmark (tests/e2e/hub/test_rebalance_js.py,
// bench/rebalance/run.py): COUNT official socket.io clients (websocket
// transport) on one channel, each resubscribing from its last (epoch, offset) after every
// reconnect, as limpet-client does. argv[2]: JSON {url, count, channel, concurrency}.
// stdout, one JSON line each: {"event": "ready", "clients": N} once all are subscribed;
// on {"op": "report"} on stdin: {"event": "report", received, recovered, duplicated, missing,
//   reconnects, closes: {code: n}, notices} summed over the clients.
const { io } = require("socket.io-client");
const readline = require("readline");

const cfg = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const clients = [];
const closes = {};

function start(i) {
  return new Promise((resolve) => {
    const c = { pos: null, received: 0, recovered: 0, duplicated: 0, missing: 0, connects: 0, notices: 0, ackOffset: 0, ready: false };
    const socket = io(cfg.url, {
      transports: ["websocket"], reconnectionDelay: 100, reconnectionDelayMax: 1000, timeout: 20000,
      ...(cfg.keyed ? { query: { u: `client-${i}` } } : {}),
    });
    c.socket = socket;
    socket.on("connect", () => {
      c.connects += 1;
      const since = c.pos ? { since: c.pos } : {};
      socket.emit("subscribe", { channel: cfg.channel, ...since }, (ack) => {
        if (!ack || ack.error) { return; }
        if (c.pos && ack.recovered === false) c.notices += 1;
        c.ackOffset = c.connects > 1 ? ack.offset : 0;
        if (!c.ready) { c.ready = true; resolve(); }
      });
    });
    socket.io.on("open", () => {
      socket.io.engine.on("close", (reason, desc) => {
        const ctx = desc && desc.context;
        const code = ctx && ctx.code ? String(ctx.code) : (desc && desc.code ? String(desc.code) : reason);
        closes[code] = (closes[code] || 0) + 1;
      });
    });
    socket.on("message", (m) => {
      if (c.pos && m.epoch === c.pos.epoch && m.offset <= c.pos.offset) { c.duplicated += 1; return; }
      if (c.pos && m.epoch === c.pos.epoch && m.offset > c.pos.offset + 1) c.missing += m.offset - c.pos.offset - 1;
      if (m.offset <= c.ackOffset) c.recovered += 1;
      c.pos = { epoch: m.epoch, offset: m.offset };
      c.received += 1;
    });
    clients.push(c);
  });
}

async function main() {
  const pending = [];
  for (let i = 0; i < cfg.count; i++) {
    pending.push(start(i));
    if (pending.length % (cfg.concurrency || 50) === 0) await Promise.all(pending.slice(-(cfg.concurrency || 50)));
  }
  await Promise.all(pending);
  out({ event: "ready", clients: clients.length });
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const op = JSON.parse(line).op;
  if (op === "report") {
    const sum = (k) => clients.reduce((a, c) => a + c[k], 0);
    out({
      event: "report", received: sum("received"), recovered: sum("recovered"),
      duplicated: sum("duplicated"), missing: sum("missing"), notices: sum("notices"),
      reconnects: sum("connects") - clients.length, closes,
      last: clients.map((c) => (c.pos ? c.pos.offset : 0)).reduce((a, b) => Math.min(a, b), Infinity),
    });
  } else if (op === "exit") {
    for (const c of clients) c.socket.close();
    process.exit(0);
  }
});
main();
