"""Market data from Info (PROTOCOL.md section 5, "Market-data rules").

Negative checks ("nothing is sent") use barriers rather than sleeps: a later
change that must produce a message, whose sequence number then shows that
nothing was sent in between (or a barrier instrument, see World.info_barrier).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from system_tests.harness.checks import (
    BUY,
    PRICE_DEPTH_BOOK,
    SELL,
    SPREAD_CAPTURE,
    TOP_OF_BOOK,
    SubscriptionType,
    eq,
    has,
    ok,
    price_eq,
    refused,
    top,
)
from system_tests.harness.conn import Conn, Frame
from system_tests.harness.workload import run_workload
from system_tests.harness.world import (
    Instrument,
    World,
    amend,
    cancel,
    insert,
    subscribe,
    unsubscribe,
)
from system_tests.pb import info_pb2

TOB, DEPTH, TRADE = 23, 24, 25


def _right_after(index: int, frame: Frame) -> bool:
    return frame.index == index + 1


def _ticks(levels: Any, instrument: Instrument) -> list[tuple[int, int]]:
    return [(round(level.price / instrument.tick), level.quantity) for level in levels]


async def _subscribed(
    conn: Conn, instrument: Instrument, kind: SubscriptionType, depth: int = 0
) -> Any:
    """Subscribe; return the state message that must follow the response."""
    request = info_pb2.OrderBookSubscribeRequest(
        instrument_symbol=instrument.symbol, subscription_type=kind, depth=depth
    )
    response = await conn.request_frame(request)
    ok(response.msg, f"subscribe {instrument.symbol} type {kind}")
    message_type = TOB if kind == TOP_OF_BOOK else DEPTH
    state = await conn.expect_frame(
        lambda f: (
            f.index > response.index
            and f.type == message_type
            and f.msg.instrument_symbol == instrument.symbol
        ),
        "the current state after subscribing",
    )
    eq(state.msg.sequence_number, 1, "sequence_number of the first message of a subscription")
    return state.msg


async def _caught_up(world: World, who: int) -> Conn:
    """An Info connection on which Info has applied every event caused so far.

    Info mirrors the Order Book with some lag; a subscription's first message is
    Info's current state, so tests that check it against orders placed just
    before wait for Info to catch up first (see World.info_barrier).
    """
    conn = await world.info(who)
    await world.info_barrier(conn)
    return conn


async def _next(conn: Conn, message_type: int, instrument: Instrument, what: str) -> Any:
    return await conn.expect(message_type, lambda m: m.instrument_symbol == instrument.symbol, what)


async def test_login_lists_every_live_instrument(world: World) -> None:
    """On login every connection receives OnInstrument for each live instrument (with its tick_size, order_book_id, price_rule)."""
    instrument = await world.create_instrument(
        tick=0.05, price_rule=SPREAD_CAPTURE, description="listed at login"
    )
    info = await world.info(1)
    later = await world.create_instrument()
    await info.expect(
        20,
        lambda m: m.instrument.symbol == later.symbol,
        "OnInstrument of an instrument created after login",
    )
    listed = [m for m in info.received(20) if m.instrument.symbol == instrument.symbol]
    eq(len(listed), 1, f"OnInstrument messages for {instrument.symbol} at login")
    msg = listed[0]
    eq(
        (msg.order_book_id, msg.price_rule, msg.instrument.description, msg.instrument.currency),
        (instrument.book_id, SPREAD_CAPTURE, "listed at login", "USD"),
        "OnInstrument (order_book_id, price_rule, description, currency)",
    )
    price_eq(msg.tick_size, 0.05, "OnInstrument.tick_size")
    assert msg.created_timestamp > 1.5e18, (
        f"OnInstrument.created_timestamp: expected ns since the epoch, received {msg.created_timestamp}"
    )


async def test_new_and_deleted_instruments_reach_every_connection(world: World) -> None:
    """Every logged-in connection gets OnInstrument for each new instrument and OnInstrumentDeleted for each removed one."""
    conns = [await world.info(0), await world.info(1)]
    admin_user, admin_password = world.target.admin_login
    conns.append(await world.logged_in(world.target.info, admin_user, admin_password))
    instrument = await world.create_instrument()
    for conn in conns:
        created = await conn.expect(
            20, lambda m: m.instrument.symbol == instrument.symbol, f"OnInstrument on {conn.label}"
        )
        eq(created.order_book_id, instrument.book_id, "OnInstrument.order_book_id")
    ok(await world.delete_instrument(instrument.symbol), "delete")
    for conn in conns:
        deleted = await conn.expect(
            28,
            lambda m: m.instrument_symbol == instrument.symbol,
            f"OnInstrumentDeleted on {conn.label}",
        )
        assert deleted.timestamp > 1.5e18, (
            f"OnInstrumentDeleted.timestamp: expected ns since the epoch, received {deleted.timestamp}"
        )


async def test_subscribe_is_answered_then_immediately_followed_by_the_state(world: World) -> None:
    """A successful subscribe is answered, then immediately followed by one message with the current state."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(await insert(alice, instrument.symbol, BUY, 9.99, 10), "bid")
    ok(await insert(alice, instrument.symbol, SELL, 10.02, 7), "ask")
    info = await world.info(1)
    for kind, message_type in ((TOP_OF_BOOK, TOB), (PRICE_DEPTH_BOOK, DEPTH)):
        request = info_pb2.OrderBookSubscribeRequest(
            instrument_symbol=instrument.symbol, subscription_type=kind
        )
        response = await info.request_frame(request)
        ok(response.msg, f"subscribe type {kind}")
        following = await info.expect_frame(
            partial(_right_after, response.index),
            "the frame right after the subscribe response",
        )
        assert (
            following.type == message_type and following.msg.instrument_symbol == instrument.symbol
        ), (
            f"after the subscribe response: expected its state message next, received {following.describe()}"
        )


