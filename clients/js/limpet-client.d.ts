// Type declarations of limpet-client (the module itself is plain ESM, no build step).
import type { Socket, ManagerOptions, SocketOptions } from "socket.io-client";

/** A position in a channel: the history it belongs to and the offset of a message in it. */
export interface Position {
  epoch: string;
  offset: number;
}

/** One message of a channel, delivered once, in offset order. */
export interface Message<T = unknown> {
  channel: string;
  epoch: string;
  offset: number;
  data: T;
}

export declare const GapReason: {
  readonly EPOCH_CHANGED: "epoch-changed";
  readonly HISTORY_WINDOW: "history-window";
};
export type GapReasonValue = (typeof GapReason)[keyof typeof GapReason];

/** Messages after `from` up to `to` could not be recovered; delivery goes on after `to`. */
export interface Gap {
  channel: string;
  from: Position;
  to: Position;
  reason: GapReasonValue;
}

export interface PresenceEvent {
  type: "join" | "leave";
  channel: string;
  client: string;
  user?: string;
  replica?: string;
}

export interface SubscribedInfo {
  channel: string;
  epoch: string;
  offset: number;
  recovered: boolean;
  /** true when this subscribe asked for `since` (a reconnect, or a saved position) */
  resumed: boolean;
  since: Position | null;
}

export interface SubscribeOptions<T = unknown> {
  onMessage?: (message: Message<T>) => void;
  onGap?: (gap: Gap) => void;
  /** resume from here (e.g. a position saved in localStorage) */
  position?: Position | null;
  presence?: boolean;
  onPresence?: (event: PresenceEvent) => void;
  onSubscribed?: (info: SubscribedInfo) => void;
  onError?: (error: LimpetError) => void;
}

export interface PublishOptions {
  /** same key, same message: the hub stores it once (within its --idempotency-ttl) */
  idempotencyKey?: string;
}

export interface PublishAck {
  epoch: string;
  offset: number;
  duplicate?: boolean;
}

export type LimpetClientOptions = Partial<ManagerOptions & SocketOptions> & {
  /** sent as socket.io auth.token (the hub's --jwt-secret) */
  token?: string;
  /** ms before an unacknowledged publish is rejected (default 30000) */
  publishTimeout?: number;
  /** most publishes waiting for an ack (default 1000) */
  maxPendingPublishes?: number;
};

export declare class LimpetError extends Error {
  constructor(message: string, code?: string);
  /** "refused" | "timeout" | "full" | "closed" | "unsubscribed" | "subscribed" | "error" */
  code: string;
}

/** Reconnection delays with decorrelated jitter (the Manager's backoff in LimpetClient). */
export declare class DecorrelatedBackoff {
  constructor(options?: { min?: number; max?: number; random?: () => number });
  attempts: number;
  /** The next delay in ms. */
  duration(): number;
  /** The hub asked to wait `ms`: the next delay is at least that (with jitter above it). */
  retryAfter(ms: number): void;
  reset(): void;
  setMin(min: number): void;
  setMax(max: number): void;
  setJitter(jitter: number): void;
}

/** When a failed connection attempt asks to come back (503 Retry-After, close 1013), in ms; 0: no word. */
export declare function retryAfterMs(error: unknown): number;

export declare class ChannelState {
  constructor(channel: string, position?: Position | null);
  channel: string;
  position: Position | null;
  state: "idle" | "subscribing" | "live";
  subscribe(): { token: number; since: Position | null };
  disconnect(): void;
  onAck(token: number, ack: { epoch: string; offset: number; recovered: boolean }): { stale: boolean; gap: Gap | null };
  onMessage(message: { epoch: string; offset: number }): { deliver: boolean; gap: Gap | null; resubscribe: boolean };
  onRecovery(recovery: { epoch: string; offset: number }): Gap | null;
}

export declare function newIdempotencyKey(): string;

export declare class Subscription<T = unknown> {
  readonly channel: string;
  /** settles once subscribed: resolves with the position, rejects if the hub refuses */
  readonly ready: Promise<Position>;
  /** position of the last message handled (or of the subscribe point); persist it */
  readonly position: Position | null;
  publish(data: T, options?: PublishOptions): Promise<PublishAck>;
  unsubscribe(): void;
}

export interface ClientEvents {
  connect: { id: string; reconnect: boolean };
  disconnect: { reason: string };
  connect_error: { message: string; data?: unknown };
  overflow: { reason: string };
  error: unknown;
}

export declare class LimpetClient {
  constructor(url: string, options?: LimpetClientOptions);
  readonly socket: Socket;
  /** The reconnection backoff (decorrelated jitter, honouring the hub's "try again later"). */
  readonly backoff: DecorrelatedBackoff;
  readonly connected: boolean;
  on<E extends keyof ClientEvents>(event: E, listener: (info: ClientEvents[E]) => void): this;
  off<E extends keyof ClientEvents>(event: E, listener: (info: ClientEvents[E]) => void): this;
  subscribe<T = unknown>(channel: string, options?: SubscribeOptions<T>): Subscription<T>;
  publish<T = unknown>(channel: string, data: T, options?: PublishOptions): Promise<PublishAck>;
  close(): void;
}

export default LimpetClient;
