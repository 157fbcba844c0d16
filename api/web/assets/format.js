// Numbers, money and times the way Vietnamese users write them, whatever the page language:
// 60.000 ₫/kg, times in Vietnam (UTC+7, no daylight saving).
import { lang, t } from "./i18n.js";

const integer = new Intl.NumberFormat("vi-VN", { maximumFractionDigits: 0 });
const percent = new Intl.NumberFormat("vi-VN", {
  maximumFractionDigits: 2,
  minimumFractionDigits: 2,
  signDisplay: "exceptZero",
});
const feePercent = new Intl.NumberFormat("vi-VN", { style: "percent", maximumFractionDigits: 3 });
export const VIETNAM_TIME_ZONE = "Asia/Ho_Chi_Minh";

export function number(value) {
  return value === null || value === undefined ? "—" : integer.format(value);
}

/** 6000000 -> "6.000.000 ₫" */
export function vnd(value) {
  return value === null || value === undefined ? "—" : `${integer.format(value)} ₫`;
}

/** 60000, "kg" -> "60.000 ₫/kg" */
export function price(value, unit = "kg") {
  return value === null || value === undefined ? "—" : `${integer.format(value)} ₫/${unit}`;
}

export function signedNumber(value) {
  if (value === null || value === undefined) return "—";
  return value > 0 ? `+${integer.format(value)}` : integer.format(value);
}

/** 0.0123 -> "+1,23 %" */
export function signedPercent(fraction) {
  return fraction === null || fraction === undefined ? "—" : `${percent.format(fraction * 100)}%`;
}

/** Basis points as a percentage: 5 -> "0,05%" */
export function bps(value) {
  return feePercent.format(value / 10_000);
}

function timeFormat(options) {
  return new Intl.DateTimeFormat(lang() === "vi" ? "vi-VN" : "en-GB", {
    timeZone: VIETNAM_TIME_ZONE,
    hour12: false,
    ...options,
  });
}

/** An RFC 3339 time as "14:03:07" in Vietnam time. */
export function clock(iso) {
  if (!iso) return "—";
  return timeFormat({ hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(iso));
}

/** An RFC 3339 time as "22/11/2026, 14:03:07" in Vietnam time. */
export function dateTime(iso) {
  if (!iso) return "—";
  return timeFormat({
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).format(new Date(iso));
}

/** A balance: VND as money, any other asset (an instrument symbol) in lots. */
export function amount(asset, value) {
  return asset === "VND" ? vnd(value) : `${number(value)} ${t("unit.lots")}`;
}
