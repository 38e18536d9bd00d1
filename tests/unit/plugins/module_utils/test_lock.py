"""The store lock: a second run waits for it or fails naming the holder; a killed holder loses it."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import LockError, StoreLock

from conftest import COLLECTIONS


def test_a_second_run_waits_or_fails_with_a_clear_error(tmp_path):
    store = str(tmp_path)
    holder = subprocess.Popen([sys.executable, '-c', textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import StoreLock
        with StoreLock(%r):
            print('locked', flush=True)
            time.sleep(30)
    """ % (COLLECTIONS, store))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
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
