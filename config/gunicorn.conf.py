"""gunicorn settings for the web process: `make run` and deploy/drains-web.service use this file.

    gunicorn -c config/gunicorn.conf.py config.wsgi

The app is small and database-bound: a few synchronous workers with threads are plenty (the page
polls the snapshot every 15 s; each snapshot is a handful of queries). The address and the workers
come from the environment (DRAINS_WEB_BIND, WEB_CONCURRENCY), which is how the systemd unit and
`make run` set them; gunicorn's own command-line options override the rest (`make run` writes the
access log to a file with --access-logfile).
"""

import sys

from django.core.exceptions import ImproperlyConfigured

from config.env import env_int, env_str

try:
    bind = env_str("DRAINS_WEB_BIND", "127.0.0.1:8000")
    # WEB_CONCURRENCY is gunicorn's own convention for the worker count.
    workers = env_int("WEB_CONCURRENCY", 2, minimum=1, maximum=64)
except ImproperlyConfigured as exc:  # one line, as manage.py says it (config/startup.py)
    sys.stderr.write(f"Configuration error: {exc}\n")
    sys.exit(2)
worker_class = "gthread"
threads = 4
# No request here takes long; a worker stuck for this long is killed and replaced.
timeout = 30
# On SIGTERM (Ctrl-C in `make run`, `systemctl stop`): finish requests in flight, then exit.
graceful_timeout = 10
keepalive = 5
# Replace workers now and then, so that a slow leak never grows without bound.
max_requests = 2000
max_requests_jitter = 200
# Access log: "-" is stdout (the journal under systemd); `make run` writes it to var/log.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s" user=%(u)s'
# X-Forwarded-* headers are trusted from these addresses only (gunicorn reads
# FORWARDED_ALLOW_IPS itself; its default is 127.0.0.1 — a proxy on the same host).
proc_name = "drains-web"
# gunicorn's control socket (for `gunicornc`) lives at one fixed path per user, which two
# instances on a host would fight over; nothing here needs it.
control_socket_disable = True
