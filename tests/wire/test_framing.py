"""The sans-I/O frame decoder: test vectors, splits, coalescing, bad lengths."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.pb import admin_pb2, common_pb2
from services.common.wire import framing
from services.common.wire.framing import FrameDecoder, FrameError, encode_frame
from services.common.wire.registry import MESSAGE_TYPES, message_type_of

LOGIN_VECTOR = bytes.fromhex("0000000d0000000008011205616c696365")
LIST_VECTOR = bytes.fromhex("0000000400000022")


def test_login_request_vector() -> None:
    message = common_pb2.LoginRequest(request_id=1, username="alice")
    assert message_type_of(message) == 0
    assert encode_frame(0, message.SerializeToString()) == LOGIN_VECTOR
    [(message_type, payload)] = FrameDecoder().feed(LOGIN_VECTOR)
    assert message_type == 0
    assert common_pb2.LoginRequest.FromString(payload) == message


def test_list_instruments_vector_has_empty_payload() -> None:
    message = admin_pb2.ListInstrumentsRequest()
    assert MESSAGE_TYPES[admin_pb2.ListInstrumentsRequest] == 34
    assert encode_frame(34, message.SerializeToString()) == LIST_VECTOR
    assert FrameDecoder().feed(LIST_VECTOR) == [(34, b"")]


frames_strategy = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=300)), min_size=0, max_size=40
)


@settings(max_examples=300, deadline=None)
@given(frames=frames_strategy, data=st.data())
def test_any_split_decodes_to_the_same_frames(
    frames: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    """However the stream is cut (down to single bytes), the same frames come out."""
    stream = b"".join(encode_frame(t, p) for t, p in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=60)))
    decoder = FrameDecoder()
    out: list[tuple[int, bytes]] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out.extend(decoder.feed(stream[start:cut]))
        start = cut
    assert out == frames
    assert decoder.buffered == 0


def test_one_byte_chunks() -> None:
    frames = [(i % 70, bytes([i % 256]) * (i % 17)) for i in range(200)]
    stream = b"".join(encode_frame(t, p) for t, p in frames)
    decoder = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == frames


def test_thousand_frames_in_one_read() -> None:
    frames = [(10, i.to_bytes(4, "big")) for i in range(1000)]
    assert FrameDecoder().feed(b"".join(encode_frame(t, p) for t, p in frames)) == frames


def test_accepts_memoryview_and_bytearray() -> None:
    frame = encode_frame(3, b"\x08\x01")
    assert FrameDecoder().feed(memoryview(frame)) == [(3, b"\x08\x01")]
    assert FrameDecoder().feed(bytearray(frame)) == [(3, b"\x08\x01")]


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_length_below_four_is_an_error(length: int) -> None:
    with pytest.raises(FrameError, match="below the minimum"):
        FrameDecoder().feed(length.to_bytes(4, "big") + b"\x00" * 8)


@pytest.mark.parametrize("length", [(1 << 20) + 1, 0xFFFFFFFF])
def test_length_over_maximum_is_refused_before_the_body(length: int) -> None:
    decoder = FrameDecoder()
    # Only the header has arrived: the decoder must refuse without waiting for
    # (or allocating) the announced body.
    with pytest.raises(FrameError, match="exceeds the maximum") as info:
        decoder.feed(length.to_bytes(4, "big") + (42).to_bytes(4, "big"))
    assert info.value.message_type == 42
    assert decoder.buffered == 0


def test_maximum_length_is_inclusive_and_adjustable() -> None:
    decoder = FrameDecoder(max_length=framing.PRE_LOGIN_MAX_LENGTH)
    ok = encode_frame(0, b"x" * (4096 - 4))
    assert decoder.feed(ok) == [(0, b"x" * 4092)]
    with pytest.raises(FrameError):
        decoder.feed(encode_frame(0, b"x" * 4093))
    decoder = FrameDecoder(max_length=4096)
    decoder.max_length = 1 << 20
    assert decoder.feed(encode_frame(0, b"y" * 5000)) == [(0, b"y" * 5000)]


@pytest.mark.parametrize("split", [False, True])
def test_frames_before_a_bad_length_in_the_same_read_travel_in_the_error(split: bool) -> None:
    """Good frames ahead of a bad length are handed over (in the error), whether
    or not an earlier call left part of them buffered."""
    good = encode_frame(3, b"") + encode_frame(40, b"\x08\x05")
    decoder = FrameDecoder()
    stream = good + (2).to_bytes(4, "big")
    if split:
        assert decoder.feed(stream[:5]) == []
        stream = stream[5:]
    with pytest.raises(FrameError) as caught:
        decoder.feed(stream)
    assert caught.value.frames == [(3, b""), (40, b"\x08\x05")]
    assert "below the minimum" in caught.value.reason


def test_a_bad_length_alone_carries_no_frames() -> None:
    with pytest.raises(FrameError) as caught:
        FrameDecoder(max_length=100).feed((101).to_bytes(4, "big") + (40).to_bytes(4, "big"))
    assert caught.value.frames == [] and caught.value.message_type == 40


def test_decoder_is_pure() -> None:
    """The framing module imports no networking or event-loop code."""
    tree = ast.parse(Path(framing.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "struct", "typing"}, imported
