"""The one place where Admin's protobuf messages become domain objects and back."""

from __future__ import annotations

from typing import Any

from services.admin.lifecycle import (
    Action,
    CreateBook,
    CreateInstrument,
    DeleteBook,
    Outcome,
    RemoveInstrument,
    Reply,
)
from services.admin.model import (
    BookId,
    BookInfo,
    InstrumentSpec,
    Listing,
    PriceRule,
    Symbol,
    validate_spec,
)
from services.common.pb import admin_pb2, common_pb2, info_pb2, order_book_pb2

__all__ = [
    "action_request",
    "book_from_created",
    "listing_from_on_instrument",
    "on_instrument",
    "reply_from_response",
    "spec_from_request",
]

MT = common_pb2.MessageType


def _price_rule(value: int) -> PriceRule:
    """A rule from a peer's message; an unknown number is shown as the default."""
    try:
        return PriceRule(value)
    except ValueError:
        return PriceRule.RESTING_ORDER_PRICE


def spec_from_request(request: admin_pb2.CreateInstrumentRequest) -> InstrumentSpec | str:
    """Validate an admin create request; returns the spec or the error text."""
    if not request.HasField("instrument"):
        return "instrument is required"
    instrument = request.instrument
    return validate_spec(
        symbol=instrument.symbol,
        description=instrument.description,
        currency=instrument.currency,
        multiplier=instrument.multiplier,
        tick_size=request.tick_size,
        price_rule=int(request.price_rule),
    )


def listing_from_on_instrument(message: info_pb2.OnInstrument) -> Listing:
    """Info's announcement of a live instrument (trusted as Info states it)."""
    instrument = message.instrument
    spec = InstrumentSpec(
        symbol=Symbol(instrument.symbol),
        description=instrument.description,
        currency=instrument.currency,
        multiplier=instrument.multiplier,
        tick_size=message.tick_size,
        price_rule=_price_rule(int(message.price_rule)),
    )
    return Listing(spec, BookId(message.order_book_id), message.created_timestamp)


def on_instrument(listing: Listing) -> info_pb2.OnInstrument:
    spec = listing.spec
    return info_pb2.OnInstrument(
        instrument=common_pb2.Instrument(
            symbol=spec.symbol,
            description=spec.description,
            currency=spec.currency,
            multiplier=spec.multiplier,
        ),
        created_timestamp=listing.created_timestamp,
        tick_size=spec.tick_size,
        order_book_id=listing.order_book_id,
        price_rule=int(spec.price_rule),  # type: ignore[arg-type]
    )


def book_from_created(message: order_book_pb2.OnOrderBookCreated) -> BookInfo:
    return BookInfo(
        BookId(message.order_book_id), message.tick_size, _price_rule(int(message.price_rule))
    )


def action_request(action: Action) -> tuple[int, Any]:
    """The upstream request (type, message) that performs a lifecycle action."""
    if isinstance(action, CreateBook):
        return MT.ORDER_BOOK_CREATE_REQUEST, order_book_pb2.CreateOrderBookRequest(
            tick_size=action.tick_size,
            price_rule=int(action.price_rule),  # type: ignore[arg-type]
        )
    if isinstance(action, DeleteBook):
        return MT.ORDER_BOOK_DELETE_REQUEST, order_book_pb2.DeleteOrderBookRequest(
            order_book_id=action.book_id
        )
    if isinstance(action, CreateInstrument):
        spec = action.spec
        return MT.INFO_CREATE_INSTRUMENT_REQUEST, info_pb2.CreateInstrumentRequest(
            instrument=common_pb2.Instrument(
                symbol=spec.symbol,
                description=spec.description,
                currency=spec.currency,
                multiplier=spec.multiplier,
            ),
            tick_size=spec.tick_size,
            order_book_id=action.book_id,
        )
    return MT.INFO_DELETE_INSTRUMENT_REQUEST, info_pb2.DeleteInstrumentRequest(
        instrument_symbol=action.symbol
    )


def reply_from_response(action: Action, response: Any) -> Reply:
    """Turn an upstream response (possibly carrying an error) into a :class:`Reply`."""
    if response.error_message:
        return Reply(Outcome.REFUSED, response.error_message)
    if isinstance(action, CreateBook):
        return Reply(Outcome.OK, book_id=response.order_book_id)
    if isinstance(action, CreateInstrument):
        return Reply(Outcome.OK, timestamp=response.created_timestamp)
    assert isinstance(action, DeleteBook | RemoveInstrument)
    return Reply(Outcome.OK)
