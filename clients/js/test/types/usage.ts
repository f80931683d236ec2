// What a TypeScript user writes with limpet-client: `npm run typecheck` must accept all of it
// under --strict (the declarations are hand-written next to a plain ESM module).
import LimpetClientDefault, {
  ChannelState,
  GapReason,
  LimpetClient,
  LimpetError,
  newIdempotencyKey,
  type Gap,
  type Message,
  type Position,
  type PresenceEvent,
  type PublishAck,
  type SubscribedInfo,
} from "limpet-client";

interface Chat {
  user: string;
  text: string;
}

const saved: Position | null = { epoch: "e1", offset: 41 };
const client: LimpetClient = new LimpetClientDefault("https://chat.example", {
  token: "jwt",
  transports: ["websocket"],
  publishTimeout: 10_000,
  maxPendingPublishes: 100,
});
client.on("connect", ({ id, reconnect }) => console.log(id.length, reconnect));
client.on("disconnect", ({ reason }) => console.log(reason.toUpperCase()));
client.on("overflow", ({ reason }) => console.log(reason));

const sub = client.subscribe<Chat>("chat.lobby", {
  position: saved,
  presence: true,
  onMessage(msg: Message<Chat>) {
    const text: string = msg.data.text;
    const offset: number = msg.offset;
    console.log(msg.channel, msg.epoch, offset, text);
  },
  onGap(gap: Gap) {
    if (gap.reason === GapReason.EPOCH_CHANGED || gap.reason === "history-window") {
      console.log(gap.from.offset, gap.to.offset);
    }
  },
  onPresence(event: PresenceEvent) {
    console.log(event.type === "join" ? event.client : event.user);
  },
  onSubscribed(info: SubscribedInfo) {
    console.log(info.recovered, info.resumed, info.since?.offset);
  },
  onError(error: LimpetError) {
    console.log(error.code, error.message);
  },
});

async function main(): Promise<void> {
  const at: Position = await sub.ready;
  const ack: PublishAck = await sub.publish(
    { user: "ann", text: "hi" },
    { idempotencyKey: newIdempotencyKey() },
  );
  const other: PublishAck = await client.publish("chat.other", 42);
  console.log(at.offset, ack.duplicate === true, other.offset, sub.position?.offset, sub.channel);
  sub.unsubscribe();
  client.close();
}

// the sans-IO core is exported too
const state = new ChannelState("c", saved);
const { token, since } = state.subscribe();
const verdict: { stale: boolean; gap: Gap | null } = state.onAck(token, {
  epoch: "e1",
  offset: 50,
  recovered: true,
});
console.log(since, verdict.gap, state.state, client.connected, client.socket.id);
void main();
