"""The pure limit engine: every limit at, just under and just over its boundary,
both layers, check-then-record, window expiry on a manual clock, amend rules,
refunds, reservations and validation."""

from __future__ import annotations

import pytest

from services.common.clock import ManualClock
from services.risk_gateway.limits import (
    ADMIN,
    AMOUNT_SCALE,
    OWN,
    InstrumentLimits,
    RiskEngine,
    RollingLimit,
    Ticket,
    UserLimits,
    amount_limit_units,
    amount_unit,
    format_amount,
    validate_instrument_limits,
    validate_user_limits,
)

BOOK = 1
SYMBOL = "AAPL"
TICK = 0.01
UNIT = amount_unit(TICK)  # amount units per tick


def price(p: float) -> int:
    """Amount units per lot at price ``p`` (on the 0.01 grid)."""
    return round(p / TICK) * UNIT


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine(clock: ManualClock) -> RiskEngine:
    return RiskEngine(clock.monotonic)


def insert(engine: RiskEngine, quantity: int, p: float = 10.0, user: str = "alice") -> Ticket | str:
    return engine.check_insert(user, SYMBOL, BOOK, quantity, price(p))


def rest(engine: RiskEngine, ticket: Ticket | str) -> None:
    """The order's events arrived: it rests in full, the reservation goes."""
    assert isinstance(ticket, Ticket), ticket
    exposure = ticket.exposure
    assert exposure is not None
    quantity, amount = ticket.reserved_quantity, ticket.reserved_amount
    engine.release(ticket)
    exposure.add(quantity, amount)


def refused(result: Ticket | str, name: str) -> bool:
    return isinstance(result, str) and name in result


# ---------------------------------------------------------------- no limits


def test_without_limits_everything_passes_and_is_still_recorded(engine: RiskEngine) -> None:
    for _ in range(100):
        assert isinstance(insert(engine, 1_000_000), Ticket)
    engine.set_user_limits("alice", OWN, UserLimits(0, RollingLimit(100, 60)))
    # Windows recorded from the start: the 100 messages already count.
    assert refused(engine.check_message("alice"), "message_rate_rolling_limit")


def test_a_limit_of_zero_or_a_zero_window_means_no_limit(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(0, RollingLimit(0, 10)))
    engine.set_instrument_limits(
        "alice", ADMIN, SYMBOL, InstrumentLimits(0, 0.0, RollingLimit(5, 0), RollingLimit(0, 0))
    )
    for _ in range(20):
        assert isinstance(insert(engine, 100), Ticket)


# ---------------------------------------------------------------- message rate


def test_message_rate_at_under_and_over_the_limit(engine: RiskEngine, clock: ManualClock) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(0, RollingLimit(3, 1)))
    assert isinstance(engine.check_message("alice"), Ticket)
    assert isinstance(insert(engine, 1), Ticket)  # under
    assert isinstance(engine.check_message("alice"), Ticket)  # at: 3 within 1 s is allowed
    result = engine.check_message("alice")  # over: a 4th
    assert refused(result, "message_rate_rolling_limit")
    clock.advance(0.999)
    assert refused(insert(engine, 1), "message_rate_rolling_limit")
    clock.advance(0.001)  # the first three are now exactly 1 s old: out of the window
    assert isinstance(engine.check_message("alice"), Ticket)


def test_a_refused_request_is_not_counted(engine: RiskEngine, clock: ManualClock) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(0, RollingLimit(2, 10)))
    engine.check_message("alice")
    engine.check_message("alice")
    for _ in range(50):
        assert isinstance(engine.check_message("alice"), str)
    clock.advance(10)
    assert isinstance(engine.check_message("alice"), Ticket)
    assert isinstance(engine.check_message("alice"), Ticket)


