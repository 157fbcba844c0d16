# cython: language_level=3
"""Fields of msgspec structs and `__slots__` classes, read and written straight in their slots.

A generic attribute lookup from C costs ~15-25 ns (type lookup, descriptor, call); the hot paths
of the compiled twins read a dozen fields per command. Every such field is an object slot at a
fixed offset, which its own member descriptor gives, so it can be read in a pointer load.

Only for exact instances of the class the offset came from (a subclass may lay out otherwise;
check with `type(x) is C`, never with an assertion, which `python -O` drops), and only for
fields that are always set: msgspec structs set every field (unless one is deleted, which hogx
never does), and a `__slots__` class must set each slot in `__init__`. Writing is only for `__slots__` classes and for msgspec
structs without garbage-collector tracking (`gc=False`) and not frozen: what their own
`__setattr__` then does.
"""

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


cdef inline Py_ssize_t slot_offset(object cls, str name) except -1:
    """The offset of field `name` of `cls`. ImportError, not TypeError, when it is not an object
    slot: should msgspec ever lay out its structs otherwise, the compiled twin does not load and
    its Python twin runs instead."""
    import types

    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None:
            break
    else:
        raise ImportError(f"{cls.__name__} has no field {name!r}")
    if type(descriptor) is not types.MemberDescriptorType:
        raise ImportError(f"{cls.__name__}.{name} is not a slot")
    if (<PyMemberDescrObject*>descriptor).d_member.type != 16:  # structmember.h: T_OBJECT_EX
        raise ImportError(f"{cls.__name__}.{name} is not an object slot")
    return (<PyMemberDescrObject*>descriptor).d_member.offset


cdef inline object get_field(object instance, Py_ssize_t offset):
    """Field at `offset` of an exact instance (a new reference, as an attribute read gives)."""
    return <object>(<PyObject**>((<char*><PyObject*>instance) + offset))[0]


cdef inline void set_field(object instance, Py_ssize_t offset, object value) noexcept:
    """Field at `offset` of an exact, untracked, mutable struct := `value`."""
    cdef PyObject** slot = <PyObject**>((<char*><PyObject*>instance) + offset)
    cdef PyObject* old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject*>value
    Py_XDECREF(old)
