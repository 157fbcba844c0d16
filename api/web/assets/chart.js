// The candlestick chart with volume, drawn by TradingView's lightweight-charts (vendored, a
// classic script that defines window.LightweightCharts). Times are shifted to Vietnam time
// because the library labels its axis in UTC.
import { el } from "./dom.js";
import { number } from "./format.js";

const VIETNAM_OFFSET_S = 7 * 3600;
const UP = "#16a34a";
const DOWN = "#dc2626";

const chartTime = (iso) => Math.floor(Date.parse(iso) / 1000) + VIETNAM_OFFSET_S;

function bar(candle) {
  return {
    time: chartTime(candle.time),
    open: candle.open,
    high: candle.high,
    low: candle.low,
    close: candle.close,
  };
}

function volumeBar(candle) {
  return {
    time: chartTime(candle.time),
    value: candle.volume,
    color: candle.close >= candle.open ? `${UP}88` : `${DOWN}88`,
  };
}

export class CandleChart {
  constructor(container) {
    const { createChart, CrosshairMode } = window.LightweightCharts;
    this.chart = createChart(container, {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#1f2937", attributionLogo: false },
      grid: { vertLines: { color: "#eef2f7" }, horzLines: { color: "#eef2f7" } },
      crosshair: { mode: CrosshairMode.Normal },
      localization: { priceFormatter: (value) => number(Math.round(value)) },
      timeScale: { timeVisible: true, secondsVisible: false },
      rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.28 } },
    });
    this.candles = this.chart.addCandlestickSeries({
      upColor: UP,
      downColor: DOWN,
      borderUpColor: UP,
      borderDownColor: DOWN,
      wickUpColor: UP,
      wickDownColor: DOWN,
      priceFormat: { type: "price", precision: 0, minMove: 1 },
    });
    this.volume = this.chart.addHistogramSeries({
      priceScaleId: "volume",
      priceFormat: { type: "volume" },
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
  }

  /** Replace everything with `candles` (REST, oldest first). */
  setCandles(candles) {
    this.candles.setData(candles.map(bar));
    this.volume.setData(candles.map(volumeBar));
    this.chart.timeScale().fitContent();
  }

  /** The candle being built (from the feed): updates the last bar or starts a new one. */
  update(candle) {
    try {
      this.candles.update(bar(candle));
      this.volume.update(volumeBar(candle));
    } catch {
      // older than the last bar shown (the REST load was newer): nothing to draw
    }
  }
}

/** The interval buttons; `choose(interval)` is called with the one pressed. */
export function intervalButtons(container, intervals, current, choose) {
  const buttons = intervals.map((interval) =>
    el("button", { type: "button", dataset: { interval }, "aria-pressed": interval === current }, interval),
  );
  for (const button of buttons) {
    button.addEventListener("click", () => {
      for (const other of buttons) other.setAttribute("aria-pressed", String(other === button));
      choose(button.dataset.interval);
    });
  }
  container.replaceChildren(...buttons);
}