async def test_top_of_book_state_on_subscribe(world: World) -> None:
    """OnTopOfBook carries best bid and best ask (price, total quantity at that price)."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, BUY, 9.99, 10), "bid 1")
    ok(await insert(bob, instrument.symbol, BUY, 9.99, 3), "bid 2 same price")
    ok(await insert(alice, instrument.symbol, BUY, 9.98, 5), "lower bid")
    ok(await insert(bob, instrument.symbol, SELL, 10.02, 7), "ask")
    state = await _subscribed(await _caught_up(world, 0), instrument, TOP_OF_BOOK)
    eq(top(state), ((9.99, 13), (10.02, 7)), "top of book (best bid, best ask)")


async def test_top_of_book_of_an_empty_book_has_no_sides(world: World) -> None:
    """best_bid is absent when there are no bids, best_ask absent when there are no asks."""
    instrument = await world.create_instrument()
    state = await _subscribed(await world.info(0), instrument, TOP_OF_BOOK)
    eq(top(state), (None, None), "top of book of an empty book")


async def test_depth_state_on_subscribe(world: World) -> None:
    """OnPriceDepthBook: bids best (highest) first, asks lowest first, quantity summed per level; depth 0 means all levels."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    for side, price, quantity in (
        (BUY, 9.98, 5),
        (BUY, 9.99, 10),
        (BUY, 9.99, 3),
        (BUY, 9.50, 1),
        (SELL, 10.05, 1),
        (SELL, 10.02, 7),
    ):
        ok(await insert(alice, instrument.symbol, side, price, quantity), "order")
    state = await _subscribed(await _caught_up(world, 0), instrument, PRICE_DEPTH_BOOK, depth=0)
    eq(_ticks(state.bids, instrument), [(999, 13), (998, 5), (950, 1)], "depth bids")
    eq(_ticks(state.asks, instrument), [(1002, 7), (1005, 1)], "depth asks")