def test_messages_are_per_user(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", ADMIN, UserLimits(0, RollingLimit(1, 10)))
    engine.check_message("alice")
    assert isinstance(engine.check_message("alice"), str)
    assert isinstance(engine.check_message("bob"), Ticket)


# ---------------------------------------------------------------- outstanding quantity


def test_user_max_outstanding_quantity_boundary(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(100))
    rest(engine, insert(engine, 60))
    assert refused(insert(engine, 41), "max_outstanding_quantity")  # over by one
    ticket = insert(engine, 40)  # exactly at the limit
    assert isinstance(ticket, Ticket)
    assert refused(insert(engine, 1), "max_outstanding_quantity")  # the reservation counts


def test_user_outstanding_spans_instruments_and_books(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(10))
    rest(engine, engine.check_insert("alice", "AAPL", 1, 6, price(1)))
    assert refused(engine.check_insert("alice", "MSFT", 2, 5, price(1)), "max_outstanding")
    assert isinstance(engine.check_insert("alice", "MSFT", 2, 4, price(1)), Ticket)


def test_fills_and_cancels_reduce_outstanding(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(10))
    rest(engine, insert(engine, 10))
    assert refused(insert(engine, 1), "max_outstanding_quantity")
    engine.exposure("alice", BOOK).add(-3, -3 * price(10))  # a fill of 3
    assert isinstance(insert(engine, 3), Ticket)


def test_instrument_max_outstanding_quantity_is_per_book(engine: RiskEngine) -> None:
    engine.set_instrument_limits("alice", OWN, SYMBOL, InstrumentLimits(max_outstanding_quantity=5))
    rest(engine, insert(engine, 5))
    result = insert(engine, 1)
    assert refused(result, "max_outstanding_quantity") and "AAPL" in str(result)
    assert isinstance(engine.check_insert("alice", "MSFT", 2, 100, price(1)), Ticket)


# ---------------------------------------------------------------- outstanding amount


def test_max_outstanding_amount_is_exact_at_the_boundary(engine: RiskEngine) -> None:
    # 0.1 * 3 is 0.30000000000000004 in floating point; amounts here are exact.
    engine.set_instrument_limits("alice", OWN, SYMBOL, InstrumentLimits(max_outstanding_amount=0.3))
    assert isinstance(insert(engine, 3, p=0.1), Ticket)
    assert refused(insert(engine, 1, p=0.01), "max_outstanding_amount")


def test_max_outstanding_amount_under_at_over(engine: RiskEngine) -> None:
    engine.set_instrument_limits(
        "alice", ADMIN, SYMBOL, InstrumentLimits(max_outstanding_amount=1000.5)
    )
    rest(engine, insert(engine, 10, p=50.0))  # 500
    assert refused(insert(engine, 10, p=50.06), "max_outstanding_amount")  # 500.6 > 500.5
    assert isinstance(insert(engine, 10, p=50.05), Ticket)  # 500.5: exactly at
    assert refused(insert(engine, 1, p=0.01), "max_outstanding_amount")


# ---------------------------------------------------------------- rolling quantity / amount


def test_order_quantity_rolling_limit(engine: RiskEngine, clock: ManualClock) -> None:
    engine.set_instrument_limits(
        "alice", OWN, SYMBOL, InstrumentLimits(order_quantity_rolling_limit=RollingLimit(100, 60))
    )
    assert isinstance(insert(engine, 99), Ticket)
    assert refused(insert(engine, 2), "order_quantity_rolling_limit")
    assert isinstance(insert(engine, 1), Ticket)  # at 100
    assert refused(insert(engine, 1), "order_quantity_rolling_limit")
    clock.advance(60)
    assert isinstance(insert(engine, 100), Ticket)


def test_order_amount_rolling_limit(engine: RiskEngine, clock: ManualClock) -> None:
    engine.set_instrument_limits(
        "alice", OWN, SYMBOL, InstrumentLimits(order_amount_rolling_limit=RollingLimit(1000, 10))
    )
    assert isinstance(insert(engine, 99, p=10.0), Ticket)  # 990
    assert refused(insert(engine, 1, p=10.01), "order_amount_rolling_limit")  # 1000.01
    assert isinstance(insert(engine, 1, p=10.0), Ticket)  # exactly 1000
    clock.advance(9.5)
    assert refused(insert(engine, 1, p=0.01), "order_amount_rolling_limit")
    clock.advance(0.5)
    assert isinstance(insert(engine, 100, p=10.0), Ticket)


def test_windows_record_from_the_start_for_a_limit_set_later(
    engine: RiskEngine, clock: ManualClock
) -> None:
    insert(engine, 70)
    clock.advance(30)
    insert(engine, 20)
    engine.set_instrument_limits(
        "alice", ADMIN, SYMBOL, InstrumentLimits(order_quantity_rolling_limit=RollingLimit(100, 60))
    )
    assert refused(insert(engine, 11), "order_quantity_rolling_limit")
    assert isinstance(insert(engine, 10), Ticket)
    clock.advance(30)  # the 70 leaves the window
    assert isinstance(insert(engine, 70), Ticket)


# ---------------------------------------------------------------- two layers


def test_both_layers_must_pass_and_the_error_names_the_layer(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(50))
    engine.set_user_limits("alice", ADMIN, UserLimits(30))
    result = insert(engine, 31)
    assert refused(result, "max_outstanding_quantity") and "admin" in str(result)
    engine.set_user_limits("alice", ADMIN, UserLimits(80))
    result = insert(engine, 51)
    assert refused(result, "max_outstanding_quantity") and "own" in str(result)
    assert isinstance(insert(engine, 50), Ticket)


def test_layers_with_different_windows_each_apply(engine: RiskEngine, clock: ManualClock) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(0, RollingLimit(5, 1)))
    engine.set_user_limits("alice", ADMIN, UserLimits(0, RollingLimit(8, 10)))
    for _ in range(5):
        assert isinstance(engine.check_message("alice"), Ticket)
    assert refused(engine.check_message("alice"), "own limit")
    clock.advance(1)
    for _ in range(3):
        assert isinstance(engine.check_message("alice"), Ticket)
    assert refused(engine.check_message("alice"), "admin limit")


