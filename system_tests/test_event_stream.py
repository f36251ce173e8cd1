"""Event stream and snapshot on the Order Book port (service login; PROTOCOL.md section 5,
"Event stream rules").

Orders reach the book through the Risk Gateway (as participants) or straight on
the Order Book port with ``on_behalf_of_username`` (as the service), and the
events are read on separate service connections.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from system_tests.harness.checks import (
    BUY,
    FOK,
    GTC,
    IOC,
    SELL,
    SPREAD_CAPTURE,
    Side,
    TimeInForce,
    eq,
    ok,
    price_eq,
    refused,
)
from system_tests.harness.conn import Conn, Frame
from system_tests.harness.world import World, amend, cancel, insert
from system_tests.pb import order_book_pb2

EVENT_TYPES = (14, 15, 16, 17, 18, 19)
NAMES = {
    14: "OnOrderBookCreated",
    15: "OnOrderInserted",
    16: "OnOrderCancelled",
    17: "OnTrade",
    18: "OnOrderBookDeleted",
    19: "OnOrderAmended",
}


def _live(frame: Frame) -> bool:
    return frame.type in EVENT_TYPES and frame.msg is not None and frame.msg.sequence_number > 0


async def _event(conn: Conn, kind: int, what: str, **fields: Any) -> Any:
    """The next live event of ``kind`` whose fields equal ``fields``."""
    return await conn.expect(
        kind,
        lambda m: m.sequence_number > 0 and all(getattr(m, k) == v for k, v in fields.items()),
        what,
    )


def _ob_insert(
    book_id: int,
    side: Side,
    price: float,
    quantity: int,
    user: str = "sys-a",
    tif: TimeInForce = GTC,
) -> Any:
    return order_book_pb2.InsertOrderRequest(
        order_book_id=book_id,
        side=side,
        price=price,
        quantity=quantity,
        time_in_force=tif,
        on_behalf_of_username=user,
    )


def _events_of(conn: Conn, book_id: int) -> list[Frame]:
    return [f for f in conn.frames if _live(f) and f.msg.order_book_id == book_id]


def _describe(frames: list[Frame]) -> str:
    return ", ".join(f"{NAMES.get(f.type, f.type)}#{f.msg.sequence_number}" for f in frames)


async def test_snapshot_on_login_then_live_events(world: World) -> None:
    """On login a connection first receives OnOrderBookCreated for every live book, then OnOrderInserted for every resting order with its *remaining* quantity and no trade_ids, all with sequence_number 0; then every later event."""
    instrument = await world.create_instrument(tick=0.01)
    alice, bob = await world.gateway(0), await world.gateway(1)
    s1 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "s1").order_id
    s2 = ok(await insert(alice, instrument.symbol, SELL, 10.01, 5), "s2").order_id
    filled = ok(
        await insert(alice, instrument.symbol, SELL, 9.99, 3), "order to be filled"
    ).order_id
    gone = ok(
        await insert(alice, instrument.symbol, BUY, 9.00, 7), "order to be cancelled"
    ).order_id
    ok(await insert(bob, instrument.symbol, BUY, 10.00, 7), "bob fills 3 + 4")
    ok(await cancel(alice, instrument.symbol, gone), "cancel")
    ob = await world.order_book()
    marker = ok(
        await insert(alice, instrument.symbol, BUY, 5.00, 1), "order placed after the login"
    ).order_id
    live = await ob.expect_frame(
        lambda f: _live(f) and f.type == 15 and f.msg.order_id == marker,
        "the live OnOrderInserted of the order placed after login",
    )
    zero = [f for f in ob.frames if f.type in EVENT_TYPES and f.msg.sequence_number == 0]
    late = [f for f in zero if f.index > live.index]
    assert not late, (
        f"snapshot: expected every sequence_number-0 message before live events, received {len(late)} after"
    )
    snapshot = [f for f in zero if f.index < live.index]
    created = [f for f in snapshot if f.type == 14 and f.msg.order_book_id == instrument.book_id]
    eq(len(created), 1, f"OnOrderBookCreated for book {instrument.book_id} in the snapshot")
    eq(round(created[0].msg.tick_size, 9), 0.01, "OnOrderBookCreated.tick_size")
    resting = {
        f.msg.order_id: f
        for f in snapshot
        if f.type == 15 and f.msg.order_book_id == instrument.book_id
    }
    eq(sorted(resting), sorted([s1, s2]), "order ids in the snapshot (resting orders only)")
    eq(
        resting[s1].msg.quantity,
        6,
        "snapshot quantity of a partly filled order (its remaining quantity)",
    )
    eq(resting[s2].msg.quantity, 5, "snapshot quantity of an untouched order")
    eq(
        [list(f.msg.trade_ids) for f in resting.values()],
        [[], []],
        "trade_ids in snapshot OnOrderInserted",
    )
    price_eq(resting[s1].msg.price, 10.00, "snapshot price")
    eq(resting[s1].msg.side, SELL, "snapshot side")
    assert all(created[0].index < f.index for f in resting.values()), (
        "snapshot: expected OnOrderBookCreated before the book's orders, received it after"
    )
    assert filled not in resting, "snapshot: expected no filled orders, received one"


async def test_sequence_numbers_are_gap_free_and_shared(world: World) -> None:
    """sequence_number increases by exactly 1 per event across the whole Order Book service; every connection sees the same numbering."""
    instrument = await world.create_instrument()
    ob1, ob2 = await world.order_book(), await world.order_book()
    alice, bob = await world.gateway(0), await world.gateway(1)
    last = 0
    for i in range(5):
        maker = ok(
            await insert(alice, instrument.symbol, SELL, 10.00 + i / 100, 3), "maker"
        ).order_id
        ok(await insert(bob, instrument.symbol, BUY, 10.00 + i / 100, 2, IOC), "taker")
        ok(await cancel(alice, instrument.symbol, maker), "cancel")
        last = maker
    for conn in (ob1, ob2):
        await _event(conn, 16, "the last cancel's event", order_id=last)
    seqs = {}
    for name, conn in (("first", ob1), ("second", ob2)):
        numbers = [f.msg.sequence_number for f in conn.frames if _live(f)]
        gaps = [(a, b) for a, b in itertools.pairwise(numbers) if b != a + 1]
        assert numbers and not gaps, (
            f"{name} connection: expected gap-free sequence numbers, received jumps {gaps[:5]}"
        )
        seqs[name] = {
            f.msg.sequence_number: (f.type, getattr(f.msg, "order_id", 0))
            for f in conn.frames
            if _live(f)
        }
    common = sorted(set(seqs["first"]) & set(seqs["second"]))
    assert len(common) >= 20, (
        f"expected both connections to see the same >= 20 events, received {len(common)} in common"
    )
    diffs = [n for n in common if seqs["first"][n] != seqs["second"][n]]
    assert not diffs, (
        f"expected one numbering for all connections, received different events at {diffs[:5]}"
    )


async def test_insert_emits_inserted_then_trades_then_remainder_cancel(world: World) -> None:
    """An insert emits OnOrderInserted (full quantity, ids of its trades), then one OnTrade per fill in fill order, then OnOrderCancelled for an IOC remainder."""
    instrument = await world.create_instrument()
    ob = await world.order_book()
    alice, bob = await world.gateway(0), await world.gateway(1)
    m1 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 3), "m1").order_id
    m2 = ok(await insert(alice, instrument.symbol, SELL, 10.01, 3), "m2").order_id
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.01, 10, IOC), "IOC buy 10")
    await _event(ob, 16, "OnOrderCancelled of the IOC remainder", order_id=taker.order_id)
    events = [f for f in _events_of(ob, instrument.book_id) if f.msg.sequence_number > 0]
    start = next(
        i for i, f in enumerate(events) if f.type == 15 and f.msg.order_id == taker.order_id
    )
    chain = events[start : start + 4]
    eq([f.type for f in chain], [15, 17, 17, 16], f"events of the IOC insert ({_describe(chain)})")
    numbers = [f.msg.sequence_number for f in chain]
    eq(numbers, list(range(numbers[0], numbers[0] + 4)), "sequence numbers of one insert's events")
    inserted, t1, t2, cancelled = (f.msg for f in chain)
    eq(
        (inserted.quantity, list(inserted.trade_ids)),
        (10, list(taker.trade_ids)),
        "OnOrderInserted (quantity as inserted, trade_ids)",
    )
    eq(
        (inserted.side, inserted.time_in_force, inserted.username),
        (BUY, IOC, world.user(1)),
        "OnOrderInserted (side, time_in_force, username)",
    )
    eq([t1.trade_id, t2.trade_id], list(taker.trade_ids), "OnTrade ids in fill order")
    eq(
        [(t1.sell_order_id, t1.buy_order_id), (t2.sell_order_id, t2.buy_order_id)],
        [(m1, taker.order_id), (m2, taker.order_id)],
        "OnTrade (sell, buy) order ids",
    )
    price_eq(t1.price, 10.00, "first OnTrade.price (resting price)")
    price_eq(t1.aggressor_price, t1.price, "OnTrade.aggressor_price in a RESTING_ORDER_PRICE book")
    eq((t1.quantity, t1.aggressor_side), (3, BUY), "OnTrade (quantity, aggressor_side)")
    eq(cancelled.cancelled_quantity, 4, "OnOrderCancelled.cancelled_quantity of the IOC remainder")


async def test_unfillable_fok_emits_inserted_then_cancelled(world: World) -> None:
    """A FOK that cannot fill trades nothing: OnOrderInserted then OnOrderCancelled for the whole order, no OnTrade."""
    instrument = await world.create_instrument()
    ob = await world.order_book()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 3), "maker")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 5, FOK), "FOK 5")
    cancelled = await _event(ob, 16, "OnOrderCancelled of the FOK", order_id=taker.order_id)
    eq(cancelled.cancelled_quantity, 5, "cancelled_quantity of an unfillable FOK")
    chain = [
        f
        for f in _events_of(ob, instrument.book_id)
        if getattr(f.msg, "order_id", None) == taker.order_id or f.type == 17
    ]
    eq([f.type for f in chain], [15, 16], f"events of an unfillable FOK ({_describe(chain)})")


async def test_response_is_written_before_the_events_it_caused(world: World) -> None:
    """On the Order Book port the response to a request comes before the events that request caused, on the same connection."""
    instrument = await world.create_instrument()
    ob = await world.order_book()
    request = _ob_insert(instrument.book_id, SELL, 10.00, 5)
    response_frame = await ob.request_frame(request)
    ok(response_frame.msg, "direct insert")
    event = await ob.expect_frame(
        lambda f: f.type == 15 and f.msg.order_id == response_frame.msg.order_id,
        "its OnOrderInserted",
    )
    assert response_frame.index < event.index, (
        "direct insert: expected InsertOrderResponse before OnOrderInserted, received the event first"
    )
    cancel_request = order_book_pb2.CancelOrderRequest(
        order_book_id=instrument.book_id,
        order_id=response_frame.msg.order_id,
        on_behalf_of_username="sys-a",
    )
    cancel_frame = await ob.request_frame(cancel_request)
    ok(cancel_frame.msg, "direct cancel")
    eq(cancel_frame.msg.cancelled_quantity, 5, "CancelOrderResponse.cancelled_quantity")
    cancelled = await ob.expect_frame(
        lambda f: f.type == 16 and f.msg.order_id == response_frame.msg.order_id,
        "its OnOrderCancelled",
    )
    assert cancel_frame.index < cancelled.index, (
        "direct cancel: expected CancelOrderResponse before OnOrderCancelled, received the event first"
    )


async def test_direct_insert_event_carries_the_owner(world: World) -> None:
    """OnOrderInserted carries the order's username (on_behalf_of_username of the insert) and its fields as inserted."""
    instrument = await world.create_instrument()
    ob = await world.order_book()
    response = ok(
        await ob.request(_ob_insert(instrument.book_id, BUY, 9.50, 4, user="sys-owner", tif=GTC)),
        "direct insert",
    )
    event = await _event(ob, 15, "OnOrderInserted", order_id=response.order_id)
    eq(
        (event.username, event.order_book_id, event.side, event.quantity),
        ("sys-owner", instrument.book_id, BUY, 4),
        "OnOrderInserted (username, book, side, quantity)",
    )
    price_eq(event.price, 9.50, "OnOrderInserted.price")
    assert event.timestamp > 1.5e18, (
        f"OnOrderInserted.timestamp: expected ns since the epoch, received {event.timestamp}"
    )


