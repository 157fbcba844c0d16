// Market data shared by the pages: the instrument list and what a ticker means to a reader.
import { getJSON } from "./api.js";
import { price, signedNumber, signedPercent } from "./format.js";

const MAX_INSTRUMENTS = 1_000;

/** Every listed instrument (API.md: GET /v1/instruments), in listing order. */
export async function listInstruments() {
  const { instruments } = await getJSON(`/v1/instruments?limit=${MAX_INSTRUMENTS}`);
  return instruments;
}

export function instrumentHref(symbol) {
  return `/web/instrument?symbol=${encodeURIComponent(symbol)}`;
}

/** Today's change of the last price against today's open: {text, class} for a cell. */
export function changeOf(ticker) {
  if (!ticker || ticker.last_price == null || ticker.open == null || ticker.open === 0) {
    return { text: "—", class: "num" };
  }
  const change = ticker.last_price - ticker.open;
  const direction = change > 0 ? "up" : change < 0 ? "down" : "flat";
  return {
    text: `${signedNumber(change)} (${signedPercent(change / ticker.open)})`,
    class: `num ${direction}`,
  };
}

export function lastPriceText(ticker, instrument) {
  return price(ticker?.last_price, instrument.price_unit);
}
