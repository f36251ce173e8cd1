"""Get and Set of risk limits (types 50-57), exactly per PROTOCOL.md's semantics.

* ``username`` empty means the logged-in user. A participant may name only
  itself and reads or writes its **own** layer; an admin reads or writes the
  **admin** layer of the user it names (itself when empty). An admin naming a
  user the exchange does not know gets an error (a typo must not silently
  create limits nobody is subject to).
* Get returns both layers of the user: own in field 3, admin in field 4.
* Set replaces the whole layer it writes (for instrument limits: that symbol's
  entry); an instrument entry set to all-zero limits is removed.
* Negative values, a non-finite amount, or a window longer than
  ``max_limit_window_s`` are refused and change nothing. The change is written
  to the journal before it takes effect.

All handlers answer at once (no upstream involved), so they work while the
Order Book is unavailable.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from services.common.pb import risk_limits_pb2
from services.common.users import Role
from services.common.wire.session import Session
from services.risk_gateway import translate
from services.risk_gateway.instruments import valid_symbol
from services.risk_gateway.limits import (
    ADMIN,
    OWN,
    validate_instrument_limits,
    validate_user_limits,
)

if TYPE_CHECKING:
    from services.risk_gateway.app import RiskGatewayApp

log = logging.getLogger("optivex.risk_gateway.limits")

rl = risk_limits_pb2

NOT_YOURS: Final = "not permitted: a participant may only name itself"
INVALID_SYMBOL: Final = "invalid instrument_symbol: 1-16 characters from A-Z, 0-9, '.' and '-'"
NOT_SAVED: Final = "internal error: limits could not be saved; nothing changed"


def unknown_user(name: str) -> str:
    return f"unknown user {name!r}"


class LimitHandlers:
    """Handlers for types 50, 52, 54 and 56."""

    def __init__(self, app: RiskGatewayApp) -> None:
        self.app = app
        self.engine = app.engine

    def _target(self, session: Session, username: str) -> tuple[str, str] | str:
        """(user named, layer this session reads/writes), or an error text."""
        if session.role == Role.ADMIN:
            name = username or session.username
            if name != session.username and self.app.authenticator.store.get(name) is None:
                return unknown_user(name)
            return name, ADMIN
        if username and username != session.username:
            return NOT_YOURS
        return session.username, OWN

    def get_user(self, session: Session, request: Any) -> Any:
        target = self._target(session, request.username)
        if isinstance(target, str):
            return rl.GetUserRiskLimitsResponse(request_id=request.request_id, error_message=target)
        name, _ = target
        response = rl.GetUserRiskLimitsResponse(request_id=request.request_id)
        translate.user_limits_to_pb(
            self.engine.get_user_limits(name, OWN), response.user_risk_limits
        )
        translate.user_limits_to_pb(
            self.engine.get_user_limits(name, ADMIN), response.admin_user_risk_limits
        )
        return response

    def set_user(self, session: Session, request: Any) -> Any:
        request_id = request.request_id
        target = self._target(session, request.username)
        if isinstance(target, str):
            return rl.SetUserRiskLimitsResponse(request_id=request_id, error_message=target)
        name, layer = target
        limits = translate.user_limits_from_pb(request.user_risk_limits)
        problem = validate_user_limits(limits, self.engine.max_window_s)
        if problem is not None:
            return rl.SetUserRiskLimitsResponse(request_id=request_id, error_message=problem)
        store = self.app.store
        store.user_limits(layer, name, limits)
        try:
            store.flush()
        except OSError:
            log.exception("cannot save user limits")
            store.discard_pending()
            return rl.SetUserRiskLimitsResponse(request_id=request_id, error_message=NOT_SAVED)
        self.engine.set_user_limits(name, layer, limits)
        log.info("%s set the %s user limits of %s", session.username, layer, name)
        return rl.SetUserRiskLimitsResponse(request_id=request_id)

    def get_instrument(self, session: Session, request: Any) -> Any:
        target = self._target(session, request.username)
        if isinstance(target, str):
            return rl.GetInstrumentRiskLimitsResponse(
                request_id=request.request_id, error_message=target
            )
        name, _ = target
        response = rl.GetInstrumentRiskLimitsResponse(request_id=request.request_id)
        for layer, field in (
            (OWN, response.risk_limits_by_instrument),
            (ADMIN, response.admin_risk_limits_by_instrument),
        ):
            for symbol, limits in sorted(self.engine.get_instrument_limits(name, layer).items()):
                translate.instrument_limits_to_pb(limits, field[symbol])
        return response

    def set_instrument(self, session: Session, request: Any) -> Any:
        request_id = request.request_id
        target = self._target(session, request.username)
        if isinstance(target, str):
            return rl.SetInstrumentRiskLimitsResponse(request_id=request_id, error_message=target)
        name, layer = target
        symbol = request.instrument_symbol
        if not valid_symbol(symbol):
            return rl.SetInstrumentRiskLimitsResponse(
                request_id=request_id, error_message=INVALID_SYMBOL
            )
        limits = translate.instrument_limits_from_pb(request.instrument_risk_limits)
        problem = validate_instrument_limits(limits, self.engine.max_window_s)
        if problem is not None:
            return rl.SetInstrumentRiskLimitsResponse(request_id=request_id, error_message=problem)
        store = self.app.store
        store.instrument_limits(layer, name, symbol, limits)
        try:
            store.flush()
        except OSError:
            log.exception("cannot save instrument limits")
            store.discard_pending()
            return rl.SetInstrumentRiskLimitsResponse(
                request_id=request_id, error_message=NOT_SAVED
            )
        self.engine.set_instrument_limits(name, layer, symbol, limits)
        log.info("%s set the %s limits of %s in %s", session.username, layer, name, symbol)
        return rl.SetInstrumentRiskLimitsResponse(request_id=request_id)
