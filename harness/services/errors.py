"""The one exception type services raise, so the CLI can print it as a single actionable line."""

from __future__ import annotations


class ServiceError(RuntimeError):
    """A service could not be started, reached or stopped.

    The message is always one line that says what failed and how to fix it; embedded newlines
    (for example a subprocess's stderr tail) are folded into " | " so the CLI can print it as is.
    """

    def __init__(self, message: str) -> None:
        lines = [part.strip() for part in str(message).splitlines() if part.strip()]
        super().__init__(" | ".join(lines))
