"""Service health around cells: a dead service is a finding, never a slow or failed mode.

Between cells the runner asks every service to answer (:func:`check_services`): a dead one
the harness owns is started again and the restart recorded as an event of the run
(run.json ``events``, shown by the report); one it cannot restart makes every remaining
cell ``service-down`` at once. While a cell runs, the parent watches the services' processes
(:class:`ServiceWatch`, no requests: it costs nothing the cell would notice); one that stays
dead for ``DOWN_GRACE_S`` cuts the cell short as ``service-down`` (censored), so no unit
spends its retry budget against a server known to be dead. The grace lets a restart from
outside (``pg_ctl restart``) pass: that cell goes on and its failed units are data.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from harness.services.stack import ServiceStack

DOWN_GRACE_S = 4.0


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ServiceWatch:
    """Called by the observing parent about twice a second: a reason once a service's
    process has stayed dead for ``grace_s``, else None."""

    def __init__(self, stack: ServiceStack, grace_s: float = DOWN_GRACE_S):
        self.stack = stack
        self.grace_s = grace_s
        self._dead_since: dict[str, float] = {}

    def __call__(self) -> str | None:
        now = time.monotonic()
        for name in list(self.stack.handles):
            if self.stack.alive(name) is False:
                since = self._dead_since.setdefault(name, now)
                if now - since >= self.grace_s:
                    return f"{name} died during the cell (its process has been gone " \
                           f"for {now - since:.1f} s)"
            else:
                self._dead_since.pop(name, None)
        return None


def down_services(stack: ServiceStack) -> dict[str, str]:
    """Every service that does not answer now, with why."""
    found = {}
    for name in list(stack.handles):
        reason = stack.answers(name)
        if reason is not None:
            found[name] = reason
    return found


def check_services(stack: ServiceStack, events: list[dict[str, Any]], cell_id: str,
                   say: Callable[[str], None]) -> str | None:
    """Before a cell: every service answers, or is restarted (an event), or the reason the
    remaining cells cannot run."""
    for name in list(stack.handles):
        reason = stack.answers(name)
        while stack.noticed:  # what the checks saw since the last cell (a restart from outside)
            service, what, detail = stack.noticed.pop(0)
            events.append({"at": now_iso(), "before_cell": cell_id, "service": service,
                           "event": what, "detail": detail})
        if reason is None:
            continue
        event = {"at": now_iso(), "before_cell": cell_id, "service": name,
                 "event": "restarted", "detail": reason}
        try:
            stack.revive(name)
            again = stack.answers(name)
            if again is not None:
                raise RuntimeError(again)
        except Exception as exc:  # noqa: BLE001 - whatever stops it, the service is down
            event.update(event="down", detail=f"{reason}; restart failed: "
                                              f"{type(exc).__name__}: {exc}")
            events.append(event)
            say(f"[red]{name} is down ({event['detail']}): the remaining cells are "
                "service-down")
            return f"{name} is down: {event['detail']}"
        events.append(event)
        say(f"[yellow]{name} was down ({reason}); restarted it")
    return None
