"""Optivex participant SDK: trade and watch the market from Python.

    import asyncio
    from clients.sdk import Client

    async def main() -> None:
        async with Client.connect(username="alice", password="alice-demo") as client:
            fills = client.fills()
            order = await client.buy("AAPL", 100.5, 10)
            print(order.order_id, order.resting_quantity)

    asyncio.run(main())

See docs/sdk.md for the whole API, and :mod:`clients.sdk.sync` for a blocking
version for scripts and notebooks.
"""

from clients.sdk.client import Client
from clients.sdk.errors import (
    Disconnected,
    ExchangeError,
    LimitsError,
    LoginFailed,
    NotAvailable,
    OrderRejected,
    OutcomeUnknown,
    RiskLimitExceeded,
    SdkError,
    SubscriptionError,
)
from clients.sdk.orders import OpenOrder
from clients.sdk.streams import EventStream
from clients.sdk.sync import SyncClient, SyncStream
from clients.sdk.types import (
    AmendResult,
    Cancel,
    CancelResult,
    Depth,
    Fill,
    Instrument,
    InstrumentEvent,
    InstrumentLimitLayers,
    InstrumentLimits,
    Level,
    OrderResult,
    PriceRule,
    Quote,
    RollingWindow,
    Side,
    TimeInForce,
    TopOfBook,
    Trade,
    UserLimitLayers,
    UserLimits,
)

__all__ = [
    "AmendResult",
    "Cancel",
    "CancelResult",
    "Client",
    "Depth",
    "Disconnected",
    "EventStream",
    "ExchangeError",
    "Fill",
    "Instrument",
    "InstrumentEvent",
    "InstrumentLimitLayers",
    "InstrumentLimits",
    "Level",
    "LimitsError",
    "LoginFailed",
    "NotAvailable",
    "OpenOrder",
    "OrderRejected",
    "OrderResult",
    "OutcomeUnknown",
    "PriceRule",
    "Quote",
    "RiskLimitExceeded",
    "RollingWindow",
    "SdkError",
    "Side",
    "SubscriptionError",
    "SyncClient",
    "SyncStream",
    "TimeInForce",
    "TopOfBook",
    "Trade",
    "UserLimitLayers",
    "UserLimits",
]
