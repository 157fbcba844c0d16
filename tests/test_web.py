"""The web pages, end to end in headless Chromium: what a farmer, a monitor and a regulator see.

Debian's `chromium` driven by Playwright (`executable_path`, never a downloaded browser) against
a real `hogx serve` child process. Under `CI=true` these tests must run (`.ci/run`
installs chromium); elsewhere they skip when chromium is missing. Playwright and Pillow come
with the `dev` extra.

The test instrument WEB-HOG: lots of 100 kg, tick 100 VND, reference 60,000 VND/kg with a
10 % band (54,000..66,000), fees maker 2 bps / taker 5 bps. Setting up, a seller and a buyer
trade it twice (2 lots at 60,000, then 2 at 60,400), so its chart has a rising candle and the
regulator has trades to find, and leave orders resting at 58,500..59,000 and 62,000..62,500,
outside every test's prices. Screenshots of every page, at 360 px and 1280 px, go to
`test-artifacts/web/`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import REPO, Server, start_server
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "web"
SYMBOL = "WEB-HOG"
OTHER_SYMBOL = "WEB-HOG2"  # listed, never traded
LOT_SIZE = 100
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 900}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
LOCAL_SCHEMES = {"data", "blob", "about"}
RESTING: list[tuple[str, Callable[[Venue], str], int, int]] = [
    ("sell", lambda v: v.seller_key, 62_500, 5),
    ("sell", lambda v: v.seller_key, 62_000, 3),
    ("buy", lambda v: v.buyer_key, 59_000, 4),
    ("buy", lambda v: v.buyer_key, 58_500, 2),
]
UP_RGB = (0x16, 0xA3, 0x4A)  # the chart's rising candles (api/web/assets/chart.js)

expect.set_options(timeout=10_000)


# ---------------------------------------------------------------------- the market


@dataclass
class Venue:
    server: Server
    seller_key: str
    buyer_key: str
    buyer_id: int
    regulator_key: str
    trade_ids: list[str]
    buy_order_ids: list[str]

    def http(self, key: str | None = None) -> httpx.Client:
        return self.server.client(key)


def _register(operator: httpx.Client, name: str, role: str) -> tuple[int, str]:
    answer = operator.post("/v1/admin/participants", json={"name": name, "role": role})
    assert answer.status_code == 201, answer.text
    return answer.json()["participant_id"], answer.json()["api_key"]


def _deposit(operator: httpx.Client, participant_id: int, asset: str, amount: int) -> None:
    answer = operator.post(
        "/v1/admin/deposits",
        json={"participant_id": participant_id, "asset": asset, "amount": amount},
    )
    assert answer.status_code == 201, answer.text


def _order(key: str, server: Server, side: str, price: int, quantity: int) -> dict[str, Any]:
    with server.client(key) as http:
        answer = http.post(
            "/v1/orders",
            json={"symbol": SYMBOL, "side": side, "type": "limit", "price": price,
                  "quantity": quantity},
        )  # fmt: skip
    assert answer.status_code == 201, answer.text
    order: dict[str, Any] = answer.json()
    return order


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    server = start_server(tmp_path_factory.mktemp("web") / "data")
    try:
        with server.client(server.operator_key) as operator:
            listed = operator.post(
                "/v1/admin/instruments",
                json={"symbol": SYMBOL, "name": "Heo hơi thử nghiệm", "kind": "live_hog",
                      "price_unit": "kg", "lot_size": LOT_SIZE, "tick_size": 100,
                      "reference_price": 60_000, "price_band_pct": 10, "maker_fee_bps": 2,
                      "taker_fee_bps": 5,
                      "attributes": {"grade": "1", "delivery_hub": "Ho Chi Minh City"}},
            )  # fmt: skip
            assert listed.status_code == 201, listed.text
            listed = operator.post(
                "/v1/admin/instruments",
                json={"symbol": OTHER_SYMBOL, "name": "Heo hơi loại 2 thử nghiệm",
                      "kind": "live_hog", "price_unit": "kg", "lot_size": LOT_SIZE,
                      "tick_size": 100, "reference_price": 56_000, "price_band_pct": 7,
                      "attributes": {"grade": "2", "delivery_hub": "Ho Chi Minh City"}},
            )  # fmt: skip
            assert listed.status_code == 201, listed.text
            seller_id, seller_key = _register(operator, "Trang trại Web", "trader")
            buyer_id, buyer_key = _register(operator, "Thương lái Web", "trader")
            _, regulator_key = _register(operator, "Thanh tra Web", "regulator")
            _deposit(operator, seller_id, SYMBOL, 50)
            _deposit(operator, buyer_id, "VND", 200_000_000)
        venue = Venue(server, seller_key, buyer_key, buyer_id, regulator_key, [], [])
        for price in (60_000, 60_400):
            _order(seller_key, server, "sell", price, 2)
            bought = _order(buyer_key, server, "buy", price, 2)
            assert bought["status"] == "filled", bought
            venue.trade_ids.append(bought["trades"][0]["trade_id"])
            venue.buy_order_ids.append(bought["order_id"])
        for side, key, price, quantity in RESTING:  # a book to look at, out of everyone's way
            _order(key(venue), server, side, price, quantity)
        yield venue
    finally:
        assert server.stop(), "the server did not shut down cleanly"


# ---------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Traffic:
    """Every URL the pages asked for, and every script error or CSP complaint they raised."""

    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("websocket", lambda websocket: self.urls.append(websocket.url))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # Failed API answers (a 401 for a wrong key, the alerts route absent) are expected;
        # script errors and Content-Security-Policy violations are not.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(f"console: {message.text}")

    def foreign(self) -> list[str]:
        def is_local(url: str) -> bool:
            parts = urlsplit(url)
            return parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS

        return [url for url in self.urls if not is_local(url)]


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser, venue: Venue) -> Iterator[OpenPage]:
    """New pages, each in a fresh context (its own sessionStorage); checked when the test ends:
    no request left this machine and no script failed."""
    traffic = Traffic()
    contexts = []

    def open_(path: str, viewport: dict[str, int] | None = None, lang: str = "vi") -> Page:
        context = browser.new_context(
            viewport=viewport or DESKTOP,
            accept_downloads=True,
            locale="vi-VN",  # a farmer's phone
            timezone_id="Asia/Ho_Chi_Minh",
        )
        if lang != "vi":
            context.add_init_script(f"localStorage.setItem('hogx.lang', '{lang}')")
        contexts.append(context)
        page = context.new_page()
        traffic.watch(page)
        page.goto(venue.server.url + path)
        return page

    try:
        yield open_
    finally:
        for context in contexts:
            context.close()
    assert traffic.foreign() == [], "a page made a request that left this machine"
    assert traffic.errors == [], "a page raised script errors or CSP violations"


def sign_in(page: Page, key: str) -> None:
    page.fill("#signin-key", key)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signed-in")).to_be_visible()


def sign_out(page: Page) -> None:
    page.click("#signout")
    expect(page.locator("#signin-form")).to_be_visible()


def place_from_trader_page(page: Page, side: str, price: int, quantity: int) -> None:
    page.select_option("#order-symbol", SYMBOL)
    page.check(f"input[name=side][value={side}]")
    page.select_option("#order-type", "limit")
    page.fill("#order-price", str(price))
    page.fill("#order-quantity", str(quantity))
    expect(page.locator("#order-submit")).to_be_enabled()
    page.click("#order-submit")
    expect(page.locator("#order-status")).to_contain_text("Đã nhận lệnh")


def open_orders(venue: Venue, key: str) -> list[dict[str, Any]]:
    with venue.http(key) as http:
        orders: list[dict[str, Any]] = http.get(
            "/v1/orders", params={"symbol": SYMBOL, "status": "open"}
        ).json()["orders"]
    return orders


# ---------------------------------------------------------------------- screenshots


def screenshot(page: Page, name: str, expected: list[str]) -> Path:
    """Save a full-page screenshot and check it for obvious breakage: the expected text is on
    the page, and the image is neither blank nor one flat colour."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    text = page.inner_text("body")
    for wanted in expected:
        assert wanted in text, f"{name}: {wanted!r} is not on the page"
    with Image.open(path) as image:
        width, height = image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert height >= 300, f"{name}: the page is only {height} px high"
    distinct = len(colours) if colours is not None else 1 << 20
    assert distinct > 50, f"{name}: only {distinct} colours, the page looks blank"
    background_share = max(count for count, _ in colours) / (width * height) if colours else 0
    assert background_share < 0.97, f"{name}: {background_share:.0%} of it is one colour"
    return path


