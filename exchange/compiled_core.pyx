# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled twin of the trading path of `exchange/core.py`: placing, cancelling and amending
orders, their holds, and settling the trades they make.

`core.py` is the readable statement of these rules and the fallback when this extension was not
built; `HOGX_PURE_PYTHON_CORE=1` forces it. `CompiledTradingPath` is the first base of the
compiled core (`exchange.core.CompiledExchangeCore`, which inherits everything else from
`ExchangeCore`): its methods replace the Python methods of the same names, line for line, and
must stay identical in behaviour. `tests/test_core_twins.py` holds them to that: the same events
for every command and the same state digest.

What makes it faster, never different: the state the hot path touches is in C fields of this
class, its methods call each other as C functions (no Python frames), constants are C statics,
and the fields of commands, trades, order records and markets are read (and an order record's
written) straight in their slots (`matching_engine/struct_slots.pxd`). The objects themselves
(records, events, holds) are the same Python objects as with `core.py`, so the rest of the core
and every reader work unchanged.
"""

cimport cython

from clearing.compiled_clearing cimport Risk
from matching_engine.struct_slots cimport get_field, set_field, slot_offset
# The compiled book's commands as C calls, for an exact compiled book only. This module is built
# against compiled_book.pxd: a change there needs both rebuilt, as setup.py does (the .pxd says
# what is, and is not, checked at import).
from matching_engine.compiled_book cimport OrderBook as CompiledBook

from collections import deque

from clearing import compiled_clearing as _compiled_clearing
from matching_engine import compiled_book as _compiled_book

from clearing.accounts import CASH as _CASH
from clearing.risk import FeeSchedule, Settlement
from exchange.commands import AmendOrder, CancelOrder, PlaceOrder
from exchange.delivery import UNTRACED, Lineage
from exchange.events import (
    CommandRejected,
    DuplicateClientOrderId,
    FundsHeld,
    FundsReleased,
    OrderRegistered,
)
from exchange.orders import Fill, Liquidity, OrderRecord, OrderStatus
from exchange.participants import Participant, Role
from exchange.sessions import NS_PER_SECOND, MarketSession, Session
from exchange.settlement import TradeBucket, TradeWindow
from matching_engine import (
    AmendRejected,
    BookLevelChanged,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    OrderRequest,
    OrderType,
    Side,
    TimeInForce,
    Trade,
)
from matching_engine.book import reject_message
from matching_engine.engine import MatchingEngine
from matching_engine.ids import IdCounters
from matching_engine.enums import RejectCode

# C statics: read without a dictionary lookup.
cdef object CASH = _CASH
cdef object BUY = Side.BUY
cdef object MARKET = OrderType.MARKET
cdef object MAKER = Liquidity.MAKER
cdef object TAKER = Liquidity.TAKER
cdef object TRADER = Role.TRADER
cdef object NEW = OrderStatus.NEW
cdef object PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
cdef object FILLED = OrderStatus.FILLED
cdef object CANCELLED = OrderStatus.CANCELLED
cdef object EXPIRED = OrderStatus.EXPIRED
cdef object CONTINUOUS = Session.CONTINUOUS
cdef object CLOSED = Session.CLOSED
cdef object IOC = TimeInForce.IOC
cdef object FOK = TimeInForce.FOK
cdef tuple _IMMEDIATE = (IOC, FOK)
cdef object NOT_ALLOWED_IN_CALL = RejectCode.NOT_ALLOWED_IN_CALL
cdef object INVALID_AMEND = RejectCode.INVALID_AMEND
cdef object _PlaceOrder = PlaceOrder
cdef object _CancelOrder = CancelOrder
cdef object _AmendOrder = AmendOrder
cdef object _BookLevelChanged = BookLevelChanged
cdef object _Trade = Trade
cdef object _OrderCancelled = OrderCancelled
cdef object _OrderExpired = OrderExpired
cdef object _OrderAmended = OrderAmended
cdef object _OrderRejected = OrderRejected
cdef object _AmendRejected = AmendRejected
cdef object _OrderRecord = OrderRecord
cdef object _Participant = Participant
cdef object _Settlement = Settlement
cdef object _MarketSession = MarketSession
cdef object _OrderRequest = OrderRequest
cdef object _Fill = Fill
cdef object _OrderRegistered = OrderRegistered
cdef object _FundsHeld = FundsHeld
cdef object _FundsReleased = FundsReleased
cdef object _reject_message = reject_message
cdef object _deque = deque
cdef object _Lineage = Lineage
cdef object _UNTRACED = UNTRACED
cdef object _TradeWindow = TradeWindow
cdef object _TradeBucket = TradeBucket
cdef object _NS_PER_SECOND = NS_PER_SECOND
cdef object _FeeSchedule = FeeSchedule
cdef object _MatchingEngine = MatchingEngine
cdef object _IdCounters = IdCounters
# The cancel reasons' values, each looked up once (an enum's `.value` is a Python property).
cdef dict REASON_VALUE = {}

for _struct in (OrderRecord, TradeBucket):
    if _struct.__struct_config__.gc or _struct.__struct_config__.frozen:
        raise ImportError(f"{_struct.__name__} is written in place: it must be gc=False, mutable")

# Slots read (and, for the order record, written) in place.
cdef Py_ssize_t PLACE_PARTICIPANT_ID = slot_offset(PlaceOrder, "participant_id")
cdef Py_ssize_t PLACE_CLIENT_ORDER_ID = slot_offset(PlaceOrder, "client_order_id")
cdef Py_ssize_t PLACE_SYMBOL = slot_offset(PlaceOrder, "symbol")
cdef Py_ssize_t PLACE_SIDE = slot_offset(PlaceOrder, "side")
cdef Py_ssize_t PLACE_PRICE = slot_offset(PlaceOrder, "price")
cdef Py_ssize_t PLACE_QUANTITY = slot_offset(PlaceOrder, "quantity")
cdef Py_ssize_t PLACE_ORDER_TYPE = slot_offset(PlaceOrder, "order_type")
cdef Py_ssize_t PLACE_TIME_IN_FORCE = slot_offset(PlaceOrder, "time_in_force")
cdef Py_ssize_t PLACE_POST_ONLY = slot_offset(PlaceOrder, "post_only")
cdef Py_ssize_t PLACE_ALL_OR_NONE = slot_offset(PlaceOrder, "all_or_none")
cdef Py_ssize_t CANCEL_PARTICIPANT_ID = slot_offset(CancelOrder, "participant_id")
cdef Py_ssize_t CANCEL_ORDER_ID = slot_offset(CancelOrder, "order_id")
cdef Py_ssize_t AMEND_PARTICIPANT_ID = slot_offset(AmendOrder, "participant_id")
cdef Py_ssize_t AMEND_ORDER_ID = slot_offset(AmendOrder, "order_id")
cdef Py_ssize_t AMEND_PRICE = slot_offset(AmendOrder, "price")
cdef Py_ssize_t AMEND_QUANTITY = slot_offset(AmendOrder, "quantity")
cdef Py_ssize_t TRADE_SYMBOL = slot_offset(Trade, "symbol")
cdef Py_ssize_t TRADE_ID = slot_offset(Trade, "trade_id")
cdef Py_ssize_t TRADE_PRICE = slot_offset(Trade, "price")
cdef Py_ssize_t TRADE_QUANTITY = slot_offset(Trade, "quantity")
cdef Py_ssize_t TRADE_AGGRESSOR_SIDE = slot_offset(Trade, "aggressor_side")
cdef Py_ssize_t TRADE_MAKER_ORDER_ID = slot_offset(Trade, "maker_order_id")
cdef Py_ssize_t TRADE_TAKER_ORDER_ID = slot_offset(Trade, "taker_order_id")
cdef Py_ssize_t TRADE_MAKER_REMAINING = slot_offset(Trade, "maker_remaining")
cdef Py_ssize_t TRADE_TAKER_REMAINING = slot_offset(Trade, "taker_remaining")
cdef Py_ssize_t CANCELLED_ORDER_ID = slot_offset(OrderCancelled, "order_id")
cdef Py_ssize_t CANCELLED_REASON = slot_offset(OrderCancelled, "reason")
cdef Py_ssize_t EXPIRED_ORDER_ID = slot_offset(OrderExpired, "order_id")
cdef Py_ssize_t AMENDED_ORDER_ID = slot_offset(OrderAmended, "order_id")
cdef Py_ssize_t AMENDED_PRICE = slot_offset(OrderAmended, "price")
cdef Py_ssize_t AMENDED_QUANTITY = slot_offset(OrderAmended, "quantity")
cdef Py_ssize_t RECORD_ORDER_ID = slot_offset(OrderRecord, "order_id")
cdef Py_ssize_t RECORD_PARTICIPANT_ID = slot_offset(OrderRecord, "participant_id")
cdef Py_ssize_t RECORD_SYMBOL = slot_offset(OrderRecord, "symbol")
cdef Py_ssize_t RECORD_SIDE = slot_offset(OrderRecord, "side")
cdef Py_ssize_t RECORD_ORDER_TYPE = slot_offset(OrderRecord, "order_type")
cdef Py_ssize_t RECORD_PRICE = slot_offset(OrderRecord, "price")
cdef Py_ssize_t RECORD_QUANTITY = slot_offset(OrderRecord, "quantity")
cdef Py_ssize_t RECORD_STATUS = slot_offset(OrderRecord, "status")
cdef Py_ssize_t RECORD_FILLED_QUANTITY = slot_offset(OrderRecord, "filled_quantity")
cdef Py_ssize_t RECORD_CANCEL_REASON = slot_offset(OrderRecord, "cancel_reason")
cdef Py_ssize_t RECORD_UPDATED_SEQUENCE = slot_offset(OrderRecord, "updated_sequence")
cdef Py_ssize_t RECORD_FILLS = slot_offset(OrderRecord, "fills")
cdef Py_ssize_t PARTICIPANT_ROLE = slot_offset(Participant, "role")
cdef Py_ssize_t SETTLEMENT_BUYER_ID = slot_offset(Settlement, "buyer_id")
cdef Py_ssize_t SETTLEMENT_SELLER_ID = slot_offset(Settlement, "seller_id")
cdef Py_ssize_t SETTLEMENT_BUYER_FEE = slot_offset(Settlement, "buyer_fee_vnd")
cdef Py_ssize_t SETTLEMENT_SELLER_FEE = slot_offset(Settlement, "seller_fee_vnd")
cdef Py_ssize_t SESSION_SESSION = slot_offset(MarketSession, "session")
cdef Py_ssize_t WINDOW_BUCKETS = slot_offset(TradeWindow, "buckets")
cdef Py_ssize_t WINDOW_LAST_PRICE = slot_offset(TradeWindow, "last_price")
cdef Py_ssize_t BUCKET_SECOND = slot_offset(TradeBucket, "second")
cdef Py_ssize_t BUCKET_VOLUME = slot_offset(TradeBucket, "volume")
cdef Py_ssize_t BUCKET_VALUE = slot_offset(TradeBucket, "value")
cdef Py_ssize_t BUCKET_LOW = slot_offset(TradeBucket, "low")
cdef Py_ssize_t BUCKET_HIGH = slot_offset(TradeBucket, "high")
cdef Py_ssize_t FEES_MAKER_BPS = slot_offset(FeeSchedule, "maker_bps")
cdef Py_ssize_t FEES_TAKER_BPS = slot_offset(FeeSchedule, "taker_bps")
cdef Py_ssize_t FEES_MAX_BPS = slot_offset(FeeSchedule, "max_bps")
cdef Py_ssize_t ENGINE_IDS = slot_offset(MatchingEngine, "_ids")
cdef Py_ssize_t IDS_LAST_ORDER_ID = slot_offset(IdCounters, "last_order_id")

# Set by `bind`, which `exchange.core` calls once it has defined them (it imports this module at
# its end): what this twin shares with `core.py` rather than repeats.
cdef object _Market = None
cdef Py_ssize_t MARKET_SYMBOL = 0
cdef Py_ssize_t MARKET_BOOK = 0
cdef Py_ssize_t MARKET_SESSION = 0
cdef Py_ssize_t MARKET_LOT_SIZE = 0
cdef Py_ssize_t MARKET_FEES = 0
cdef Py_ssize_t MARKET_BAND_HIGH = 0
cdef Py_ssize_t MARKET_EXPIRY_NS = 0
cdef Py_ssize_t MARKET_WINDOW = 0
cdef Py_ssize_t MARKET_BREAKER = 0
cdef object MAX_CLIENT_ORDER_ID_LENGTH = None
cdef object certificate_halt_reason = None
cdef object short_of = None


# The SHA-256 of each .pxd this module was compiled against (setup.py defines the macros).
cdef extern from *:
    """
    #ifndef HOGX_BOOK_PXD_DIGEST
    #define HOGX_BOOK_PXD_DIGEST ""
    #endif
    #ifndef HOGX_CLEARING_PXD_DIGEST
    #define HOGX_CLEARING_PXD_DIGEST ""
    #endif
    """
    const char* HOGX_BOOK_PXD_DIGEST
    const char* HOGX_CLEARING_PXD_DIGEST

BUILT_AGAINST = {
    "matching_engine.compiled_book": HOGX_BOOK_PXD_DIGEST.decode("ascii"),
    "clearing.compiled_clearing": HOGX_CLEARING_PXD_DIGEST.decode("ascii"),
}


def check_interfaces(*modules):
    """ImportError unless each module was built from the same .pxd as this one was compiled
    against. Cython checks only the sizes of the classes cimported; a method table that changed
    while the sizes did not (one module rebuilt, not the other) would send this module's C calls
    to the wrong methods. Refusing to load, core.py runs its Python trading path instead.

    An empty digest (a module compiled without setup.py, which defines it) proves nothing: two
    such modules would agree whatever their .pxd files said, so it is refused too."""
    for module in modules:
        expected = BUILT_AGAINST[module.__name__]
        if not expected:
            raise ImportError(
                f"exchange.compiled_core was built without recording the {module.__name__} "
                f".pxd it was compiled against: rebuild them together (pip install -e .)"
            )
        if getattr(module, "PXD_DIGEST", None) != expected:
            raise ImportError(
                f"exchange.compiled_core was compiled against another {module.__name__} .pxd "
                f"than the built {module.__name__}: rebuild them together (pip install -e .)"
            )


check_interfaces(_compiled_book, _compiled_clearing)


def bind(market_class, max_client_order_id_length, halt_reason, short_of_message):
    """Take `core.py`'s `Market` (read in its slots), client order id limit and messages."""
    global _Market, MARKET_SYMBOL, MARKET_BOOK, MARKET_SESSION, MARKET_LOT_SIZE, MARKET_FEES
    global MARKET_BAND_HIGH, MARKET_EXPIRY_NS, MARKET_WINDOW, MARKET_BREAKER
    global MAX_CLIENT_ORDER_ID_LENGTH, certificate_halt_reason, short_of
    MARKET_SYMBOL = slot_offset(market_class, "symbol")
    MARKET_BOOK = slot_offset(market_class, "book")
    MARKET_SESSION = slot_offset(market_class, "session")
    MARKET_LOT_SIZE = slot_offset(market_class, "lot_size")
    MARKET_FEES = slot_offset(market_class, "fees")
    MARKET_BAND_HIGH = slot_offset(market_class, "band_high")
    MARKET_EXPIRY_NS = slot_offset(market_class, "expiry_ns")
    MARKET_WINDOW = slot_offset(market_class, "window")
    MARKET_BREAKER = slot_offset(market_class, "breaker")
    _Market = market_class
    MAX_CLIENT_ORDER_ID_LENGTH = max_client_order_id_length
    certificate_halt_reason = halt_reason
    short_of = short_of_message


