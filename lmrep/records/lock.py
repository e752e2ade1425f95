"""One writer per run folder: an OS lock (flock) on a file inside the folder, held for the life of the process.

The kernel releases the lock when the process ends, however it ends (SIGKILL too), so a killed run never leaves a
stale lock behind and the next run resumes its folder. A second process aimed at a folder another holds is refused
with one line naming the holder's pid (written beside the lock once it is taken), or waits for it when asked to.
Within one process the same folder may be taken again (a sweep's top folder and then each run folder under it).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import LmrepError

log = logging.getLogger(__name__)

LOCK = ".lmrep.lock"
HOLDER = ".lmrep.lock.pid"  # beside the lock: who holds it (flock opens its file truncated, so not in it)


class FolderLocks:
    """The folders this process writes (kept until it exits) and whether to wait for another writer."""

    def __init__(self):
        self.held: dict[Path, object] = {}
        self.wait = False
        self.started = None  # called once a folder is taken (or waited for): the command's work begins

    def take(self, folder: Path) -> None:
        """Hold ``folder`` for this process: at once, or (``wait``) once its writer is done; otherwise a one-line
        LmrepError naming the process that holds it."""
        from filelock import FileLock, Timeout
        key = folder.resolve()
        if key in self.held:
            return
        lock = FileLock(str(key / LOCK), fallback_to_soft=False, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = self._holder(key)
            if not self.wait:
                raise LmrepError(f"'{folder}' is being written by another lmrep process ({holder}): let it finish, "
                                 "pass --wait to wait for it, or give another --out") from None
            self._start()
            log.info("'%s' is being written by %s; waiting for it to finish", folder, holder)
            lock.acquire()
        except OSError as e:
            raise LmrepError(f"cannot lock run folder '{folder}': {e.strerror or e}") from None
        self.held[key] = lock
        self._start()
        try:
            (key / HOLDER).write_text(f"{os.getpid()}\n")
        except OSError:
            pass  # the lock holds without it; only the message to a second writer is poorer

    def _start(self) -> None:
        if self.started is not None:
            self.started()

    @staticmethod
    def _holder(folder: Path) -> str:
        try:
            pid = (folder / HOLDER).read_text().strip()
        except OSError:
            pid = ""
        return f"pid {pid}" if pid.isdigit() else "pid unknown"


LOCKS = FolderLocks()  # one per process: a lock belongs to the process, not to an object that may be dropped


def hold(folder: str | Path) -> None:
    """Hold the run folder ``folder`` (which exists) for the rest of this process; see ``FolderLocks.take``."""
    LOCKS.take(Path(folder))


def wait_for_writers(wait: bool = True) -> None:
    """Whether this process waits for another writer of a folder (``--wait``) instead of stopping."""
    LOCKS.wait = wait
