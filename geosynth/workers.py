"""Worker processes that die with their parent.

A build's or import's process-pool workers, DataLoader workers and the
worker processes of a dask cluster whose tasks we run call
:func:`exit_with_parent` when they start. When the parent is killed
(``kill -9``, the OOM killer), its workers would otherwise be re-parented to
PID 1 and go on writing tiles and holding memory forever. Two watches:

1. on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the
   worker the moment its parent dies;
2. everywhere, a daemon thread that polls the parent's PID and exits the
   worker once it has changed (the parent died and the worker was re-parented).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 1.0
ORPHAN_EXIT_CODE = 1

_watched: int | None = None  # the parent PID this process watches


def exit_with_parent(parent_pid: int | None = None, poll_seconds: float = POLL_SECONDS) -> None:
    """Make this process exit when ``parent_pid`` (default: its parent now) dies. Idempotent."""
    global _watched
    parent = parent_pid or os.getppid()
    if _watched == parent:
        return
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the poll below still watches
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable; polling the parent only")
    if os.getppid() != parent:  # the parent died before the watch was set
        os._exit(ORPHAN_EXIT_CODE)
    _watched = parent
    threading.Thread(
        target=_poll, args=(parent, poll_seconds), daemon=True, name="geosynth-parent-watch"
    ).start()


def _poll(parent: int, poll_seconds: float) -> None:
    while True:
        time.sleep(poll_seconds)
        if os.getppid() != parent:
            os._exit(ORPHAN_EXIT_CODE)  # no cleanup: the parent that wanted results is gone
