// The trader page: sign in with an API key, balances, the order form with its hints, open
// orders (cancel, amend), fills and the statement download. Private data has no feed, so the
// page refreshes it every few seconds and after each action.
import { describeError, getBlob, getJSON, sendJSON } from "./api.js";
import { byId, el, fill, fillRows, saveBlob, say } from "./dom.js";
import { amount, clock, number, price, vnd } from "./format.js";
import { onLangChange, t } from "./i18n.js";
import { setupLayout } from "./layout.js";
import { listInstruments } from "./market.js";
import { checkDraft, readDraft } from "./orderform.js";
import { setupSignIn } from "./session.js";

const REFRESH_MS = 4_000;
const FILLS_SHOWN = 30;

const state = {
  key: null,
  participantId: null,
  instruments: new Map(),
  balances: [],
  orders: [],
  fills: [],
  amending: null, // {order_id, price, quantity} while an amend form is open
  refreshFailed: false,
  timer: null,
};

function clientOrderId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function unitOf(symbol) {
  return state.instruments.get(symbol)?.price_unit ?? "kg";
}

function orderLabel(order) {
  return el(
    "span",
    { class: `order-label ${order.side}` },
    el("strong", {}, t(`side.${order.side}`)),
    ` ${order.symbol} `,
    el("span", { class: "muted" }, `#${order.order_id}`),
  );
}

// ------------------------------------------------------------------ balances, orders, fills

function renderBalances() {
  const rows = state.balances.map(({ asset, available, reserved }) => [
    asset === "VND" ? t("asset.vnd") : asset,
    { text: amount(asset, available), class: "num" },
    { text: amount(asset, reserved), class: "num" },
  ]);
  fillRows(byId("balance-rows"), rows, t("balances.empty"));
}

function actionButton(textKey, onClick, extra = {}) {
  return el("button", { type: "button", class: "small secondary", onclick: onClick, ...extra }, t(textKey));
}

function amendRow(order) {
  const draft = state.amending;
  const input = (name) =>
    el("input", {
      type: "number",
      inputmode: "numeric",
      min: 1,
      name,
      value: draft[name],
      "aria-label": t(`amend.${name}`),
      oninput: (event) => {
        draft[name] = event.target.value;
      },
    });
  const form = el(
    "form",
    { class: "amend-form", dataset: { orderId: order.order_id } },
    el("label", {}, el("span", {}, t("amend.price")), input("price")),
    el("label", {}, el("span", {}, t("amend.quantity")), input("quantity")),
    el("button", { type: "submit", class: "small" }, t("amend.save")),
    actionButton("amend.close", () => {
      state.amending = null;
      renderOrders();
    }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    amend(order);
  });
  return { attributes: { class: "amend-row" }, cells: [{ node: form, colspan: 4 }] };
}

function orderRow(order) {
  const actions = el(
    "div",
    { class: "actions" },
    actionButton("orders.cancel", () => cancel(order), { dataset: { action: "cancel" } }),
    actionButton(
      "orders.amend",
      () => {
        state.amending = { order_id: order.order_id, price: order.price ?? "", quantity: order.quantity };
        renderOrders();
      },
      { dataset: { action: "amend" } },
    ),
  );
  return {
    attributes: { dataset: { orderId: order.order_id } },
    cells: [
      orderLabel(order),
      { text: price(order.price, unitOf(order.symbol)), class: "num" },
      { text: `${number(order.remaining_quantity)}/${number(order.quantity)}`, class: "num" },
      actions,
    ],
  };
}

function renderOrders() {
  const rows = [];
  for (const order of state.orders) {
    rows.push(orderRow(order));
    if (state.amending?.order_id === order.order_id) rows.push(amendRow(order));
  }
  fillRows(byId("open-order-rows"), rows, t("orders.empty"));
}

function renderFills() {
  const rows = state.fills.map((fill) => [
    clock(fill.time),
    orderLabel(fill),
    { text: price(fill.price, unitOf(fill.symbol)), class: "num" },
    { text: number(fill.quantity), class: "num" },
    { text: vnd(fill.fee_vnd), class: "num wide-only" },
  ]);
  fillRows(byId("fill-rows"), rows, t("fills.empty"));
}

async function refresh() {
  if (!state.key) return;
  const key = state.key;
  try {
    const [account, orders, fills] = await Promise.all([
      getJSON("/v1/account", key),
      getJSON("/v1/orders?status=open&limit=200", key),
      getJSON(`/v1/fills?limit=${FILLS_SHOWN}`, key),
    ]);
    if (key !== state.key) return; // signed out meanwhile
    state.balances = account.balances;
    state.orders = orders.orders;
    state.fills = fills.fills;
    if (state.amending && !state.orders.some((o) => o.order_id === state.amending.order_id)) {
      state.amending = null;
    }
    if (state.refreshFailed) say(byId("orders-status"), ""); // the failure is over
    state.refreshFailed = false;
  } catch (error) {
    state.refreshFailed = true;
    say(byId("orders-status"), describeError(error), "error");
    return;
  }
  renderAll();
}

