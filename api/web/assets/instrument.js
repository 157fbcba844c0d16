// One instrument: ticker, depth ladder, trade tape and candle chart, all live from /v1/ws.
import { describeError, getJSON } from "./api.js";
import { byId, el, fill, say } from "./dom.js";
import { Feed } from "./feed.js";
import { LocalBook } from "./book.js";
import { CandleChart, intervalButtons } from "./chart.js";
import { bps, number, price } from "./format.js";
import { has, onLangChange, t } from "./i18n.js";
import { LADDER_DEPTH, renderLadder } from "./ladder.js";
import { setupLayout } from "./layout.js";
import { changeOf, lastPriceText } from "./market.js";
import { Tape } from "./tape.js";

const INTERVALS = ["1m", "5m", "1h", "1d"];
const TAPE_LOAD = 50;

const feed = new Feed();
const symbol = new URLSearchParams(location.search).get("symbol") ?? "";
const path = (suffix) => `/v1/markets/${encodeURIComponent(symbol)}/${suffix}`;

function showTicker(ticker, instrument) {
  const unit = instrument.price_unit;
  byId("ticker-last").textContent = lastPriceText(ticker, instrument);
  const change = changeOf(ticker);
  byId("ticker-change").textContent = change.text;
  byId("ticker-change").className = change.class;
  byId("ticker-high").textContent = price(ticker.high, unit);
  byId("ticker-low").textContent = price(ticker.low, unit);
  byId("ticker-volume").textContent = `${number(ticker.volume)} ${t("unit.lots")}`;
}

function showDetails(instrument) {
  const unit = instrument.price_unit;
  const facts = [
    ["details.kind", t(`kind.${instrument.kind}`)],
    ["details.status", t(`status.${instrument.status}`)],
    ["details.lot_size", `${number(instrument.lot_size)} ${unit}`],
    ["details.tick_size", price(instrument.tick_size, unit)],
    ["details.reference_price", price(instrument.reference_price, unit)],
    ["details.band", `${price(instrument.band_low, unit)} – ${price(instrument.band_high, unit)}`],
    ["details.fees", t("details.fees_value", { maker: bps(instrument.maker_fee_bps), taker: bps(instrument.taker_fee_bps) })],
  ];
  const attributes = Object.entries(instrument.attributes).map(([name, value]) => [
    has(`attribute.${name}`) ? t(`attribute.${name}`) : name,
    String(value),
  ]);
  fill(
    byId("instrument-details"),
    [...facts.map(([key, value]) => [t(key), value]), ...attributes].map(([term, value]) =>
      el("div", {}, el("dt", {}, term), el("dd", {}, value)),
    ),
  );
}

function followBook(instrument) {
  const book = new LocalBook();
  const parts = { asks: byId("ladder-asks"), spread: byId("ladder-spread"), bids: byId("ladder-bids") };
  const draw = () => renderLadder(book, instrument.price_unit, parts);
  feed.subscribe("book", symbol, { depth: LADDER_DEPTH }, (frame) => {
    if (!book.apply(frame)) {
      book.ready = false; // a broken local book: ask for a fresh snapshot
      feed.resubscribe("book", symbol);
    }
    draw();
  });
  onLangChange(draw);
  draw();
}

async function followTape(instrument) {
  const tape = new Tape(byId("tape-rows"), instrument.price_unit);
  feed.subscribe("trades", symbol, {}, (trade) => tape.add([trade]));
  onLangChange(() => tape.render());
  tape.render();
  const { trades } = await getJSON(path(`trades?limit=${TAPE_LOAD}`));
  tape.add(trades);
}

function followChart() {
  const chart = new CandleChart(byId("chart"));
  let unsubscribe = () => {};
  const choose = async (interval) => {
    unsubscribe();
    const { candles } = await getJSON(path(`candles?interval=${interval}`));
    chart.setCandles(candles);
    unsubscribe = feed.subscribe("candles", symbol, { interval }, (frame) => {
      if (frame.candle) chart.update(frame.candle);
    });
  };
  intervalButtons(byId("chart-intervals"), INTERVALS, INTERVALS[0], choose);
  return choose(INTERVALS[0]);
}

async function start() {
  setupLayout("overview", feed);
  const status = byId("instrument-status");
  try {
    const instrument = await getJSON(`/v1/instruments/${encodeURIComponent(symbol)}`);
    byId("instrument-symbol").textContent = instrument.symbol;
    byId("instrument-name").textContent = instrument.name;
    byId("trade-link").href = `/web/trader?symbol=${encodeURIComponent(instrument.symbol)}`;
    document.title = `${instrument.symbol} · hogx`;
    showDetails(instrument);
    onLangChange(() => showDetails(instrument));
    let ticker = await getJSON(path("ticker"));
    showTicker(ticker, instrument);
    onLangChange(() => showTicker(ticker, instrument));
    feed.subscribe("ticker", symbol, {}, (frame) => {
      ticker = frame;
      showTicker(ticker, instrument);
    });
    followBook(instrument);
    await Promise.all([followTape(instrument), followChart()]);
  } catch (error) {
    say(status, describeError(error), "error");
  }
}

start();
