# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The journal's record codec in C: the compiled twin of `_encode_batch` and `_parse_records`
in `exchange/journal.py`, which stays the readable statement of the format and the fallback.

Why: every record is encoded, checked and hashed once on the way in (group commit) and checked
twice on the way out (open, then read, on every start-up and replay). In Python that is a few
microseconds a record, mostly interpreter overhead around a 100-byte SHA-256; here it is the
hash itself. SHA-256 is OpenSSL's (the same library Python's hashlib uses), CRC-32 is zlib's
(the same function as `zlib.crc32`). The tests hold both codecs to the same bytes and the same
answers on damaged input (tests/test_journal_codec_twins.py).

Problems are returned as small integer codes; `journal.py` maps them to its messages.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy


cdef extern from "openssl/sha.h" nogil:
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c)
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t length)
    int SHA256_Final(unsigned char *md, SHA256_CTX *c)


cdef extern from "zlib.h" nogil:
    unsigned long crc32(unsigned long crc, const unsigned char *buf, unsigned int length)


# The format (see journal.py): u32 length, u32 crc, u64 sequence, u64 time_ns, payload, hash.
cdef enum:
    FRAME_BYTES = 8
    HEADER_BYTES = 24
    HASH_BYTES = 32
    MIN_LENGTH = 48

# Why a parse stopped early (journal.py's _SHORT, _LENGTH, _CRC, _SEQUENCE, _CHAIN).
PROBLEM_NONE = 0
PROBLEM_SHORT = 1
PROBLEM_LENGTH = 2
PROBLEM_CRC = 3
PROBLEM_SEQUENCE = 4
PROBLEM_CHAIN = 5


cdef inline uint32_t _get_u32(const uint8_t *p) noexcept nogil:
    # Byte by byte: little-endian on any machine.
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _get_u64(const uint8_t *p) noexcept nogil:
    return <uint64_t>_get_u32(p) | (<uint64_t>_get_u32(p + 4) << 32)


cdef inline void _put_u32(uint8_t *p, uint32_t value) noexcept nogil:
    p[0] = value & 0xFF
    p[1] = (value >> 8) & 0xFF
    p[2] = (value >> 16) & 0xFF
    p[3] = (value >> 24) & 0xFF


cdef inline void _put_u64(uint8_t *p, uint64_t value) noexcept nogil:
    _put_u32(p, <uint32_t>(value & 0xFFFFFFFFU))
    _put_u32(p + 4, <uint32_t>(value >> 32))


cdef inline void _chain_hash(
    const uint8_t *previous_hash, const uint8_t *hashed, size_t length, uint8_t *out
) noexcept nogil:
    """sha256(previous_hash || sequence || time_ns || payload), into `out`."""
    cdef SHA256_CTX context
    SHA256_Init(&context)
    SHA256_Update(&context, previous_hash, HASH_BYTES)
    SHA256_Update(&context, hashed, length)
    SHA256_Final(out, &context)


def encode_batch(list records not None, bytes previous_hash not None):
    """`_encode_batch`: the bytes of checked `(sequence, time_ns, payload)` records, and the
    new head hash. The caller (`_check_batch`) has checked types, limits and contiguity."""
    if PyBytes_GET_SIZE(previous_hash) != HASH_BYTES:
        raise ValueError("previous_hash must be 32 bytes")
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t count = len(records)
    cdef Py_ssize_t index
    cdef tuple record
    cdef bytes payload
    for index in range(count):
        record = <tuple?>records[index]
        if len(record) != 3:  # indexing below is unchecked
            raise ValueError("a record is (sequence, time_ns, payload)")
        payload = <bytes?>record[2]
        if PyBytes_GET_SIZE(payload) > 0xFFFFFFFFU - MIN_LENGTH:
            raise ValueError("a payload's length must fit the u32 length field")
        total += FRAME_BYTES + MIN_LENGTH + PyBytes_GET_SIZE(payload)
    cdef bytes data = PyBytes_FromStringAndSize(NULL, total)
    cdef uint8_t *out = <uint8_t *>PyBytes_AS_STRING(data)
    cdef uint8_t head[HASH_BYTES]
    memcpy(head, PyBytes_AS_STRING(previous_hash), HASH_BYTES)
    cdef Py_ssize_t offset = 0
    cdef Py_ssize_t size
    cdef uint32_t length
    cdef uint8_t *body
    for index in range(count):
        record = <tuple?>records[index]
        payload = <bytes?>record[2]
        size = PyBytes_GET_SIZE(payload)
        length = <uint32_t>(MIN_LENGTH + size)
        body = out + offset + FRAME_BYTES
        _put_u64(body, <uint64_t>record[0])
        _put_u64(body + 8, <uint64_t>record[1])
        memcpy(body + 16, PyBytes_AS_STRING(payload), size)
        _chain_hash(head, body, 16 + size, body + 16 + size)
        memcpy(head, body + 16 + size, HASH_BYTES)
        _put_u32(out + offset, length)
        _put_u32(out + offset + 4, <uint32_t>crc32(0, body, length))
        offset += FRAME_BYTES + length
    assert offset == total
    return data, PyBytes_FromStringAndSize(<char *>head, HASH_BYTES)


