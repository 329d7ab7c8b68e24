"""One launch per study at a time: an exclusive lock file in the study's storage.

Two drivers launching the same study would each create child runs for the same trial keys
and train them twice. The lock is an `fcntl.flock` on `<storage>/.launch.lock`, released by
the kernel when the driver exits however it exits (kill -9 included), so a stale lock never
blocks a relaunch. flock is reliable on local disks and on most cluster file systems; on an
NFS without lock support it degrades to no protection (documented in docs/CLUSTER.md).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from var_model.errors import VarScaleError

LOCK_FILE = ".launch.lock"


class StudyLockedError(VarScaleError, RuntimeError):
    """Another launch of the same study is running."""


class StorageNotWritableError(VarScaleError, OSError):
    """The study's storage cannot be written (read-only mount, no permission)."""


class StudyLock:
    def __init__(self, storage: str, name: str):
        self.path = Path(storage, LOCK_FILE)
        self.name = name
        self._handle = None

    def __enter__(self) -> "StudyLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as error:
            # The lock is the launch's first write to storage: a read-only or foreign-owned folder
            # shows up here, and every later write (checkpoints, MLflow) would fail the same way.
            raise StorageNotWritableError(
                f"storage {self.path.parent} is not writable ({error.strerror or error}: "
                f"{error.filename or self.path}); give a writable folder with --set storage=PATH"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StudyLockedError(
                f"study {self.name!r} is already being launched ({holder}, lock {self.path}); "
                "wait for it, or watch it with `varscale status`"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
