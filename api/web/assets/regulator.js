// The regulator page (role `regulator`, read-only): the journal's hash chain verified, trade
// search with filters and CSV export, any order's whole life, and surveillance alerts.
import { ApiError, describeError, getBlob, getJSON, query } from "./api.js";
import { byId, el, fill, fillRows, saveBlob, say } from "./dom.js";
import { dateTime, number, price, vnd } from "./format.js";
import { has, onLangChange, t } from "./i18n.js";
import { setupLayout } from "./layout.js";
import { listInstruments } from "./market.js";
import { setupSignIn } from "./session.js";

const PAGE_ROWS = 50;
const ALERT_ROWS = 50;
const VIETNAM_OFFSET = "+07:00";

const state = { key: null, verified: null, trades: [], nextCursor: null, order: null, alerts: null, units: new Map() };

const unitOf = (symbol) => state.units.get(symbol) ?? "kg";
const translated = (prefix, code) => (has(`${prefix}.${code}`) ? t(`${prefix}.${code}`) : code);

function details(list, facts) {
  fill(list, facts.map(([term, value]) => el("div", {}, el("dt", {}, term), el("dd", {}, value))));
}

function orderButton(orderId) {
  return el("button", { type: "button", class: "link", dataset: { orderId }, onclick: () => showOrder(orderId) }, `#${orderId}`);
}

// ------------------------------------------------------------------ chain verification

function renderVerify() {
  const result = state.verified;
  const status = byId("verify-status");
  if (!result) return;
  if (result.error) {
    say(status, describeError(result.error), "error");
    return;
  }
  if (result.ok) say(status, t("verify.ok", { records: number(result.records) }), "ok");
  else say(status, t("verify.bad", { sequence: result.first_bad_sequence ?? "?", message: result.message ?? "" }), "error");
  details(byId("verify-details"), [
    [t("verify.records"), number(result.records)],
    [t("verify.last_sequence"), number(result.last_sequence)],
    [t("verify.head_hash"), el("code", { class: "hash" }, result.head_hash ?? "—")],
    [t("verify.checked_at"), dateTime(result.checked_at)],
  ]);
}

async function runVerify() {
  say(byId("verify-status"), t("verify.running"));
  try {
    state.verified = { ...(await getJSON("/v1/audit/verify", state.key)), checked_at: new Date().toISOString() };
  } catch (error) {
    state.verified = { error };
  }
  renderVerify();
}

// ------------------------------------------------------------------ trade search

/** A datetime-local value (Vietnam time) as RFC 3339. */
const vietnamTime = (value) => (value ? `${value.length === 16 ? `${value}:00` : value}${VIETNAM_OFFSET}` : "");

function filters() {
  return {
    symbol: byId("search-symbol").value,
    participant_id: byId("search-participant").value,
    start: vietnamTime(byId("search-start").value),
    end: vietnamTime(byId("search-end").value),
  };
}

function sides(trade) {
  const side = (key, participant, orderId) =>
    el("div", { class: "side-line" }, `${t(key, { id: participant })} · `, orderButton(orderId));
  return el(
    "div",
    {},
    side("search.buyer", trade.buyer_participant_id, trade.buy_order_id),
    side("search.seller", trade.seller_participant_id, trade.sell_order_id),
  );
}

function renderTrades() {
  const rows = state.trades.map((trade) => ({
    attributes: { dataset: { tradeId: trade.trade_id } },
    cells: [
      el("div", {}, el("strong", {}, `${trade.symbol} #${trade.trade_id}`), el("div", { class: "muted" }, dateTime(trade.time))),
      { node: el("div", {}, price(trade.price, unitOf(trade.symbol)), el("div", { class: "muted" }, vnd(trade.notional_vnd))), class: "num" },
      { text: number(trade.quantity), class: "num" },
      sides(trade),
    ],
  }));
  fillRows(byId("audit-trade-rows"), rows, t("search.empty"));
  byId("search-more").hidden = !state.nextCursor;
}

async function search(more = false) {
  const status = byId("search-status");
  const cursor = more ? state.nextCursor : null;
  try {
    const page = await getJSON(`/v1/audit/trades${query({ ...filters(), limit: PAGE_ROWS, cursor })}`, state.key);
    state.trades = more ? [...state.trades, ...page.trades] : page.trades;
    state.nextCursor = page.next_cursor;
    say(status, t("search.found", { count: number(state.trades.length) }));
  } catch (error) {
    say(status, describeError(error), "error");
    return;
  }
  renderTrades();
}

async function exportCsv() {
  const status = byId("search-status");
  try {
    const blob = await getBlob(`/v1/audit/trades${query({ ...filters(), format: "csv" })}`, state.key, "text/csv");
    const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, "");
    saveBlob(blob, `hogx-trades-${stamp}.csv`);
    say(status, t("search.exported"), "ok");
  } catch (error) {
    say(status, describeError(error), "error");
  }
}

