// Market overview: every instrument with its last price, today's change and volume, live
// from the feed's ticker channel.
import { describeError, getJSON } from "./api.js";
import { byId, el, fillRows, say } from "./dom.js";
import { Feed } from "./feed.js";
import { number, price } from "./format.js";
import { onLangChange, t } from "./i18n.js";
import { setupLayout } from "./layout.js";
import { changeOf, instrumentHref, lastPriceText, listInstruments } from "./market.js";

const MAX_LIVE = 60; // the feed allows 64 streams per connection

const feed = new Feed();
const tickers = new Map(); // symbol -> latest ticker
let instruments = [];

function row(instrument) {
  const ticker = tickers.get(instrument.symbol);
  const name = el(
    "a",
    { href: instrumentHref(instrument.symbol), class: "instrument-link" },
    el("strong", {}, instrument.symbol),
    el("span", { class: "instrument-name" }, instrument.name),
    instrument.status === "halted" ? el("span", { class: "tag" }, t("status.halted")) : null,
  );
  const change = changeOf(ticker);
  // On a phone the change sits under the price instead of in a column of its own.
  const lastPrice = el(
    "div",
    {},
    el("div", { class: "last-price" }, lastPriceText(ticker, instrument)),
    el("div", { class: `narrow-only ${change.class}` }, change.text),
  );
  return {
    attributes: { dataset: { symbol: instrument.symbol } },
    cells: [
      name,
      { node: lastPrice, class: "num" },
      { text: change.text, class: `${change.class} wide-only` },
      { text: `${number(ticker?.volume ?? 0)} ${t("unit.lots")}`, class: "num volume" },
      { text: price(ticker?.best_bid, instrument.price_unit), class: "num wide-only" },
      { text: price(ticker?.best_ask, instrument.price_unit), class: "num wide-only" },
    ],
  };
}

function render() {
  fillRows(byId("overview-rows"), instruments.map(row), t("overview.empty"));
}

async function start() {
  setupLayout("overview", feed);
  onLangChange(render);
  const status = byId("overview-status");
  try {
    instruments = await listInstruments();
    await Promise.all(
      instruments.map(async ({ symbol }) => {
        tickers.set(symbol, await getJSON(`/v1/markets/${encodeURIComponent(symbol)}/ticker`));
      }),
    );
  } catch (error) {
    say(status, describeError(error), "error");
    return;
  }
  render();
  for (const { symbol } of instruments.slice(0, MAX_LIVE)) {
    feed.subscribe("ticker", symbol, {}, (ticker) => {
      tickers.set(symbol, ticker);
      render();
    });
  }
}

start();
