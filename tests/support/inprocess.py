"""Start services in-process on port 0 for service-level tests.

Every service test builds its apps through :func:`start_app`, so they all share
one demo user store (hashed once per test session: scrypt is deliberately slow)
and the same service password, and can be chained (Info -> Order Book, ...)
by passing the bound ports of one app into the overrides of the next.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, TypeVar

from services.common.auth import Authenticator
from services.common.clock import Clock, SystemClock
from services.common.config import CommonConfig
from services.common.lifecycle import Factory, ServiceApp
from services.common.users import UserStore

SERVICE_PASSWORD = "test-service-password"
DEMO_PASSWORDS = {
    "admin": "admin-demo",
    "alice": "alice-demo",
    "bob": "bob-demo",
    "carol": "carol-demo",
    "dave": "dave-demo",
    "service": SERVICE_PASSWORD,
}

C = TypeVar("C", bound=CommonConfig)


@functools.cache
def demo_users() -> UserStore:
    """The demo accounts plus ``service`` (hashed once per test process)."""
    return UserStore.demo(SERVICE_PASSWORD)


def make_config(config_cls: type[C], data_dir: Path | None = None, **overrides: Any) -> C:
    """A config on 127.0.0.1 port 0 with the test service password."""
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "service_password": SERVICE_PASSWORD}
    names = {f.name for f in dataclasses.fields(config_cls)}
    if data_dir is not None and "data_dir" in names:
        values["data_dir"] = data_dir
    values.update(overrides)
    return config_cls(**values)


async def start_app(
    factory: Factory[C],
    config: C,
    clock: Clock | None = None,
) -> tuple[ServiceApp, int]:
    """Build and start one service; returns it and its bound port."""
    clock = clock or SystemClock()
    app = factory(config, Authenticator(demo_users(), clock), clock)
    _, port = await app.start()
    return app, port
