"""gunicorn settings for Studybase, used by the Docker image and the stack tests alike.

Every value that differs between deployments comes from the environment:
GUNICORN_BIND, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS, GUNICORN_TIMEOUT, GUNICORN_MAX_REQUESTS,
LOG_LEVEL.
Migrations are not run here: `python main.py migrate` runs once, before the workers start.
"""

import os

from src.logging import JsonFormatter
from src.workers import int_from_env, web_concurrency

wsgi_app = "src.app:create_app()"
worker_class = "uvicorn_worker.UvicornWorker"
bind = [os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")]
workers = web_concurrency()

# A worker silent this long is killed and replaced; on shutdown, requests get this long to finish.
timeout = int_from_env("GUNICORN_TIMEOUT", 60)
graceful_timeout = 30
keepalive = 75  # longer than nginx's upstream keepalive_timeout (60s), so nginx closes first

# Worker recycling is off unless asked for: a request count that load can reach recycled every
# worker every ~2 s under the benchmark (p99 of /health 1 s). A deployment that must contain a slow
# leak sets GUNICORN_MAX_REQUESTS high enough to mean hours at full load (e.g. 5,000,000).
max_requests = int_from_env("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10  # staggered, so workers never restart together

# X-Forwarded-For / -Proto are believed only from these addresses (nginx). Never "*" by default.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# No runtime control interface: nothing should reconfigure a production server through a socket.
control_socket_disable = True

# The app logs one JSON access line per request itself; gunicorn's own lines are JSON too.
accesslog = None
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": loglevel.upper()},
    "loggers": {
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": False},
    },
}