@pytest.mark.parametrize("depth", [1, 2])
async def test_depth_is_limited_per_side(world: World, depth: int) -> None:
    """depth = levels per side for PRICE_DEPTH_BOOK."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    for i in range(3):
        ok(await insert(alice, instrument.symbol, BUY, instrument.px(990 - i), 1), "bid")
        ok(await insert(alice, instrument.symbol, SELL, instrument.px(1000 + i), 1), "ask")
    state = await _subscribed(await _caught_up(world, 0), instrument, PRICE_DEPTH_BOOK, depth=depth)
    eq(
        _ticks(state.bids, instrument),
        [(990 - i, 1) for i in range(depth)],
        f"bids at depth {depth}",
    )
    eq(
        _ticks(state.asks, instrument),
        [(1000 + i, 1) for i in range(depth)],
        f"asks at depth {depth}",
    )


async def test_subscribing_to_an_unknown_symbol_is_an_error(world: World) -> None:
    """Subscribing to an unknown symbol is an error."""
    info = await world.info(0)
    refused(await subscribe(info, "NO.SUCH-SYMBOL", TOP_OF_BOOK), "subscribe to an unknown symbol")


async def test_top_of_book_is_sent_only_when_the_top_changes(world: World) -> None:
    """OnTopOfBook is sent only when the best bid or best ask (price or quantity) changed."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(await insert(alice, instrument.symbol, BUY, 10.00, 5), "best bid")
    info = await _caught_up(world, 1)
    await _subscribed(info, instrument, TOP_OF_BOOK)
    ok(await insert(alice, instrument.symbol, BUY, 9.90, 5), "a worse bid (top unchanged)")
    ok(await insert(alice, instrument.symbol, SELL, 10.50, 5), "an ask (top changed)")
    update = await _next(info, TOB, instrument, "the top-of-book update for the new ask")
    eq(
        (update.sequence_number, top(update)),
        (2, ((10.00, 5), (10.50, 5))),
        "(sequence_number, top) after a worse bid then a new ask",
    )
    ok(await insert(alice, instrument.symbol, BUY, 10.00, 2), "more quantity at the best bid")
    update = await _next(
        info, TOB, instrument, "the top-of-book update for more quantity at the best bid"
    )
    eq(
        (update.sequence_number, top(update)),
        (3, ((10.00, 7), (10.50, 5))),
        "(sequence_number, top) after a quantity change at the best",
    )