def test_set_replaces_the_whole_layer(engine: RiskEngine) -> None:
    engine.set_instrument_limits("alice", OWN, SYMBOL, InstrumentLimits(10, 5.0))
    engine.set_instrument_limits(
        "alice", OWN, SYMBOL, InstrumentLimits(max_outstanding_quantity=20)
    )
    assert engine.get_instrument_limits("alice", OWN) == {
        SYMBOL: InstrumentLimits(max_outstanding_quantity=20)
    }
    engine.set_instrument_limits("alice", OWN, SYMBOL, InstrumentLimits())
    assert engine.get_instrument_limits("alice", OWN) == {}
    assert isinstance(insert(engine, 10**6), Ticket)


# ---------------------------------------------------------------- amend


def test_a_pure_reduction_counts_only_as_a_message(engine: RiskEngine) -> None:
    engine.set_instrument_limits(
        "alice", OWN, SYMBOL, InstrumentLimits(order_quantity_rolling_limit=RollingLimit(10, 60))
    )
    ticket = insert(engine, 10)
    rest(engine, ticket)
    exposure = engine.exposure("alice", BOOK)
    amend = engine.check_amend("alice", SYMBOL, exposure, 10, price(10), 4, price(10))
    assert isinstance(amend, Ticket) and not amend.counted_as_order


def test_an_amend_raising_quantity_or_moving_price_counts_as_a_new_order(
    engine: RiskEngine,
) -> None:
    engine.set_instrument_limits(
        "alice", OWN, SYMBOL, InstrumentLimits(order_quantity_rolling_limit=RollingLimit(25, 60))
    )
    rest(engine, insert(engine, 10))
    exposure = engine.exposure("alice", BOOK)
    moved = engine.check_amend("alice", SYMBOL, exposure, 10, price(10), 10, price(11))
    assert isinstance(moved, Ticket)  # 10 + 10 = 20 <= 25
    raised = engine.check_amend("alice", SYMBOL, exposure, 10, price(10), 11, price(10))
    assert refused(raised, "order_quantity_rolling_limit")  # 20 + 11 > 25


def test_an_amend_is_checked_with_its_new_quantity_in_place_of_the_old(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(100))
    rest(engine, insert(engine, 60))
    rest(engine, insert(engine, 30))
    exposure = engine.exposure("alice", BOOK)
    assert isinstance(
        engine.check_amend("alice", SYMBOL, exposure, 30, price(10), 40, price(10)), Ticket
    )  # 60 + 40 = 100


def test_a_reduction_passes_even_when_already_over_a_lowered_limit(engine: RiskEngine) -> None:
    rest(engine, insert(engine, 50))
    engine.set_user_limits("alice", ADMIN, UserLimits(10))
    exposure = engine.exposure("alice", BOOK)
    assert isinstance(
        engine.check_amend("alice", SYMBOL, exposure, 50, price(10), 20, price(10)), Ticket
    )
    assert refused(
        engine.check_amend("alice", SYMBOL, exposure, 50, price(10), 51, price(10)),
        "max_outstanding_quantity",
    )


