// A subscribe storm on the official socket.io client: COUNT websocket clients spread over URLS
// all subscribe to CHANNEL at once. argv: CHANNEL COUNT URL[,URL...]
// stdout (one JSON object per line):
//   {"event": "acked", "ok": N, "errors": [...]}         once every client has its ack
//   {"event": "received", "complete": N, "short": [...]} after {"op": "wait", "count": M} on
//       stdin, once every acknowledged client holds M messages in offset order 1..M, or after
//       {"op": "report"} with whatever arrived ("short": clients that are missing some)
const { io } = require("socket.io-client");
const readline = require("readline");

const [channel, countText, urlList] = process.argv.slice(2);
const count = Number(countText);
const urls = urlList.split(",");
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const clients = [];
let acked = 0;
const errors = [];
let want = null;

const inOrder = (c) => c.offsets.length >= want && c.offsets.every((o, i) => o === i + 1);
const report = () => {
  const ok = clients.filter((c) => c.ok);
  const short = ok.filter((c) => !inOrder(c)).map((c) => ({ id: c.id, got: c.offsets.length }));
  out({ event: "received", complete: ok.length - short.length, short: short.slice(0, 20) });
};
const check = () => {
  if (want !== null && clients.filter((c) => c.ok).every(inOrder)) { report(); want = null; }
};

for (let i = 0; i < count; i++) {
  const c = { id: i, ok: false, offsets: [] };
  clients.push(c);
  const socket = io(urls[i % urls.length], { transports: ["websocket"], reconnection: false, forceNew: true });
  socket.on("message", (m) => { if (m.channel === channel) { c.offsets.push(m.offset); check(); } });
  socket.on("connect_error", (e) => { errors.push(String(e && e.message)); acked++; });
  socket.on("connect", () => {
    socket.emit("subscribe", { channel }, (ack) => {
      if (ack && ack.error === undefined) c.ok = true; else errors.push(ack && ack.error);
      if (++acked === count) out({ event: "acked", ok: count - errors.length, errors: errors.slice(0, 20) });
    });
  });
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === "wait") { want = cmd.count; check(); }
  else if (cmd.op === "report") { want = want || 0; report(); }
  else if (cmd.op === "exit") process.exit(0);
});
