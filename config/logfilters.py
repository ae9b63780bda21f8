"""Logging filters of the web process (settings.LOGGING).

``ClientErrors`` sits on the ``django.request`` logger: a 4xx is the client's business, not the
server's, so it stays out of the error log (gunicorn's terminal, the journal) — except a 403,
which an operator may want to see (who was refused what), logged as one INFO line with the
refusal's own message instead of Django's WARNING with a 30-line traceback. 5xx pass unchanged.
"""

from __future__ import annotations

import logging


class ClientErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is None or status >= 500:
            return True
        if status != 403:
            return False
        line = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None and str(record.exc_info[1]):
            line += f": {record.exc_info[1]}"
        record.msg, record.args = " ".join(line.split()), ()
        record.exc_info = record.exc_text = record.stack_info = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True
