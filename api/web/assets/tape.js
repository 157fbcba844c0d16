// The trade tape: the newest trades first, from REST at first and then from the feed, each
// trade once (the two may overlap while the page loads).
import { fillRows } from "./dom.js";
import { clock, number, price } from "./format.js";
import { t } from "./i18n.js";

const TAPE_LENGTH = 50;

export class Tape {
  constructor(tbody, unit) {
    this.tbody = tbody;
    this.unit = unit;
    this.trades = [];
  }

  /** Add trades (any order); keeps the newest TAPE_LENGTH, newest first. */
  add(trades) {
    const known = new Set(this.trades.map((trade) => trade.trade_id));
    const fresh = trades.filter((trade) => !known.has(trade.trade_id));
    this.trades = [...this.trades, ...fresh]
      .sort((a, b) => Number(b.trade_id) - Number(a.trade_id))
      .slice(0, TAPE_LENGTH);
    this.render();
  }

  render() {
    const rows = this.trades.map((trade) => ({
      attributes: { class: trade.aggressor_side, dataset: { tradeId: trade.trade_id } },
      cells: [
        clock(trade.time),
        { text: price(trade.price, this.unit), class: "num" },
        { text: number(trade.quantity), class: "num" },
      ],
    }));
    fillRows(this.tbody, rows, t("tape.empty"));
  }
}
