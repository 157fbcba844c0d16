// A local copy of one order book from the feed: a snapshot, then updates with absolute level
// totals ([side, price, quantity, orders]; quantity 0 removes the level), each checked against
// the feed's CRC32 of the top 10 levels (README: "The websocket feed").

const CHECKSUM_LEVELS = 10;

export class LocalBook {
  constructor() {
    this.bids = new Map(); // price -> [quantity, orders]
    this.asks = new Map();
    this.ready = false;
  }

  /** Apply a book frame; false when the result disagrees with the frame's checksum. */
  apply(frame) {
    if (frame.type === "resync") {
      this.ready = false; // a fresh snapshot follows
      return true;
    }
    if (frame.type === "snapshot") {
      this.bids = new Map(frame.bids.map(([price, quantity, orders]) => [price, [quantity, orders]]));
      this.asks = new Map(frame.asks.map(([price, quantity, orders]) => [price, [quantity, orders]]));
      this.ready = true;
    } else if (frame.type === "update" && this.ready) {
      for (const [side, price, quantity, orders] of frame.changes) {
        const levels = side === "buy" ? this.bids : this.asks;
        if (quantity === 0) levels.delete(price);
        else levels.set(price, [quantity, orders]);
      }
    } else {
      return true;
    }
    return frame.checksum === undefined || frame.checksum === this.checksum();
  }

  /** Levels best first: [[price, quantity, orders], ...]. */
  levels(side, depth = Infinity) {
    const levels = side === "buy" ? this.bids : this.asks;
    const prices = [...levels.keys()].sort((a, b) => (side === "buy" ? b - a : a - b));
    return prices.slice(0, depth).map((price) => [price, ...levels.get(price)]);
  }

  checksum() {
    const side = (name) =>
      this.levels(name, CHECKSUM_LEVELS)
        .map(([price, quantity]) => `${price}:${quantity}`)
        .join(",");
    return crc32(`${side("buy")}|${side("sell")}`);
  }
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC32 (as zlib.crc32) of an ASCII string, unsigned. */
export function crc32(text) {
  let crc = 0xffffffff;
  for (let i = 0; i < text.length; i += 1) {
    crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}