async def test_depth_message_only_when_its_limited_view_changes(world: World) -> None:
    """A depth subscription gets a message only when its depth-limited view changed; each message carries the whole (depth-limited) book."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(await insert(alice, instrument.symbol, BUY, 10.00, 5), "best bid")
    info = await _caught_up(world, 1)
    await _subscribed(info, instrument, PRICE_DEPTH_BOOK, depth=1)
    ok(await insert(alice, instrument.symbol, BUY, 9.90, 5), "a second level (outside depth 1)")
    ok(await insert(alice, instrument.symbol, SELL, 10.10, 4), "an ask (inside depth 1)")
    update = await _next(info, DEPTH, instrument, "the depth update for the ask")
    eq(
        update.sequence_number,
        2,
        "sequence_number after a change outside the view, then one inside",
    )
    eq(
        (_ticks(update.bids, instrument), _ticks(update.asks, instrument)),
        ([(1000, 5)], [(1010, 4)]),
        "depth-1 view",
    )


async def test_trades_go_once_to_each_subscribed_connection(world: World) -> None:
    """OnTrade goes once to every connection subscribed (with either type or both) to that instrument, and to no other; price is the resting order's price; sequence_number counts the instrument's trades from 1."""
    instrument = await world.create_instrument()
    both, one, none = await world.info(0), await world.info(1), await world.info(0)
    await _subscribed(both, instrument, TOP_OF_BOOK)
    await _subscribed(both, instrument, PRICE_DEPTH_BOOK)
    await _subscribed(one, instrument, PRICE_DEPTH_BOOK)
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "maker")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.03, 3), "taker")
    for conn in (both, one, none):
        await world.info_barrier(conn)
    for name, conn, count in (
        ("subscribed to both", both, 1),
        ("subscribed to depth", one, 1),
        ("not subscribed", none, 0),
    ):
        trades = [m for m in conn.received(TRADE) if m.instrument_symbol == instrument.symbol]
        eq(len(trades), count, f"OnTrade messages on the connection {name}")
    trade = next(m for m in both.received(TRADE) if m.instrument_symbol == instrument.symbol)
    eq(
        (trade.trade_id, trade.quantity, trade.aggressor_side, trade.sequence_number),
        (taker.trade_ids[0], 3, BUY, 1),
        "OnTrade (trade_id, quantity, aggressor_side, sequence_number)",
    )
    price_eq(trade.price, 10.00, "OnTrade.price (the resting order's price)")


async def test_trade_numbering_is_per_instrument(world: World) -> None:
    """sequence_number on OnTrade counts the trades of that instrument from 1, the same for every subscriber (a late subscriber continues the count)."""
    instrument = await world.create_instrument()
    early = await world.info(0)
    await _subscribed(early, instrument, TOP_OF_BOOK)
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "maker")
    ids = []
    for _ in range(3):
        ids += ok(await insert(bob, instrument.symbol, BUY, 10.00, 1), "taker").trade_ids
    late = await world.info(1)
    await _subscribed(late, instrument, TOP_OF_BOOK)
    ids += ok(
        await insert(bob, instrument.symbol, BUY, 10.00, 1), "taker after the late subscription"
    ).trade_ids
    numbers = []
    for trade_id in ids:
        numbers.append(
            (
                await early.expect(TRADE, has(trade_id=trade_id), f"OnTrade {trade_id}")
            ).sequence_number
        )
    eq(numbers, [1, 2, 3, 4], "trade sequence numbers of the instrument")
    late_trade = await late.expect(
        TRADE, lambda m: m.trade_id == ids[-1], "the fourth trade on the late subscriber"
    )
    eq(late_trade.sequence_number, 4, "sequence_number of the fourth trade for a late subscriber")


async def test_spread_capture_trades_and_quotes_use_the_resting_price(world: World) -> None:
    """Info OnTrade price is the resting order's price, also in SPREAD_CAPTURE books, and so are quotes."""
    instrument = await world.create_instrument(price_rule=SPREAD_CAPTURE)
    info = await world.info(0)
    await _subscribed(info, instrument, TOP_OF_BOOK)
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "maker")
    ok(await insert(bob, instrument.symbol, BUY, 10.08, 5), "taker above")
    trade = await _next(info, TRADE, instrument, "OnTrade")
    price_eq(trade.price, 10.00, "Info OnTrade.price in a SPREAD_CAPTURE book")
    quotes = ok(await info.request(info_pb2.QuotesRequest()), "quotes")
    quote = next(q for q in quotes.quotes if q.instrument_symbol == instrument.symbol)
    price_eq(quote.last_trade_price, 10.00, "Quote.last_trade_price in a SPREAD_CAPTURE book")


async def test_duplicate_subscribe_and_unknown_unsubscribe_are_errors(world: World) -> None:
    """Subscribing again to a (symbol, type) the connection already has is an error; unsubscribing from one it does not have is an error."""
    instrument = await world.create_instrument()
    info = await world.info(0)
    await _subscribed(info, instrument, TOP_OF_BOOK)
    refused(
        await subscribe(info, instrument.symbol, TOP_OF_BOOK),
        "second subscribe to the same (symbol, type)",
    )
    refused(
        await unsubscribe(info, instrument.symbol, PRICE_DEPTH_BOOK),
        "unsubscribe from a type not subscribed",
    )
    await _subscribed(
        info, instrument, PRICE_DEPTH_BOOK
    )  # the other type is a separate subscription


