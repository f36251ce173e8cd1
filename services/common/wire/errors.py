"""Error texts shared by every service, so clients and tests can rely on them."""

from __future__ import annotations

from typing import Final

NOT_LOGGED_IN: Final = "not logged in"
NOT_PERMITTED: Final = "not permitted"
ALREADY_LOGGED_IN: Final = "already logged in"
INVALID_CREDENTIALS: Final = "invalid username or password"
LOGIN_TIMEOUT: Final = "login timeout: no successful login in time"
IDLE_TIMEOUT: Final = "idle timeout: nothing received in time"
OUTPUT_OVERFLOW: Final = "output buffer limit exceeded: the connection is not reading"
TOO_MANY_PENDING: Final = "too many frames waiting for login to complete"
SHUTTING_DOWN: Final = "service is shutting down"


def unknown_type(message_type: int) -> str:
    """Text for a frame whose type is not in the protocol at all."""
    return f"unknown message type {message_type}"


def not_served(message_type: int, name: str) -> str:
    """Text for a protocol type that this port does not accept."""
    return f"message type {message_type} ({name}) is not served on this port"


def unparsable(message_type: int, name: str) -> str:
    """Text for a payload that does not parse as the type's message."""
    return f"payload of message type {message_type} ({name}) does not parse"


def role_refused(role: str) -> str:
    """Text for a correct login whose role this port does not admit."""
    return f"role '{role}' may not log in on this port"


class RemoteError(Exception):
    """A peer answered a request with an error (``error_message`` or ``ON_ERROR``)."""

    def __init__(self, message: str, message_type: int = 0) -> None:
        super().__init__(message)
        self.message_type = message_type


class ConnectionLost(Exception):
    """The connection closed before a pending request was answered."""