def parse_records(
    bytes buf not None,
    uint64_t expected,
    bytes previous_hash not None,
    uint64_t wanted_from,
    uint64_t wanted_to,
    bint stop_at_wanted_to,
    list out,
    object record_type,
    Py_ssize_t max_length,
):
    """`_parse_records`, with the problem as a code. `out` may be None (check only); records
    are built with `record_type(sequence, time_ns, payload, hash)`. `stop_at_wanted_to` is
    False when `wanted_to` is beyond every u64 (read to the end)."""
    if PyBytes_GET_SIZE(previous_hash) != HASH_BYTES:
        raise ValueError("previous_hash must be 32 bytes")
    cdef const uint8_t *data = <const uint8_t *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t offset = 0
    cdef Py_ssize_t body, record_end, hash_start
    cdef uint32_t length, crc
    cdef uint64_t sequence, time_ns
    cdef uint8_t previous[HASH_BYTES]
    cdef uint8_t computed[HASH_BYTES]
    cdef bint build = out is not None
    cdef int problem = PROBLEM_NONE
    cdef bint matched = False  # any record passed: then `expected` is its sequence + 1
    cdef uint64_t last_sequence = 0
    memcpy(previous, PyBytes_AS_STRING(previous_hash), HASH_BYTES)
    while offset < end:
        if end - offset < HEADER_BYTES:
            problem = PROBLEM_SHORT
            break
        length = _get_u32(data + offset)
        crc = _get_u32(data + offset + 4)
        sequence = _get_u64(data + offset + 8)
        time_ns = _get_u64(data + offset + 16)
        if length < MIN_LENGTH or length > max_length:
            problem = PROBLEM_LENGTH
            break
        body = offset + FRAME_BYTES
        record_end = body + length
        if record_end > end:
            problem = PROBLEM_SHORT
            break
        if <uint32_t>crc32(0, data + body, length) != crc:
            problem = PROBLEM_CRC
            break
        if sequence != expected:
            problem = PROBLEM_SEQUENCE
            break
        hash_start = record_end - HASH_BYTES
        _chain_hash(previous, data + body, hash_start - body, computed)
        if memcmp(computed, data + hash_start, HASH_BYTES) != 0:
            problem = PROBLEM_CHAIN
            break
        if build and sequence >= wanted_from:
            out.append(
                record_type(
                    sequence,
                    time_ns,
                    PyBytes_FromStringAndSize(<char *>data + offset + HEADER_BYTES,
                                              hash_start - offset - HEADER_BYTES),
                    PyBytes_FromStringAndSize(<char *>data + hash_start, HASH_BYTES),
                )
            )
        memcpy(previous, data + hash_start, HASH_BYTES)
        matched = True
        last_sequence = sequence
        expected = sequence + 1  # wraps only after 2**64 - 1: the answer below does not
        offset = record_end
        if stop_at_wanted_to and sequence == wanted_to:
            break
    next_expected = (<object>last_sequence) + 1 if matched else expected
    return offset, next_expected, PyBytes_FromStringAndSize(<char *>previous, HASH_BYTES), problem
