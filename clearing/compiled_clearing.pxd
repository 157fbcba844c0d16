# cython: language_level=3
"""The C interface of `compiled_clearing.pyx`, for other compiled modules to `cimport`.

`exchange/compiled_core.pyx` calls `Risk` through the `*_c` methods below: C calls through the
class's vtable, with no attribute lookup, argument parsing or boxing of the call. Each does
exactly what the `def` method of the same name does (which calls it), so the rules stay those of
`clearing/risk.py`. Amounts stay Python ints (`object`): nothing here may wrap.

Cython requires every C field and C method of a class to be declared here once this file
exists; `public` fields stay readable and writable from Python, as before.

A change to this file changes the C layout (fields) or the vtable (methods) that a module
cimporting it was compiled against, so both modules must be rebuilt together. What guards
against a stale pair, and no more: cythonize() tracks this file as a dependency of the modules
that cimport it, so `setup.py build_ext` regenerates and rebuilds them too; and when
compiled_core is imported, Cython compares each class's instance size with the size it was
compiled for: smaller raises ValueError (`exchange/core.py` then runs its Python trading path),
larger only warns. Cython does not check the vtable, so setup.py compiles both modules with the
SHA-256 of this file, and compiled_core refuses to load beside a compiled_clearing built from
another (`check_interfaces`): the Python trading path runs instead of a C call landing in the
wrong method.
"""


cdef class Balance:
    cdef public object available
    cdef public object reserved


cdef class Accounts:
    # participant_id -> {asset: Balance}: two lookups by keys that hash cheaply (an int is
    # its own hash, a str keeps its hash once computed), where one (participant_id, asset) key
    # was a new tuple to build and hash on every movement
    cdef public dict _balances
    cdef public dict _net_deposits

    cdef inline Balance _balance(self, object participant_id, object asset)
    cdef inline int _credit(self, object participant_id, object asset, object amount) except -1
    cdef inline object _available(self, object participant_id, object asset)
    cdef list _each(self)
    cdef _deposit(self, object participant_id, object asset, object amount)
    cdef _withdraw(self, object participant_id, object asset, object amount)


cdef class Hold:
    cdef public object order_id
    cdef public object participant_id
    cdef public object asset
    cdef public object amount
    cdef public object limit_price  # the price the hold was computed at (buys; 0 for sells)
    cdef public Balance balance


cdef class Risk:
    cdef public Accounts accounts
    cdef public dict _holds

    # The operations of the trading path, as C methods: `hold_for_buy` and the rest call these.
    cdef object hold_for_buy_c(
        self, object order_id, object participant_id, object price, object quantity,
        object lot_size, object fees,
    )
    cdef object hold_for_sell_c(
        self, object order_id, object participant_id, object symbol, object quantity
    )
    cdef bint resize_buy_c(
        self, object order_id, object price, object remaining, object lot_size, object fees
    ) except -1
    cdef bint resize_sell_c(self, object order_id, object remaining) except -1
    cdef object release_c(self, object order_id)
    cdef object held_c(self, object order_id)
    cdef object settle_c(
        self, object symbol, object trade_id, object buy_order_id, object sell_order_id,
        object price, object quantity, object buy_remaining, object lot_size,
        object buyer_fee_bps, object seller_fee_bps, object max_fee_bps,
    )

    cdef object _hold(self, object order_id, object participant_id, object asset,
                      object amount, object limit_price)
    cdef bint _resize(self, Hold hold, object amount, object limit_price) except -1
