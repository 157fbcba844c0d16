// The market-data feed (/v1/ws) for a page: one websocket, reconnected with backoff, every
// subscription re-sent after a reconnect, frames routed to the subscriber of their stream.

const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 10_000;

const streamKey = (channel, symbol, interval) => `${channel}|${symbol}|${interval ?? ""}`;

export class Feed {
  constructor() {
    this.streams = new Map(); // stream key -> {message, handler}
    this.statusListeners = [];
    this.failures = 0;
    this.status = "connecting";
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/v1/ws`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.failures = 0;
      this.setStatus("live");
      for (const { message } of this.streams.values()) this.send(message);
    });
    socket.addEventListener("message", (event) => this.dispatch(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      this.setStatus("offline");
      const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** this.failures);
      this.failures += 1;
      setTimeout(() => this.connect(), delay);
    });
  }

  send(message) {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  /** Subscribe `handler(frame)` to a stream; returns a function that unsubscribes. */
  subscribe(channel, symbol, options, handler) {
    const interval = channel === "candles" ? options.interval ?? "1m" : undefined;
    const key = streamKey(channel, symbol, interval);
    const message = { op: "subscribe", channel, symbol, ...options };
    this.streams.set(key, { message, handler });
    this.send(message);
    return () => {
      this.streams.delete(key);
      this.send({ op: "unsubscribe", channel, symbol, ...(interval ? { interval } : {}) });
    };
  }

  /** Ask for a fresh snapshot of a stream (e.g. after a checksum mismatch). */
  resubscribe(channel, symbol, interval) {
    const stream = this.streams.get(streamKey(channel, symbol, interval));
    if (stream) this.send(stream.message);
  }

  dispatch(frame) {
    if (frame.type === "heartbeat" || frame.type === "unsubscribed") return;
    if (frame.type === "error") {
      console.warn("hogx feed:", frame.code, frame.message);
      return;
    }
    const stream = this.streams.get(streamKey(frame.channel, frame.symbol, frame.interval));
    if (stream) stream.handler(frame);
  }

  setStatus(status) {
    this.status = status;
    for (const listener of this.statusListeners) listener(status);
  }

  onStatus(listener) {
    this.statusListeners.push(listener);
    listener(this.status);
  }
}
