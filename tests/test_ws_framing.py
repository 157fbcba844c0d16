"""The feed's fast path writes websocket frames itself: they must be exactly what a websocket
library reads back, whatever their size."""

from __future__ import annotations

import pytest
from websockets.frames import OP_TEXT, Frame
from websockets.streams import StreamReader

from api.ws import DirectWriter, _wire


def parse(wire: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(wire)
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("the frame is incomplete")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_a_broadcast_frame_is_a_final_unmasked_text_frame(size: int) -> None:
    text = ("đ" * size)[:size]  # multi-byte UTF-8: the length is in bytes, not characters
    frame = parse(_wire(text))
    assert (frame.opcode, frame.fin, bytes(frame.data).decode()) == (OP_TEXT, True, text)


def test_a_frame_is_encoded_once_for_all_subscribers() -> None:
    text = '{"type":"update"}'
    assert _wire(text) is _wire(text)
    assert parse(_wire("other")).data == b"other"


def test_without_a_uvicorn_connection_the_feed_uses_its_queue() -> None:
    async def send(message: object) -> None:  # e.g. another server, or a test client
        return None

    assert DirectWriter.of({"type": "websocket", "hogx.raw_send": send}) is None
    assert DirectWriter.of({"type": "websocket"}) is None
