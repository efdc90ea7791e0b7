"""Tickets: what a URL carries as `?token=` instead of the API token.

WebSockets and download links cannot send an Authorization header, and a token in a URL ends up in
proxy logs, browser history and Referer headers. So an authenticated client asks for a ticket
(POST /api/v1/tickets), puts that in the URL, and the ticket works once, for one path if asked,
within TICKET_LIFETIME_SECONDS.

They are kept in memory, not in SQLite: one process serves the API, a ticket lives a minute, and a
restart only makes a client ask again; on disk a live secret would outlast its use for nothing."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

TICKET_LIFETIME_SECONDS = 60.0
# Outstanding tickets kept at most; beyond it the oldest go first. A client that asks for more
# than this within a minute only spoils its own.
MAX_OUTSTANDING_TICKETS = 10_000


@dataclass(frozen=True)
class Ticket:
    value: str
    # The one request path it opens (decoded, e.g. /api/v1/ws), or None for any path that takes one.
    path: str | None
    expires_at: float  # on the book's clock
    expires_at_unix: float  # wall clock, for the client


class TicketBook:
    """Issues tickets and redeems each at most once."""

    def __init__(self, lifetime_seconds: float = TICKET_LIFETIME_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._tickets: dict[str, Ticket] = {}

    def issue(self, path: str | None) -> Ticket:
        self._forget_expired()
        while len(self._tickets) >= MAX_OUTSTANDING_TICKETS:
            del self._tickets[next(iter(self._tickets))]
        ticket = Ticket(secrets.token_urlsafe(32), path, self.clock() + self.lifetime_seconds,
                        time.time() + self.lifetime_seconds)
        self._tickets[ticket.value] = ticket
        return ticket

    def redeem(self, value: str, path: str) -> bool:
        """True once for a live ticket issued for `path` (or for any path); it is spent either way
        it is presented, so a ticket seen in a log is worth nothing afterwards."""
        ticket = self._tickets.pop(value, None)
        if ticket is None or ticket.expires_at <= self.clock():
            return False
        return ticket.path is None or ticket.path == path

    def _forget_expired(self) -> None:
        # Every ticket lives as long, so insertion order is expiry order: stop at the first live one.
        now = self.clock()
        while self._tickets:
            oldest = next(iter(self._tickets.values()))
            if oldest.expires_at > now:
                break
            del self._tickets[oldest.value]

    def __len__(self) -> int:
        return len(self._tickets)