// ------------------------------------------------------------------ an order's life

function renderOrder() {
  const order = state.order;
  if (!order) return;
  details(byId("lifecycle-summary"), [
    [t("lifecycle.order"), `#${order.order_id}`],
    [t("lifecycle.participant"), String(order.participant_id)],
    [t("lifecycle.symbol"), order.symbol],
    [t("lifecycle.status"), translated("order_status", order.status)],
    [t("lifecycle.client_order_id"), order.client_order_id ?? "—"],
  ]);
  const rows = order.events.map((event) => ({
    attributes: { dataset: { kind: event.kind } },
    cells: [
      String(event.sequence),
      dateTime(event.time),
      el("div", {}, el("strong", {}, translated("event", event.kind)), el("code", { class: "event-details" }, JSON.stringify(event.details))),
    ],
  }));
  fillRows(byId("lifecycle-rows"), rows, t("lifecycle.empty"));
}

async function showOrder(orderId) {
  const status = byId("lifecycle-status");
  byId("lifecycle-order").value = orderId;
  try {
    state.order = await getJSON(`/v1/audit/orders/${encodeURIComponent(orderId)}`, state.key);
    say(status, "");
  } catch (error) {
    state.order = null;
    fill(byId("lifecycle-summary"));
    fillRows(byId("lifecycle-rows"), []);
    say(status, describeError(error), "error");
    return;
  }
  renderOrder();
  byId("lifecycle-form").scrollIntoView({ block: "start" });
}

// ------------------------------------------------------------------ surveillance alerts

function renderAlerts() {
  const status = byId("alerts-status");
  const result = state.alerts;
  if (!result) return;
  if (result.error) {
    // Until the surveillance routes are deployed the exchange answers 404: say so calmly.
    const missing = result.error instanceof ApiError && result.error.status === 404;
    say(status, missing ? t("alerts.unavailable") : describeError(result.error), missing ? "" : "error");
    fillRows(byId("alert-rows"), [], t("alerts.empty"));
    return;
  }
  say(status, "");
  const rows = result.alerts.map((alert) => ({
    attributes: { dataset: { alertId: alert.alert_id, kind: alert.kind } },
    cells: [
      dateTime(alert.time),
      el("div", {}, el("strong", {}, `${translated("alert", alert.kind)} · ${alert.symbol}`), el("div", {}, alert.message)),
      el(
        "div",
        {},
        el("div", {}, t("alerts.participants", { ids: alert.participant_ids.join(", ") || "—" })),
        el("div", {}, ...alert.order_ids.map(orderButton)),
      ),
    ],
  }));
  fillRows(byId("alert-rows"), rows, t("alerts.empty"));
}

async function loadAlerts() {
  const wanted = { kind: byId("alerts-kind").value, symbol: byId("alerts-symbol").value, limit: ALERT_ROWS };
  try {
    state.alerts = await getJSON(`/v1/audit/alerts${query(wanted)}`, state.key);
  } catch (error) {
    state.alerts = { error };
  }
  renderAlerts();
}

// ------------------------------------------------------------------ set-up

function signedIn(key) {
  state.key = key;
  byId("regulator-area").hidden = false;
  runVerify();
  search();
  loadAlerts();
}

function signedOut() {
  Object.assign(state, { key: null, verified: null, trades: [], nextCursor: null, order: null, alerts: null });
  byId("regulator-area").hidden = true;
}

async function start() {
  setupLayout("regulator");
  try {
    const instruments = await listInstruments();
    for (const { symbol, price_unit: unit } of instruments) state.units.set(symbol, unit);
    for (const id of ["search-symbol", "alerts-symbol"]) {
      byId(id).append(...instruments.map(({ symbol }) => el("option", { value: symbol }, symbol)));
    }
  } catch (error) {
    say(byId("search-status"), describeError(error), "error");
  }
  byId("verify-run").addEventListener("click", runVerify);
  byId("trade-search").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  byId("search-more").addEventListener("click", () => search(true));
  byId("search-csv").addEventListener("click", exportCsv);
  byId("lifecycle-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const orderId = byId("lifecycle-order").value.trim();
    if (orderId) showOrder(orderId);
  });
  byId("alerts-run").addEventListener("click", loadAlerts);
  byId("alerts-filter").addEventListener("change", loadAlerts);
  onLangChange(() => {
    renderVerify();
    renderTrades();
    renderOrder();
    renderAlerts();
  });
  setupSignIn({
    role: "regulator",
    probe: (key) => getJSON("/v1/audit/events?limit=1", key),
    describe: () => t("signin.as_regulator"),
    onSignedIn: signedIn,
    onSignedOut: signedOut,
  });
}

start();