cdef inline list _rejected(str code, str message):
    return [CommandRejected(code, message)]


cdef inline object _exact(object instance, object cls):
    """`instance`, which must be exactly a `cls` before its slots are read: a real check, not an
    assertion (which `python -O` would drop), since a wrong object here would crash the process
    where the Python methods raise."""
    if type(instance) is not cls:
        raise TypeError(f"expected exactly {cls.__name__}, got {type(instance).__name__}")
    return instance


@cython.boundscheck(True)
cdef inline object _first(object events):
    """`events[0]`, bounds-checked (the module is compiled without bounds checks)."""
    return events[0]


cdef inline object _market(object market):
    # Every market comes from `core.py`'s `Market` (its slots all set in `__init__`).
    return _exact(market, _Market)


cdef inline object _session_of(object market):
    return get_field(_exact(get_field(market, MARKET_SESSION), _MarketSession), SESSION_SESSION)


@cython.wraparound(True)  # [-1]: the newest bucket
@cython.boundscheck(True)
cdef void _add_to_window(object window, object time_ns, object price, object quantity) except *:
    """`TradeWindow.add` in its usual case: another trade in the newest bucket's second. Any
    other case: `TradeWindow.add` itself."""
    if type(window) is _TradeWindow:
        buckets = get_field(window, WINDOW_BUCKETS)
        if buckets:
            bucket = buckets[-1]
            if type(bucket) is _TradeBucket and get_field(
                bucket, BUCKET_SECOND
            ) == time_ns // _NS_PER_SECOND:
                set_field(window, WINDOW_LAST_PRICE, price)
                set_field(bucket, BUCKET_VOLUME, get_field(bucket, BUCKET_VOLUME) + quantity)
                set_field(bucket, BUCKET_VALUE, get_field(bucket, BUCKET_VALUE) + price * quantity)
                if price < get_field(bucket, BUCKET_LOW):
                    set_field(bucket, BUCKET_LOW, price)
                elif price > get_field(bucket, BUCKET_HIGH):
                    set_field(bucket, BUCKET_HIGH, price)
                return
    window.add(time_ns, price, quantity)