async def test_cancel_emits_order_cancelled(world: World) -> None:
    """A cancel emits OnOrderCancelled with the order, its book, the cancelled quantity and a timestamp."""
    instrument = await world.create_instrument()
    ob = await world.order_book()
    alice = await world.gateway(0)
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 9), "order").order_id
    ok(await cancel(alice, instrument.symbol, order), "cancel")
    event = await _event(ob, 16, "OnOrderCancelled", order_id=order)
    eq(
        (event.order_book_id, event.cancelled_quantity),
        (instrument.book_id, 9),
        "OnOrderCancelled (book, cancelled_quantity)",
    )
    assert event.cancellation_timestamp > 1.5e18, (
        f"cancellation_timestamp: expected ns since the epoch, received {event.cancellation_timestamp}"
    )


async def test_create_book_emits_created_event(world: World) -> None:
    """ORDER_BOOK_CREATE_REQUEST answers an order_book_id and timestamp and emits OnOrderBookCreated with tick_size and price_rule."""
    ob = await world.order_book()
    watcher = await world.order_book()
    response = await world.create_book(ob, tick=0.25, price_rule=SPREAD_CAPTURE)
    assert response.order_book_id > 0 and response.timestamp > 1.5e18, (
        f"CreateOrderBookResponse: expected an id and a ns timestamp, received {response}"
    )
    event = await _event(watcher, 14, "OnOrderBookCreated", order_book_id=response.order_book_id)
    eq(
        (event.tick_size, event.price_rule),
        (0.25, SPREAD_CAPTURE),
        "OnOrderBookCreated (tick_size, price_rule)",
    )


