"""Why the engine refuses a command: the error texts and the prebuilt refusal results.

Refusals are expected outcomes, returned as values. Their texts never echo ids, so
that someone else's order is refused exactly like an unknown one (PROTOCOL.md), and
since they carry nothing request-specific, each refusal is one shared constant:
refusing allocates nothing.
"""

from __future__ import annotations

from typing import Final

from services.order_book.events import (
    MAX_PRICE_TICKS,
    MAX_QUANTITY,
    AmendResult,
    CancelResult,
    InsertResult,
)

#: PROTOCOL.md: client_order_id is at most 64 bytes of UTF-8.
MAX_CLIENT_ORDER_ID_BYTES: Final = 64

ERR_UNKNOWN_BOOK: Final = "unknown order book"
ERR_UNKNOWN_ORDER: Final = "unknown order (not resting in this book)"
ERR_QUANTITY: Final = f"quantity must be between 1 and {MAX_QUANTITY}"
ERR_PRICE: Final = f"price must be between 1 and {MAX_PRICE_TICKS} ticks"
ERR_SIDE: Final = "side must be BUY (0) or SELL (1)"
ERR_TIME_IN_FORCE: Final = (
    "time_in_force must be GOOD_TILL_CANCEL (0), IMMEDIATE_OR_CANCEL (1) or FILL_OR_KILL (2)"
)
ERR_CLIENT_ORDER_ID: Final = (
    f"client_order_id is longer than {MAX_CLIENT_ORDER_ID_BYTES} bytes of UTF-8"
)
ERR_PRICE_RULE: Final = "price_rule must be RESTING_ORDER_PRICE (0) or SPREAD_CAPTURE (1)"

INSERT_UNKNOWN_BOOK: Final = InsertResult(ERR_UNKNOWN_BOOK, 0, 0, (), 0, 0)
INSERT_QUANTITY: Final = InsertResult(ERR_QUANTITY, 0, 0, (), 0, 0)
INSERT_PRICE: Final = InsertResult(ERR_PRICE, 0, 0, (), 0, 0)
INSERT_SIDE: Final = InsertResult(ERR_SIDE, 0, 0, (), 0, 0)
INSERT_TIME_IN_FORCE: Final = InsertResult(ERR_TIME_IN_FORCE, 0, 0, (), 0, 0)
INSERT_CLIENT_ORDER_ID: Final = InsertResult(ERR_CLIENT_ORDER_ID, 0, 0, (), 0, 0)
CANCEL_UNKNOWN_BOOK: Final = CancelResult(ERR_UNKNOWN_BOOK, 0, 0, 0)
CANCEL_UNKNOWN_ORDER: Final = CancelResult(ERR_UNKNOWN_ORDER, 0, 0, 0)
AMEND_UNKNOWN_BOOK: Final = AmendResult(ERR_UNKNOWN_BOOK, 0, (), 0, 0, 0)
AMEND_UNKNOWN_ORDER: Final = AmendResult(ERR_UNKNOWN_ORDER, 0, (), 0, 0, 0)
AMEND_QUANTITY: Final = AmendResult(ERR_QUANTITY, 0, (), 0, 0, 0)
AMEND_PRICE: Final = AmendResult(ERR_PRICE, 0, (), 0, 0, 0)
