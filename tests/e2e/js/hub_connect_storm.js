// A connect storm on the official socket.io client: COUNT clients connect to URL at the same
// moment and each subscribes to CHANNEL once connected; socket.io's own reconnection retries
// whatever fails (a refusal, a timeout). argv: URL CHANNEL COUNT TRANSPORTS TIMEOUT_MS DEADLINE_MS [hold]
//   TRANSPORTS: "websocket" or "polling,websocket"; TIMEOUT_MS: the client's connect timeout;
//   hold: keep the connections open after the report, until stdin ends (to measure them idle).
// Prints one JSON line once every client is subscribed or DEADLINE_MS passed:
//   {"subscribed": N, "count": COUNT, "elapsed_ms": T, "errors": {"timeout": n, "refused": n,
//    "other": n}, "examples": [...]}
// "refused" counts the hub's try-again-later (503 on polling, close 1013 on a websocket).
const { io } = require("socket.io-client");

const [url, channel, countText, transportsText, timeoutText, deadlineText, holdText] = process.argv.slice(2);
const count = Number(countText);
const transports = transportsText.split(",");
const started = Date.now();
const errors = { timeout: 0, refused: 0, other: 0 };
const examples = [];
let subscribed = 0;
let done = false;
const sockets = [];

const finish = () => {
  if (done) return;
  done = true;
  process.stdout.write(
    JSON.stringify({ subscribed, count, elapsed_ms: Date.now() - started, errors, examples }) + "\n",
  );
  const end = () => {
    for (const s of sockets) s.close();
    setTimeout(() => process.exit(0), 200);
  };
  if (holdText === "hold") {
    process.stdin.on("end", end);
    process.stdin.resume();
  } else end();
};

const kind = (e) => {
  const message = String(e && e.message);
  if (message === "timeout") return "timeout";
  if (e && e.description === 503) return "refused";
  if (e && e.context && e.context.code === 1013) return "refused";
  return "other";
};

for (let i = 0; i < count; i++) {
  const socket = io(url, {
    transports,
    forceNew: true,
    timeout: Number(timeoutText),
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
  });
  sockets.push(socket);
  let ok = false;
  socket.on("connect_error", (e) => {
    const k = kind(e);
    errors[k] += 1;
    if (k === "other" && examples.length < 5) examples.push(`${e && e.message} ${e && e.description}`);
  });
  socket.on("connect", () => {
    if (ok) return;
    socket.emit("subscribe", { channel }, (ack) => {
      if (ok || !ack || ack.error !== undefined) return;
      ok = true;
      if (++subscribed === count) finish();
    });
  });
}
setTimeout(finish, Number(deadlineText));
