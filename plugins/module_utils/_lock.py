# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One lock per host store, so that two runs never change it at once.

Private to the collection; the API may change without notice.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time


class LockError(RuntimeError):
    """Another run holds the lock."""


# The lock of the views root, which holds one directory per repl user: a name no repl name can be
# (repl names never hold '#'), so that a user called '.lock' gets her directory like anyone else.
VIEWS_LOCK = '#lock'


class StoreLock(object):
    """flock(2) on ``<store>/<name>`` (``.lock`` unless told); waits up to ``timeout`` seconds (0: fail at once).

    The kernel drops the lock when the holder dies, even by SIGKILL, so a
    crashed run never leaves a stale lock behind.
    """

    def __init__(self, store, timeout=0, name='.lock'):
        self.path = os.path.join(store, name)
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + max(0, self.timeout)
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(self.fd, 64, 0).decode('ascii', 'replace').strip() or 'unknown'
                    os.close(self.fd)
                    self.fd = None
                    raise LockError('another pkgcache run (pid %s) holds the lock %s; waited %ds. '
                                    'Try again later or raise lock_timeout' % (holder, self.path, self.timeout))
                time.sleep(0.2)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, ('%d\n' % os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False