# ---------------------------------------------------------------------- the tests


def test_root_leads_to_the_overview_with_every_instrument(
    open_page: OpenPage, venue: Venue
) -> None:
    page = open_page("/")
    assert page.url.endswith("/web/")
    with venue.http() as http:
        symbols = [i["symbol"] for i in http.get("/v1/instruments").json()["instruments"]]
    for symbol in symbols:
        expect(page.locator(f'#overview-rows tr[data-symbol="{symbol}"]')).to_be_visible()
    row = page.locator(f'#overview-rows tr[data-symbol="{SYMBOL}"]')
    expect(row.locator(".last-price")).to_have_text("60.400 ₫/kg")  # Vietnamese grouping
    expect(row.locator(".volume")).to_have_text("4 lô")


def test_overview_updates_live_without_reload(open_page: OpenPage, venue: Venue) -> None:
    page = open_page("/web/")
    row = page.locator(f'#overview-rows tr[data-symbol="{SYMBOL}"]')
    expect(row.locator(".last-price")).to_contain_text("₫/kg")
    expect(page.locator("#feed-status")).to_have_attribute("data-state", "live")
    before = row.locator(".last-price").inner_text()
    price = 60_100 if before != "60.100 ₫/kg" else 60_200
    _order(venue.seller_key, venue.server, "sell", price, 1)
    _order(venue.buyer_key, venue.server, "buy", price, 1)
    expect(row.locator(".last-price")).to_have_text(f"{price:,} ₫/kg".replace(",", "."))