function renderAll() {
  renderBalances();
  const editing = state.amending && document.activeElement?.closest(".amend-form");
  if (!editing) renderOrders(); // never under the fingers of someone typing an amendment
  renderFills();
  validate();
}

// ------------------------------------------------------------------ actions

async function cancel(order) {
  const status = byId("orders-status");
  try {
    await sendJSON("DELETE", `/v1/orders/${encodeURIComponent(order.order_id)}`, undefined, state.key);
    say(status, t("orders.cancelled", { id: order.order_id }), "ok");
  } catch (error) {
    say(status, describeError(error), "error");
  }
  await refresh();
}

async function amend(order) {
  const status = byId("orders-status");
  const { price: newPrice, quantity } = state.amending;
  const body = {};
  if (newPrice !== "" && Number(newPrice) !== order.price) body.price = Number(newPrice);
  if (quantity !== "" && Number(quantity) !== order.quantity) body.quantity = Number(quantity);
  try {
    const answer = await sendJSON("PATCH", `/v1/orders/${encodeURIComponent(order.order_id)}`, body, state.key);
    state.amending = null;
    say(status, t("orders.amended", { id: answer.order_id, status: t(`order_status.${answer.status}`) }), "ok");
  } catch (error) {
    say(status, describeError(error), "error");
  }
  await refresh();
}

function validate() {
  const form = byId("order-form");
  const draft = readDraft(form);
  const instrument = state.instruments.get(draft.symbol);
  byId("order-price-field").hidden = draft.type !== "limit";
  if (!instrument) return null;
  byId("order-price-unit").textContent = `(₫/${instrument.price_unit})`;
  const { problems, hints } = checkDraft(draft, instrument, state.balances);
  fill(
    byId("order-hints"),
    problems.map((text) => el("li", { class: "problem" }, text)),
    hints.map((text) => el("li", {}, text)),
  );
  byId("order-submit").disabled = problems.length > 0;
  return problems.length ? null : draft;
}

async function placeOrder(event) {
  event.preventDefault();
  const status = byId("order-status");
  const draft = validate();
  if (!draft) return;
  const submit = byId("order-submit");
  submit.disabled = true; // one tap, one order
  try {
    const order = await sendJSON("POST", "/v1/orders", { ...draft, client_order_id: clientOrderId() }, state.key);
    const filled = order.filled_quantity ? t("order.filled_part", { filled: number(order.filled_quantity) }) : "";
    say(status, t("order.placed", { id: order.order_id, status: t(`order_status.${order.status}`), filled }), "ok");
  } catch (error) {
    say(status, describeError(error), "error");
  }
  await refresh();
  validate(); // enables the button again
}

async function downloadStatement() {
  const status = byId("statement-status");
  try {
    const blob = await getBlob("/v1/account/statement?format=csv", state.key, "text/csv");
    saveBlob(blob, `hogx-statement-${state.participantId}.csv`);
    say(status, "");
  } catch (error) {
    say(status, describeError(error), "error");
  }
}

// ------------------------------------------------------------------ set-up

function setupOrderForm() {
  const select = byId("order-symbol");
  const options = [...state.instruments.values()].map((instrument) =>
    el("option", { value: instrument.symbol }, `${instrument.symbol} — ${instrument.name}`),
  );
  select.replaceChildren(...options);
  const wanted = new URLSearchParams(location.search).get("symbol");
  if (wanted && state.instruments.has(wanted)) select.value = wanted;
  const priceInput = byId("order-price");
  const suggestPrice = () => {
    const instrument = state.instruments.get(select.value);
    if (instrument) {
      priceInput.value = instrument.reference_price;
      priceInput.step = instrument.tick_size;
    }
  };
  select.addEventListener("change", suggestPrice);
  suggestPrice();
  const form = byId("order-form");
  form.addEventListener("input", validate);
  form.addEventListener("change", validate);
  form.addEventListener("submit", placeOrder);
  validate();
}

function signedIn(key, account) {
  state.key = key;
  state.participantId = account.participant_id;
  state.balances = account.balances;
  byId("trader-area").hidden = false;
  refresh();
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, REFRESH_MS);
}

function signedOut() {
  clearInterval(state.timer);
  Object.assign(state, { key: null, participantId: null, balances: [], orders: [], fills: [], amending: null });
  byId("trader-area").hidden = true;
}

async function start() {
  setupLayout("trader");
  try {
    for (const instrument of await listInstruments()) state.instruments.set(instrument.symbol, instrument);
  } catch (error) {
    say(byId("order-status"), describeError(error), "error");
  }
  setupOrderForm();
  byId("statement-csv").addEventListener("click", downloadStatement);
  onLangChange(renderAll);
  setupSignIn({
    role: "trader",
    probe: (key) => getJSON("/v1/account", key),
    describe: (account) => t("signin.as_trader", { id: account.participant_id }),
    onSignedIn: signedIn,
    onSignedOut: signedOut,
  });
}

start();
