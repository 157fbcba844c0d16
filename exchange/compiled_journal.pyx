# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The journal's record codec in C: the compiled twin of `_encode_batch_python`,
`_parse_records_python` and `_decode_checked_python` in `exchange/journal.py`, which stays the
readable statement of the format and the fallback.

Why: every record is encoded, checked and hashed once on the way in (group commit) and checked
twice on the way out (open, then read, on every start-up and replay). In Python that is a few
microseconds a record, mostly interpreter overhead around a 100-byte SHA-256; here it is the
hash itself. SHA-256 is OpenSSL's (the same library Python's hashlib uses), CRC-32 is zlib's
(the same function as `zlib.crc32`). The tests hold both codecs to the same bytes and the same
answers on damaged input (tests/test_journal_codec_twins.py).

A replay checks each chunk with `parse_records` (building nothing, on a read-ahead thread: the
check releases the GIL), then decodes its good prefix with `decode_checked`: each payload decoded
straight from the chunk by the decoder it is given, with no record or hash object built per
record.

Problems are returned as small integer codes; `journal.py` maps them to its messages.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
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


cdef extern from "pthread.h" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(
        pthread_t *thread, const void *attributes, void *(*run)(void *) noexcept nogil, void *arg
    )
    int pthread_join(pthread_t thread, void **result)


# The format (see journal.py): u32 length, u32 crc, u64 sequence, u64 time_ns, payload, hash.
cdef enum:
    FRAME_BYTES = 8
    HEADER_BYTES = 24
    HASH_BYTES = 32
    MIN_LENGTH = 48

# Why a parse stopped early (journal.py's _SHORT, _LENGTH, _CRC, _SEQUENCE, _CHAIN).
cdef enum Problem:
    P_NONE = 0
    P_SHORT = 1
    P_LENGTH = 2
    P_CRC = 3
    P_SEQUENCE = 4
    P_CHAIN = 5

PROBLEM_NONE = P_NONE
PROBLEM_SHORT = P_SHORT
PROBLEM_LENGTH = P_LENGTH
PROBLEM_CRC = P_CRC
PROBLEM_SEQUENCE = P_SEQUENCE
PROBLEM_CHAIN = P_CHAIN


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


