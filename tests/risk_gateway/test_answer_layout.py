"""The Gateway answers a forwarded request with the Order Book's own answer
message, request id replaced (no copy into a new message): that is only right
while both answers have the very same fields. These tests fail if either
.proto drifts."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor

from services.common.pb import execution_pb2, order_book_pb2


def _layout(descriptor: Descriptor) -> list[tuple[str, int, int, int]]:
    return [
        (field.name, field.number, field.type, int(field.is_repeated))
        for field in descriptor.fields
    ]


@pytest.mark.parametrize(
    "name", ["InsertOrderResponse", "CancelOrderResponse", "AmendOrderResponse"]
)
def test_order_book_and_participant_answers_have_the_same_fields(name: str) -> None:
    ours = getattr(order_book_pb2, name).DESCRIPTOR
    theirs = getattr(execution_pb2, name).DESCRIPTOR
    assert _layout(ours) == _layout(theirs)


def test_the_order_book_answer_serialises_as_the_participant_answer() -> None:
    answer = order_book_pb2.InsertOrderResponse(
        request_id=7, order_id=42, timestamp=1_700_000_000_000_000_000,
        trade_ids=[3, 4], traded_quantity=5, resting_quantity=6,
    )  # fmt: skip
    parsed = execution_pb2.InsertOrderResponse.FromString(answer.SerializeToString())
    assert (parsed.request_id, parsed.order_id, list(parsed.trade_ids)) == (7, 42, [3, 4])
    assert (parsed.traded_quantity, parsed.resting_quantity) == (5, 6)
