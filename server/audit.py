"""The audit log: suspicious activity as one JSON object per line, for operators to watch.

Each entry says what happened (``event``), who (``user``), from where (``client``) and the
details. Entries go to the ``execstream.audit`` logger, so operators route them with the
usual logging configuration; the server prints them bare, one JSON object per line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

logger = logging.getLogger("execstream.audit")


def audit(
    event: str, *, user: str | int | None = None, client: str | None = None, **details: object
) -> None:
    """Record one suspicious event, e.g. ``audit("login_failed", user="ada", client=ip)``."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "user": user,
        "client": client,
        **details,
    }
    logger.warning("%s", json.dumps(entry, default=str, ensure_ascii=False))