# The methods the compiled ones call as C functions. A subclass overriding one would never be
# called (overriding `apply` as a whole is fine: then none of this runs).
TWINNED = (
    "_trader_problem", "_place", "_hold", "_register", "_owned_open_order", "_cancel", "_amend",
    "_hold_change", "_resize_hold", "_absorb", "_settle", "_record_fill", "_release",
)


def refuse_overrides(cls):
    """TypeError when `cls` overrides a method of the trading path (see `TWINNED`): the compiled
    core would silently ignore the override. `HOGX_PURE_PYTHON_CORE=1` runs core.py's methods,
    which may be overridden."""
    for name in TWINNED:
        for klass in cls.__mro__:
            if name in klass.__dict__:
                if klass is not CompiledTradingPath:
                    raise TypeError(
                        f"{cls.__name__}.{name} overrides a method the compiled trading path "
                        "calls as C (set HOGX_PURE_PYTHON_CORE=1 to override it)"
                    )
                break


cdef class CompiledTradingPath:
    """The state the trading path touches, as C fields, and the path itself."""

    cdef public object engine
    cdef public object risk
    cdef public object lineage
    cdef public dict participants
    cdef public dict markets
    cdef public dict halted
    cdef public dict orders
    cdef public dict client_order_ids
    cdef public dict orders_by_participant
    cdef public dict fills_by_participant
    cdef public object _tripped
    cdef public object last_sequence
    cdef public object last_time_ns

    # ------------------------------------------------------------------ the one entry point

    def apply(self, command, sequence, time_ns):
        """Apply one sequenced command; returns its events. Never raises on bad input."""
        assert sequence == self.last_sequence + 1, (sequence, self.last_sequence)
        assert time_ns >= self.last_time_ns, (time_ns, self.last_time_ns)
        self.last_sequence = sequence
        self.last_time_ns = time_ns
        kind = type(command)
        if kind is _PlaceOrder:
            return self._place_c(command)
        if kind is _CancelOrder:
            return self._cancel_c(command)
        if kind is _AmendOrder:
            return self._amend_c(command)
        return self._handlers[kind](command)  # every other command: ExchangeCore's, in Python

    # ------------------------------------------------------------------ orders

    def _trader_problem(self, participant_id):
        return self._trader_problem_c(participant_id)

    cdef object _trader_problem_c(self, object participant_id):
        participant = self.participants.get(participant_id)
        if participant is None:
            return _rejected("UNKNOWN_PARTICIPANT", f"no participant {participant_id}")
        if participant.role is not TRADER:
            return _rejected("FORBIDDEN", "only traders place, amend and cancel orders")
        return None

    cdef inline bint _is_trader(self, object participant_id):
        participant = self.participants.get(participant_id)
        if participant is None:
            return False
        if type(participant) is _Participant:
            return get_field(participant, PARTICIPANT_ROLE) is TRADER
        return participant.role is TRADER

    def _place(self, command):
        _exact(command, _PlaceOrder)
        return self._place_c(command)

    cdef list _place_c(self, object command):
        participant_id = get_field(command, PLACE_PARTICIPANT_ID)
        if not self._is_trader(participant_id):
            problem = self._trader_problem_c(participant_id)
            assert problem is not None
            return problem
        client_order_id = get_field(command, PLACE_CLIENT_ORDER_ID)
        if client_order_id is not None:
            if not 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID_LENGTH:
                return _rejected(
                    "INVALID_REQUEST",
                    f"client_order_id must be 1-{MAX_CLIENT_ORDER_ID_LENGTH} characters",
                )
            original = self.client_order_ids.get((participant_id, client_order_id))
            if original is not None:
                return [DuplicateClientOrderId(original, participant_id, client_order_id)]
        symbol = get_field(command, PLACE_SYMBOL)
        market = self.markets.get(symbol)
        if market is None:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {symbol!r} is listed")
        _market(market)
        # The market's own string from here on (equal, as its key): the order's record and
        # events then share one object per market, not a decoded copy per order, and later
        # lookups by it match at once, without hashing or comparing characters.
        symbol = get_field(market, MARKET_SYMBOL)
        expiry_ns = get_field(market, MARKET_EXPIRY_NS)
        if expiry_ns and self.last_time_ns >= expiry_ns:
            return _rejected("CERTIFICATE_EXPIRED", certificate_halt_reason(market))
        if symbol in self.halted:
            return _rejected("MARKET_HALTED", f"{symbol} is halted: only cancels are accepted")
        session = _session_of(market)
        if session is CLOSED:
            return _rejected("MARKET_CLOSED", f"{symbol} is closed: only cancels are accepted")
        book = get_field(market, MARKET_BOOK)
        order_id = self._last_order_id() + 1
        side = get_field(command, PLACE_SIDE)
        price = get_field(command, PLACE_PRICE)
        quantity = get_field(command, PLACE_QUANTITY)
        time_in_force = get_field(command, PLACE_TIME_IN_FORCE)
        order_type = get_field(command, PLACE_ORDER_TYPE)
        post_only = get_field(command, PLACE_POST_ONLY)
        all_or_none = get_field(command, PLACE_ALL_OR_NONE)
        # The compiled book places an order in continuous trading from its fields as they are:
        # no `OrderRequest` is built for it. Its call phases (cold) and any other book (book.py's,
        # a subclass, whose Python methods must run) take the request.
        cdef bint compiled_book = type(book) is CompiledBook
        request = None
        if not compiled_book or session is not CONTINUOUS:
            request = _OrderRequest(
                order_id, participant_id, side, price, quantity, order_type, time_in_force,
                post_only, all_or_none,
            )
        if compiled_book:
            code = (<CompiledBook>book).validate_fields_c(
                order_id, price, quantity, order_type is MARKET, time_in_force, post_only
            )
        else:
            code = book.validate(request)
        if (
            code is None
            and session is not CONTINUOUS
            and time_in_force in _IMMEDIATE
        ):
            code = NOT_ALLOWED_IN_CALL
        if code is not None:
            return [OrderRejected(symbol, order_id, participant_id, code, _reject_message(code))]
        hold_event = self._hold_c(order_id, participant_id, side, price, quantity, market)
        if hold_event is None:
            return _rejected("INSUFFICIENT_FUNDS", short_of(side, symbol))

        if compiled_book:
            if session is CONTINUOUS:
                engine_events = (<CompiledBook>book).place_fields_c(
                    order_id, participant_id, side, price, quantity, order_type, time_in_force,
                    post_only, all_or_none, True,
                )
            else:  # a call phase: the order waits for the auction
                engine_events = (<CompiledBook>book).rest_c(request)
        elif session is CONTINUOUS:
            engine_events = book.place(request, validated=True)
        else:
            engine_events = book.rest(request)
        if type(_first(engine_events)) is _OrderRejected:  # post-only would take: undo the hold
            self._risk_release(order_id)
            return engine_events
        self._register_c(command, order_id, symbol)
        cdef list events = [
            _OrderRegistered(order_id, participant_id, symbol, client_order_id),
            hold_event,
        ]
        self._absorb_c(engine_events, market, events)
        if self._tripped is not None:
            self._trip(events)
        return events

    cdef inline object _last_order_id(self):
        """`self.engine.last_order_id`, without the property's Python call."""
        engine = self.engine
        if type(engine) is _MatchingEngine:
            ids = get_field(engine, ENGINE_IDS)
            if type(ids) is _IdCounters:
                return get_field(ids, IDS_LAST_ORDER_ID)
        return engine.last_order_id

    def _hold(self, request, market):
        return self._hold_c(
            request.order_id,
            request.participant_id,
            request.side,
            request.price,
            request.quantity,
            _market(market),
        )

    cdef object _hold_c(
        self, object order_id, object participant_id, object side, object price,
        object quantity, object market,
    ):
        """Reserve what the order needs; None when the participant is short."""
        if side is BUY:
            if price is None:
                price = get_field(market, MARKET_BAND_HIGH)
            amount = self._risk_hold_for_buy(
                order_id,
                participant_id,
                price,
                quantity,
                get_field(market, MARKET_LOT_SIZE),
                get_field(market, MARKET_FEES),
            )
            asset = CASH
        else:
            asset = get_field(market, MARKET_SYMBOL)
            amount = self._risk_hold_for_sell(order_id, participant_id, asset, quantity)
        if amount is None:
            return None
        return _FundsHeld(order_id, participant_id, asset, amount)

    def _register(self, command, order_id):
        _exact(command, _PlaceOrder)
        self._register_c(command, order_id, get_field(command, PLACE_SYMBOL))

    cdef void _register_c(self, object command, object order_id, object symbol) except *:
        """`symbol`: the command's, as the market's own string (`_place_c`)."""
        participant_id = get_field(command, PLACE_PARTICIPANT_ID)
        client_order_id = get_field(command, PLACE_CLIENT_ORDER_ID)
        sequence = self.last_sequence
        self.orders[order_id] = _OrderRecord(
            order_id,
            participant_id,
            symbol,
            get_field(command, PLACE_SIDE),
            get_field(command, PLACE_ORDER_TYPE),
            get_field(command, PLACE_PRICE),
            get_field(command, PLACE_QUANTITY),
            get_field(command, PLACE_TIME_IN_FORCE),
            get_field(command, PLACE_POST_ONLY),
            get_field(command, PLACE_ALL_OR_NONE),
            client_order_id,
            sequence,
            self.last_time_ns,
            NEW,
            0,
            None,
            sequence,
        )
        if client_order_id is not None:
            self.client_order_ids[(participant_id, client_order_id)] = order_id
        ids = self.orders_by_participant.get(participant_id)
        if ids is None:
            self.orders_by_participant[participant_id] = [order_id]
        else:
            (<list?>ids).append(order_id)

    def _owned_open_order(self, participant_id, order_id):
        return self._owned_open_order_c(participant_id, order_id)

    cdef object _owned_open_order_c(self, object participant_id, object order_id):
        record = self.orders.get(order_id)
        if record is None:
            return _rejected("ORDER_NOT_FOUND", f"no order {order_id} of this participant")
        _exact(record, _OrderRecord)
        if get_field(record, RECORD_PARTICIPANT_ID) != participant_id:
            return _rejected("ORDER_NOT_FOUND", f"no order {order_id} of this participant")
        status = get_field(record, RECORD_STATUS)
        if not (status is NEW or status is PARTIALLY_FILLED):
            return _rejected("ORDER_NOT_OPEN", f"order {order_id} is {status.value}")
        return record

    def _cancel(self, command):
        _exact(command, _CancelOrder)
        return self._cancel_c(command)

    cdef list _cancel_c(self, object command):
        order_id = get_field(command, CANCEL_ORDER_ID)
        record = self._owned_open_order_c(get_field(command, CANCEL_PARTICIPANT_ID), order_id)
        if type(record) is list:
            return record
        market = _market(self.markets[get_field(record, RECORD_SYMBOL)])
        cdef list events = []
        book = get_field(market, MARKET_BOOK)
        if type(book) is CompiledBook:
            engine_events = (<CompiledBook>book).cancel_c(order_id)
        else:
            engine_events = book.cancel(order_id)
        self._absorb_c(engine_events, market, events)
        return events

    def _amend(self, command):
        _exact(command, _AmendOrder)
        return self._amend_c(command)

    cdef list _amend_c(self, object command):
        participant_id = get_field(command, AMEND_PARTICIPANT_ID)
        order_id = get_field(command, AMEND_ORDER_ID)
        problem = self._trader_problem_c(participant_id)
        if problem is not None:
            return problem
        record = self._owned_open_order_c(participant_id, order_id)
        if type(record) is list:
            return record
        symbol = get_field(record, RECORD_SYMBOL)
        if symbol in self.halted:
            return _rejected("MARKET_HALTED", f"{symbol} is halted: only cancels are accepted")
        market = _market(self.markets[symbol])
        if self._certificate_expired(market):  # as for new orders: no window before the halt
            return _rejected("CERTIFICATE_EXPIRED", certificate_halt_reason(market))
        session = _session_of(market)
        if session is CLOSED:
            return _rejected("MARKET_CLOSED", f"{symbol} is closed: only cancels are accepted")
        book = get_field(market, MARKET_BOOK)
        price = get_field(command, AMEND_PRICE)
        quantity = get_field(command, AMEND_QUANTITY)
        if price is not None and get_field(record, RECORD_ORDER_TYPE) is MARKET:
            # waiting in a call
            message = "a market order waiting for the auction has no price to change"
            return [AmendRejected(symbol, order_id, INVALID_AMEND, message)]
        cdef bint compiled_book = type(book) is CompiledBook
        if compiled_book:
            code = (<CompiledBook>book).amend_error_c(order_id, price, quantity)
        else:
            code = book.amend_error(order_id, price, quantity)
        if code is not None:
            return [AmendRejected(symbol, order_id, code, _reject_message(code))]
        if compiled_book:
            open_order = (<CompiledBook>book).order_c(order_id)
        else:
            open_order = book.order(order_id)
        assert open_order is not None
        old_price, old_remaining = open_order.price, open_order.remaining
        new_price = old_price if price is None else price
        new_quantity = open_order.quantity if quantity is None else quantity
        new_remaining = new_quantity - open_order.filled
        held_before = self._risk_held(order_id)
        if new_remaining > 0 and not self._resize_hold_c(record, market, new_price, new_remaining):
            return _rejected("INSUFFICIENT_FUNDS", short_of(get_field(record, RECORD_SIDE), symbol))
        if compiled_book:
            engine_events = (<CompiledBook>book).amend_c(
                order_id, price, quantity, session is CONTINUOUS
            )
        else:
            engine_events = book.amend(order_id, price, quantity, matching=session is CONTINUOUS)
        if type(_first(engine_events)) is _AmendRejected:  # post-only would take: undo
            restored = self._resize_hold_c(record, market, old_price, old_remaining)
            assert restored
            return engine_events
        cdef list events = self._hold_change_c(record, held_before)
        self._absorb_c(engine_events, market, events)
        if self._tripped is not None:
            self._trip(events)
        return events

    def _hold_change(self, record, held_before):
        return self._hold_change_c(_exact(record, _OrderRecord), held_before)

    cdef list _hold_change_c(self, object record, object held_before):
        """The amend's change to the order's hold, as an event (none when unchanged)."""
        order_id = get_field(record, RECORD_ORDER_ID)
        participant_id = get_field(record, RECORD_PARTICIPANT_ID)
        held = self._risk_held(order_id)
        asset = CASH if get_field(record, RECORD_SIDE) is BUY else get_field(record, RECORD_SYMBOL)
        if held > held_before:
            return [_FundsHeld(order_id, participant_id, asset, held - held_before)]
        if held < held_before:
            return [_FundsReleased(order_id, participant_id, asset, held_before - held)]
        return []

    def _resize_hold(self, record, market, price, remaining):
        return self._resize_hold_c(_exact(record, _OrderRecord), _market(market), price, remaining)

    cdef bint _resize_hold_c(
        self, object record, object market, object price, object remaining
    ) except -1:
        order_id = get_field(record, RECORD_ORDER_ID)
        if get_field(record, RECORD_SIDE) is BUY:
            return self._risk_resize_buy(
                order_id,
                price,
                remaining,
                get_field(market, MARKET_LOT_SIZE),
                get_field(market, MARKET_FEES),
            )
        return self._risk_resize_sell(order_id, remaining)

    # ------------------------------------------------------------------ engine events

    def _absorb(self, engine_events, market, events):
        self._absorb_c(engine_events, _market(market), events)

    cdef void _absorb_c(self, object engine_events, object market, list events) except *:
        """Pass the book's events on, settling trades and updating records as they come."""
        sequence = self.last_sequence
        cdef dict orders = self.orders
        for event in engine_events:
            events.append(event)
            kind = type(event)
            if kind is _BookLevelChanged:
                continue
            if kind is _Trade:
                self._settle_c(event, market, events)
            elif kind is _OrderCancelled:
                record = orders[get_field(event, CANCELLED_ORDER_ID)]
                _exact(record, _OrderRecord)
                reason = get_field(event, CANCELLED_REASON)
                value = REASON_VALUE.get(reason)
                if value is None:
                    value = REASON_VALUE[reason] = reason.value
                set_field(record, RECORD_STATUS, CANCELLED)
                set_field(record, RECORD_CANCEL_REASON, value)
                set_field(record, RECORD_UPDATED_SEQUENCE, sequence)
                self._release_c(record, events)
            elif kind is _OrderExpired:
                record = orders[get_field(event, EXPIRED_ORDER_ID)]
                _exact(record, _OrderRecord)
                set_field(record, RECORD_STATUS, EXPIRED)
                set_field(record, RECORD_UPDATED_SEQUENCE, sequence)
                self._release_c(record, events)
            elif kind is _OrderAmended:
                record = orders[get_field(event, AMENDED_ORDER_ID)]
                _exact(record, _OrderRecord)
                set_field(record, RECORD_PRICE, get_field(event, AMENDED_PRICE))
                set_field(record, RECORD_QUANTITY, get_field(event, AMENDED_QUANTITY))
                set_field(record, RECORD_UPDATED_SEQUENCE, sequence)

    def _settle(self, trade, market, events):
        _exact(trade, _Trade)
        self._settle_c(trade, _market(market), events)

    cdef void _settle_c(self, object trade, object market, list events) except *:
        fees = get_field(market, MARKET_FEES)
        if type(fees) is _FeeSchedule:
            maker_bps = get_field(fees, FEES_MAKER_BPS)
            taker_bps = get_field(fees, FEES_TAKER_BPS)
            max_bps = get_field(fees, FEES_MAX_BPS)
        else:
            maker_bps, taker_bps, max_bps = fees.maker_bps, fees.taker_bps, fees.max_bps
        aggressor_buys = get_field(trade, TRADE_AGGRESSOR_SIDE) is BUY
        maker_order_id = get_field(trade, TRADE_MAKER_ORDER_ID)
        taker_order_id = get_field(trade, TRADE_TAKER_ORDER_ID)
        maker_remaining = get_field(trade, TRADE_MAKER_REMAINING)
        taker_remaining = get_field(trade, TRADE_TAKER_REMAINING)
        if aggressor_buys:
            buy_id, sell_id = taker_order_id, maker_order_id
            buy_remaining = taker_remaining
            buyer_bps, seller_bps = taker_bps, maker_bps
        else:
            buy_id, sell_id = maker_order_id, taker_order_id
            buy_remaining = maker_remaining
            buyer_bps, seller_bps = maker_bps, taker_bps
        symbol = get_field(trade, TRADE_SYMBOL)
        trade_id = get_field(trade, TRADE_ID)
        price = get_field(trade, TRADE_PRICE)
        quantity = get_field(trade, TRADE_QUANTITY)
        settlement = self._risk_settle(
            symbol,
            trade_id,
            buy_id,
            sell_id,
            price,
            quantity,
            buy_remaining,
            get_field(market, MARKET_LOT_SIZE),
            buyer_bps,
            seller_bps,
            max_bps,
        )
        _exact(settlement, _Settlement)
        events.append(settlement)
        self._transfer_lots(
            trade_id,
            get_field(settlement, SETTLEMENT_SELLER_ID),
            get_field(settlement, SETTLEMENT_BUYER_ID),
            symbol,
            quantity,
        )
        _add_to_window(get_field(market, MARKET_WINDOW), self.last_time_ns, price, quantity)
        if get_field(market, MARKET_BREAKER) is not None and self._tripped is None:
            self._check_breaker(market)
        if aggressor_buys:
            maker_fee = get_field(settlement, SETTLEMENT_SELLER_FEE)
            taker_fee = get_field(settlement, SETTLEMENT_BUYER_FEE)
        else:
            maker_fee = get_field(settlement, SETTLEMENT_BUYER_FEE)
            taker_fee = get_field(settlement, SETTLEMENT_SELLER_FEE)
        maker = self._record_fill_c(maker_order_id, trade, MAKER, maker_fee)
        taker = self._record_fill_c(taker_order_id, trade, TAKER, taker_fee)
        if maker_remaining == 0:
            self._release_c(maker, events)
        if taker_remaining == 0:
            self._release_c(taker, events)

    @cython.wraparound(True)  # [-1]: the back of the buyer's queue
    @cython.boundscheck(True)
    cdef void _transfer_lots(
        self, object trade_id, object seller, object buyer, object symbol, object lots
    ) except *:
        """`Lineage.transfer` in its usual case, once per trade: one receipt, at the front of
        the seller's queue, covers the lots. Any other case: `Lineage.transfer` itself."""
        lineage = self.lineage
        if type(lineage) is not _Lineage:
            lineage.transfer(trade_id, seller, buyer, symbol, lots)
            return
        cdef dict holdings = lineage.holdings
        queue = holdings[seller][symbol]
        cdef list entry = queue[0]
        if not entry[1] >= lots:
            lineage.transfer(trade_id, seller, buyer, symbol, lots)
            return
        receipt_id = entry[0]
        entry[1] -= lots
        if entry[1] == 0:
            queue.popleft()
        # Lineage.credit:
        queues = holdings.get(buyer)
        if queues is None:
            queues = holdings[buyer] = {}
        credited = (<dict?>queues).get(symbol)
        if credited is None:
            credited = (<dict>queues)[symbol] = _deque()
        if credited and credited[-1][0] == receipt_id:
            credited[-1][1] += lots
        else:
            credited.append([receipt_id, lots])
        if receipt_id != _UNTRACED:
            lineage.trade_lots[trade_id] = [(receipt_id, lots)]

    def _record_fill(self, order_id, trade, liquidity, fee):
        _exact(trade, _Trade)
        self._record_fill_c(order_id, trade, liquidity, fee)

    cdef object _record_fill_c(
        self, object order_id, object trade, object liquidity, object fee
    ):
        """Returns the order's record."""
        record = self.orders[order_id]
        _exact(record, _OrderRecord)
        trade_id = get_field(trade, TRADE_ID)
        quantity = get_field(trade, TRADE_QUANTITY)
        filled = get_field(record, RECORD_FILLED_QUANTITY) + quantity
        set_field(record, RECORD_FILLED_QUANTITY, filled)
        set_field(
            record,
            RECORD_STATUS,
            FILLED if filled == get_field(record, RECORD_QUANTITY) else PARTIALLY_FILLED,
        )
        sequence = self.last_sequence
        set_field(record, RECORD_UPDATED_SEQUENCE, sequence)
        fill = _Fill(
            trade_id,
            get_field(trade, TRADE_PRICE),
            quantity,
            liquidity,
            fee,
            sequence,
            self.last_time_ns,
        )
        fills_of_record = get_field(record, RECORD_FILLS)
        if fills_of_record is None:
            set_field(record, RECORD_FILLS, [fill])
        else:
            (<list?>fills_of_record).append(fill)
        participant_id = get_field(record, RECORD_PARTICIPANT_ID)
        fills = self.fills_by_participant.get(participant_id)
        if fills is None:
            fills = self.fills_by_participant[participant_id] = []
        (<list?>fills).append((trade_id, order_id))
        return record

    def _release(self, record, events):
        self._release_c(record, events)

    cdef void _release_c(self, object record, list events) except *:
        _exact(record, _OrderRecord)
        order_id = get_field(record, RECORD_ORDER_ID)
        amount = self._risk_release(order_id)
        if amount:
            side = get_field(record, RECORD_SIDE)
            asset = CASH if side is BUY else get_field(record, RECORD_SYMBOL)
            events.append(
                _FundsReleased(order_id, get_field(record, RECORD_PARTICIPANT_ID), asset, amount)
            )

    # ------------------------------------------------------------------ clearing

    # The trading path's calls into `self.risk`: C calls (compiled_clearing.pxd) when it is
    # exactly the compiled `Risk`, else its Python methods: those of the Python clearing
    # (HOGX_PURE_PYTHON_CLEARING=1), or the overrides of a subclass, which must run.

    cdef inline object _risk_hold_for_buy(
        self, object order_id, object participant_id, object price, object quantity,
        object lot_size, object fees,
    ):
        risk = self.risk
        if type(risk) is Risk:
            return (<Risk>risk).hold_for_buy_c(
                order_id, participant_id, price, quantity, lot_size, fees
            )
        return risk.hold_for_buy(order_id, participant_id, price, quantity, lot_size, fees)

    cdef inline object _risk_hold_for_sell(
        self, object order_id, object participant_id, object symbol, object quantity
    ):
        risk = self.risk
        if type(risk) is Risk:
            return (<Risk>risk).hold_for_sell_c(order_id, participant_id, symbol, quantity)
        return risk.hold_for_sell(order_id, participant_id, symbol, quantity)

    cdef inline bint _risk_resize_buy(
        self, object order_id, object price, object remaining, object lot_size, object fees
    ) except -1:
        risk = self.risk
        if type(risk) is Risk:
            return (<Risk>risk).resize_buy_c(order_id, price, remaining, lot_size, fees)
        return risk.resize_buy(order_id, price, remaining, lot_size, fees)

    cdef inline bint _risk_resize_sell(self, object order_id, object remaining) except -1:
        risk = self.risk
        if type(risk) is Risk:
            return (<Risk>risk).resize_sell_c(order_id, remaining)
        return risk.resize_sell(order_id, remaining)

    cdef inline object _risk_release(self, object order_id):
        risk = self.risk
        if type(risk) is Risk:
            return (<Risk>risk).release_c(order_id)
        return risk.release(order_id)

    cdef inline object _risk_held(self, object order_id):
        risk = self.risk
        if type(risk) is Risk:
            return (<Risk>risk).held_c(order_id)
        return risk.held(order_id)

    cdef inline object _risk_settle(
        self, object symbol, object trade_id, object buy_order_id, object sell_order_id,
        object price, object quantity, object buy_remaining, object lot_size,
        object buyer_fee_bps, object seller_fee_bps, object max_fee_bps,
    ):
        risk = self.risk
        if type(risk) is Risk:
            return (<Risk>risk).settle_c(
                symbol, trade_id, buy_order_id, sell_order_id, price, quantity, buy_remaining,
                lot_size, buyer_fee_bps, seller_fee_bps, max_fee_bps,
            )
        return risk.settle(
            symbol, trade_id, buy_order_id, sell_order_id, price, quantity, buy_remaining,
            lot_size, buyer_fee_bps, seller_fee_bps, max_fee_bps,
        )
