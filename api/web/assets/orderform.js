// The order form's rules, checked before sending (the exchange checks them again): whole
// lots within the size limit, a price on the tick grid inside the band, and enough money or
// goods for the hold the order will need (clearing/risk.py: notional plus the largest fee).
import { number, price, vnd } from "./format.js";
import { t } from "./i18n.js";

/** The form's fields as the body of POST /v1/orders (price omitted for a market order). */
export function readDraft(form) {
  const data = new FormData(form);
  const type = data.get("type");
  const whole = (value) => (value === "" || value === null ? null : Number(value));
  return {
    symbol: data.get("symbol"),
    side: data.get("side"),
    type,
    price: type === "limit" ? whole(data.get("price")) : undefined,
    quantity: whole(data.get("quantity")),
    time_in_force: data.get("time_in_force"),
    post_only: data.get("post_only") === "on",
  };
}

function available(balances, asset) {
  return balances.find((balance) => balance.asset === asset)?.available ?? 0;
}

/** What a buy of `quantity` lots at `limitPrice` must hold in VND. */
export function cashHold(instrument, limitPrice, quantity) {
  const notional = limitPrice * quantity * instrument.lot_size;
  const feeBps = Math.max(instrument.maker_fee_bps, instrument.taker_fee_bps);
  return notional + Math.floor((notional * feeBps) / 10_000);
}

function sizeProblems(draft, instrument) {
  const { quantity } = draft;
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > instrument.max_order_quantity) {
    return [t("hint.quantity", { max: number(instrument.max_order_quantity) })];
  }
  return [];
}

function priceProblems(draft, instrument) {
  if (draft.type !== "limit") return [];
  const unit = instrument.price_unit;
  const value = draft.price;
  if (!Number.isInteger(value) || value <= 0 || value % instrument.tick_size !== 0) {
    return [t("hint.tick", { tick: price(instrument.tick_size, unit) })];
  }
  if (value < instrument.band_low || value > instrument.band_high) {
    return [
      t("hint.band", { low: price(instrument.band_low, unit), high: price(instrument.band_high, unit) }),
    ];
  }
  return [];
}

function fieldProblems(draft) {
  const takesAtOnce = draft.type === "market" || ["ioc", "fok"].includes(draft.time_in_force);
  return draft.post_only && takesAtOnce ? [t("hint.post_only")] : [];
}

function fundsCheck(draft, instrument, balances) {
  if (draft.side === "sell") {
    const have = available(balances, instrument.symbol);
    const need = draft.quantity;
    const line = t("hint.goods", { need: number(need), have: number(have) });
    return need > have ? { problems: [line], hints: [] } : { problems: [], hints: [line] };
  }
  // A market buy holds at the top of the band.
  const limitPrice = draft.type === "market" ? instrument.band_high : draft.price;
  const need = cashHold(instrument, limitPrice, draft.quantity);
  const have = available(balances, "VND");
  const line = t("hint.funds", { need: vnd(need), have: vnd(have) });
  return need > have ? { problems: [line], hints: [] } : { problems: [], hints: [line] };
}

/** {problems, hints}: problems stop the order; hints say what it will hold and the rules. */
export function checkDraft(draft, instrument, balances) {
  const unit = instrument.price_unit;
  const rules = t("hint.rules", {
    tick: price(instrument.tick_size, unit),
    low: price(instrument.band_low, unit),
    high: price(instrument.band_high, unit),
    lot: `${number(instrument.lot_size)} ${unit}`,
  });
  const problems = [...sizeProblems(draft, instrument), ...priceProblems(draft, instrument), ...fieldProblems(draft)];
  if (problems.length) return { problems, hints: [rules] };
  const funds = fundsCheck(draft, instrument, balances);
  return { problems: funds.problems, hints: [rules, ...funds.hints] };
}
