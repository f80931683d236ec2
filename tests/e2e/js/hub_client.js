// A hub client on the official socket.io client, driven line by line from a test.
// argv: CHANNEL. stdin commands (one JSON object per line):
//   {"op": "connect", "url": U, "transports": [...], "headers": {...}}
//                                                      -> {"event": "connected", "id": ...}
//   {"op": "subscribe", "since": {...}|null}           -> {"event": "ack", "ack": {...}}
//   {"op": "publish", "data": X}                       -> {"event": "published", "ack": {...}}
//   {"op": "wait", "count": N}                         -> {"event": "received", "messages": [...]}
//   {"op": "disconnect"}                               -> {"event": "disconnected"}
// Every "message" event is kept; "wait" answers once N have arrived in total.
const { io } = require("socket.io-client");
const readline = require("readline");

const channel = process.argv[2];
let socket = null;
const messages = [];
let waiter = null;

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const check = () => {
  if (waiter && messages.length >= waiter) { waiter = null; out({ event: "received", messages }); }
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === "connect") {
    // extraHeaders: a session cookie for the hub's connect hook (node only; browsers send theirs)
    socket = io(cmd.url, { transports: cmd.transports, reconnection: false, forceNew: true,
                           extraHeaders: cmd.headers || {} });
    socket.on("connect", () => out({ event: "connected", id: socket.id, transport: socket.io.engine.transport.name }));
    socket.on("connect_error", (e) => out({ event: "connect_error", message: String(e && e.message) }));
    socket.on("message", (m) => { if (m.channel === channel) { messages.push(m); check(); } });
  } else if (cmd.op === "subscribe") {
    const payload = { channel };
    if (cmd.since) payload.since = cmd.since;
    socket.emit("subscribe", payload, (ack) => out({ event: "ack", ack, before: messages.length }));
  } else if (cmd.op === "publish") {
    socket.emit("publish", { channel, data: cmd.data }, (ack) => out({ event: "published", ack }));
  } else if (cmd.op === "wait") {
    waiter = cmd.count; check();
  } else if (cmd.op === "disconnect") {
    socket.disconnect(); out({ event: "disconnected", transport: "closed" });
  } else if (cmd.op === "exit") {
    process.exit(0);
  }
});
