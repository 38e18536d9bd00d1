"""Stand-ins and helpers the unit tests share (pytest fixtures built on them are in conftest.py).

- the build: ``FakePip`` and ``ResolverPip`` (a pip that writes a real cache layout and report), ``params``,
  ``Heads`` (an index that answers HEAD requests);
- stores and hosts: ``publish`` (a builder-side snapshot), ``run_sync`` (a sync in its own process, killable),
  ``tree_is_complete``, and ``DripServer`` (an HTTP server that sends some paths a byte at a time);
- the walkers: ``write``, ``deep_chain`` (made and removed without long paths or recursion) and
  ``count_reads`` (the bytes read through os.read and os.pread);
- the modules: ``run_module`` (a module_utils ``run_module(module)`` on a real AnsibleModule, check mode or not)
  and ``disk`` (what a directory holds, to show that check mode changed nothing).
"""

import contextlib
import hashlib
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import urllib.request

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf
from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st

from conftest import COLLECTIONS

INDEX = 'http://127.0.0.1:8371/simple/'
# A host's clock (``now_epoch`` of a sync) for stores the tests build with dates from 2026-01-01 on: no record
# they publish has expired by then (a record is valid 7 days from its build).
HOST_CLOCK = 1767268800  # 2026-01-01T12:00:00Z
DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
DEPTH = 1500


class FakePip(object):
    """Resolves names from ``index`` {name: (version, body)}; caches bodies unless ``cache`` is False."""

    def __init__(self, index, cache=True):
        self.index, self.cache, self.calls = index, cache, []

    def __call__(self, argv, env):
        self.calls.append(argv)
        if argv[3:4] == ['download']:
            return self.download(argv)
        if argv[1:3] == ['-m', 'venv']:
            os.makedirs(os.path.join(argv[3], 'bin'))
            open(os.path.join(argv[3], 'bin', 'python'), 'w').close()
            return 0, '', ''
        if argv[1] == '-c':
            return 0, json.dumps({'pip': '23.0.1', 'python': '3.11.2'}) + '\n', ''
        assert env['PIP_CONFIG_FILE'] == os.devnull
        specs = open(argv[argv.index('-r') + 1]).read().split()
        cache = argv[argv.index('--cache-dir') + 1]
        items = []
        for spec in specs:
            if spec not in self.index:
                return 1, '', 'ERROR: No matching distribution found for %s' % spec
            version, body = self.index[spec]
            url = 'http://127.0.0.1:8371/packages/%s-%s-py3-none-any.whl' % (spec, version)
            items.append({'metadata': {'name': spec, 'version': version}, 'download_info': {'url': url}})
            if self.cache and '--dry-run' not in argv:
                path = pc.http_cache_paths(cache, url)[1]
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'w') as f:
                    f.write(body)
        with open(argv[argv.index('--report') + 1], 'w') as f:
            json.dump({'install': items}, f)
        os.makedirs(os.path.join(cache, 'selfcheck'), exist_ok=True)
        return 0, '', ''

    def download(self, argv):
        """``pip download --no-deps URL...``: the wheels go through the cache (unless ``cache`` is False)."""
        cache = argv[argv.index('--cache-dir') + 1]
        for url in [a for a in argv if a.endswith('.whl')]:
            name, version = url.rsplit('/', 1)[1].split('-')[:2]
            if self.index.get(name, (None,))[0] != version:
                return 1, '', 'ERROR: 404 Client Error: Not Found for url: %s' % url
            if self.cache:
                path = pc.http_cache_paths(cache, url)[1]
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'w') as f:
                    f.write(self.index[name][1])
        return 0, '', ''


def params(tmp_path, packages):
    return {'packages': packages, 'requirements': None, 'index_url': INDEX, 'trusted_host': '127.0.0.1:8371',
            'python': 'python3', 'pip_version': None, 'venv_dir': None, 'work_dir': str(tmp_path / 'work'),
            'store': str(tmp_path / 'store'), 'publish': True}


