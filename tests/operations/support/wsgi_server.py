"""A real HTTP server for the project in a child process: ``python -m tests.operations.support.wsgi_server``.

Binds 127.0.0.1 on a free port, prints ``PORT <n>`` on stdout, and serves the project's WSGI
application until killed. Unlike ``runserver`` it starts even when the database is unreachable,
which is what the health-check tests need.
"""

from __future__ import annotations

import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        sys.stderr.write("%s\n" % (format % args))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.wsgi import application

    server = make_server("127.0.0.1", 0, application, server_class=_Server,
                         handler_class=_QuietHandler)
    sys.stdout.write(f"PORT {server.server_port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
