"""Results folders are shared (design reviews, CI artifacts): no secret is written there.

Two tools. :func:`mask_url` hides the password of a URL or libpq DSN, for what is recorded
on purpose (the services a run used). :func:`scrub` is the guard behind every writer of a
results folder: it replaces every secret this process knows of (passwords in DATABASE_URL
and in the DSNs of the services it started, ``PGPASSWORD`` and the like) with ``***``,
whatever text it appears in (an error message, a traceback in stderr.txt).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

MASK = "***"
SECRET_ENV = ("PGPASSWORD", "DATABASE_PASSWORD", "POSTGRES_PASSWORD", "HARNESS_SECRET")
URL_ENV = ("DATABASE_URL",)
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)")
_DSN_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\S+)", re.IGNORECASE)

_extra: set[str] = set()


def mask_url(text: str) -> str:
    """``postgresql://u:pw@h/db`` -> ``postgresql://u:***@h/db``; ``password=pw`` -> ``password=***``."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _DSN_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def _passwords_in(text: str) -> set[str]:
    found = {m.group("pw") for m in _URL_PASSWORD.finditer(text)}
    found |= {m.group("pw").strip("'") for m in _DSN_PASSWORD.finditer(text)}
    try:
        password = urlsplit(text).password
    except ValueError:
        password = None
    if password:
        found.add(password)
    return {p for p in found if p and p != MASK}


def remember(text: str) -> None:
    """Treat the passwords in ``text`` (a DSN a service handed out) as secrets from now on."""
    _extra.update(_passwords_in(text))


def known_secrets() -> set[str]:
    """Every secret of this process: environment passwords, passwords in URLs it was given."""
    secrets = {os.environ[name] for name in SECRET_ENV if os.environ.get(name)}
    for name in URL_ENV:
        secrets |= _passwords_in(os.environ.get(name, ""))
    # Very short values would mask ordinary text ("a" everywhere): a password that short is
    # not a secret worth the damage.
    return {s for s in secrets | _extra if len(s) >= 4}


def scrub(text: str) -> str:
    """``text`` with every known secret, and every URL password, replaced by ``***``."""
    for secret in sorted(known_secrets(), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return mask_url(text) if "://" in text or "password" in text.lower() else text


def scrub_file(path: Path) -> None:
    """Rewrite a text file of the results folder (a child's stderr) without secrets."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    clean = scrub(text)
    if clean != text:
        Path(path).write_text(clean, encoding="utf-8")