class ResolverPip(FakePip):
    """A pip whose resolver behaves like the real one on a conflict: ``web`` alone takes ``core`` 2.0,
    ``legacy`` needs ``core<2``, and the two together take ``core`` 1.0 (the boto3/aiobotocore shape)."""

    DEPS = {'web': [('web', '1.0'), ('core', '2.0')], 'legacy': [('legacy', '1.0'), ('core', '1.0')],
            'broken': None}

    def __call__(self, argv, env):
        if argv[1:3] == ['-m', 'venv'] or argv[1] == '-c':
            return FakePip.__call__(self, argv, env)
        self.calls.append(argv)
        specs = open(argv[argv.index('-r') + 1]).read().split()
        self.requests = getattr(self, 'requests', []) + [specs]
        cache = argv[argv.index('--cache-dir') + 1]
        if any(self.DEPS.get(s) is None for s in specs):
            return 1, '', 'ERROR: ResolutionImpossible: broken needs core>=3'
        picked = dict(pair for s in specs for pair in self.DEPS[s])
        if 'web' in specs and 'legacy' in specs:
            picked['core'] = '1.0'
        items = []
        for name, version in sorted(picked.items()):
            url = 'http://127.0.0.1:8371/packages/%s-%s-py3-none-any.whl' % (name, version)
            items.append({'metadata': {'name': name, 'version': version}, 'download_info': {'url': url}})
            path = pc.http_cache_paths(cache, url)[1]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write('%s %s' % (name, version))
        with open(argv[argv.index('--report') + 1], 'w') as f:
            json.dump({'install': items}, f)
        return 0, '', ''


class Heads(object):
    """The index's answers to HEAD requests: every file with cache headers and its size ({name: size}); pages
    (GET) fail, so nothing is reused."""

    def __init__(self, sizes):
        self.sizes, self.heads = sizes, []

    def __call__(self, url, method=None):
        if method != 'HEAD':
            raise IOError('HTTP Error 503: %s' % url)
        self.heads.append(url)
        name = url.rsplit('/', 1)[1].split('-')[0]

        class Response(object):
            headers = {'Content-Length': str(self.sizes[name]), 'Cache-Control': 'max-age=600',
                       'Date': 'Mon, 07 Dec 2026 22:00:00 GMT'}

            def close(self):
                pass
        return Response()


SYNC_SCRIPT = textwrap.dedent("""
    import sys, urllib.request
    sys.path.insert(0, %r)
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync
    p = {'url': sys.argv[1], 'snapshot': sys.argv[2], 'store': sys.argv[3], 'workers': 2,
         'max_manifest_size': 1 << 30, 'lock_timeout': 0}
    with _sync.locked(p, False):
        print(_sync.sync(p, urllib.request.urlopen, now='t')['id'])
""" % COLLECTIONS)