@pytest.mark.parametrize("tick", [0.0, -0.01, math.nan, math.inf])
async def test_create_book_with_bad_tick_is_refused(world: World, tick: float) -> None:
    """tick_size must be finite and > 0; otherwise the request is an error and changes nothing."""
    ob = await world.order_book()
    response = await ob.request(order_book_pb2.CreateOrderBookRequest(tick_size=tick))
    refused(response, f"create a book with tick_size {tick}")


async def test_delete_book_cancels_every_resting_order_then_deletes(world: World) -> None:
    """Deleting a book emits OnOrderCancelled for every resting order, then OnOrderBookDeleted."""
    ob = await world.order_book()
    book = (await world.create_book(ob)).order_book_id
    ids = [
        ok(await ob.request(_ob_insert(book, side, price, 2)), "direct insert").order_id
        for side, price in ((BUY, 9.0), (SELL, 11.0), (SELL, 12.0))
    ]
    ok(
        await ob.request(order_book_pb2.DeleteOrderBookRequest(order_book_id=book)),
        "delete the book",
    )
    deleted = await _event(ob, 18, "OnOrderBookDeleted", order_book_id=book)
    events = _events_of(ob, book)
    cancels = [f for f in events if f.type == 16]
    eq(sorted(f.msg.order_id for f in cancels), sorted(ids), "orders cancelled by the delete")
    assert all(f.msg.sequence_number < deleted.sequence_number for f in cancels), (
        "delete: expected every OnOrderCancelled before OnOrderBookDeleted, received one after"
    )
    eq([f.msg.cancelled_quantity for f in cancels], [2, 2, 2], "cancelled quantities")
    world.raw_books.remove(book)
    refused(await ob.request(_ob_insert(book, BUY, 9.0, 1)), "insert into a deleted book")


