// The depth ladder: asks above (best ask nearest the middle), the spread, bids below; each
// level's bar is its quantity relative to the largest level shown.
import { fillRows } from "./dom.js";
import { number, price } from "./format.js";
import { t } from "./i18n.js";

export const LADDER_DEPTH = 12;

function levelRow([levelPrice, quantity, orders], unit, side) {
  return {
    attributes: { class: side, dataset: { price: levelPrice } },
    cells: [
      { text: price(levelPrice, unit), class: "num" },
      { text: number(quantity), class: "num bar" },
      { text: number(orders), class: "num" },
    ],
  };
}

/** Each level's bar: its quantity against the largest level shown (a CSS variable). */
function drawBars(tbody, levels, largest) {
  levels.forEach(([, quantity], index) => {
    tbody.rows[index].style.setProperty("--fill", `${Math.round((100 * quantity) / largest)}%`);
  });
}

/** Draw `book` (a LocalBook) into the ladder's three <tbody>s. */
export function renderLadder(book, unit, parts) {
  const asks = book.levels("sell", LADDER_DEPTH);
  const bids = book.levels("buy", LADDER_DEPTH);
  const largest = Math.max(1, ...asks.map((l) => l[1]), ...bids.map((l) => l[1]));
  asks.reverse(); // the best ask nearest the spread
  fillRows(parts.asks, asks.map((level) => levelRow(level, unit, "ask")));
  fillRows(parts.bids, bids.map((level) => levelRow(level, unit, "bid")));
  drawBars(parts.asks, asks, largest);
  drawBars(parts.bids, bids, largest);
  const spread = asks.length && bids.length ? asks[asks.length - 1][0] - bids[0][0] : null;
  const text = !book.ready
    ? t("book.loading")
    : asks.length || bids.length
      ? t("book.spread", { spread: spread === null ? "—" : number(spread) })
      : t("book.empty");
  fillRows(parts.spread, [[{ text, class: "spread-cell", colspan: 3 }]]);
}