# ---------------------------------------------------------------- afterwards


def test_refund_takes_an_order_book_refusal_out_of_the_windows(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(0, RollingLimit(2, 60)))
    engine.set_instrument_limits(
        "alice", OWN, SYMBOL, InstrumentLimits(order_quantity_rolling_limit=RollingLimit(10, 60))
    )
    ticket = insert(engine, 10)
    assert isinstance(ticket, Ticket)
    engine.refund(ticket, message=False)  # forwarded, refused: still a message
    engine.refund(ticket, message=False)  # idempotent
    assert isinstance(insert(engine, 10), Ticket)
    assert refused(insert(engine, 1), "message_rate_rolling_limit")


def test_refund_of_an_unforwarded_request_takes_the_message_out_too(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(0, RollingLimit(1, 60)))
    ticket = engine.check_message("alice")
    assert isinstance(ticket, Ticket)
    engine.refund(ticket, message=True)
    assert isinstance(engine.check_message("alice"), Ticket)


def test_reset_exposures_keeps_reservations(engine: RiskEngine) -> None:
    engine.set_user_limits("alice", OWN, UserLimits(10))
    rest(engine, insert(engine, 5))
    in_flight = insert(engine, 5)
    assert isinstance(in_flight, Ticket)
    engine.reset_exposures()
    assert refused(insert(engine, 6), "max_outstanding_quantity")
    assert isinstance(insert(engine, 5), Ticket)


def test_the_journal_hook_sees_records_and_refunds(clock: ManualClock) -> None:
    seen: list[tuple[object, float, int, int]] = []
    engine = RiskEngine(clock.monotonic, journal=lambda k, t, v, w: seen.append((k, t, v, w)))
    ticket = insert(engine, 3, p=2.0)
    assert isinstance(ticket, Ticket)
    engine.refund(ticket, message=True)
    assert [(k, v, w) for k, _, v, w in seen] == [
        (("m", "alice"), 1, 0),
        (("o", "alice", SYMBOL), 3, 3 * price(2.0)),
        (("o", "alice", SYMBOL), -3, -3 * price(2.0)),
        (("m", "alice"), -1, 0),
    ]


# ---------------------------------------------------------------- values


def test_amount_units() -> None:
    assert amount_unit(0.01) == AMOUNT_SCALE // 100
    assert amount_unit(0.005) == 5 * AMOUNT_SCALE // 1000
    assert amount_unit(1e-15) == 1  # finer than a unit: rounded up, never down
    assert amount_limit_units(1000.5) == 1000 * AMOUNT_SCALE + AMOUNT_SCALE // 2
    assert format_amount(amount_limit_units(0.3)) == "0.3"


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        (UserLimits(-1), "max_outstanding_quantity"),
        (UserLimits(0, RollingLimit(-1, 1)), "message_rate_rolling_limit"),
        (UserLimits(0, RollingLimit(1, -1)), "message_rate_rolling_limit"),
        (UserLimits(0, RollingLimit(1, 86401)), "at most 86400"),
    ],
)
def test_invalid_user_limits(limits: UserLimits, problem: str) -> None:
    error = validate_user_limits(limits, 86400)
    assert error is not None and problem in error


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        (InstrumentLimits(-5), "max_outstanding_quantity"),
        (InstrumentLimits(0, -0.5), "max_outstanding_amount"),
        (InstrumentLimits(0, float("nan")), "max_outstanding_amount"),
        (InstrumentLimits(0, float("inf")), "max_outstanding_amount"),
        (InstrumentLimits(0, 0, RollingLimit(-1, 1)), "order_quantity_rolling_limit"),
        (InstrumentLimits(0, 0, RollingLimit(), RollingLimit(1, -1)), "order_amount_rolling"),
    ],
)
def test_invalid_instrument_limits(limits: InstrumentLimits, problem: str) -> None:
    error = validate_instrument_limits(limits, 86400)
    assert error is not None and problem in error


def test_valid_limits_pass_validation() -> None:
    assert validate_user_limits(UserLimits(5, RollingLimit(10, 86400)), 86400) is None
    assert validate_instrument_limits(InstrumentLimits(1, 2.5), 86400) is None
