// Baseline (d): Node socket.io with @socket.io/redis-adapter, speaking the benchmark's subset of
// the hub protocol: "subscribe" {channel} = join the room, "publish" {channel, data} = emit
// "message" {channel, data} to the room on every replica (through Redis pub/sub).
// argv: PORT REDIS_URL NAME
import http from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const [port, redisUrl, name] = process.argv.slice(2);
const pub = createClient({ url: redisUrl });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

const server = http.createServer();
const io = new Server(server, { adapter: createAdapter(pub, sub), cors: { origin: "*" } });

io.on("connection", (socket) => {
  socket.on("subscribe", (msg, ack) => {
    if (!msg || typeof msg.channel !== "string") return ack && ack({ error: "channel expected" });
    socket.join(msg.channel);
    if (ack) ack({ channel: msg.channel });
  });
  socket.on("publish", (msg, ack) => {
    if (!msg || typeof msg.channel !== "string") return ack && ack({ error: "channel expected" });
    io.to(msg.channel).emit("message", { channel: msg.channel, data: msg.data });
    if (ack) ack({});
  });
});

server.listen(Number(port), "127.0.0.1", () => {
  console.log(`node socket.io ${name} listening on http://127.0.0.1:${port}/`);
});
const stop = () => { io.close(); pub.quit().catch(() => {}); sub.quit().catch(() => {}); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