def encode_batch(records, bytes previous_hash not None):
    """`_encode_batch`: the bytes of checked `(sequence, time_ns, payload)` records, and the
    new head hash. The caller (`_check_batch`) has checked limits and contiguity.

    Two passes: the first, with the GIL, reads every record into C arrays (running whatever
    Python code converting its fields takes, so nothing can change under the second); the
    second, without it, writes and hashes, so the event loop runs meanwhile."""
    if PyBytes_GET_SIZE(previous_hash) != HASH_BYTES:
        raise ValueError("previous_hash must be 32 bytes")
    cdef list payloads = []  # keeps every payload alive while the second pass reads it
    cdef Py_ssize_t count = len(records)
    cdef uint64_t *sequences = <uint64_t *>PyMem_Malloc((count + 1) * sizeof(uint64_t))
    cdef uint64_t *times = <uint64_t *>PyMem_Malloc((count + 1) * sizeof(uint64_t))
    cdef const uint8_t **sources = <const uint8_t **>PyMem_Malloc((count + 1) * sizeof(void *))
    cdef Py_ssize_t *sizes = <Py_ssize_t *>PyMem_Malloc((count + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t index
    cdef bytes payload
    cdef bytes data
    cdef Py_ssize_t written
    cdef uint8_t *out
    cdef uint8_t head[HASH_BYTES]
    try:
        if not (sequences and times and sources and sizes):
            raise MemoryError()
        for index, record in enumerate(records):
            if index >= count:
                raise ValueError("the records changed while being read")
            sequence, time_ns, payload_object = record
            if isinstance(payload_object, (bytearray, memoryview)):
                payload = bytes(payload_object)  # as `bytes + payload` would take it
            else:
                payload = <bytes?>payload_object
            if PyBytes_GET_SIZE(payload) > 0xFFFFFFFFU - MIN_LENGTH:
                raise ValueError("a payload's length must fit the u32 length field")
            payloads.append(payload)
            sequences[index] = sequence
            times[index] = time_ns
            sources[index] = <const uint8_t *>PyBytes_AS_STRING(payload)
            sizes[index] = PyBytes_GET_SIZE(payload)
            total += FRAME_BYTES + MIN_LENGTH + sizes[index]
        if len(payloads) != count:
            raise ValueError("the records changed while being read")
        data = PyBytes_FromStringAndSize(NULL, total)
        memcpy(head, PyBytes_AS_STRING(previous_hash), HASH_BYTES)
        out = <uint8_t *>PyBytes_AS_STRING(data)
        with nogil:
            written = _write_records(out, total, count, sequences, times, sources, sizes, head)
        if written != total:  # cannot happen: the buffer was sized from the same sizes
            raise SystemError("journal codec: records do not fill the buffer sized for them")
    finally:
        PyMem_Free(sequences)
        PyMem_Free(times)
        PyMem_Free(sources)
        PyMem_Free(sizes)
    return data, PyBytes_FromStringAndSize(<char *>head, HASH_BYTES)


cdef Py_ssize_t _write_records(
    uint8_t *out,
    Py_ssize_t total,
    Py_ssize_t count,
    const uint64_t *sequences,
    const uint64_t *times,
    const uint8_t **sources,
    const Py_ssize_t *sizes,
    uint8_t *head,
) noexcept nogil:
    """Frame, hash and chain `count` records into `out` (`total` bytes); `head` goes in as
    the previous hash and comes out as the last record's. Returns the bytes written, or -1
    (having written nothing past `total`) if the records would not fit."""
    cdef Py_ssize_t offset = 0
    cdef Py_ssize_t index, size
    cdef uint32_t length
    cdef uint8_t *body
    for index in range(count):
        size = sizes[index]
        length = <uint32_t>(MIN_LENGTH + size)
        if offset + FRAME_BYTES + <Py_ssize_t>length > total:
            return -1
        body = out + offset + FRAME_BYTES
        _put_u64(body, sequences[index])
        _put_u64(body + 8, times[index])
        memcpy(body + 16, sources[index], size)
        _chain_hash(head, body, 16 + size, body + 16 + size)
        memcpy(head, body + 16 + size, HASH_BYTES)
        _put_u32(out + offset, length)
        _put_u32(out + offset + 4, <uint32_t>crc32(0, body, length))
        offset += FRAME_BYTES + length
    return offset


cdef struct _Scan:
    Py_ssize_t offset  # after the last good record
    uint64_t last_sequence  # of the last good record, if any
    bint matched  # any good record
    int problem
    uint8_t previous[HASH_BYTES]  # the last good record's hash (or the starting one)


cdef void _scan(
    const uint8_t *data,
    Py_ssize_t end,
    uint64_t expected,
    bint exhausted,
    uint64_t wanted_to,
    bint stop_at_wanted_to,
    Py_ssize_t max_length,
    _Scan *scan,
) noexcept nogil:
    """Check records from offset 0, as `_parse_records_python` does, without building them.
    `exhausted`: the record before had sequence 2**64 - 1, so no sequence can follow it."""
    cdef Py_ssize_t offset = 0
    cdef Py_ssize_t body, record_end, hash_start
    cdef uint32_t length, crc
    cdef uint64_t sequence
    cdef uint8_t computed[HASH_BYTES]
    scan.problem = P_NONE
    scan.matched = False
    while offset < end:
        if end - offset < HEADER_BYTES:
            scan.problem = P_SHORT
            break
        length = _get_u32(data + offset)
        crc = _get_u32(data + offset + 4)
        sequence = _get_u64(data + offset + 8)
        if length < MIN_LENGTH or <Py_ssize_t>length > max_length:
            scan.problem = P_LENGTH
            break
        body = offset + FRAME_BYTES
        record_end = body + length
        if record_end > end:
            scan.problem = P_SHORT
            break
        if <uint32_t>crc32(0, data + body, length) != crc:
            scan.problem = P_CRC
            break
        if exhausted or sequence != expected:
            scan.problem = P_SEQUENCE
            break
        hash_start = record_end - HASH_BYTES
        _chain_hash(scan.previous, data + body, hash_start - body, computed)
        if memcmp(computed, data + hash_start, HASH_BYTES) != 0:
            scan.problem = P_CHAIN
            break
        memcpy(scan.previous, data + hash_start, HASH_BYTES)
        scan.matched = True
        scan.last_sequence = sequence
        exhausted = sequence == 0xFFFFFFFFFFFFFFFFU
        expected = sequence + 1  # wraps only after 2**64 - 1, which `exhausted` stops at
        offset = record_end
        if stop_at_wanted_to and sequence == wanted_to:
            break
    scan.offset = offset


cdef struct _Half:
    const uint8_t *data
    Py_ssize_t end
    uint64_t expected
    bint exhausted
    uint64_t wanted_to
    bint stop_at_wanted_to
    Py_ssize_t max_length
    _Scan scan


cdef void *_scan_half(void *argument) noexcept nogil:
    cdef _Half *half = <_Half *>argument
    _scan(
        half.data, half.end, half.expected, half.exhausted, half.wanted_to,
        half.stop_at_wanted_to, half.max_length, &half.scan,
    )
    return NULL


cdef Py_ssize_t _middle(
    const uint8_t *data, Py_ssize_t end, Py_ssize_t max_length, uint64_t *count
) noexcept nogil:
    """The first record boundary at or past the middle of `data[:end]`, found by walking the
    records' lengths from 0 (nothing else of them is checked), and in `count` how many records
    lie before it; 0 when the framing breaks before it, or no record follows it."""
    cdef Py_ssize_t offset = 0
    cdef uint32_t length
    count[0] = 0
    while offset < end // 2:
        if end - offset < HEADER_BYTES:
            return 0
        length = _get_u32(data + offset)
        if length < MIN_LENGTH or <Py_ssize_t>length > max_length:
            return 0
        if <Py_ssize_t>length > end - offset - FRAME_BYTES:
            return 0
        offset += FRAME_BYTES + length
        count[0] += 1
    return offset if offset < end else 0


cdef void _scan_in_halves(
    const uint8_t *data,
    Py_ssize_t end,
    uint64_t expected,
    uint64_t wanted_to,
    bint stop_at_wanted_to,
    Py_ssize_t max_length,
    Py_ssize_t split_bytes,
    _Scan *scan,
) noexcept nogil:
    """`_scan` from offset 0, with the same answer, in two halves at once when `data[:end]` is
    at least `split_bytes` long: the second half, from the first record boundary past the
    middle, on a thread of its own, chained from the hash stored just before it.

    Why it may: every record stores its own chain hash, so a record can be checked from the
    hash stored in the one before it, without having checked the ones before that. The second
    half's answer counts only once the first half proved good to its very end (its last
    record's stored hash then checked, and the sequence continuing from it); else the first
    half's answer is the whole answer, as a scan from 0 would have stopped there too. The
    check of a 4 MB read chunk (CRC-32 and SHA-256 of every record) then takes about half as
    long on two cores: the journal's opening scan, `hogx verify`, every read."""
    cdef uint64_t count = 0
    cdef Py_ssize_t middle = 0
    cdef pthread_t thread
    cdef bint started = False
    cdef _Half second
    if end >= split_bytes:
        middle = _middle(data, end, max_length, &count)
    if stop_at_wanted_to and wanted_to - expected < count:
        middle = 0  # the read stops in the first half: the second would be checked for nothing
    if middle == 0:
        _scan(data, end, expected, False, wanted_to, stop_at_wanted_to, max_length, scan)
        return
    second.data = data + middle
    second.end = end - middle
    # The first half's last record, if good, is number `expected + count - 1`; sequences are
    # u64, so none follows 2**64 - 1.
    second.exhausted = expected + count - 1 == 0xFFFFFFFFFFFFFFFFU
    second.expected = expected + count
    second.wanted_to = wanted_to
    second.stop_at_wanted_to = stop_at_wanted_to
    second.max_length = max_length
    memcpy(second.scan.previous, data + middle - HASH_BYTES, HASH_BYTES)
    started = pthread_create(&thread, NULL, _scan_half, &second) == 0
    _scan(data, middle, expected, False, wanted_to, stop_at_wanted_to, max_length, scan)
    if started:
        pthread_join(thread, NULL)
    if scan.problem != P_NONE or scan.offset != middle:
        return  # a problem in the first half: the answer
    if stop_at_wanted_to and scan.last_sequence == wanted_to:
        return  # it stopped where it was asked to, at the middle
    if not started:
        _scan_half(&second)  # no thread: the second half after the first
    scan.offset = middle + second.scan.offset
    scan.problem = second.scan.problem
    if second.scan.matched:
        scan.last_sequence = second.scan.last_sequence
        memcpy(scan.previous, second.scan.previous, HASH_BYTES)


cdef inline const uint8_t *_check_buffer(
    bytes buf,
    uint64_t expected,
    bytes previous_hash,
    uint64_t wanted_to,
    bint stop_at_wanted_to,
    Py_ssize_t max_length,
    Py_ssize_t split_bytes,
    _Scan *scan,
) except NULL:
    """Check the records of `buf` from offset 0 into `scan` (without the GIL; in two halves at
    once from `split_bytes` on); returns the buffer's data."""
    if PyBytes_GET_SIZE(previous_hash) != HASH_BYTES:
        raise ValueError("previous_hash must be 32 bytes")
    cdef const uint8_t *data = <const uint8_t *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
    memcpy(scan.previous, PyBytes_AS_STRING(previous_hash), HASH_BYTES)
    with nogil:
        _scan_in_halves(
            data, end, expected, wanted_to, stop_at_wanted_to, max_length, split_bytes, scan
        )
    return data


cdef tuple _scan_answer(_Scan *scan, uint64_t expected):
    """The `(offset, next expected, head hash, problem)` that both parsers return."""
    next_expected = (<object>scan.last_sequence) + 1 if scan.matched else expected
    previous = PyBytes_FromStringAndSize(<char *>scan.previous, HASH_BYTES)
    return scan.offset, next_expected, previous, scan.problem


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
    Py_ssize_t split_bytes,
):
    """`_parse_records`, with the problem as a code. `out` may be None (check only); records
    are built with `record_type(sequence, time_ns, payload, hash)`. `stop_at_wanted_to` is
    False when `wanted_to` is beyond every u64 (read to the end).

    The records are checked without the GIL (the hashing is nearly all the work), in two
    halves at once when `buf` is at least `split_bytes` long (`_scan_in_halves`), then the
    wanted ones among those that passed are built with it."""
    cdef _Scan scan
    cdef const uint8_t *data = _check_buffer(
        buf, expected, previous_hash, wanted_to, stop_at_wanted_to, max_length, split_bytes, &scan
    )
    cdef Py_ssize_t offset = 0
    cdef Py_ssize_t record_end, hash_start
    cdef uint64_t sequence
    if out is not None:
        while offset < scan.offset:  # every record here passed the scan
            record_end = offset + FRAME_BYTES + _get_u32(data + offset)
            sequence = _get_u64(data + offset + 8)
            if sequence >= wanted_from:
                hash_start = record_end - HASH_BYTES
                out.append(
                    record_type(
                        sequence,
                        _get_u64(data + offset + 16),
                        PyBytes_FromStringAndSize(<char *>data + offset + HEADER_BYTES,
                                                  hash_start - offset - HEADER_BYTES),
                        PyBytes_FromStringAndSize(<char *>data + hash_start, HASH_BYTES),
                    )
                )
            offset = record_end
    return _scan_answer(&scan, expected)


def decode_checked(bytes buf not None, Py_ssize_t end, uint64_t wanted_from, object decode):
    """`_decode_checked_python`: decode the payload of each record of `buf[:end]` from sequence
    `wanted_from` on, with `decode`, until it raises (an `Exception`). `buf[:end]` is a prefix
    that `parse_records` checked (a read-ahead checks chunks on another thread, then the replay
    decodes them with this); its framing is still bounds-checked here, so a wrong `end` is a
    ValueError, never a read outside the buffer.

    Returns `(first_offset, times, entries, error)`: where the first wanted record starts (`end`
    if there is none), the `time_ns` and decoded payload of each record decoded, and what
    `decode` raised, if it did, at the record after the last one decoded."""
    if not 0 <= end <= PyBytes_GET_SIZE(buf):
        raise ValueError(f"end {end} is outside a buffer of {PyBytes_GET_SIZE(buf)} bytes")
    cdef const uint8_t *data = <const uint8_t *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t offset = 0
    cdef uint32_t length
    while offset < end:  # the framing, before anything is built on it
        if end - offset < HEADER_BYTES:
            raise ValueError(f"a record at offset {offset} is cut by the end of the prefix")
        length = _get_u32(data + offset)
        if length < MIN_LENGTH or <Py_ssize_t>length > end - offset - FRAME_BYTES:
            raise ValueError(f"the record at offset {offset} does not fit the prefix")
        offset += FRAME_BYTES + length
    offset = 0
    cdef Py_ssize_t first_offset = -1
    cdef Py_ssize_t record_end
    cdef list times = []
    cdef list entries = []
    error = None
    while offset < end:
        record_end = offset + FRAME_BYTES + _get_u32(data + offset)
        if first_offset < 0:
            if _get_u64(data + offset + 8) < wanted_from:
                offset = record_end
                continue
            first_offset = offset
        payload = PyBytes_FromStringAndSize(
            <char *>data + offset + HEADER_BYTES, record_end - HASH_BYTES - offset - HEADER_BYTES
        )
        try:
            entry = decode(payload)
        except Exception as raised:
            error = raised
            break
        times.append(_get_u64(data + offset + 16))
        entries.append(entry)
        offset = record_end
    if first_offset < 0:
        first_offset = end
    return first_offset, times, entries, error
