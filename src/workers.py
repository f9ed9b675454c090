"""How many cores and worker processes this deployment has.

Read by gunicorn.conf.py (how many workers to start) and by the app (how much of the machine one
worker may use), from the same environment variables in the same way. Nothing here imports the
app's settings: gunicorn loads this before any worker exists, and must not validate them.
"""

import os


def int_from_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set), not all the host has."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def web_concurrency() -> int:
    """gunicorn's worker processes: WEB_CONCURRENCY, else one per usable core."""
    return int_from_env("WEB_CONCURRENCY", usable_cores())


def cores_per_worker() -> int:
    """This worker's share of the cores (at least one), so all workers together use them all once."""
    return max(1, usable_cores() // max(1, web_concurrency()))