def test_order_from_the_trader_page_reaches_book_and_tape_without_reload(
    open_page: OpenPage, venue: Venue
) -> None:
    market = open_page(f"/web/instrument?symbol={SYMBOL}")
    expect(market.locator("#instrument-symbol")).to_have_text(SYMBOL)
    expect(market.locator("#trade-link")).to_have_attribute("href", f"/web/trader?symbol={SYMBOL}")
    expect(market.locator("#feed-status")).to_have_attribute("data-state", "live")
    trader = open_page(f"/web/trader?symbol={SYMBOL}")
    sign_in(trader, venue.seller_key)

    place_from_trader_page(trader, "sell", 61_500, 3)
    level = market.locator('#ladder-asks tr[data-price="61500"]')
    expect(level).to_contain_text("61.500 ₫/kg")
    expect(level.locator("td").nth(1)).to_have_text("3")
    (order,) = [o for o in open_orders(venue, venue.seller_key) if o["price"] == 61_500]
    expect(
        trader.locator(f'#open-order-rows tr[data-order-id="{order["order_id"]}"]')
    ).to_be_visible()

    sign_out(trader)
    sign_in(trader, venue.buyer_key)
    place_from_trader_page(trader, "buy", 61_500, 3)
    expect(level).to_have_count(0)  # the level is gone from the ladder
    with venue.http() as http:
        newest = http.get(f"/v1/markets/{SYMBOL}/trades", params={"limit": 1}).json()["trades"][0]
    assert (newest["price"], newest["quantity"]) == (61_500, 3)
    tape_row = market.locator(f'#tape-rows tr[data-trade-id="{newest["trade_id"]}"]')
    expect(tape_row).to_contain_text("61.500 ₫/kg")
    expect(tape_row.locator("td").nth(2)).to_have_text("3")
    expect(trader.locator("#fill-rows")).to_contain_text("61.500 ₫/kg")