async def test_clear_book_cancels_every_resting_order(world: World) -> None:
    """Clearing a book emits OnOrderCancelled for every resting order; ClearOrderBookResponse counts them; the book stays usable."""
    ob = await world.order_book()
    book = (await world.create_book(ob)).order_book_id
    ids = [
        ok(await ob.request(_ob_insert(book, BUY, 9.0 + i / 100, 1)), "direct insert").order_id
        for i in range(3)
    ]
    response = ok(
        await ob.request(order_book_pb2.ClearOrderBookRequest(order_book_id=book)), "clear"
    )
    eq(response.cancelled_orders, 3, "ClearOrderBookResponse.cancelled_orders")
    for order_id in ids:
        await _event(ob, 16, f"OnOrderCancelled of order {order_id}", order_id=order_id)
    ok(await ob.request(_ob_insert(book, BUY, 9.0, 1)), "insert after a clear")


@pytest.mark.parametrize("operation", ["insert", "cancel", "amend", "delete", "clear"])
async def test_unknown_book_is_an_error(world: World, operation: str) -> None:
    """Requests naming a book that does not exist are errors and change nothing."""
    ob = await world.order_book()
    book = 1 << 50
    request = {
        "insert": _ob_insert(book, BUY, 1.0, 1),
        "cancel": order_book_pb2.CancelOrderRequest(
            order_book_id=book, order_id=1, on_behalf_of_username="sys-a"
        ),
        "amend": order_book_pb2.AmendOrderRequest(
            order_book_id=book, order_id=1, price=1.0, quantity=1, on_behalf_of_username="sys-a"
        ),
        "delete": order_book_pb2.DeleteOrderBookRequest(order_book_id=book),
        "clear": order_book_pb2.ClearOrderBookRequest(order_book_id=book),
    }[operation]
    refused(await ob.request(request), f"{operation} on an unknown book")