def publish(served, files):
    """Put a snapshot of ``files`` {name: bytes} into a builder-side store; return its id."""
    entries = [{'path': 'pip', 'type': 'dir', 'mode': '0777'}]
    for name, data in sorted(files.items()):
        digest = hashlib.sha256(data).hexdigest()
        path = st.object_path(served, digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
        entries.append({'path': 'pip/' + name, 'type': 'file', 'mode': '0644', 'size': len(data), 'sha256': digest})
    manifest = mf.build_manifest(entries, {'created': 'now', 'ecosystems': ['pip']})
    os.makedirs(os.path.join(served, 'snapshots'), exist_ok=True)
    with open(st.manifest_path(served, manifest['id']), 'w') as f:
        json.dump(manifest, f)
    return manifest['id']


def run_sync(url, snap, store, kill_at=None):
    env = dict(os.environ)
    env.pop('PKGCACHE_KILL_AT', None)
    if kill_at:
        env['PKGCACHE_KILL_AT'] = kill_at
    return subprocess.run([sys.executable, '-c', SYNC_SCRIPT, url, snap, store], env=env,
                          capture_output=True, text=True, check=False)


def tree_is_complete(store, snap_id):
    with open(st.manifest_path(store, snap_id)) as f:
        manifest = json.load(f)
    for e in manifest['entries']:
        if e['type'] == 'file':
            digest, size = mf.sha256_file(os.path.join(st.tree_path(store, snap_id), e['path']))
            assert (digest, size) == (e['sha256'], e['size']), e['path']
    return True


# 2. Downloads have a total deadline, and their responses are closed.

class DripServer(object):
    """A store over real HTTP on 127.0.0.1 that sends the paths in ``slow`` one byte every ``interval`` seconds.

    ``slow[path]`` is 'body' (headers at once, then the body dripped) or 'headers' (the status line dripped).
    """

    def __init__(self, root, interval=0.3):
        self.root, self.interval, self.slow, self.requests = root, interval, {}, []
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                path = os.path.join(server.root, self.path.lstrip('/'))
                if not os.path.isfile(path):
                    self.send_error(404)
                    return
                with open(path, 'rb') as fh:
                    body = fh.read()
                mode = server.slow.get(self.path)
                head = b'HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n' % len(body)
                try:
                    if mode == 'headers':
                        server.drip(self.wfile, head)
                        self.wfile.write(body)
                    elif mode == 'body':
                        self.wfile.write(head)
                        server.drip(self.wfile, body)
                    else:
                        self.wfile.write(head + body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def drip(self, wfile, data):
        for n in range(len(data)):
            if self.stop.wait(self.interval):
                return
            wfile.write(data[n:n + 1])
            wfile.flush()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def hold_lock(store):
    """A process of its own that holds StoreLock(store) (for 30 s), started and holding it on return."""
    holder = subprocess.Popen([sys.executable, '-c', textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import StoreLock
        with StoreLock(%r):
            print('locked', flush=True)
            time.sleep(30)
    """ % (COLLECTIONS, store))], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'locked'
    return holder


def http_opener(url):
    return urllib.request.urlopen(url, timeout=2)  # longer than the drip interval: no single read times out


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


def mkdir_chain(fd, depth, name='d'):
    """Make ``name/name/...`` (``depth`` levels) under the dir open at ``fd``, through fds (no long paths); return an
    fd of the innermost dir (``fd`` itself is closed unless ``depth`` is 0)."""
    for dummy in range(depth):
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, DIR, dir_fd=fd)
        os.close(fd)
        fd = child
    return fd


@contextlib.contextmanager
def deep_chain(base, depth=DEPTH, name='d'):
    """``base/d/d/.../d``, ``depth`` levels, made with mkdir on an fd chain; removed on exit, one level at a time."""
    os.makedirs(base, exist_ok=True)
    os.close(mkdir_chain(os.open(base, DIR), depth, name))
    try:
        yield os.path.join(base, name)
    finally:
        remove_chain(base, name)


def remove_chain(base, name='d'):
    """Remove ``base/d/d/...`` (dirs only) without recursion: move the grandchild up, remove the emptied child, repeat."""
    top = os.open(base, DIR)
    try:
        while True:
            try:
                child = os.open(name, DIR, dir_fd=top)
            except FileNotFoundError:
                return
            try:
                os.rename(name, name + '.up', src_dir_fd=child, dst_dir_fd=top)
                moved = True
            except FileNotFoundError:
                moved = False
            finally:
                os.close(child)
            os.rmdir(name, dir_fd=top)
            if not moved:
                return
            os.rename(name + '.up', name, src_dir_fd=top, dst_dir_fd=top)
    finally:
        os.close(top)


class ReadCounter(object):
    """Counts bytes read with os.read and os.pread; fails the test at once past ``limit`` (so old code cannot run for minutes)."""

    def __init__(self, limit):
        self.limit, self.total = limit, 0

    def wrap(self, real):
        def counted(*args):
            data = real(*args)
            self.total += len(data)
            if self.total > self.limit:
                raise AssertionError('read %d bytes, more than the %d this test allows' % (self.total, self.limit))
            return data
        return counted


@contextlib.contextmanager
def count_reads(monkeypatch, limit):
    counter = ReadCounter(limit)
    with monkeypatch.context() as m:
        m.setattr(os, 'read', counter.wrap(os.read))
        m.setattr(os, 'pread', counter.wrap(os.pread))
        yield counter


def build_eco(tmp_path, store, eco, options, run, now, **kw):
    """A published build of ecosystem ``eco`` alone (its options ``options``) into ``tmp_path/store``."""
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
    p = dict({'ecosystems': [eco], eco: options, 'store': str(tmp_path / store), 'work_dir': str(tmp_path / 'work'),
              'publish': True, 'workers': 2}, **kw)
    return bd.build(p, run, now=now)


def snapshot_files(tmp_path, store, snap_id):
    """{path: sha256 of a file, target of a symlink, None for a dir} of a snapshot in ``tmp_path/store``."""
    with open(st.manifest_path(str(tmp_path / store), snap_id)) as f:
        return dict((e['path'], e.get('sha256') or e.get('target')) for e in json.load(f)['entries'])


def run_module(capsys, run, spec, args, check_mode=False, **module_kw):
    """Call ``run(module)`` (a module_utils run_module) on an AnsibleModule of ``spec`` given ``args``, as the
    module's main() does; return (exit code, the result it printed)."""
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)):
        with pytest.raises(SystemExit) as exc:
            run(AnsibleModule(argument_spec=spec, supports_check_mode=True, **module_kw))
    return exc.value.code, json.loads(capsys.readouterr().out)


def disk(root):
    """{relative path: (mode, size or link target, mtime_ns)} of everything under ``root``, symlinks not followed."""
    out = {}
    for top, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(top, name)
            s = os.lstat(path)
            what = os.readlink(path) if os.path.islink(path) else (None if os.path.isdir(path) else s.st_size)
            out[os.path.relpath(path, str(root))] = (s.st_mode, what, s.st_mtime_ns)
    return out
