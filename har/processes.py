"""Processes of this machine: whether one still runs, and this machine's name, for the records that name a
process (a stage's holder "host:pid", a temporary folder of the spool)."""
from __future__ import annotations

import os
import socket


def host_name() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
