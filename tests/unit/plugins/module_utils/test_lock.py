"""The store lock: a second run waits for it or fails naming the holder; a killed holder loses it."""

import signal
import time

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import LockError, StoreLock

from helpers import hold_lock


def test_a_second_run_waits_or_fails_with_a_clear_error(tmp_path):
    store = str(tmp_path)
    holder = hold_lock(store)
    try:
        with pytest.raises(LockError, match=r'another pkgcache run \(pid %d\) holds the lock' % holder.pid):
            with StoreLock(store, timeout=0):
                pass
        started = time.monotonic()
        with pytest.raises(LockError):
            with StoreLock(store, timeout=1):
                pass
        assert time.monotonic() - started >= 1
        holder.send_signal(signal.SIGKILL)  # the kernel drops the lock of a killed holder
        holder.wait()
        with StoreLock(store, timeout=5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