@pytest.mark.parametrize(
    ("price", "quantity"),
    [(10.005, 1), (math.nan, 1), (-1.0, 1), (10.0, 0)],
    ids=["off-grid", "nan", "negative", "zero-qty"],
)
async def test_order_book_validates_price_and_quantity(
    world: World, price: float, quantity: int
) -> None:
    """The Order Book itself rejects invalid prices and quantities (engines hold prices as the integer n)."""
    instrument = await world.create_instrument()
    ob = await world.order_book()
    refused(
        await ob.request(_ob_insert(instrument.book_id, BUY, price, quantity)),
        f"direct insert at ({price}, {quantity})",
    )


async def test_amend_events(world: World) -> None:
    """OnOrderAmended carries the new price and remaining quantity and kept_priority (true only for a same-price reduction); a crossing amend's trades follow it."""
    instrument = await world.create_instrument()
    ob = await world.order_book()
    alice, bob = await world.gateway(0), await world.gateway(1)
    order = ok(await insert(alice, instrument.symbol, BUY, 9.90, 10), "order").order_id
    ok(await amend(alice, instrument.symbol, order, 9.90, 6), "reduce")
    reduced = await _event(ob, 19, "OnOrderAmended of the reduction", order_id=order)
    eq(
        (reduced.quantity, reduced.kept_priority, list(reduced.trade_ids)),
        (6, True, []),
        "reduction (quantity, kept_priority, trade_ids)",
    )
    ok(await amend(alice, instrument.symbol, order, 9.90, 8), "raise")
    raised = await _event(ob, 19, "OnOrderAmended of the raise", order_id=order)
    eq((raised.quantity, raised.kept_priority), (8, False), "raise (quantity, kept_priority)")
    maker = ok(await insert(bob, instrument.symbol, SELL, 10.00, 3), "bob's ask").order_id
    crossing = ok(await amend(alice, instrument.symbol, order, 10.02, 8), "crossing amend")
    amended = await _event(ob, 19, "OnOrderAmended of the crossing amend", order_id=order)
    trade = await _event(ob, 17, "OnTrade of the crossing amend", buy_order_id=order)
    eq(
        (amended.quantity, list(amended.trade_ids), amended.kept_priority),
        (8, list(crossing.trade_ids), False),
        "crossing amend (quantity before trades, trade_ids, kept_priority)",
    )
    price_eq(amended.price, 10.02, "OnOrderAmended.price (new)")
    eq(trade.sequence_number, amended.sequence_number + 1, "OnTrade right after OnOrderAmended")
    eq(trade.sell_order_id, maker, "OnTrade.sell_order_id")
    price_eq(trade.price, 10.00, "crossing amend trades at the resting price")


async def test_noop_amend_emits_no_event(world: World) -> None:
    """Amending to the same price and quantity succeeds and changes nothing (no event)."""
    instrument = await world.create_instrument()
    ob = await world.order_book()
    alice = await world.gateway(0)
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 4), "order").order_id
    ok(await amend(alice, instrument.symbol, order, 10.00, 4), "no-op amend")
    ok(await cancel(alice, instrument.symbol, order), "cancel afterwards")
    await _event(ob, 16, "OnOrderCancelled after the no-op amend", order_id=order)
    amended = [f for f in _events_of(ob, instrument.book_id) if f.type == 19]
    assert not amended, f"no-op amend: expected no OnOrderAmended, received {_describe(amended)}"


async def test_spread_capture_trade_event_prices(world: World) -> None:
    """In SPREAD_CAPTURE books OnTrade.price is the resting order's price and aggressor_price what the aggressor paid (its own limit)."""
    instrument = await world.create_instrument(price_rule=SPREAD_CAPTURE)
    ob = await world.order_book()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, BUY, 10.00, 5), "resting bid")
    taker = ok(await insert(bob, instrument.symbol, SELL, 9.97, 5), "aggressive sell")
    trade = await _event(ob, 17, "OnTrade", trade_id=taker.trade_ids[0])
    price_eq(trade.price, 10.00, "OnTrade.price (resting order's price)")
    price_eq(trade.aggressor_price, 9.97, "OnTrade.aggressor_price (aggressor's own limit)")
    eq(trade.aggressor_side, SELL, "OnTrade.aggressor_side")


