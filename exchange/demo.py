"""The demo market: live hogs at the Ho Chi Minh City hub and a few OCOP goods, funded
participants, and a seeded flow of orders so the books are not empty.

Everything goes through the real exchange (sequencer, journal, risk, engine): the demo is just
a particular list of commands.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from datetime import date, timedelta

import msgspec

from exchange import commands as c
from exchange.instruments import Instrument, InstrumentKind
from exchange.participants import Role
from exchange.sessions import CircuitBreaker, Timetable
from matching_engine import OrderType, Side, TimeInForce

HCM_HUB = "Ho Chi Minh City"
# Two markets follow a timetable that trades continuously most of the day (00:20-23:40 in
# Vietnam, an opening call from 00:10, a closing call to 23:50) so the demo shows sessions,
# auctions and settlement prices; the other two trade at any hour, so the demo is tradable
# whenever it starts. HOG-G2-HCM also has a circuit breaker.
DEMO_TIMETABLE = Timetable(pre_open="00:10", open="00:20", closing="23:40", close="23:50")
HOG_BREAKER = CircuitBreaker(move_pct=3, window_s=60, cool_off_s=120)


def _certified(days_ago: int) -> str:
    """A certification date that keeps the demo's certificates valid whenever it runs."""
    return (date.today() - timedelta(days=days_ago)).isoformat()


INSTRUMENTS = (
    Instrument(
        symbol="HOG-G1-HCM",
        name="Heo hơi loại 1 - TP.HCM",
        kind=InstrumentKind.LIVE_HOG,
        lot_size=1_000,
        tick_size=100,
        reference_price=60_000,
        price_band_pct=7,
        maker_fee_bps=2,
        taker_fee_bps=5,
        attributes={
            "grade": "1",
            "delivery_hub": HCM_HUB,
            "head_weight_min_kg": 95,
            "head_weight_max_kg": 125,
            "vietgap_required": True,
            "farm_code_required": True,
        },
    ),
    Instrument(
        symbol="HOG-G2-HCM",
        name="Heo hơi loại 2 - TP.HCM",
        kind=InstrumentKind.LIVE_HOG,
        lot_size=1_000,
        tick_size=100,
        reference_price=56_000,
        price_band_pct=7,
        maker_fee_bps=2,
        taker_fee_bps=5,
        attributes={
            "grade": "2",
            "delivery_hub": HCM_HUB,
            "head_weight_min_kg": 80,
            "head_weight_max_kg": 140,
            "vietgap_required": True,
            "farm_code_required": True,
        },
        timetable=DEMO_TIMETABLE,
        circuit_breaker=HOG_BREAKER,
    ),
    Instrument(
        symbol="OCOP-TEA-TN",
        name="Trà xanh Tân Cương Thái Nguyên (OCOP 4 sao)",
        kind=InstrumentKind.OCOP,
        lot_size=10,
        tick_size=1_000,
        reference_price=450_000,
        price_unit="kg",
        attributes={
            "stars": 4,
            "product_group": "drinks",
            "producer": "HTX Chè Tân Cương",
            "producer_type": "cooperative",
            "province": "Thái Nguyên",
            "certificate_number": "OCOP-TN-2024-0117",
            "certification_date": _certified(400),
        },
    ),
    Instrument(
        symbol="OCOP-RICE-ST25",
        name="Gạo ST25 Sóc Trăng (OCOP 5 sao)",
        kind=InstrumentKind.OCOP,
        lot_size=1_000,
        tick_size=100,
        reference_price=32_000,
        price_unit="kg",
        attributes={
            "stars": 5,
            "product_group": "food",
            "producer": "DNTN Hồ Quang Trí",
            "producer_type": "enterprise",
            "province": "Sóc Trăng",
            "certificate_number": "OCOP-ST-2025-0009",
            "certification_date": _certified(200),
        },
        timetable=DEMO_TIMETABLE,
    ),
)


class DemoParticipant(msgspec.Struct, frozen=True):
    name: str
    role: Role
    api_key: str
    cash_vnd: int = 0
    lots: int = 0  # of every instrument, held in custody


def demo_participants(api_keys: dict[str, str] | None = None) -> list[DemoParticipant]:
    """The demo cast; keys are random unless given (tests pass fixed ones)."""
    cast = [
        ("Sở giao dịch hogx (vận hành)", Role.OPERATOR, 0, 0),
        ("Trang trại Hòa Bình (Đồng Nai)", Role.TRADER, 2_000_000_000, 400),
        ("HTX Chăn nuôi Củ Chi", Role.TRADER, 3_000_000_000, 600),
        ("Thương lái Minh Phát", Role.TRADER, 20_000_000_000, 0),
        ("Công ty Thực phẩm Sài Gòn", Role.TRADER, 50_000_000_000, 50),
        ("Sở Công Thương TP.HCM (giám sát)", Role.MONITOR, 0, 0),
        ("Cục Quản lý thị trường (thanh tra)", Role.REGULATOR, 0, 0),
    ]
    keys = api_keys or {}
    return [
        DemoParticipant(name, role, keys.get(name) or new_api_key(), cash, lots)
        for name, role, cash, lots in cast
    ]


def new_api_key() -> str:
    """A random 32-byte API key, URL-safe."""
    return secrets.token_urlsafe(32)


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def setup_commands(participants: list[DemoParticipant], first_id: int = 1) -> list[c.Command]:
    """List the instruments, register and fund the cast.

    The exchange numbers participants in registration order, so the cast gets the ids
    `first_id`, `first_id + 1`, ... (1 on an empty exchange).
    """
    commands: list[c.Command] = [c.ListInstrument(i) for i in INSTRUMENTS]
    for p in participants:
        commands.append(c.RegisterParticipant(p.name, p.role, key_hash(p.api_key)))
    for participant_id, p in enumerate(participants, start=first_id):
        if p.cash_vnd:
            commands.append(c.Deposit(participant_id, "VND", p.cash_vnd))
        if p.lots:
            commands += [c.Deposit(participant_id, i.symbol, p.lots) for i in INSTRUMENTS]
    return commands


def order_flow(
    participants: list[DemoParticipant], seed: int, count: int, first_id: int = 1
) -> list[c.PlaceOrder]:
    """Seeded orders around each reference price: sellers hold goods, buyers hold cash."""
    rng = random.Random(seed)
    numbered = list(enumerate(participants, start=first_id))
    sellers = [i for i, p in numbered if p.lots and p.role is Role.TRADER]
    buyers = [i for i, p in numbered if p.cash_vnd and p.role is Role.TRADER]
    orders = []
    for n in range(count):
        instrument = INSTRUMENTS[rng.randrange(len(INSTRUMENTS))]
        side = Side.SELL if rng.random() < 0.5 else Side.BUY
        ticks = rng.randint(-4, 12) if n >= count // 3 else rng.randint(1, 12)
        offset = ticks * instrument.tick_size
        price = instrument.reference_price + (offset if side is Side.SELL else -offset)
        orders.append(
            c.PlaceOrder(
                participant_id=rng.choice(sellers if side is Side.SELL else buyers),
                symbol=instrument.symbol,
                side=side,
                order_type=OrderType.LIMIT,
                price=price,
                quantity=rng.randint(1, 8),
                time_in_force=TimeInForce.GTC,
            )
        )
    return orders
