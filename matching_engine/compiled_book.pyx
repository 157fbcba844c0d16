# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""The compiled twin of `matching_engine.book`: the same `OrderBook`, public API and events.

`book.py` states the rules (its docstring and its code are the rulebook) and stays the
implementation used without a C compiler; this module only makes the same decisions faster.
The tests hold both to the reference model (tests/reference_book.py) and to each other
(tests/test_book_twins.py: same events and same state digest after every command), so a
journal replays to the same digest whichever implementation runs it.

What differs is storage, never behaviour:

* Each open order is a `_Resting` record with C fields, owned by the `order id -> record` dict.
  Records at one price form an intrusive doubly linked FIFO (borrowed pointers: the level does
  not own them), so a cancel unlinks in O(1) and matching never skips dead entries.
* Each side is a Python list of `_Level`s sorted by key (bids by price, asks by -price), the
  best level last; a level is found by binary search over C fields.
* The `Order` structs that the auction, snapshots and the exchange read are made on demand
  (`order()`, `resting_orders()`, or the one given to `restore_order()`), kept by the record
  and kept in sync with it for as long as anyone else holds it, so a caller sees a live view,
  as with `book.py`; one that nobody holds any more is dropped, not updated.
"""

cimport cython

from matching_engine.struct_slots cimport get_field, set_field, slot_offset
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_REFCNT
from cpython.dict cimport PyDict_GetItem

from matching_engine import auction
from matching_engine.book import reject_message
from matching_engine.enums import CancelReason, OrderType, RejectCode, Side, TimeInForce
from matching_engine.events import (
    AmendRejected,
    BookLevelChanged,
    CancelRejected,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    Trade,
)
from matching_engine.ids import IdCounters
from matching_engine.orders import Order, OrderRequest

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object value, int* overflow) except? -1

# Module-level C references: reading them costs nothing, unlike a global or enum attribute.
cdef object BUY = Side.BUY
cdef object SELL = Side.SELL
cdef object MARKET = OrderType.MARKET
cdef object IOC = TimeInForce.IOC
cdef object FOK = TimeInForce.FOK
cdef object DAY = TimeInForce.DAY
cdef object REQUESTED = CancelReason.REQUESTED
cdef object SELF_TRADE = CancelReason.SELF_TRADE
cdef object NO_LIQUIDITY = CancelReason.NO_LIQUIDITY
cdef object FILL_OR_KILL = CancelReason.FILL_OR_KILL
cdef object IMMEDIATE_OR_CANCEL = CancelReason.IMMEDIATE_OR_CANCEL
cdef object AMENDED_BELOW_FILLED = CancelReason.AMENDED_BELOW_FILLED
cdef object _Order = Order
cdef object _Trade = Trade
cdef object _BookLevelChanged = BookLevelChanged
cdef object _OrderAccepted = OrderAccepted
cdef object _OrderCancelled = OrderCancelled
cdef object _OrderRejected = OrderRejected
cdef object _OrderAmended = OrderAmended
cdef object _OrderExpired = OrderExpired
cdef object _CancelRejected = CancelRejected
cdef object _AmendRejected = AmendRejected
cdef object _reject_message = reject_message


# Fields of an `OrderRequest` are read straight from its slots (matching_engine/struct_slots.pxd:
# a generic attribute lookup from C costs ~15 ns, nine times per order).
cdef extern from "Python.h":
    PyObject* PyDict_SetDefault(object mapping, object key, object value) except NULL

# The SHA-256 of compiled_book.pxd this module was built with (setup.py defines the macro):
# compiled_core, compiled against the same file, refuses to load beside a module built from
# another (exchange/compiled_core.pyx, `check_interfaces`). "" when built without setup.py.
cdef extern from *:
    """
    #ifndef HOGX_BOOK_PXD_DIGEST
    #define HOGX_BOOK_PXD_DIGEST ""
    #endif
    """
    const char* HOGX_BOOK_PXD_DIGEST

PXD_DIGEST = HOGX_BOOK_PXD_DIGEST.decode("ascii")

cdef object _OrderRequest = OrderRequest
cdef Py_ssize_t _ORDER_ID = slot_offset(OrderRequest, "order_id")
cdef Py_ssize_t _PARTICIPANT_ID = slot_offset(OrderRequest, "participant_id")
cdef Py_ssize_t _SIDE = slot_offset(OrderRequest, "side")
cdef Py_ssize_t _PRICE = slot_offset(OrderRequest, "price")
cdef Py_ssize_t _QUANTITY = slot_offset(OrderRequest, "quantity")
cdef Py_ssize_t _ORDER_TYPE = slot_offset(OrderRequest, "order_type")
cdef Py_ssize_t _TIME_IN_FORCE = slot_offset(OrderRequest, "time_in_force")
cdef Py_ssize_t _POST_ONLY = slot_offset(OrderRequest, "post_only")
cdef Py_ssize_t _ALL_OR_NONE = slot_offset(OrderRequest, "all_or_none")

# The engine's id counters, read and written in their slots when they are exactly `IdCounters`
# (every order reads and writes the last order id, every take the last trade id; as attribute
# lookups they were about 1% of a command's instructions). Any other counters object: as before.
cdef object _IdCounters = IdCounters
cdef Py_ssize_t _LAST_ORDER_ID = slot_offset(IdCounters, "last_order_id")
cdef Py_ssize_t _LAST_TRADE_ID = slot_offset(IdCounters, "last_trade_id")


cdef inline object _counter(object ids, Py_ssize_t offset, str name):
    if type(ids) is _IdCounters:
        return get_field(ids, offset)
    return getattr(ids, name)


cdef inline void _set_counter(object ids, Py_ssize_t offset, str name, object value) except *:
    if type(ids) is _IdCounters:
        set_field(ids, offset, value)
    else:
        setattr(ids, name, value)


cdef object _exact_request(request):
    """Any object with the fields of an `OrderRequest`, as one (a subclass or a duck)."""
    return _OrderRequest(
        request.order_id,
        request.participant_id,
        request.side,
        request.price,
        request.quantity,
        request.order_type,
        request.time_in_force,
        request.post_only,
        request.all_or_none,
    )


cdef inline bint _to_c(object value, long long* out):
    """`value` as a C integer; False when it does not fit (a price or size far out of range)."""
    cdef int overflow = 0
    out[0] = PyLong_AsLongLongAndOverflow(value, &overflow)
    return overflow == 0


@cython.no_gc
@cython.final
cdef class _Level:
    """One price: live orders only, oldest first (`head`), with their running totals (its fields
    are declared in compiled_book.pxd)."""


@cython.no_gc
@cython.final
@cython.freelist(64)
cdef class _Resting:
    """An order in the book (or entering it); the object fields are the caller's own values
    (declared in compiled_book.pxd)."""


cdef inline _Resting _new_record(
    object order_id,
    object participant_id,
    object side,
    long long price,
    long long quantity,
    long long remaining,
    object time_in_force,
    object post_only,
    object all_or_none,
):
    cdef _Resting rec = _Resting.__new__(_Resting)
    rec.order_id = order_id
    rec.participant_id = participant_id
    rec.side = side
    rec.is_buy = side is BUY
    rec.price = price
    rec.quantity = quantity
    rec.remaining = remaining
    rec.time_in_force = time_in_force
    rec.post_only = post_only
    rec.all_or_none = all_or_none
    rec.aon = bool(all_or_none)
    rec.level = None
    rec.prev = NULL
    rec.next = NULL
    rec.view = None
    return rec


cdef inline void _sync_view(_Resting rec) except *:
    """Mirror a record's quantities onto the `Order` handed out for it, while anyone holds it.

    A view that only the record still refers to can be seen by no one: it is dropped rather
    than updated (a later `order()` makes a fresh one), so keeping views costs nothing once
    their readers (a snapshot, an auction) are done with them.
    """
    if Py_REFCNT(rec.view) == 1:
        rec.view = None
        return
    view = rec.view
    view.quantity = rec.quantity
    view.remaining = rec.remaining


cdef inline void _end_view(_Resting rec) except *:
    """The order left the book: its handed-out `Order`, if anyone holds it, stops being live."""
    view = rec.view
    if view is not None:
        rec.view = None
        if Py_REFCNT(view) > 1:  # held elsewhere, not just by this local name
            view.remaining = rec.remaining
            view.live = False


cdef class OrderBook:
    """Bids and asks of one instrument; every method returns the events it caused, in order.

    Its C fields and methods are declared in compiled_book.pxd; other compiled modules call the
    commands as C through the `*_c` methods there, which the `def` methods wrap."""

    def __init__(self, rules, ids=None):
        self.rules = rules
        self.symbol = rules.symbol
        self._ids = ids if ids is not None else IdCounters()
        self._bids = []
        self._asks = []
        self._orders = {}
        self._copy_rules(rules)

    cdef void _copy_rules(self, rules) except *:
        self._band_low_obj = rules.band_low
        self._band_high_obj = rules.band_high
        self._band_low = self._band_low_obj
        self._band_high = self._band_high_obj
        self._tick = rules.tick_size
        self._max_quantity = rules.max_order_quantity

    # ------------------------------------------------------------------ commands

    def place(self, request, *, bint validated=False):
        """Validate, match and rest (or cancel) one new order (see `book.OrderBook.place`)."""
        return self.place_c(request, validated)

    cdef list place_c(self, object request, bint validated):
        if type(request) is not _OrderRequest:
            request = _exact_request(request)
        return self.place_fields_c(
            get_field(request, _ORDER_ID),
            get_field(request, _PARTICIPANT_ID),
            get_field(request, _SIDE),
            get_field(request, _PRICE),
            get_field(request, _QUANTITY),
            get_field(request, _ORDER_TYPE),
            get_field(request, _TIME_IN_FORCE),
            get_field(request, _POST_ONLY),
            get_field(request, _ALL_OR_NONE),
            validated,
        )

    cdef list place_fields_c(
        self, object order_id, object participant_id, object side, object price,
        object quantity, object order_type, object tif, object post_only, object all_or_none,
        bint validated,
    ):
        cdef bint is_market = order_type is MARKET
        code = None
        if not validated:
            code = self.validate_fields_c(order_id, price, quantity, is_market, tif, post_only)
        if code is None and post_only and self._would_trade(
            side is BUY, 0 if price is None else price, participant_id, quantity
        ):
            code = RejectCode.POST_ONLY_WOULD_TAKE
        if code is not None:
            return [
                _OrderRejected(
                    self.symbol, order_id, participant_id, code, _reject_message(code)
                )
            ]
        cdef long long limit
        if is_market:
            limit = self._band_high if side is BUY else self._band_low
        else:
            limit = price
        _set_counter(self._ids, _LAST_ORDER_ID, "last_order_id", order_id)
        events = [
            _OrderAccepted(
                self.symbol,
                order_id,
                participant_id,
                side,
                order_type,
                price,
                quantity,
                tif,
                post_only,
                all_or_none,
            )
        ]
        cdef long long size = quantity
        rec = _new_record(
            order_id, participant_id, side, limit, size, size, tif, post_only, all_or_none
        )
        self._enter(rec, is_market or tif is IOC or tif is FOK, is_market, events)
        return events

    def validate(self, request):
        """Why `request` breaks a static rule of this book, or None (post-only aside)."""
        return self.validate_c(request)

    cdef object validate_c(self, object request):
        # Read in its slots, as place_c does: attribute lookups were 4.5% of a command's
        # instructions (callgrind), for the six fields every order is checked on.
        if type(request) is not _OrderRequest:
            request = _exact_request(request)
        return self.validate_fields_c(
            get_field(request, _ORDER_ID),
            get_field(request, _PRICE),
            get_field(request, _QUANTITY),
            get_field(request, _ORDER_TYPE) is MARKET,
            get_field(request, _TIME_IN_FORCE),
            get_field(request, _POST_ONLY),
        )

    cdef object validate_fields_c(
        self, object order_id, object price, object quantity, bint is_market, object tif,
        object post_only,
    ):
        # Contradictory fields first (one code, INVALID_ORDER), then price, size and id.
        if post_only:
            if is_market or tif is IOC or tif is FOK:
                return RejectCode.INVALID_ORDER
        if is_market:
            if price is not None:
                return RejectCode.INVALID_ORDER
        elif price is None:
            return RejectCode.INVALID_ORDER
        else:
            code = self._price_error(price)
            if code is not None:
                return code
        code = self._quantity_error(quantity)
        if code is not None:
            return code
        if order_id <= _counter(self._ids, _LAST_ORDER_ID, "last_order_id"):
            return RejectCode.DUPLICATE_ORDER_ID
        return None

    def cancel(self, order_id):
        """Cancel an open order at the participant's request."""
        return self.cancel_c(order_id)

    cdef list cancel_c(self, object order_id):
        cdef PyObject* found = PyDict_GetItem(self._orders, order_id)
        if found == NULL:
            code = self._not_open_code(order_id)
            return [_CancelRejected(self.symbol, order_id, code, _reject_message(code))]
        cdef _Resting rec = <_Resting>found
        level_changed = self._remove_resting(rec)
        return [
            level_changed,
            _OrderCancelled(
                self.symbol, order_id, rec.participant_id, rec.side, rec.remaining, REQUESTED
            ),
        ]

    def amend(self, order_id, price=None, quantity=None, *, bint matching=True):
        """Change an open order's price and/or total quantity (see `book.OrderBook.amend`)."""
        return self.amend_c(order_id, price, quantity, matching)

    cdef list amend_c(self, object order_id, object price, object quantity, bint matching):
        # A subclass's own amend_error() is asked, as book.py's amend asks self.amend_error().
        if type(self) is OrderBook:
            code = self.amend_error_c(order_id, price, quantity)
        else:
            code = self.amend_error(order_id, price, quantity)
        if code is not None:
            return [_AmendRejected(self.symbol, order_id, code, _reject_message(code))]
        # Looked up only now: amend_error runs Python code (the rules), and a pointer borrowed
        # before it could outlive its order.
        cdef _Resting rec = <_Resting>self._orders[order_id]
        cdef long long new_price = rec.price
        if price is not None:
            new_price = price
        new_quantity_obj = rec.quantity if quantity is None else quantity
        cdef long long new_quantity = new_quantity_obj
        cdef long long filled = rec.quantity - rec.remaining
        events = []
        if new_quantity <= filled:
            events.append(self._remove_resting(rec))
            events.append(
                _OrderCancelled(
                    self.symbol,
                    order_id,
                    rec.participant_id,
                    rec.side,
                    rec.remaining,
                    AMENDED_BELOW_FILLED,
                )
            )
            return events
        if new_price == rec.price and new_quantity <= rec.quantity:
            self._reduce_in_place(rec, new_quantity_obj, events)
            return events
        # A new price or a larger quantity loses time priority: the order re-enters the book.
        if (
            matching
            and rec.post_only
            and self._would_trade(
                rec.is_buy, new_price, rec.participant_id, new_quantity - filled
            )
        ):
            code = RejectCode.POST_ONLY_WOULD_TAKE
            return [_AmendRejected(self.symbol, order_id, code, _reject_message(code))]
        events.append(self._remove_resting(rec))
        replacement = _new_record(
            order_id,
            rec.participant_id,
            rec.side,
            new_price,
            new_quantity,
            new_quantity - filled,
            rec.time_in_force,
            rec.post_only,
            rec.all_or_none,
        )
        events.append(
            _OrderAmended(
                self.symbol,
                order_id,
                rec.participant_id,
                rec.side,
                new_price,
                new_quantity_obj,
                replacement.remaining,
                False,
            )
        )
        if matching:
            self._enter(replacement, False, False, events)
        else:
            self._rest(replacement, events)
        return events

    def expire_day_orders(self, below_order_id=None):
        """End every open `day` order (the close of its trading day), oldest order first; with
        `below_order_id`, only those with a smaller id (see `book.OrderBook`)."""
        cdef _Resting rec
        events = []
        expiring = []
        for rec in self._orders.values():
            if rec.time_in_force is DAY and (
                below_order_id is None or rec.order_id < below_order_id
            ):
                expiring.append(rec)
        expiring.sort(key=_record_order_id)
        for rec in expiring:
            events.append(self._remove_resting(rec))
            events.append(
                _OrderExpired(
                    self.symbol, rec.order_id, rec.participant_id, rec.side, rec.remaining
                )
            )
        return events

    # ------------------------------------------------------------------ call phases (cold path)

    def rest(self, request):
        """Accept an order in a call phase: it rests without trading (see `book.OrderBook.rest`)."""
        return self.rest_c(request)

    cdef list rest_c(self, object request):
        # A subclass's own validate() is asked, as book.py's rest asks self.validate().
        if type(self) is OrderBook:
            code = self.validate_c(request)
        else:
            code = self.validate(request)
        if code is None and request.time_in_force in (IOC, FOK):
            code = RejectCode.NOT_ALLOWED_IN_CALL
        if code is not None:
            return [
                _OrderRejected(
                    self.symbol,
                    request.order_id,
                    request.participant_id,
                    code,
                    _reject_message(code),
                )
            ]
        side = request.side
        cdef long long limit
        if request.order_type is MARKET:
            limit = self._band_high if side is BUY else self._band_low
        else:
            limit = request.price
        self._ids.last_order_id = request.order_id
        events = [
            _OrderAccepted(
                self.symbol,
                request.order_id,
                request.participant_id,
                side,
                request.order_type,
                request.price,
                request.quantity,
                request.time_in_force,
                request.post_only,
                request.all_or_none,
            )
        ]
        rec = _new_record(
            request.order_id,
            request.participant_id,
            side,
            limit,
            request.quantity,
            request.quantity,
            request.time_in_force,
            request.post_only,
            request.all_or_none,
        )
        self._rest(rec, events)
        return events

    def uncross(self, reference_price, market_order_ids=frozenset()):
        """Run the call auction (see `matching_engine.auction`)."""
        return auction.uncross(self, reference_price, market_order_ids)

    def indicative_price(self, reference_price, market_order_ids=frozenset()):
        return auction.indicative_price(self, reference_price, market_order_ids)

    def set_rules(self, rules):
        """New rules for the orders to come; resting orders stay where they are."""
        assert rules.symbol == self.symbol
        self.rules = rules
        self._copy_rules(rules)

    def fill_resting(self, order, long long quantity):
        """Take `quantity` lots off a resting order (an auction fill); its level's event is the
        caller's to send, once, when all fills are done (`level_event`)."""
        if not (order.live and 0 < quantity <= order.remaining):
            raise ValueError(f"cannot fill {quantity} of order {order.order_id}")
        cdef _Resting rec = self._orders[order.order_id]
        cdef _Level level = rec.level
        view = rec.view
        rec.remaining -= quantity
        level.quantity -= quantity
        if rec.remaining == 0:
            del self._orders[rec.order_id]
            self._unlink(rec)
            _end_view(rec)
        elif rec.view is not None:
            _sync_view(rec)
        if order is not view:  # a caller's own copy: updated as book.py would
            order.remaining -= quantity
            if order.remaining == 0:
                order.live = False

    def level_event(self, side, long long price):
        cdef _Level level = self._find_level(side is BUY, price)
        if level is None:
            return _BookLevelChanged(self.symbol, side, price, 0, 0)
        return _BookLevelChanged(self.symbol, side, price, level.quantity, level.count)

    def remove_order(self, order):
        """Take an open order out of the book (its closing event is the caller's to send)."""
        cdef _Resting rec = self._orders[order.order_id]
        view = rec.view
        level_changed = self._remove_resting(rec)
        if order is not view:  # a caller's own copy: ended as book.py would
            order.live = False
        return level_changed

    def next_trade_id(self):
        ids = self._ids
        ids.last_trade_id += 1
        return ids.last_trade_id

    # ------------------------------------------------------------------ queries

    def depth(self, side, levels=None):
        """Aggregated levels `(price, total quantity, order count)`, best first."""
        cdef list book = self._bids if side is BUY else self._asks
        cdef Py_ssize_t n = PyList_GET_SIZE(book)
        cdef Py_ssize_t count = n if levels is None else min(levels, n)
        cdef Py_ssize_t i
        cdef _Level level
        out = []
        for i in range(count):
            level = <_Level>PyList_GET_ITEM(book, n - 1 - i)
            out.append((level.price_obj, level.quantity, level.count))
        return out

    def best_bid(self):
        cdef Py_ssize_t n = PyList_GET_SIZE(self._bids)
        return (<_Level>PyList_GET_ITEM(self._bids, n - 1)).price_obj if n else None

    def best_ask(self):
        cdef Py_ssize_t n = PyList_GET_SIZE(self._asks)
        return (<_Level>PyList_GET_ITEM(self._asks, n - 1)).price_obj if n else None

    def order(self, order_id):
        """The open order with this id (a live view: do not mutate), or None."""
        return self.order_c(order_id)

    cdef object order_c(self, object order_id):
        cdef PyObject* found = PyDict_GetItem(self._orders, order_id)
        if found == NULL:
            return None
        return self._view(<_Resting>found)

    def open_order_count(self):
        return len(self._orders)

    def resting_orders(self, side):
        """Live orders of one side in priority order: best price first, FIFO within a price."""
        cdef list book = self._bids if side is BUY else self._asks
        cdef Py_ssize_t i
        cdef _Level level
        cdef PyObject* node
        out = []
        for i in range(PyList_GET_SIZE(book) - 1, -1, -1):
            level = <_Level>PyList_GET_ITEM(book, i)
            node = level.head
            while node != NULL:
                out.append(self._view(<_Resting>node))
                node = (<_Resting>node).next
        return iter(out)

    def restore_order(self, order):
        """Put an open order back at the back of its level (snapshot loading, in priority order)."""
        if not (order.live and 0 < order.remaining <= order.quantity):
            raise ValueError(f"order {order.order_id} is not an open order to restore")
        rec = _new_record(
            order.order_id,
            order.participant_id,
            order.side,
            order.price,
            order.quantity,
            order.remaining,
            order.time_in_force,
            order.post_only,
            order.all_or_none,
        )
        rec.view = order
        self._claim_id(rec)
        self._append(rec, self._level_for(rec.is_buy, rec.price))

    # ------------------------------------------------------------------ validation

    def amend_error(self, order_id, price, quantity):
        """Why an amend breaks a static rule (post-only aside), or None."""
        return self.amend_error_c(order_id, price, quantity)

    cdef object amend_error_c(self, object order_id, object price, object quantity):
        if PyDict_GetItem(self._orders, order_id) == NULL:
            return self._not_open_code(order_id)
        if price is None and quantity is None:
            return RejectCode.INVALID_AMEND
        if price is not None:
            code = self._price_error(price)
            if code is not None:
                return code
        if quantity is not None:
            return self._quantity_error(quantity)
        return None

    cdef object _price_error(self, price):
        """`BookRules.price_error`, on this book's copy of the rules."""
        cdef long long c_price = 0
        if not _to_c(price, &c_price):
            # Far beyond any band: the same codes book.py gives, from Python arithmetic.
            if price <= 0 or price % self._tick:
                return RejectCode.TICK_SIZE
            return RejectCode.PRICE_OUT_OF_BAND
        if c_price <= 0 or c_price % self._tick:
            return RejectCode.TICK_SIZE
        if c_price < self._band_low or c_price > self._band_high:
            return RejectCode.PRICE_OUT_OF_BAND
        return None

    cdef object _quantity_error(self, quantity):
        """`BookRules.quantity_error`, on this book's copy of the rules."""
        cdef long long c_quantity = 0
        if not _to_c(quantity, &c_quantity):
            return RejectCode.LOT_SIZE
        if c_quantity <= 0 or c_quantity > self._max_quantity:
            return RejectCode.LOT_SIZE
        return None

    cdef object _not_open_code(self, order_id):
        # Ids are handed out in increasing order, so an id at or below the newest one was used.
        if 0 < order_id <= self._ids.last_order_id:
            return RejectCode.ORDER_NOT_OPEN
        return RejectCode.UNKNOWN_ORDER

    # ------------------------------------------------------------------ views

    cdef object _view(self, _Resting rec):
        if rec.view is None:
            rec.view = _Order(
                rec.order_id,
                rec.participant_id,
                rec.side,
                rec.price,
                rec.quantity,
                rec.remaining,
                rec.time_in_force,
                rec.post_only,
                rec.all_or_none,
            )
        return rec.view

    # ------------------------------------------------------------------ matching

    cdef void _enter(self, _Resting order, bint immediate, bint is_market, list events) except *:
        """Match an incoming order, then rest its remainder or cancel it."""
        cdef list opposite = self._asks if order.is_buy else self._bids
        cdef long long bound = -order.price if order.is_buy else order.price
        cdef Py_ssize_t n = PyList_GET_SIZE(opposite)
        cdef bint self_trade = False
        cdef long long fillable
        if n and (<_Level>PyList_GET_ITEM(opposite, n - 1)).key >= bound:
            if order.aon or order.time_in_force is FOK:
                fillable = self._dry_run(
                    order.is_buy, order.price, order.participant_id, order.remaining, &self_trade
                )
                if fillable == order.remaining:
                    self_trade = self._take(order, events)
            else:
                self_trade = self._take(order, events)
        if order.remaining == 0:
            return
        if self_trade or immediate:
            events.append(
                _OrderCancelled(
                    self.symbol,
                    order.order_id,
                    order.participant_id,
                    order.side,
                    order.remaining,
                    _unfilled_reason(order, is_market, self_trade),
                )
            )
            return
        self._claim_id(order)
        cdef _Level level = self._level_for(order.is_buy, order.price)
        self._append(order, level)
        events.append(
            _BookLevelChanged(self.symbol, order.side, level.price_obj, level.quantity, level.count)
        )

    cdef bint _take(self, _Resting taker, list events) except -1:
        """Trade `taker` against the opposite side; True when stopped by self-trade prevention."""
        cdef list book = self._asks if taker.is_buy else self._bids
        cdef long long bound = -taker.price if taker.is_buy else taker.price
        cdef Py_ssize_t n = PyList_GET_SIZE(book)
        cdef _Level level
        cdef bint self_trade
        while n:
            level = <_Level>PyList_GET_ITEM(book, n - 1)
            if level.key < bound:
                return False
            # An emptied level leaves the list as its last order does (see `_unlink`).
            self_trade = self._take_from_level(taker, level, events)
            if self_trade:
                return True
            if taker.remaining == 0:
                return False
            n -= 1
        return False

    cdef bint _take_from_level(self, _Resting taker, _Level level, list events) except -1:
        """Trade against one level in time priority; True when stopped by self-trade prevention."""
        cdef long long remaining = taker.remaining
        cdef long long traded = 0
        cdef long long fill
        cdef bint self_trade = False
        cdef PyObject* node = level.head
        cdef _Resting maker
        taker_participant = taker.participant_id
        ids = self._ids
        cdef long long trade_id = _counter(ids, _LAST_TRADE_ID, "last_trade_id")
        while node != NULL:
            maker = <_Resting>node
            node = maker.next
            if maker.aon and maker.remaining > remaining:
                continue  # passed over: it keeps its place
            if maker.participant_id == taker_participant:
                self_trade = True
                break
            fill = remaining if remaining < maker.remaining else maker.remaining
            maker.remaining -= fill
            remaining -= fill
            traded += fill
            trade_id += 1
            events.append(
                _Trade(
                    self.symbol,
                    trade_id,
                    level.price_obj,
                    fill,
                    taker.side,
                    maker.order_id,
                    maker.participant_id,
                    maker.remaining,
                    taker.order_id,
                    taker_participant,
                    remaining,
                )
            )
            if maker.remaining == 0:
                self._unlink(maker)
                del self._orders[maker.order_id]
                _end_view(maker)
            elif maker.view is not None:
                _sync_view(maker)
            if remaining == 0:
                break
        taker.remaining = remaining
        if traded:
            _set_counter(ids, _LAST_TRADE_ID, "last_trade_id", trade_id)
            level.quantity -= traded
            events.append(
                _BookLevelChanged(
                    self.symbol,
                    maker.side,  # the last maker met, as in book.py
                    level.price_obj,
                    level.quantity,
                    level.count,
                )
            )
        return self_trade

    cdef long long _dry_run(
        self, bint is_buy, long long limit, participant_id, long long quantity, bint* self_trade
    ) except? -1:
        """How much of `quantity` would fill now; `self_trade` says whether self-trade
        prevention would stop it. Walks exactly as `_take` would, without changing anything."""
        cdef list book = self._asks if is_buy else self._bids
        cdef long long bound = -limit if is_buy else limit
        cdef long long remaining = quantity
        cdef Py_ssize_t i
        cdef _Level level
        cdef _Resting maker
        cdef PyObject* node
        self_trade[0] = False
        for i in range(PyList_GET_SIZE(book) - 1, -1, -1):
            level = <_Level>PyList_GET_ITEM(book, i)
            if level.key < bound:
                break
            node = level.head
            while node != NULL:
                maker = <_Resting>node
                node = maker.next
                if maker.aon and maker.remaining > remaining:
                    continue
                if maker.participant_id == participant_id:
                    self_trade[0] = True
                    return quantity - remaining
                remaining -= remaining if remaining < maker.remaining else maker.remaining
                if remaining == 0:
                    return quantity
        return quantity - remaining

    cdef bint _would_trade(
        self, bint is_buy, long long limit, participant_id, long long quantity
    ) except -1:
        cdef list book = self._asks if is_buy else self._bids
        cdef long long bound = -limit if is_buy else limit
        cdef Py_ssize_t n = PyList_GET_SIZE(book)
        cdef bint self_trade
        if n == 0 or (<_Level>PyList_GET_ITEM(book, n - 1)).key < bound:
            return False
        return self._dry_run(is_buy, limit, participant_id, quantity, &self_trade) > 0

    # ------------------------------------------------------------------ resting orders

    cdef void _rest(self, _Resting order, list events) except *:
        """Put a new order at the back of its level without matching (call phases)."""
        self._claim_id(order)
        cdef _Level level = self._level_for(order.is_buy, order.price)
        self._append(order, level)
        events.append(
            _BookLevelChanged(self.symbol, order.side, level.price_obj, level.quantity, level.count)
        )

    cdef void _append(self, _Resting rec, _Level level):
        """Link `rec` at the back of `level` (it must already be in `_orders`, its owner)."""
        rec.level = level
        rec.next = NULL
        rec.prev = level.tail
        if level.tail != NULL:
            (<_Resting>level.tail).next = <PyObject*>rec
        else:
            level.head = <PyObject*>rec
        level.tail = <PyObject*>rec
        level.quantity += rec.remaining
        level.count += 1

    cdef void _unlink(self, _Resting rec) except *:
        """Take `rec` out of its level's FIFO and drop the level once it is empty."""
        cdef _Level level = rec.level
        if rec.prev != NULL:
            (<_Resting>rec.prev).next = rec.next
        else:
            level.head = rec.next
        if rec.next != NULL:
            (<_Resting>rec.next).prev = rec.prev
        else:
            level.tail = rec.prev
        rec.prev = NULL
        rec.next = NULL
        level.count -= 1
        if level.count == 0:
            self._drop_level(level, rec.is_buy)

    cdef Py_ssize_t _bisect(self, list book, long long key):
        """Index of the first level whose key is not below `key` (the list is ascending)."""
        cdef Py_ssize_t low = 0
        cdef Py_ssize_t high = PyList_GET_SIZE(book)
        cdef Py_ssize_t mid
        while low < high:
            mid = (low + high) >> 1
            if (<_Level>PyList_GET_ITEM(book, mid)).key < key:
                low = mid + 1
            else:
                high = mid
        return low

    cdef _Level _find_level(self, bint is_buy, long long price):
        cdef list book = self._bids if is_buy else self._asks
        cdef long long key = price if is_buy else -price
        cdef Py_ssize_t i = self._bisect(book, key)
        cdef _Level level
        if i < PyList_GET_SIZE(book):
            level = <_Level>PyList_GET_ITEM(book, i)
            if level.key == key:
                return level
        return None

    cdef _Level _level_for(self, bint is_buy, long long price):
        cdef list book = self._bids if is_buy else self._asks
        cdef long long key = price if is_buy else -price
        cdef Py_ssize_t n = PyList_GET_SIZE(book)
        cdef Py_ssize_t i
        cdef _Level level
        if n and (<_Level>PyList_GET_ITEM(book, n - 1)).key == key:  # often the best level
            return <_Level>PyList_GET_ITEM(book, n - 1)
        i = self._bisect(book, key)
        if i < n:
            level = <_Level>PyList_GET_ITEM(book, i)
            if level.key == key:
                return level
        level = _Level.__new__(_Level)
        level.price = price
        level.key = key
        level.price_obj = price
        level.quantity = 0
        level.count = 0
        level.head = NULL
        level.tail = NULL
        book.insert(i, level)
        return level

    cdef inline void _claim_id(self, _Resting order) except *:
        """Enter `order` under its id; an id already open is refused, never overwritten (the
        order it names is still linked in its level: replacing it would free a linked record)."""
        if PyDict_SetDefault(self._orders, order.order_id, order) != <PyObject*>order:
            raise ValueError(f"order id {order.order_id} is already open in {self.symbol}")

    cdef void _drop_level(self, _Level level, bint is_buy) except *:
        cdef list book = self._bids if is_buy else self._asks
        cdef Py_ssize_t n = PyList_GET_SIZE(book)
        cdef Py_ssize_t i
        if n and <PyObject*>PyList_GET_ITEM(book, n - 1) == <PyObject*>level:
            del book[n - 1]  # the common case: the best level emptied
            return
        i = self._bisect(book, level.key)
        if i >= n or <PyObject*>PyList_GET_ITEM(book, i) != <PyObject*>level:
            raise RuntimeError(f"{self.symbol}: price level {level.price_obj} is not in the book")
        del book[i]

    cdef object _remove_resting(self, _Resting rec):
        """Take an open order out of the book; returns its level's new state."""
        cdef _Level level = rec.level
        del self._orders[rec.order_id]
        level.quantity -= rec.remaining
        self._unlink(rec)
        _end_view(rec)
        return _BookLevelChanged(self.symbol, rec.side, level.price_obj, level.quantity, level.count)

    cdef void _reduce_in_place(self, _Resting rec, new_quantity, list events) except *:
        """Lower an order's total quantity without losing its place in the queue."""
        cdef _Level level = rec.level
        cdef long long reduction = rec.quantity - <long long>new_quantity
        rec.quantity = new_quantity
        rec.remaining -= reduction
        level.quantity -= reduction
        if rec.view is not None:
            _sync_view(rec)
        events.append(
            _OrderAmended(
                self.symbol,
                rec.order_id,
                rec.participant_id,
                rec.side,
                level.price_obj,
                new_quantity,
                rec.remaining,
                True,
            )
        )
        if reduction:
            events.append(
                _BookLevelChanged(
                    self.symbol, rec.side, level.price_obj, level.quantity, level.count
                )
            )


cdef object _unfilled_reason(_Resting order, bint is_market, bint self_trade):
    if self_trade:
        return SELF_TRADE
    if is_market and order.remaining == order.quantity:
        return NO_LIQUIDITY
    if order.time_in_force is FOK or order.aon:
        return FILL_OR_KILL
    return IMMEDIATE_OR_CANCEL


def _record_order_id(_Resting rec):
    return rec.order_id
