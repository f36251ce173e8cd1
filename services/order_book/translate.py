"""Where protobuf meets the engine: events out as frames, requests in as commands.

The engine speaks integer ticks and NamedTuples; the wire speaks doubles and
protobuf.  This module is the only place the two meet, in both directions:

* :class:`EventEncoder` turns each domain event into one encoded frame (built
  once, then sent to every subscriber of the event stream);
* :class:`CommandProcessor` validates a request at the edge (enums, prices on
  the book's tick grid) and applies it to the engine.  The live service and the
  journal replay both go through :meth:`CommandProcessor.apply`, which is what
  makes a replay reproduce the exact same state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Final

from google.protobuf.message import Message

from services.common.pb import common_pb2, order_book_pb2
from services.common.prices import PriceError, from_ticks, to_ticks
from services.common.wire.framing import encode_frame
from services.order_book.engine import Engine
from services.order_book.events import (
    InsertResult,
    OnOrderAmended,
    OnOrderBookCreated,
    OnOrderBookDeleted,
    OnOrderCancelled,
    OnOrderInserted,
    OnTrade,
)

MT = common_pb2.MessageType
INSERT: Final = MT.ORDER_BOOK_INSERT_ORDER_REQUEST
CANCEL: Final = MT.ORDER_BOOK_CANCEL_ORDER_REQUEST
AMEND: Final = MT.ORDER_BOOK_AMEND_ORDER_REQUEST
CREATE: Final = MT.ORDER_BOOK_CREATE_REQUEST
DELETE: Final = MT.ORDER_BOOK_DELETE_REQUEST
CLEAR: Final = MT.ORDER_BOOK_CLEAR_REQUEST
STATS: Final = MT.ORDER_BOOK_GET_STATS_REQUEST

# Event frame types as plain ints: attribute access on a protobuf enum wrapper
# costs a Python-level lookup per event on the hot path.
_ON_ORDER_BOOK_CREATED: Final = int(MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED)
_ON_ORDER_INSERTED: Final = int(MT.ORDER_BOOK_ON_ORDER_INSERTED)
_ON_ORDER_CANCELLED: Final = int(MT.ORDER_BOOK_ON_ORDER_CANCELLED)
_ON_TRADE: Final = int(MT.ORDER_BOOK_ON_TRADE)
_ON_ORDER_BOOK_DELETED: Final = int(MT.ORDER_BOOK_ON_ORDER_BOOK_DELETED)
_ON_ORDER_AMENDED: Final = int(MT.ORDER_BOOK_ON_ORDER_AMENDED)

JOURNALED: Final = frozenset({INSERT, CANCEL, AMEND, CREATE, DELETE, CLEAR})
"""Commands that can change state (and so are journaled when accepted)."""

VALID_SIDES: Final = frozenset(common_pb2.Side.values())
VALID_TIFS: Final = frozenset(common_pb2.TimeInForce.values())
VALID_PRICE_RULES: Final = frozenset(common_pb2.PriceRule.values())

pb = order_book_pb2


def _fill_insert_response(response: Any, result: InsertResult) -> None:
    response.order_id = result.order_id
    response.timestamp = result.timestamp
    response.trade_ids.extend(result.trade_ids)
    response.traded_quantity = result.traded_quantity
    response.resting_quantity = result.resting_quantity


def unknown_book(order_book_id: int) -> str:
    return f"unknown order book {order_book_id}"


class EventEncoder:
    """Encodes engine events as wire frames; remembers every book's tick size.

    Tick sizes are kept after a book is deleted (ids are never reused), so late
    events of a deleted book still convert.
    """

    def __init__(self) -> None:
        self.tick_sizes: dict[int, float] = {}
        self._encoders: dict[type, Callable[[Any], bytes]] = {
            OnOrderBookCreated: self._created,
            OnOrderInserted: self._inserted,
            OnOrderCancelled: self._cancelled,
            OnTrade: self._trade,
            OnOrderBookDeleted: self._deleted,
            OnOrderAmended: self._amended,
        }

    def encode(self, event: Any) -> bytes:
        return self._encoders[type(event)](event)

    def _price(self, order_book_id: int, ticks: int) -> float:
        return from_ticks(ticks, self.tick_sizes[order_book_id])

    def _created(self, e: OnOrderBookCreated) -> bytes:
        self.tick_sizes[e.order_book_id] = e.tick_size
        message = pb.OnOrderBookCreated(
            order_book_id=e.order_book_id,
            tick_size=e.tick_size,
            price_rule=e.price_rule,  # type: ignore[arg-type]
            sequence_number=e.sequence_number,
        )
        return encode_frame(_ON_ORDER_BOOK_CREATED, message.SerializeToString())

    def _inserted(self, e: OnOrderInserted) -> bytes:
        message = pb.OnOrderInserted(
            order_id=e.order_id,
            order_book_id=e.order_book_id,
            timestamp=e.timestamp,
            side=e.side,  # type: ignore[arg-type]
            price=self._price(e.order_book_id, e.price_ticks),
            quantity=e.quantity,
            trade_ids=e.trade_ids,
            username=e.username,
            time_in_force=e.time_in_force,  # type: ignore[arg-type]
            sequence_number=e.sequence_number,
        )
        return encode_frame(_ON_ORDER_INSERTED, message.SerializeToString())

    def _cancelled(self, e: OnOrderCancelled) -> bytes:
        message = pb.OnOrderCancelled(
            order_id=e.order_id,
            cancellation_timestamp=e.timestamp,
            order_book_id=e.order_book_id,
            cancelled_quantity=e.cancelled_quantity,
            sequence_number=e.sequence_number,
        )
        return encode_frame(_ON_ORDER_CANCELLED, message.SerializeToString())

    def _trade(self, e: OnTrade) -> bytes:
        book = e.order_book_id
        message = pb.OnTrade(
            trade_id=e.trade_id,
            order_book_id=book,
            timestamp=e.timestamp,
            buy_order_id=e.buy_order_id,
            sell_order_id=e.sell_order_id,
            price=self._price(book, e.price_ticks),
            quantity=e.quantity,
            aggressor_side=e.aggressor_side,  # type: ignore[arg-type]
            aggressor_price=self._price(book, e.aggressor_price_ticks),
            sequence_number=e.sequence_number,
        )
        return encode_frame(_ON_TRADE, message.SerializeToString())

    def _deleted(self, e: OnOrderBookDeleted) -> bytes:
        message = pb.OnOrderBookDeleted(
            order_book_id=e.order_book_id, timestamp=e.timestamp, sequence_number=e.sequence_number
        )
        return encode_frame(_ON_ORDER_BOOK_DELETED, message.SerializeToString())

    def _amended(self, e: OnOrderAmended) -> bytes:
        message = pb.OnOrderAmended(
            order_id=e.order_id,
            order_book_id=e.order_book_id,
            timestamp=e.timestamp,
            price=self._price(e.order_book_id, e.price_ticks),
            quantity=e.quantity,
            trade_ids=e.trade_ids,
            kept_priority=e.kept_priority,
            sequence_number=e.sequence_number,
        )
        return encode_frame(_ON_ORDER_AMENDED, message.SerializeToString())

    def snapshot(self, engine: Engine) -> Iterator[bytes]:
        """The login snapshot: every live book, then every resting order, sequence 0.

        Resting orders come per book, per side, best price first and in time
        priority within a level, so a mirror rebuilds the same queue order.
        """
        books = list(engine.books())
        for info in books:
            self.tick_sizes[info.order_book_id] = info.tick_size
            message = pb.OnOrderBookCreated(
                order_book_id=info.order_book_id,
                tick_size=info.tick_size,
                price_rule=info.price_rule,  # type: ignore[arg-type]
            )
            yield encode_frame(_ON_ORDER_BOOK_CREATED, message.SerializeToString())
        for order in engine.resting_orders():
            message_inserted = pb.OnOrderInserted(
                order_id=order.order_id,
                order_book_id=order.order_book_id,
                timestamp=order.timestamp,
                side=order.side,  # type: ignore[arg-type]
                price=self._price(order.order_book_id, order.price_ticks),
                quantity=order.quantity,
                username=order.username,
                time_in_force=order.time_in_force,  # type: ignore[arg-type]
            )
            yield encode_frame(_ON_ORDER_INSERTED, message_inserted.SerializeToString())


class CommandProcessor:
    """Validates requests and applies them to the engine (live and in replay)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._apply: dict[int, Callable[[Any, int], tuple[Message, bool]]] = {
            INSERT: self._insert,
            CANCEL: self._cancel,
            AMEND: self._amend,
            CREATE: self._create,
            DELETE: self._delete,
            CLEAR: self._clear,
            STATS: self._stats,
        }

    def apply(self, kind: int, request: Any, timestamp: int) -> tuple[Message, bool]:
        """Run one request; returns its response and whether it changed anything
        worth journaling (an accepted state-changing command)."""
        return self._apply[kind](request, timestamp)

    def _ticks(self, order_book_id: int, price: float) -> int | str:
        info = self.engine.book_info(order_book_id)
        if info is None:
            return unknown_book(order_book_id)
        ticks = to_ticks(price, info.tick_size)
        if isinstance(ticks, PriceError):
            return ticks.message
        return ticks

    def _insert(self, r: Any, timestamp: int) -> tuple[Message, bool]:
        response = pb.InsertOrderResponse(request_id=r.request_id)
        if r.client_order_id:
            prior = self.engine.previous_insert(r.on_behalf_of_username, r.client_order_id)
            if prior is not None:
                # A resend: the original outcome, whatever this request says; nothing changes.
                _fill_insert_response(response, prior)
                return response, False
        error = ""
        if r.side not in VALID_SIDES:
            error = f"invalid side {r.side}"
        elif r.time_in_force not in VALID_TIFS:
            error = f"invalid time_in_force {r.time_in_force}"
        else:
            ticks = self._ticks(r.order_book_id, r.price)
            if isinstance(ticks, str):
                error = ticks
            else:
                result = self.engine.insert(
                    r.order_book_id,
                    r.on_behalf_of_username,
                    r.side,
                    ticks,
                    r.quantity,
                    r.time_in_force,
                    r.client_order_id,
                    timestamp,
                )
                error = result.error
                if not error:
                    _fill_insert_response(response, result)
                    return response, True
        response.error_message = error
        return response, False

    def _cancel(self, r: Any, timestamp: int) -> tuple[Message, bool]:
        result = self.engine.cancel(r.order_book_id, r.order_id, r.on_behalf_of_username, timestamp)
        if result.error:
            return pb.CancelOrderResponse(
                request_id=r.request_id, error_message=result.error
            ), False
        response = pb.CancelOrderResponse(
            request_id=r.request_id, cancelled_quantity=result.cancelled_quantity
        )
        return response, True

    def _amend(self, r: Any, timestamp: int) -> tuple[Message, bool]:
        ticks = self._ticks(r.order_book_id, r.price)
        if isinstance(ticks, str):
            return pb.AmendOrderResponse(request_id=r.request_id, error_message=ticks), False
        result = self.engine.amend(
            r.order_book_id, r.order_id, r.on_behalf_of_username, ticks, r.quantity, timestamp
        )
        if result.error:
            return pb.AmendOrderResponse(request_id=r.request_id, error_message=result.error), False
        response = pb.AmendOrderResponse(
            request_id=r.request_id,
            timestamp=result.timestamp,
            trade_ids=result.trade_ids,
            traded_quantity=result.traded_quantity,
            resting_quantity=result.resting_quantity,
        )
        return response, True

    def _create(self, r: Any, timestamp: int) -> tuple[Message, bool]:
        if r.price_rule not in VALID_PRICE_RULES:
            error = f"invalid price_rule {r.price_rule}"
            return pb.CreateOrderBookResponse(request_id=r.request_id, error_message=error), False
        if not math.isfinite(r.tick_size) or r.tick_size <= 0:
            error = f"tick_size must be finite and > 0, got {r.tick_size!r}"
            return pb.CreateOrderBookResponse(request_id=r.request_id, error_message=error), False
        result = self.engine.create_book(r.tick_size, r.price_rule, timestamp)
        if result.error:
            return pb.CreateOrderBookResponse(
                request_id=r.request_id, error_message=result.error
            ), False
        response = pb.CreateOrderBookResponse(
            request_id=r.request_id, order_book_id=result.order_book_id, timestamp=result.timestamp
        )
        return response, True

    def _delete(self, r: Any, timestamp: int) -> tuple[Message, bool]:
        result = self.engine.delete_book(r.order_book_id, timestamp)
        response = pb.DeleteOrderBookResponse(request_id=r.request_id, error_message=result.error)
        return response, not result.error

    def _clear(self, r: Any, timestamp: int) -> tuple[Message, bool]:
        result = self.engine.clear_book(r.order_book_id, timestamp)
        if result.error:
            return pb.ClearOrderBookResponse(
                request_id=r.request_id, error_message=result.error
            ), False
        response = pb.ClearOrderBookResponse(
            request_id=r.request_id, cancelled_orders=result.cancelled_orders
        )
        return response, True

    def _stats(self, r: Any, timestamp: int) -> tuple[Message, bool]:
        stats = self.engine.stats()
        response = pb.GetStatsResponse(
            request_id=r.request_id,
            exchange_profit=stats.exchange_profit,
            trade_count=stats.trade_count,
            traded_volume=stats.traded_volume,
            resting_orders=stats.resting_orders,
        )
        return response, False
