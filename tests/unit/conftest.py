"""Make this checkout importable as ansible_collections.pkgcache.overlay."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'pkgcache', 'overlay')

if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(os.path.relpath(ROOT, os.path.dirname(LINK)), LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

import json  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402 (after the path to the collection is set)

from helpers import DripServer, publish, run_sync  # noqa: E402


@pytest.fixture
def two_snapshots(tmp_path):
    served = str(tmp_path / 'served')
    v1 = publish(served, dict(('f%03d' % i, b'v1 %d' % i) for i in range(200)))
    v2 = publish(served, dict(('f%03d' % i, (b'v2 %d' % i) * 1000) for i in range(200)))
    host = str(tmp_path / 'host')
    res = run_sync('file://' + served, v1, host)
    assert res.returncode == 0, res.stderr
    return 'file://' + served, v1, v2, host


@pytest.fixture
def drip(tmp_path):
    server = DripServer(str(tmp_path / 'served'))
    yield server
    server.close()


HOG = r'''
import json, os, sys
os.chdir(sys.argv[1])                       # as root, before dropping to nobody
dirfd = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY)
null = os.open('/dev/null', os.O_RDONLY)
fds = [os.dup(null) for _ in range(int(sys.argv[3]))]
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)           # non-dumpable now: /proc/<pid> is root's, status still says 65534
print(json.dumps({'pid': os.getpid(), 'fds': len(os.listdir('/proc/self/fd')) - 1}), flush=True)  # less listdir's own
sys.stdin.read()
'''


@pytest.fixture
def hog_as_nobody():
    """Start a process that takes a cwd and a dir fd, dups /dev/null ``fds`` times and becomes nobody (65534)."""
    started = []

    def start(cwd, dirfd, fds):
        p = subprocess.Popen([sys.executable, '-c', HOG, str(cwd), str(dirfd), str(fds)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
        started.append(p)
        return json.loads(p.stdout.readline())
    yield start
    for p in started:
        p.kill()
        p.wait()