async def test_deleted_book_is_absent_from_later_snapshots(world: World) -> None:
    """The login snapshot lists live books only: a deleted book and its orders are not in it."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 4), "order")
    ok(await world.delete_instrument(instrument.symbol), "delete the instrument")
    ob = await world.order_book()
    marker_book = (await world.create_book(ob)).order_book_id
    await _event(ob, 14, "OnOrderBookCreated of a new book", order_book_id=marker_book)
    stale = [
        f for f in ob.frames if f.type in (14, 15) and f.msg.order_book_id == instrument.book_id
    ]
    assert not stale, (
        f"snapshot after delete: expected nothing of book {instrument.book_id}, received {_describe(stale)}"
    )


async def test_ioc_that_fills_completely_emits_no_cancel(world: World) -> None:
    """An IOC with no remainder emits OnOrderInserted and its OnTrades only: OnOrderCancelled is for a remainder that is not left resting, and there is none."""
    ob = await world.order_book()
    book = (await world.create_book(ob)).order_book_id
    maker = ok(await ob.request(_ob_insert(book, SELL, 10.0, 5)), "resting ask").order_id
    taker = ok(await ob.request(_ob_insert(book, BUY, 10.0, 5, tif=IOC)), "IOC for all of it")
    eq((taker.traded_quantity, taker.resting_quantity), (5, 0), "IOC (traded, resting)")
    marker = ok(await ob.request(_ob_insert(book, BUY, 9.0, 1)), "marker insert").order_id
    await _event(ob, 15, "OnOrderInserted of the marker", order_id=marker)
    chain = [
        f
        for f in _events_of(ob, book)
        if f.type == 17 or getattr(f.msg, "order_id", None) in (maker, taker.order_id)
    ]
    eq(
        [f.type for f in chain],
        [15, 15, 17],
        f"events of a resting ask and an IOC that takes all of it ({_describe(chain)})",
    )


async def test_clearing_an_empty_book_succeeds_with_zero(world: World) -> None:
    """Clearing a live book with no resting orders is a success that cancels 0 orders and emits no event."""
    ob = await world.order_book()
    book = (await world.create_book(ob)).order_book_id
    response = ok(
        await ob.request(order_book_pb2.ClearOrderBookRequest(order_book_id=book)), "clear"
    )
    eq(response.cancelled_orders, 0, "ClearOrderBookResponse.cancelled_orders of an empty book")
    marker = ok(await ob.request(_ob_insert(book, BUY, 9.0, 1)), "marker insert").order_id
    await _event(ob, 15, "OnOrderInserted of the marker", order_id=marker)
    cancels = [f for f in _events_of(ob, book) if f.type == 16]
    assert not cancels, f"clear of an empty book: expected no event, received {_describe(cancels)}"


async def test_snapshot_carries_the_amended_price_and_remaining_quantity(world: World) -> None:
    """The login snapshot is the current state: an amended, partly filled order appears at its new price with its remaining quantity."""
    ob = await world.order_book()
    book = (await world.create_book(ob)).order_book_id
    order = ok(await ob.request(_ob_insert(book, BUY, 9.0, 10)), "bid").order_id
    ok(
        await ob.request(
            order_book_pb2.AmendOrderRequest(
                order_book_id=book,
                order_id=order,
                price=9.5,
                quantity=8,
                on_behalf_of_username="sys-a",
            )
        ),
        "amend to 9.5 x 8",
    )
    ok(await ob.request(_ob_insert(book, SELL, 9.5, 3, user="sys-b", tif=IOC)), "sell 3 into it")
    late = await world.order_book()
    marker = ok(await late.request(_ob_insert(book, SELL, 20.0, 1)), "marker insert").order_id
    await _event(late, 15, "OnOrderInserted of the marker", order_id=marker)
    snapshot = [
        f.msg
        for f in late.frames
        if f.type == 15 and f.msg.sequence_number == 0 and f.msg.order_id == order
    ]
    eq(len(snapshot), 1, f"snapshot OnOrderInserted messages for order {order}")
    price_eq(snapshot[0].price, 9.5, "snapshot price of an amended order (its new price)")
    eq(
        (snapshot[0].quantity, list(snapshot[0].trade_ids), snapshot[0].side),
        (5, [], BUY),
        "snapshot (remaining quantity, trade_ids, side) of an amended, partly filled order",
    )