def test_order_form_hints_at_tick_band_and_funds(open_page: OpenPage, venue: Venue) -> None:
    page = open_page(f"/web/trader?symbol={SYMBOL}")
    sign_in(page, venue.buyer_key)
    page.select_option("#order-symbol", SYMBOL)
    page.check("input[name=side][value=buy]")
    hints = page.locator("#order-hints .problem")
    page.fill("#order-quantity", "1")
    page.fill("#order-price", "60050")
    expect(hints).to_contain_text("bội số của bước giá 100 ₫/kg")
    expect(page.locator("#order-submit")).to_be_disabled()
    page.fill("#order-price", "70000")
    expect(hints).to_contain_text("54.000 ₫/kg – 66.000 ₫/kg")
    page.fill("#order-price", "60000")
    page.fill("#order-quantity", "500")
    expect(hints).to_contain_text("Cần giữ")
    page.fill("#order-quantity", "1")
    expect(hints).to_have_count(0)
    expect(page.locator("#order-hints")).to_contain_text("6.003.000 ₫")  # notional + 5 bps fee
    expect(page.locator("#order-submit")).to_be_enabled()


def test_trader_page_amends_and_cancels_an_open_order(open_page: OpenPage, venue: Venue) -> None:
    page = open_page(f"/web/trader?symbol={SYMBOL}")
    sign_in(page, venue.seller_key)
    place_from_trader_page(page, "sell", 65_000, 4)
    (order,) = [o for o in open_orders(venue, venue.seller_key) if o["price"] == 65_000]
    row = page.locator(f'#open-order-rows tr[data-order-id="{order["order_id"]}"]')
    expect(row).to_contain_text("4/4")

    row.locator("button[data-action=amend]").click()
    amend = page.locator(f'form.amend-form[data-order-id="{order["order_id"]}"]')
    amend.locator("input[name=quantity]").fill("2")
    amend.locator("button[type=submit]").click()
    expect(row).to_contain_text("2/2")

    row.locator("button[data-action=cancel]").click()
    expect(row).to_have_count(0)
    expect(page.locator("#orders-status")).to_contain_text(f"Đã hủy lệnh #{order['order_id']}")
    assert all(o["order_id"] != order["order_id"] for o in open_orders(venue, venue.seller_key))


