"""Abuse limits: token buckets per connection and event family, and windows per client address."""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiolimiter import AsyncLimiter
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from app.domain.errors import ClusterUnavailable
from app.domain.ports import OpenSockets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: float


class Verdict(enum.Enum):
    ALLOW = "allow"
    DROP = "drop"  # over the limit, already told this second
    WARN = "warn"  # over the limit: drop and send one `rate_limited` error
    DISCONNECT = "disconnect"  # still flooding after the allowed time


@dataclass
class ConnectionThrottle:
    """One connection's buckets (a leaky bucket of `burst` that drains at `per_second`)."""

    rates: dict[str, Rate]
    flood_seconds: float
    clock: Callable[[], float] = time.monotonic
    buckets: dict[str, AsyncLimiter] = field(default_factory=dict)
    warned_at: dict[str, float] = field(default_factory=dict)
    flood_started: float | None = None
    last_drop: float = 0.0

    async def admit(self, family: str) -> Verdict:
        rate = self.rates.get(family)
        if rate is None:
            return Verdict.ALLOW
        bucket = self.buckets.get(family)
        if bucket is None:
            bucket = self.buckets[family] = AsyncLimiter(rate.burst, rate.burst / rate.per_second)
        if bucket.has_capacity():
            await bucket.acquire()  # returns at once: there is capacity and nobody waits
            return Verdict.ALLOW
        return self._excess(family)

    def _excess(self, family: str) -> Verdict:
        now = self.clock()
        # A pause of a second ends a flood; a flood that goes on too long ends the connection.
        if self.flood_started is None or now - self.last_drop > 1.0:
            self.flood_started = now
        self.last_drop = now
        if now - self.flood_started >= self.flood_seconds:
            return Verdict.DISCONNECT
        if now - self.warned_at.get(family, -1e9) >= 1.0:
            self.warned_at[family] = now
            return Verdict.WARN
        return Verdict.DROP


class TrustedProxies:
    """Addresses whose X-Forwarded-For is believed (single addresses or CIDR networks)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or "unknown"
        if not forwarded_for or not self._trusted(peer):
            return peer
        # The right-most address not added by one of our proxies is the client.
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


class AddressLimits:
    """Per client address: concurrent sockets, new sockets per minute, REST requests per minute."""

    def __init__(
        self,
        *,
        max_connections: int,
        connections_per_minute: int,
        requests_per_minute: int,
        storage: Storage | None = None,
        shared: OpenSockets | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.connection_rate = RateLimitItemPerMinute(connections_per_minute)
        self.request_rate = RateLimitItemPerMinute(requests_per_minute)
        # The windows: in memory, or shared by every process of a cluster (Redis).
        self.windows = MovingWindowRateLimiter(storage or MemoryStorage())
        self.open: dict[str, int] = {}  # this process's sockets per address
        self.shared = shared  # cluster mode: every process's

    async def _hit(self, rate: RateLimitItem, kind: str, address: str) -> bool:
        try:
            return await self.windows.hit(rate, kind, address)
        except Exception as error:  # a shared storage that is down: nobody is refused for it
            log.warning("address limits: the shared window is unavailable (%s)", error)
            return True

    async def connect(self, address: str) -> str | None:
        """Count a new socket; None when allowed, else why not."""
        too_many = f"more than {self.max_connections} connections from one address"
        if self.open.get(address, 0) >= self.max_connections:
            return too_many
        if not await self._hit(self.connection_rate, "connect", address):
            return "too many new connections from one address; retry in a minute"
        if self.shared is not None:
            try:
                if not await self.shared.claim(address, self.max_connections):
                    return too_many
            except ClusterUnavailable as error:  # nobody is refused for it
                log.warning("address limits: the cluster's counts are unavailable (%s)", error)
        self.open[address] = self.open.get(address, 0) + 1
        return None

    async def disconnect(self, address: str) -> None:
        left = self.open.get(address, 0) - 1
        if left > 0:
            self.open[address] = left
        else:
            self.open.pop(address, None)
        if self.shared is not None:
            # Unavailable: the next heartbeat writes this process's counts whole.
            with contextlib.suppress(ClusterUnavailable):
                await self.shared.release(address)

    async def request(self, address: str) -> float | None:
        """Count a REST request; None when allowed, else seconds until one is allowed."""
        if await self._hit(self.request_rate, "rest", address):
            return None
        try:
            stats = await self.windows.get_window_stats(self.request_rate, "rest", address)
        except Exception:
            return 1.0
        return max(1.0, stats.reset_time - time.time())


class ConnectionGuard:
    """What the transport needs to police clients: their address and their limits."""

    def __init__(
        self,
        limits: AddressLimits,
        proxies: TrustedProxies,
        rates: dict[str, Rate],
        flood_seconds: float,
    ) -> None:
        self.limits = limits
        self.proxies = proxies
        self.rates = rates
        self.flood_seconds = flood_seconds

    def address_of(self, request: Any) -> str:
        """The client's address of an aiohttp request (None: unknown)."""
        if request is None:
            return "unknown"
        return self.proxies.client_address(request.remote, request.headers.get("X-Forwarded-For"))

    def throttle(self) -> ConnectionThrottle:
        return ConnectionThrottle(rates=self.rates, flood_seconds=self.flood_seconds)