async def test_unsubscribe_stops_updates_and_resubscribe_restarts_numbering(world: World) -> None:
    """After unsubscribing nothing more is sent for it; a new subscription's numbering starts at 1."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    info = await world.info(1)
    await _subscribed(info, instrument, TOP_OF_BOOK)
    ok(await insert(alice, instrument.symbol, BUY, 10.00, 1), "bid")
    eq(
        (await _next(info, TOB, instrument, "update")).sequence_number,
        2,
        "second message of the subscription",
    )
    ok(await unsubscribe(info, instrument.symbol, TOP_OF_BOOK), "unsubscribe")
    ok(await insert(alice, instrument.symbol, BUY, 10.01, 1), "better bid after unsubscribing")
    ok(await insert(alice, instrument.symbol, BUY, 10.02, 1), "better bid again")
    await world.info_barrier(info)  # Info has applied both bids (and sent nothing for them)
    state = await _subscribed(info, instrument, TOP_OF_BOOK)
    eq(top(state)[0], (10.02, 1), "best bid in the new subscription's first message")
    stray = [
        f
        for f in info.frames
        if f.type == TOB
        and f.msg.instrument_symbol == instrument.symbol
        and f.msg.sequence_number > 1
        and f.msg is not state
        and f.index > 0
    ]
    eq(len(stray), 1, "top-of-book messages numbered > 1 (only the one before unsubscribing)")


async def test_quotes_list_every_live_instrument(world: World) -> None:
    """QuotesResponse lists every live instrument; one without trades has zero last-trade fields; traded_volume is the total quantity traded."""
    quiet = await world.create_instrument()
    busy = await world.create_instrument()
    gone = await world.create_instrument()
    ok(await world.delete_instrument(gone.symbol), "delete one")
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, busy.symbol, SELL, 10.00, 3), "ask 1")
    ok(await insert(alice, busy.symbol, SELL, 10.01, 2), "ask 2")
    ok(await insert(bob, busy.symbol, BUY, 10.00, 3), "take 3")
    ok(await insert(bob, busy.symbol, BUY, 10.01, 2), "take 2")
    info = await world.info(0)
    await _subscribed(info, busy, TOP_OF_BOOK)
    await world.info_barrier(info)
    quotes = {
        q.instrument_symbol: q
        for q in ok(await info.request(info_pb2.QuotesRequest()), "quotes").quotes
    }
    assert quiet.symbol in quotes and busy.symbol in quotes, (
        f"QuotesResponse: expected {quiet.symbol} and {busy.symbol} listed, received {sorted(quotes)[:10]}..."
    )
    assert gone.symbol not in quotes, (
        f"QuotesResponse: expected deleted {gone.symbol} absent, received it"
    )
    q = quotes[quiet.symbol]
    eq(
        (q.last_trade_price, q.last_trade_quantity, q.last_trade_timestamp, q.traded_volume),
        (0.0, 0, 0, 0),
        "quote of an instrument without trades",
    )
    q = quotes[busy.symbol]
    price_eq(q.last_trade_price, 10.01, "Quote.last_trade_price")
    eq(
        (q.last_trade_quantity, q.traded_volume),
        (2, 5),
        "Quote (last_trade_quantity, traded_volume)",
    )
    assert q.last_trade_timestamp > 1.5e18, (
        f"Quote.last_trade_timestamp: expected ns, received {q.last_trade_timestamp}"
    )


async def test_sweeps_never_publish_a_crossed_or_transient_book(world: World) -> None:
    """The mirror never publishes a crossed or transient book: an aggressor sweeping several levels appears only with its trades applied."""
    instrument = await world.create_instrument()
    info = await world.info(0)
    await _subscribed(info, instrument, PRICE_DEPTH_BOOK)
    await _subscribed(info, instrument, TOP_OF_BOOK)
    alice, bob = await world.gateway(0), await world.gateway(1)
    for round_ in range(5):
        for i in range(3):
            ok(await insert(alice, instrument.symbol, SELL, instrument.px(1000 + i), 5), "ask")
        ok(await insert(bob, instrument.symbol, BUY, instrument.px(1002), 20), "sweeping buy")
        ok(
            await insert(alice, instrument.symbol, SELL, instrument.px(900), 5),
            f"sell into the remainder (round {round_})",
        )
    await world.info_barrier(info)
    for msg in info.received(DEPTH):
        if msg.instrument_symbol == instrument.symbol and msg.bids and msg.asks:
            assert msg.bids[0].price < msg.asks[0].price, (
                f"depth message #{msg.sequence_number}: expected an uncrossed book, received best bid {msg.bids[0].price} >= best ask {msg.asks[0].price}"
            )
        if msg.instrument_symbol == instrument.symbol:
            assert all(level.quantity != 20 for level in msg.bids), (
                f"depth message #{msg.sequence_number}: expected no transient state, received the sweeping order's full 20 resting"
            )
    for msg in info.received(TOB):
        bid, ask = top(msg)
        if msg.instrument_symbol == instrument.symbol and bid and ask:
            assert bid[0] < ask[0], (
                f"top of book #{msg.sequence_number}: expected uncrossed, received bid {bid} ask {ask}"
            )


async def test_published_states_follow_the_book_and_end_at_the_current_book(world: World) -> None:
    """Every published state is a state the book really had, in order (conflation skips states, never reorders them); numbering is gap-free from 1; the last message equals the current book."""
    instrument = await world.create_instrument()
    info = await world.info(0)
    await _subscribed(info, instrument, PRICE_DEPTH_BOOK)
    await _subscribed(info, instrument, TOP_OF_BOOK)
    conns = [await world.gateway(0), await world.gateway(1)]
    print(f"workload seed {world.seed}")
    result = await run_workload(instrument, conns, world.seed, 250)
    await world.info_barrier(info)
    depth = [m for m in info.received(DEPTH) if m.instrument_symbol == instrument.symbol]
    eq([m.sequence_number for m in depth], list(range(1, len(depth) + 1)), "depth sequence numbers")
    states = result.states
    position = 0
    for msg in depth:
        view = (_ticks(msg.bids, instrument), _ticks(msg.asks, instrument))
        while (
            position < len(states)
            and (list(states[position][0]), list(states[position][1])) != view
        ):
            position += 1
        assert position < len(states), (
            f"depth message #{msg.sequence_number} (seed {world.seed}): expected a state the book had "
            f"(in order), received bids {view[0][:4]} asks {view[1][:4]}"
        )
    final = states[-1]
    last = depth[-1]
    eq(
        (_ticks(last.bids, instrument), _ticks(last.asks, instrument)),
        (list(final[0]), list(final[1])),
        f"last depth message vs the current book (seed {world.seed})",
    )
    tops = [m for m in info.received(TOB) if m.instrument_symbol == instrument.symbol]
    eq(
        [m.sequence_number for m in tops],
        list(range(1, len(tops) + 1)),
        "top-of-book sequence numbers",
    )
    want_bid = (round(final[0][0][0] * instrument.tick, 9), final[0][0][1]) if final[0] else None
    want_ask = (round(final[1][0][0] * instrument.tick, 9), final[1][0][1]) if final[1] else None
    eq(top(tops[-1]), (want_bid, want_ask), "last top-of-book message vs the current book")
    trades = [m for m in info.received(TRADE) if m.instrument_symbol == instrument.symbol]
    eq(len(trades), result.trades, "OnTrade messages vs trades made")


async def test_deleted_instrument_ends_subscriptions_and_recreation_starts_over(
    world: World,
) -> None:
    """When an instrument is deleted its subscriptions end and nothing more is sent for that symbol; a symbol created again is a new instrument whose numbering starts at 1."""
    instrument = await world.create_instrument()
    info = await world.info(0)
    await _subscribed(info, instrument, TOP_OF_BOOK)
    await _subscribed(info, instrument, PRICE_DEPTH_BOOK)
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "maker")
    ok(await insert(bob, instrument.symbol, BUY, 10.00, 1), "trade #1")
    await _next(info, TRADE, instrument, "trade #1")
    ok(await world.delete_instrument(instrument.symbol), "delete")
    await info.expect(28, lambda m: m.instrument_symbol == instrument.symbol, "OnInstrumentDeleted")
    again = await world.create_instrument(symbol=instrument.symbol)
    assert again.book_id != instrument.book_id, (
        f"recreated symbol: expected a new order_book_id, received the old {instrument.book_id}"
    )
    await info.expect(
        20,
        lambda m: m.instrument.symbol == instrument.symbol and m.order_book_id == again.book_id,
        "OnInstrument of the recreated symbol",
    )
    ok(await insert(alice, again.symbol, SELL, 10.00, 5), "maker on the new instrument")
    ok(await insert(bob, again.symbol, BUY, 10.00, 1), "trade on the new instrument")
    watcher = await world.info(1)
    await _subscribed(watcher, again, TOP_OF_BOOK)
    await world.info_barrier(info)
    after = [
        f
        for f in info.frames
        if f.type in (TOB, DEPTH, TRADE)
        and f.msg.instrument_symbol == instrument.symbol
        and f.index
        > next(
            g.index
            for g in info.frames
            if g.type == 28 and g.msg.instrument_symbol == instrument.symbol
        )
    ]
    assert not after, (
        f"after deletion: expected nothing more for {instrument.symbol} on the old subscriptions, received {after[0].describe()}"
    )
    state = await _subscribed(info, again, TOP_OF_BOOK)
    eq(top(state)[1], (10.00, 4), "best ask of the recreated instrument")
    trade = await world.gateway(1)
    ok(await insert(trade, again.symbol, BUY, 10.00, 1), "second trade on the new instrument")
    t = await _next(info, TRADE, again, "OnTrade on the recreated instrument")
    eq(
        t.sequence_number,
        2,
        "trade numbering of a recreated symbol (second trade of the new instrument)",
    )


async def test_subscriptions_are_numbered_independently(world: World) -> None:
    """sequence_number counts the messages of one subscription (connection, instrument, type) from 1."""
    instrument = await world.create_instrument()
    first, second = await world.info(0), await world.info(1)
    await _subscribed(first, instrument, TOP_OF_BOOK)
    alice = await world.gateway(0)
    ok(await insert(alice, instrument.symbol, BUY, 10.00, 1), "bid")
    eq(
        (await _next(first, TOB, instrument, "update")).sequence_number,
        2,
        "first connection's second message",
    )
    await _subscribed(second, instrument, TOP_OF_BOOK)
    depth = await _subscribed(first, instrument, PRICE_DEPTH_BOOK)
    eq(_ticks(depth.bids, instrument), [(1000, 1)], "depth state")
    ok(await insert(alice, instrument.symbol, BUY, 10.01, 1), "better bid")
    eq(
        (await _next(first, TOB, instrument, "update")).sequence_number,
        3,
        "first connection, top of book",
    )
    eq(
        (await _next(second, TOB, instrument, "update")).sequence_number,
        2,
        "second connection, top of book",
    )
    eq(
        (await _next(first, DEPTH, instrument, "update")).sequence_number,
        2,
        "first connection, depth",
    )


async def test_cancel_updates_the_book(world: World) -> None:
    """The mirror follows cancels: cancelling the best bid publishes the next best."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    best = ok(await insert(alice, instrument.symbol, BUY, 10.00, 1), "best").order_id
    ok(await insert(alice, instrument.symbol, BUY, 9.00, 2), "next")
    info = await _caught_up(world, 1)
    await _subscribed(info, instrument, TOP_OF_BOOK)
    ok(await cancel(alice, instrument.symbol, best), "cancel best")
    update = await _next(info, TOB, instrument, "update after cancelling the best bid")
    eq(top(update)[0], (9.00, 2), "best bid after the cancel")


