// Type declarations for the liveroom JavaScript SDK (liveroom.js).
// The wire contract they describe is docs/PROTOCOL.md.

export const VERSION: string;

/** A room message, as the gateway sends it in batch and history frames. */
export interface BaseMessage {
  /** Unique id: the SDK de-duplicates by it. */
  id: string;
  type: string;
  room?: string;
  /** Server time in ms. */
  ts?: number;
  /** Reliable sequence (gifts, room notices). */
  seq?: number;
  /** Live session and offset in it, while the room is live. */
  session?: string;
  offset_ms?: number;
  /** Set by the SDK on messages of a history frame: they happened before this client joined. */
  past?: boolean;
}

export interface DanmakuMessage extends BaseMessage {
  type: 'danmaku';
  user?: string;
  name?: string;
  role?: 'viewer' | 'anchor' | 'admin';
  text: string;
}

export interface GiftMessage extends BaseMessage {
  type: 'gift';
  seq: number;
  user?: string;
  name?: string;
  role?: 'viewer' | 'anchor' | 'admin';
  gift: string;
  count: number;
}

export interface LikeMessage extends BaseMessage {
  type: 'like';
  /** Likes added since the previous like message of the same uplink. */
  count: number;
  /** The room's total after this addition: show the largest seen. */
  total: number;
}

export interface CountMessage extends BaseMessage {
  type: 'count';
  /** Viewers of the room across all gateways. */
  online: number;
}

export interface NoticeMessage extends BaseMessage {
  type: 'notice';
  text?: string;
  action?: string;
  until_ms?: number;
}

export type Message = DanmakuMessage | GiftMessage | LikeMessage | CountMessage | NoticeMessage;

/** The first frame of every connection. */
export interface Welcome {
  type: 'welcome';
  room: string;
  seq: number;
  online: number;
  likes: number;
  gateway: string;
  user: string;
  /** Reliable messages replayed after it because of since=. */
  replayed?: number;
  /** The gateway's liveness promise: a frame at least this often. */
  hb_ms?: number;
  /** Messages in the history frame that follows (first join only). */
  history?: number;
  /** Added by the SDK: true when this welcome resumed a known position. */
  resumed: boolean;
}

export type ConnectionState = 'connecting' | 'joining' | 'live' | 'reconnecting' | 'offline';

export interface StateEvent {
  state: ConnectionState;
  /** A few words on why ("the room is filling up", "moving to another server", …); may be empty. */
  detail: string;
  /** When the next attempt starts (epoch ms) while waiting; 0 otherwise. */
  until: number;
  /** Set when the room stopped for good (banned, no token, …): offline until retryNow(). */
  error: ApiError | null;
}

export interface HistoryEvent {
  room: string;
  /** The room's recent danmaku and gifts, oldest first, each with past: true. */
  msgs: Message[];
}

export interface ErrorEvent {
  error: ApiError;
  /** True when the room stopped: it does not reconnect until retryNow(). */
  fatal: boolean;
}

export interface ReconnectEvent {
  after_ms: number;
  reason: string;
}

export interface RoomEvents {
  state: StateEvent;
  welcome: Welcome;
  history: HistoryEvent;
  /** Every live message, whatever its type, before its typed event. */
  message: Message;
  danmaku: DanmakuMessage;
  gift: GiftMessage;
  like: LikeMessage;
  count: CountMessage;
  notice: NoticeMessage;
  reconnect: ReconnectEvent;
  error: ErrorEvent;
}

/**
 * A token, or a function giving one. A function is asked again with
 * fresh = true after the server refused its token; a plain string refused is
 * fatal. A function may throw an ApiError with fatal = true to stop.
 */
export type TokenSource = string | ((fresh: boolean) => string | Promise<string>);

export interface ConnectOptions {
  room: string;
  token: TokenSource;
  /** Origin of dispatch and the uplink, e.g. "http://127.0.0.1:8080". Default: this page's origin; required outside a browser. */
  baseURL?: string;
  /** Resume from this reliable sequence (a position remembered earlier): a whole number >= 0. */
  since?: number;
  /** Reliable ids remembered for de-duplication (10000). */
  dedupeIds?: number;
  /** From new WebSocket to welcome, per candidate (8000). */
  connectTimeoutMs?: number;
  /** Dial the next candidate too when a handshake takes longer (1000). */
  hedgeDelayMs?: number;
  /** A connection that lived this long resets the backoff (5000). */
  stableMs?: number;
  /** Leave a gateway silent for this × hb_ms (1.75). */
  livenessFactor?: number;
  /** Leave a gateway silent this long when its welcome has no hb_ms (90000; 0: never). */
  idleTimeoutMs?: number;
  /** Try a gateway left for its silence last for this long (30000). */
  shunMs?: number;
  /** Longest dispatch wait accepted per answer (60000). */
  maxWaitMs?: number;
  /** fetch and WebSocket implementations (the globals by default). */
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
}

