"""The Admin service: instrument lifecycle across the Order Book and Info.

``AdminApp`` wires the pieces together in the order the launcher relies on
(see ``services/common/lifecycle.py``): read the intent log, connect to both
peers (in the background, so a peer that is down never stops Admin from
starting), reconcile once both are known, then bind the admin port. The
listening port therefore opens on a consistent exchange whenever the peers
are up.
"""

from __future__ import annotations

import asyncio
import contextlib

from services.admin.intents import IntentLog
from services.admin.orchestrator import Orchestrator
from services.admin.server import ADMIN_ONLY, AdminService
from services.admin.upstream import LinkSettings, UpstreamLink
from services.common.auth import Authenticator
from services.common.clock import Clock
from services.common.config import AdminConfig
from services.common.logs import get_logger
from services.common.wire.client import client_ssl_context
from services.common.wire.server import WireServer, WireSettings

__all__ = ["AdminApp", "build"]


class AdminApp:
    """One Admin service instance (see the module docstring)."""

    def __init__(self, config: AdminConfig, authenticator: Authenticator, clock: Clock) -> None:
        self.config = config
        self.authenticator = authenticator
        self.clock = clock
        self.log = get_logger("admin")
        self.intents = IntentLog(config.data_dir, fsync=config.fsync_intents)
        self.orchestrator = Orchestrator(self.intents, get_logger("admin", "lifecycle"))
        upstream_log = get_logger("admin", "upstream")

        def settings(host: str, port: int) -> LinkSettings:
            return LinkSettings(
                host=host,
                port=port,
                username=config.service_username,
                password=config.service_password,
                heartbeat_interval_s=config.heartbeat_interval_s,
                idle_timeout_s=config.idle_timeout_s,
                request_timeout_s=config.request_timeout_s,
            )

        registry = self.orchestrator.registry
        self.order_book = UpstreamLink(
            "order book",
            settings(config.order_book_host, config.order_book_port),
            on_push=self.orchestrator.on_order_book_push,
            on_reset=registry.reset_books,
            on_synced=self.orchestrator.request_reconcile,
            barrier=self.orchestrator.order_book_barrier,
            log=upstream_log,
        )
        self.info = UpstreamLink(
            "info",
            settings(config.info_host, config.info_port),
            on_push=self.orchestrator.on_info_push,
            on_reset=registry.reset_instruments,
            on_synced=self.orchestrator.request_reconcile,
            barrier=self.orchestrator.info_barrier,
            log=upstream_log,
        )
        self.orchestrator.attach(self.order_book, self.info)
        self.service = AdminService(self.orchestrator, get_logger("admin", "server"))
        self.server: WireServer | None = None

    async def start(self) -> tuple[str, int]:
        leftovers = self.intents.load()
        for problem in self.intents.problems:
            self.log.warning("intent log: %s (ignored)", problem)
        if leftovers:
            self.log.warning(
                "found %d interrupted operation(s) in %s: %s; reconciling",
                len(leftovers),
                self.intents.path,
                ", ".join(intent.render() for intent in leftovers),
            )
        if self.config.info_tls_ca_file:
            # Here rather than in __init__: an unreadable file is a clean "cannot start".
            self.info.link.ssl = client_ssl_context(self.config.info_tls_ca_file)
        self.order_book.start()
        self.info.start()
        await self.order_book.first_attempt.wait()
        await self.info.first_attempt.wait()
        if self.orchestrator.both_synced and await self.orchestrator.reconcile_once():
            self.orchestrator.clear_reconcile_request()
        self.orchestrator.start_reconciler()
        self.server = WireServer(
            "admin",
            self.service,
            self.service.routes(),
            login_roles=ADMIN_ONLY,
            authenticator=self.authenticator,
            clock=self.clock,
            settings=WireSettings.from_config(self.config),
        )
        return await self.server.start(self.config.host, self.config.port)

    async def stop(self) -> None:
        """Refuse new work, let running operations finish, then close everything."""
        self.orchestrator.stopping = True
        await self.orchestrator.stop_reconciler()
        grace = 2 * self.config.request_timeout_s + 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.orchestrator.gate.wait_idle(), grace)
        if self.server is not None:
            await self.server.stop()
            self.server = None
        await self.order_book.stop()
        await self.info.stop()

    async def abort(self) -> None:
        """Die like a crash: drop every connection and abandon operations mid-way.

        Nothing is rolled back and the intent log is left as it is, which is
        exactly the situation the next start must repair (used by tests).
        """
        if self.server is not None:
            for session in list(self.server.sessions):
                session.abort()
        for task in list(self.service.tasks):
            task.cancel()
        await self.orchestrator.stop_reconciler()
        self.order_book.abort()
        self.info.abort()
        if self.server is not None:
            await self.server.stop(grace_s=0.1)
            self.server = None
        await self.order_book.stop()
        await self.info.stop()


def build(config: AdminConfig, authenticator: Authenticator, clock: Clock) -> AdminApp:
    """The factory ``run_service`` and the tests use."""
    return AdminApp(config, authenticator, clock)