async def test_subscribe_before_login_changes_nothing(world: World) -> None:
    """A subscribe before login is answered "not logged in" and changes nothing: after logging in the connection has no subscription, and a new one is numbered from 1."""
    instrument = await world.create_instrument()
    conn = await world.connect(world.target.info)
    early = await subscribe(conn, instrument.symbol, TOP_OF_BOOK)
    eq(early.error_message, "not logged in", "OrderBookSubscribeResponse before login")
    user, password = world.participant(0)
    response = await conn.login(user, password)
    ok(response, "login after the refused subscribe")
    refused(
        await unsubscribe(conn, instrument.symbol, TOP_OF_BOOK),
        "unsubscribe from the subscription refused before login",
    )
    await _subscribed(conn, instrument, TOP_OF_BOOK)


async def test_subscribing_to_a_deleted_symbol_is_an_error(world: World) -> None:
    """A deleted instrument is unknown: subscribing to it is an error, and quotes no longer list it."""
    instrument = await world.create_instrument()
    info = await world.info(0)
    ok(await world.delete_instrument(instrument.symbol), "delete")
    await info.expect(28, lambda m: m.instrument_symbol == instrument.symbol, "OnInstrumentDeleted")
    refused(await subscribe(info, instrument.symbol, TOP_OF_BOOK), "subscribe to a deleted symbol")
    refused(
        await subscribe(info, instrument.symbol, PRICE_DEPTH_BOOK),
        "depth subscribe to a deleted symbol",
    )