export interface SendOptions {
  idempotencyKey?: string;
  /** Retries after a network error or a 5xx, with the same key. */
  retries?: number;
}

export interface Accepted {
  id: string;
  seq?: number;
}

export class Room {
  readonly room: string;
  readonly state: ConnectionState;
  readonly detail: string;
  /** The largest reliable seq received (the since= of the next connection). */
  readonly lastSeq: number;
  readonly hasPosition: boolean;
  readonly gateway: string;
  readonly user: string;
  readonly online: number;
  readonly likes: number;
  readonly error: { code: string; message: string } | null;
  readonly stats: { waits: number; silentLeaves: number; duplicates: number; welcomes: number; history: number };
  readonly policy: { base_ms: number; max_ms: number; jitter: number };
  constructor(opts: ConnectOptions);
  on<K extends keyof RoomEvents>(type: K, fn: (ev: RoomEvents[K]) => void): () => void;
  off<K extends keyof RoomEvents>(type: K, fn: (ev: RoomEvents[K]) => void): void;
  /** Whether a message with this id was delivered (live or history), among the last dedupeIds. */
  seen(id: string): boolean;
  start(): this;
  close(): void;
  retryNow(): void;
  /** Cuts the connection as a network failure would (tests, demos). */
  drop(holdMs?: number): boolean;
  send(body: Record<string, unknown>, opts?: SendOptions): Promise<Accepted>;
  sendDanmaku(text: string): Promise<Accepted>;
  sendGift(gift: string, count?: number, opts?: SendOptions): Promise<Accepted>;
  sendLike(count?: number): Promise<Accepted>;
}

/** Joins a room; listeners added in the same tick see every event. */
export function connect(opts: ConnectOptions): Room;

export class ApiError extends Error {
  /** HTTP status; 0 for network failures and gateway error frames. */
  status: number;
  /** Stable error code (docs/PROTOCOL.md "Error codes"), "network", or "http_<status>". */
  code: string;
  field: string;
  retryAfterMs: number;
  /** True for a gateway's error frame. */
  frame: boolean;
  fatal?: boolean;
  constructor(status: number, body?: unknown, fallback?: string);
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  token?: string;
  retries?: number;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

/** Sends one request; resolves to the JSON answer, throws ApiError. */
export function request<T = any>(url: string, opts?: RequestOptions): Promise<T>;
/** request, resolving to the status too. */
export function requestJSON<T = any>(url: string, opts?: RequestOptions): Promise<{ status: number; body: T }>;
export function sendMessage(opts: { room: string; body: Record<string, unknown>; token: string; idempotencyKey?: string; retries?: number; baseURL?: string; fetch?: typeof fetch }): Promise<Accepted>;

export interface Session {
  id: string;
  room: string;
  started_ms: number;
  stopped_ms?: number;
  by?: string;
  duration_ms: number;
  live: boolean;
}

export function listSessions(opts: { room: string; baseURL?: string; retries?: number; fetch?: typeof fetch }): Promise<Session[]>;
export function getReplay(opts: { room: string; session: string; fromMs: number; toMs: number; baseURL?: string; retries?: number; fetch?: typeof fetch }): Promise<{ msgs: Message[]; next_from_ms?: number }>;

export interface GatewayCandidate {
  id: string;
  url: string;
  load: number;
}

export function dispatch(opts: { room: string; since?: number | null; attempt?: number; baseURL?: string; maxWaitMs?: number; fetch?: typeof fetch }): Promise<{ gateways: GatewayCandidate[]; reconnect: { base_ms: number; max_ms: number; jitter: number } | null; wait: number }>;
export function gatewayURL(url: string, base?: { protocol: string; host: string; hostname: string } | null): string;
export function backoffDelay(policy: { base_ms: number; max_ms: number; jitter: number }, attempt: number, r?: number): number;
export function describeError(err: unknown): string;
export function jwtClaims(token: string): Record<string, any>;
export function uuid4(): string;

/** Remembers the most recent max values. */
export class BoundedSet<T = string> {
  constructor(max: number);
  has(v: T): boolean;
  add(v: T): void;
}
