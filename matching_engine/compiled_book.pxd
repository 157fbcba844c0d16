# cython: language_level=3
"""The C interface of the compiled book (`compiled_book.pyx`), for other compiled twins to cimport.

`exchange/compiled_core.pyx` calls the book's commands through the `*_c` methods below: a C call
through the type's method table, not a Python method call (attribute lookup, argument parsing,
boxing). It does so only for an exact `OrderBook`: a subclass, or `book.py`'s book, goes through
its Python methods, so an override is always honoured. Each `def` method of the same name does
what its `*_c` method does; `book.py` states the rules for both.

Cython requires every C field and C method of a class declared here to be declared here, so the
book's private storage (`_Level`, `_Resting`, the C fields of `OrderBook`) is here too; only the
entry points are for other modules.

A module that cimports this one is compiled against this file: the classes' sizes and field
offsets, and the order of the C methods in their method tables. Changing it means rebuilding
those modules too. `setup.py` (`pip install -e .`) does: cythonize tracks this file as a
dependency of every .pyx that cimports it. For a module built on its own (compiled_book rebuilt,
compiled_core not), Cython checks only the classes' sizes when the importer loads (a ValueError
if a class is now smaller than the importer was built for, a warning if larger), not the method
tables. So setup.py compiles both with the SHA-256 of this file, and compiled_core refuses to
load beside a compiled_book built from another (`check_interfaces`): the Python trading path
runs instead of a C call landing in the wrong method.
"""

cimport cython
from cpython.object cimport PyObject


@cython.final
cdef class _Level:
    cdef long long price
    cdef long long key  # price for bids, -price for asks: the best level has the largest key
    cdef object price_obj  # the price as a Python int, for events
    cdef long long quantity
    cdef Py_ssize_t count
    cdef PyObject* head  # borrowed: records are owned by OrderBook._orders
    cdef PyObject* tail


@cython.final
cdef class _Resting:
    cdef object order_id
    cdef object participant_id
    cdef object side
    cdef bint is_buy
    cdef long long price
    cdef long long quantity  # total ordered, including what has filled
    cdef long long remaining
    cdef object time_in_force
    cdef object post_only
    cdef object all_or_none
    cdef bint aon
    cdef _Level level  # None until the order rests
    cdef PyObject* prev  # borrowed neighbours in the level's FIFO
    cdef PyObject* next
    cdef object view  # the `Order` handed out for this record, kept in sync; or None


cdef class OrderBook:
    cdef readonly object rules  # set_rules() changes it: the C copy of its limits with it
    cdef public object symbol
    cdef object _ids
    cdef long long _band_low
    cdef long long _band_high
    cdef long long _tick
    cdef long long _max_quantity
    cdef object _band_low_obj
    cdef object _band_high_obj
    cdef list _bids  # _Level, ascending key, best last
    cdef list _asks
    cdef dict _orders  # order id -> _Resting

    # The entry points: each is the `def` method of the same name, as a C call.
    cdef list place_c(self, object request, bint validated)
    cdef object validate_c(self, object request)
    cdef list cancel_c(self, object order_id)
    cdef list amend_c(self, object order_id, object price, object quantity, bint matching)
    cdef list rest_c(self, object request)
    cdef object order_c(self, object order_id)
    cdef object amend_error_c(self, object order_id, object price, object quantity)
    # place_c and validate_c on an order's fields, without an `OrderRequest` to carry them:
    # the compiled core places an order in continuous trading through these, and builds no
    # request for it (a call phase's order still goes to rest_c as a request)
    cdef list place_fields_c(
        self, object order_id, object participant_id, object side, object price,
        object quantity, object order_type, object tif, object post_only, object all_or_none,
        bint validated,
    )
    cdef object validate_fields_c(
        self, object order_id, object price, object quantity, bint is_market, object tif,
        object post_only,
    )

    # Private to compiled_book.pyx.
    cdef void _copy_rules(self, rules) except *
    cdef object _price_error(self, price)
    cdef object _quantity_error(self, quantity)
    cdef object _not_open_code(self, order_id)
    cdef object _view(self, _Resting rec)
    cdef void _enter(self, _Resting order, bint immediate, bint is_market, list events) except *
    cdef bint _take(self, _Resting taker, list events) except -1
    cdef bint _take_from_level(self, _Resting taker, _Level level, list events) except -1
    cdef long long _dry_run(
        self, bint is_buy, long long limit, participant_id, long long quantity, bint* self_trade
    ) except? -1
    cdef bint _would_trade(
        self, bint is_buy, long long limit, participant_id, long long quantity
    ) except -1
    cdef void _rest(self, _Resting order, list events) except *
    cdef void _append(self, _Resting rec, _Level level)
    cdef void _unlink(self, _Resting rec) except *
    cdef Py_ssize_t _bisect(self, list book, long long key)
    cdef _Level _find_level(self, bint is_buy, long long price)
    cdef _Level _level_for(self, bint is_buy, long long price)
    cdef inline void _claim_id(self, _Resting order) except *
    cdef void _drop_level(self, _Level level, bint is_buy) except *
    cdef object _remove_resting(self, _Resting rec)
    cdef void _reduce_in_place(self, _Resting rec, new_quantity, list events) except *