async def test_trades_flow_until_the_last_subscription_to_the_instrument_ends(
    world: World,
) -> None:
    """OnTrade goes to a connection subscribed with either type: after unsubscribing one type the other still brings trades (once each); after unsubscribing both, none."""
    instrument = await world.create_instrument()
    info = await world.info(2 if len(world.target.participants) > 2 else 0)
    await _subscribed(info, instrument, TOP_OF_BOOK)
    await _subscribed(info, instrument, PRICE_DEPTH_BOOK)
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "maker")
    ok(await unsubscribe(info, instrument.symbol, TOP_OF_BOOK), "unsubscribe top of book")
    first = ok(await insert(bob, instrument.symbol, BUY, 10.00, 1), "trade #1")
    await _next(info, TRADE, instrument, "OnTrade with only the depth subscription left")
    ok(await unsubscribe(info, instrument.symbol, PRICE_DEPTH_BOOK), "unsubscribe depth")
    ok(await insert(bob, instrument.symbol, BUY, 10.00, 1), "trade #2")
    await world.info_barrier(info)
    trades = [m for m in info.received(TRADE) if m.instrument_symbol == instrument.symbol]
    eq(
        [t.trade_id for t in trades],
        list(first.trade_ids),
        "OnTrade messages (only the trade made while subscribed, once)",
    )