def test_trader_downloads_the_statement_as_csv(open_page: OpenPage, venue: Venue) -> None:
    page = open_page("/web/trader")
    sign_in(page, venue.buyer_key)
    expect(page.locator("#balance-rows")).to_contain_text("₫")
    with page.expect_download() as download:
        page.click("#statement-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert download.value.suggested_filename.endswith(".csv")
    assert any(r["asset"] == "VND" and r["available_change"] == "200000000" for r in rows)
    assert any(r["asset"] == SYMBOL for r in rows)  # the goods it bought


def test_candle_chart_draws_candles_and_volume(open_page: OpenPage, venue: Venue) -> None:
    page = open_page(f"/web/instrument?symbol={SYMBOL}")
    page.wait_for_function(
        """([r, g, b]) => [...document.querySelectorAll('#chart canvas')].some((canvas) => {
             if (!canvas.width || !canvas.height) return false;
             const context = canvas.getContext('2d');
             const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
             let rising = 0;
             for (let i = 0; i < data.length; i += 4) {
               if (Math.abs(data[i] - r) < 12 && Math.abs(data[i + 1] - g) < 12
                   && Math.abs(data[i + 2] - b) < 12 && data[i + 3] > 200) rising += 1;
             }
             return rising > 200;
           })""",
        arg=list(UP_RGB),
    )
    page.click("#chart-intervals button[data-interval='5m']")
    expect(page.locator("#chart-intervals button[data-interval='5m']")).to_have_attribute(
        "aria-pressed", "true"
    )
    screenshot(page, "chart-1280", ["Biểu đồ giá", SYMBOL])


def test_regulator_finds_the_trade_its_orders_and_exports_csv(
    open_page: OpenPage, venue: Venue
) -> None:
    page = open_page("/web/regulator")
    sign_in(page, venue.regulator_key)
    expect(page.locator("#verify-status")).to_contain_text("Nhật ký nguyên vẹn")
    page.select_option("#search-symbol", SYMBOL)
    page.click("#search-run")
    trade_id = venue.trade_ids[0]
    row = page.locator(f'#audit-trade-rows tr[data-trade-id="{trade_id}"]')
    expect(row).to_contain_text("60.000 ₫/kg")
    expect(page.locator("#alert-rows tr")).not_to_have_count(0)  # alerts, or "no alerts"

    row.locator(f'button[data-order-id="{venue.buy_order_ids[0]}"]').click()
    lifecycle = page.locator("#lifecycle-rows")
    expect(lifecycle.locator('tr[data-kind="fill"]')).to_have_count(1)
    expect(lifecycle).to_contain_text("Khớp lệnh")
    expect(page.locator("#lifecycle-summary")).to_contain_text("đã khớp hết")

    with page.expect_download() as download:
        page.click("#search-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows and {r["symbol"] for r in rows} == {SYMBOL}
    (first,) = [r for r in rows if r["trade_id"] == trade_id]
    assert (first["price"], first["quantity"], first["buy_order_id"]) == (
        "60000",
        "2",
        venue.buy_order_ids[0],
    )
    assert first["notional_vnd"] == str(60_000 * 2 * LOT_SIZE)


def test_regulator_filters_trades_by_participant_and_time(
    open_page: OpenPage, venue: Venue
) -> None:
    page = open_page("/web/regulator")
    sign_in(page, venue.regulator_key)
    page.fill("#search-participant", str(venue.buyer_id))
    page.click("#search-run")
    rows = page.locator("#audit-trade-rows tr[data-trade-id]")
    expect(rows.first).to_contain_text(f"TV {venue.buyer_id}")
    with venue.http(venue.regulator_key) as http:
        everything = http.get("/v1/audit/trades", params={"participant_id": venue.buyer_id})
    expect(rows).to_have_count(len(everything.json()["trades"]))
    page.fill("#search-participant", "999999")
    page.click("#search-run")
    expect(page.locator("#audit-trade-rows")).to_have_text("Không có giao dịch phù hợp")
    page.fill("#search-participant", "")
    page.fill("#search-start", "2099-01-01T00:00:00")  # Vietnam time, read as +07:00
    page.click("#search-run")
    expect(page.locator("#audit-trade-rows")).to_have_text("Không có giao dịch phù hợp")
    page.fill("#search-start", "2000-01-01T00:00:00")
    page.click("#search-run")
    expect(rows).not_to_have_count(0)


ALERT = {
    "alert_id": "7",
    "kind": "wash_trade",
    "symbol": SYMBOL,
    "sequence": 12,
    "time": "2026-11-22T02:00:00Z",
    "participant_ids": [2, 3],
    "order_ids": ["1", "2"],
    "trade_ids": ["1"],
    "message": "<b>participants 2 and 3</b> traded back and forth",
    "details": {"round_trips": 3},
}


def test_regulator_page_shows_alerts_and_says_when_there_are_none(
    open_page: OpenPage, venue: Venue
) -> None:
    page = open_page("/web/regulator")
    answers = iter(
        [
            {"status": 404, "json": {"error": {"code": "NOT_FOUND", "message": "no route"}}},
            {"status": 200, "json": {"alerts": [ALERT], "next_cursor": None}},
        ]
    )
    page.route("**/v1/audit/alerts*", lambda route: route.fulfill(**next(answers)))
    sign_in(page, venue.regulator_key)
    expect(page.locator("#alerts-status")).to_have_text(
        "Chức năng cảnh báo giám sát chưa có trên máy chủ này."
    )
    expect(page.locator("#alert-rows")).to_have_text("Không có cảnh báo")

    page.click("#alerts-run")
    row = page.locator('#alert-rows tr[data-alert-id="7"]')
    expect(row).to_contain_text("Giao dịch giả · WEB-HOG")
    expect(row).to_contain_text("<b>participants 2 and 3</b>")  # shown as text, never as HTML
    assert row.locator("b").count() == 0
    row.locator('button[data-order-id="2"]').click()
    expect(page.locator("#lifecycle-summary")).to_contain_text("#2")


def test_regulator_page_refuses_a_trader_key(open_page: OpenPage, venue: Venue) -> None:
    page = open_page("/web/regulator")
    page.fill("#signin-key", venue.buyer_key)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-status")).to_have_text("Khóa này không có quyền dùng trang này.")
    expect(page.locator("#regulator-area")).to_be_hidden()


def test_language_switch_is_remembered(open_page: OpenPage, venue: Venue) -> None:
    page = open_page("/web/")
    assert page.locator("html").get_attribute("lang") == "vi"
    expect(page.locator("h1")).to_have_text("Tổng quan thị trường")
    page.click("#lang-switch")
    expect(page.locator("h1")).to_have_text("Market overview")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.title().startswith("Market overview")
    expect(page.locator("#overview-rows")).to_contain_text("lots")
    page.reload()
    expect(page.locator("h1")).to_have_text("Market overview")
    page.click("a[href='/web/trader']")
    expect(page.locator("h1")).to_have_text("Trading")
    expect(page.locator("#signin-form label")).to_have_text("Your API key")
    page.click("#lang-switch")
    expect(page.locator("h1")).to_have_text("Giao dịch")
    expect(page.locator("#signin-form label")).to_have_text("Khóa API của bạn")
    # Money stays written the Vietnamese way in English too.
    page.goto(f"{venue.server.url}/web/instrument?symbol={SYMBOL}")
    page.click("#lang-switch")
    expect(page.locator("#instrument-details")).to_contain_text("Tick size")
    expect(page.locator("#instrument-details")).to_contain_text("100 ₫/kg")
    expect(page.locator("#ladder-spread")).to_contain_text("Spread")
    screenshot(page, "instrument-en-1280", ["Order book", "Recent trades", "60.400 ₫/kg"])


PAGES = [
    ("overview", "/web/", None, ["Tổng quan thị trường", SYMBOL, "₫/kg"]),
    ("instrument", f"/web/instrument?symbol={SYMBOL}", None, ["Sổ lệnh", "Giao dịch gần đây"]),
    ("trader", "/web/trader", "seller_key", ["Số dư", "Đặt lệnh", "Lệnh đang chờ"]),
    ("regulator", "/web/regulator", "regulator_key", ["Tra cứu giao dịch", "Vòng đời lệnh"]),
]


@pytest.mark.parametrize(("name", "path", "key", "expected"), PAGES, ids=[p[0] for p in PAGES])
def test_every_page_fits_a_360px_phone_and_a_desktop(
    open_page: OpenPage, venue: Venue, name: str, path: str, key: str | None, expected: list[str]
) -> None:
    page = open_page(path, viewport=PHONE)
    if key is not None:
        sign_in(page, getattr(venue, key))
    expect(page.locator("#site-header")).to_contain_text("hogx")
    if name == "instrument":
        expect(page.locator("#ladder-spread")).to_contain_text("Chênh lệch")
        expect(page.locator("#tape-rows tr").first).to_contain_text("₫/kg")
    if name == "regulator":
        expect(page.locator("#audit-trade-rows tr").first).to_contain_text(SYMBOL)
    if name == "trader":
        expect(page.locator("#balance-rows")).to_contain_text("lô")
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        page.wait_for_function(f"window.innerWidth === {viewport['width']}")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= viewport["width"], f"{name} scrolls sideways at {viewport}"
        cramped = page.evaluate(
            "[...document.querySelectorAll('.table-wrap')]"
            ".filter((wrap) => wrap.scrollWidth > wrap.clientWidth).map((wrap) => wrap.id"
            " || wrap.querySelector('table')?.id)"
        )
        assert cramped == [], f"{name}: tables scroll sideways at {viewport}: {cramped}"
        screenshot(page, f"{name}-{viewport['width']}", expected)


def test_pages_carry_a_strict_content_security_policy(venue: Venue) -> None:
    with venue.http() as http:
        for path in ("/web/", "/web/trader", "/web/assets/overview.js"):
            policy = http.get(path).headers["content-security-policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert http.get("/web/nothing-here").status_code == 404
        assert http.get("/healthz").json() == {"status": "ok"}
        paths = http.get("/openapi.json").json()["paths"]
        assert not [p for p in paths if p == "/" or p.startswith("/web")]


def test_vendored_chart_library_keeps_its_licence() -> None:
    vendor = REPO / "api" / "web" / "assets" / "vendor" / "lightweight-charts"
    assert "Apache License" in (vendor / "LICENSE").read_text()
    script = (vendor / "lightweight-charts.standalone.production.js").read_text()
    assert re.search(r"Lightweight Charts™ v4\.\d+\.\d+", script)