async def test_crossing_amend_publishes_the_trade_then_the_book(world: World) -> None:
    """An amend that crosses trades at the resting price: subscribers get the OnTrade, then a top of book reflecting it (never a crossed book)."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.05, 4), "ask")
    bid = ok(await insert(bob, instrument.symbol, BUY, 10.00, 6), "bid").order_id
    info = await _caught_up(world, 2 if len(world.target.participants) > 2 else 0)
    state = await _subscribed(info, instrument, TOP_OF_BOOK)
    eq(top(state), ((10.00, 6), (10.05, 4)), "top of book before the amend")
    ok(await amend(bob, instrument.symbol, bid, 10.06, 6), "crossing amend")
    trade = await _next(info, TRADE, instrument, "OnTrade of the crossing amend")
    price_eq(trade.price, 10.05, "OnTrade.price (the resting order's)")
    eq((trade.quantity, trade.aggressor_side), (4, BUY), "OnTrade (quantity, aggressor_side)")
    update = await _next(info, TOB, instrument, "top of book after the amend")
    eq(top(update), ((10.06, 2), None), "top of book after the amend (remainder rests)")
    assert update.sequence_number == 2, (
        f"top of book after the amend: expected sequence_number 2 (nothing transient or "
        f"crossed before it), received {update.sequence_number}"
    )
