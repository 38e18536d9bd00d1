# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filling and reading an npm cache (``_cacache``) with npm itself.

Private to the collection; the API may change without notice.

The tree is resolved the way ``npm install`` resolves it (``npm install
--package-lock-only`` in a throwaway project), then every package of the lock
file goes into the cache with ``npm cache add``. cacache's index is a set of
append-only bucket files under ``_cacache/index-v5``; each line is
``<sha1 of the JSON>\\t<JSON>`` whose ``key`` for a registry response is
``make-fetch-happen:request-cache:<url>``.

An incremental build (``reuse``) starts from the published snapshot's
``_cacache`` (content hardlinked, index buckets copied: npm appends to them),
so npm revalidates the packuments and finds the unchanged tarballs in the
cache. Every build then keeps only the index entries of what its lock files
name (the packuments of their packages, the tarballs of their versions) and
the content those entries point to (``prune``): a package the build no longer
takes leaves nothing behind, and the snapshot is the one a build from an empty
cache gives.

Most of an incremental build's time would go to npm itself (a resolution is
a second or more of npm per spec, and ``npm cache add`` fetches every
packument again), so the build runs npm only where something changed: a spec
whose previous resolution names only packages whose packuments the registry
still serves byte for byte as the seeded cache holds them (each fetched once
more and compared by sha512 with the entry's integrity; npm 11 keeps no ETag
to revalidate with) would resolve the same way, so its lock is the previous
one; and ``npm cache add`` skips the packages whose tarball is cached under
both its keys with the integrity the lock names (content-addressed, it cannot
be stale). A packument that npm fetches anew after that check (a release in
between) puts the specs naming its package back to npm. The check sends the
Accept header npm sent for the cached response, reads no more than the cached
size and a margin (hashing as it reads) and has deadlines (per request and in
all); past them a packument counts as changed.

A packument that npm stored twice with different content during one build
(a release while the build ran) may have served some of its locks in the
older version: the specs naming that package are left out of the recorded
resolutions, so the next build runs npm for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import stat
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote, urlsplit

from . import _solo as solo
from ._fill import BuildError, fingerprint, remove_empty_dirs, seeded, tail as _tail, with_defaults

# The suboptions of snapshot_build's npm option.
OPTIONS = dict(
    packages=dict(type='list', elements='str', default=[]),
    registry=dict(type='str', default='https://registry.npmjs.org/'),
    npm=dict(type='str', default='npm'),
    cafile=dict(type='path'),
    platforms=dict(type='list', elements='str', default=[]),
)
ITEMS = 'packages'
# The values of node's process.platform and process.arch, which npm compares with a package's os and cpu.
NODE_PLATFORMS = ('aix', 'android', 'cygwin', 'darwin', 'freebsd', 'haiku', 'linux', 'netbsd', 'openbsd', 'os390',
                  'sunos', 'win32')
NODE_ARCHS = ('arm', 'arm64', 'ia32', 'loong64', 'mips', 'mipsel', 'ppc', 'ppc64', 'riscv64', 's390', 's390x', 'x64')
# How the build decides which packages are other platforms'; a resolution recorded under another rule is not reused.
PLATFORM_RULE = 1
SPEC_RE = re.compile(r'^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*(@[A-Za-z0-9.^~<>=*|+ -]+)?$')
KEY_PREFIX = 'make-fetch-happen:request-cache:'
# Top-level names in npm's cache dir that never go into a snapshot.
EXCLUDE = ('_logs', '_npx', '_update-notifier-last-checked', '_prebuilds')


def tail(text, lines=15):
    """The last lines of npm's output, without its pointer to a debug log that the build deletes."""
    return _tail(text, lines, drop='A complete log of this run')


def exclude(cache):
    """Top-level names of npm's cache dir that stay out of a snapshot."""
    return EXCLUDE


def check_specs(specs):
    """Return the specs stripped; refuse anything but ``name`` or ``name@range`` from a registry."""
    out = []
    for spec in specs:
        s = spec.strip() if isinstance(spec, str) else spec
        if not isinstance(s, str) or not SPEC_RE.match(s):
            raise BuildError('npm package %r is not a registry package spec (name or name@version-range; '
                             'URLs, git and file specs are refused)' % (spec,))
        out.append(s)
    return out


def check_platforms(platforms):
    """Return the platforms, sorted and each once, as [(os, cpu)]; refuse anything but ``os-cpu`` with node's names.

    A package's libc is not looked at: npm writes it into lock files only from 11.11 on and older npm ignores it,
    so a host's npm may take either libc's binary.
    """
    out = set()
    for platform in platforms:
        parts = platform.split('-') if isinstance(platform, str) else []
        if len(parts) != 2 or parts[0] not in NODE_PLATFORMS or parts[1] not in NODE_ARCHS:
            raise BuildError('npm platform %r is not os-cpu as node names them (process.platform-process.arch, for '
                             'example linux-x64 or darwin-arm64; os one of %s; cpu one of %s)'
                             % (platform, ', '.join(NODE_PLATFORMS), ', '.join(NODE_ARCHS)))
        out.add(tuple(parts))
    return sorted(out)


def _allows(values, value):
    """npm's test of a package's ``os`` or ``cpu`` (npm-install-checks): none or ``any`` allows all; ``!x`` refuses
    x; else the value must be listed."""
    if isinstance(values, str):
        values = [values]
    if not values or not isinstance(values, list) or values == ['any']:
        return True
    if '!' + value in values:
        return False
    wanted = [v for v in values if isinstance(v, str) and not v.startswith('!')]
    return not wanted or value in wanted


def installs_on(package, platform):
    """Would npm install ``package`` (a lock entry, with its ``os`` and ``cpu``) on ``platform`` (os, cpu)?"""
    return _allows(package.get('os'), platform[0]) and _allows(package.get('cpu'), platform[1])


def for_platforms(packages, platforms):
    """(packages that install on one of ``platforms`` at least, the others); all of them with no platforms."""
    if not platforms:
        return list(packages), []
    keep, other = [], []
    for p in packages:
        (keep if not p.get('other_platform') and any(installs_on(p, pf) for pf in platforms) else other).append(p)
    return keep, other


def spec_name(spec):
    """The package name of a spec (``@scope/name@1`` -> ``@scope/name``)."""
    at = spec.find('@', 1)
    return spec if at < 0 else spec[:at]


item_name = spec_name


def options(p):
    """npm's options from snapshot_build's params, defaults applied."""
    return with_defaults(OPTIONS, p.get('npm'))


def clean_env(environ):
    """npm's environment: no npm_config_* of the host, no user npmrc."""
    env = dict((k, v) for k, v in environ.items() if not k.lower().startswith('npm_config_'))
    env.update({'npm_config_userconfig': os.devnull, 'npm_config_update_notifier': 'false',
                'npm_config_fund': 'false', 'npm_config_audit': 'false'})
    return env


def npm_args(o, cache):
    args = ['--cache', cache, '--registry', o['registry']]
    if o.get('cafile'):
        args += ['--cafile', o['cafile']]
    return args


def lock_packages(lock):
    """Return [{name, version, integrity}] for every registry package of a package-lock (v2 or v3)."""
    out = {}
    for path, meta in (lock.get('packages') or {}).items():
        if not path or meta.get('link') or 'node_modules/' not in path:
            continue
        name = meta.get('name') or path.rsplit('node_modules/', 1)[1]
        version = meta.get('version')
        if not version:
            continue
        out[(name, version)] = {'name': name, 'version': version, 'integrity': meta.get('integrity', '')}
        for key in ('os', 'cpu'):
            if meta.get(key):
                out[(name, version)][key] = meta[key]
    return [out[k] for k in sorted(out)]


def read_regular_file(path, limit=256 << 20):
    """Bytes of ``path`` if it is a regular file no larger than ``limit``, else None.

    Opened with O_NOFOLLOW and O_NONBLOCK and checked with fstat, so a user who
    swaps a file in its upper for a symlink or a FIFO cannot make root read
    something else or hang.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b''.join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def index_line(line):
    """The entry of one cacache index line (bytes, ``<sha1 of the JSON>\\t<JSON>``), or None.

    None for a line whose hash does not match its JSON (a torn append) and
    for anything but a mapping with a string ``key``, the way cacache reads it.
    """
    digest, sep, body = line.partition(b'\t')
    if not sep or hashlib.sha1(body).hexdigest().encode('ascii') != digest:
        return None
    try:
        entry = json.loads(body)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get('key'), str) else None


def index_buckets(cache_dir):
    """Yield (path, bytes or None) of each bucket file of a cacache index (None: not a regular file, or too big)."""
    for dirpath, dummy, files in os.walk(os.path.join(cache_dir, '_cacache', 'index-v5')):
        for fname in files:
            path = os.path.join(dirpath, fname)
            yield path, read_regular_file(path)


def bucket_lines(raw):
    """Yield (line number, line, entry) of the lines of a bucket that cacache reads (see ``index_line``)."""
    for n, line in enumerate(raw.split(b'\n')):
        entry = index_line(line)
        if entry is not None:
            yield n, line, entry


def index_entries(cache_dir):
    """Yield the live entries of a cacache index: dicts with key, integrity, size, time.

    Lines whose hash does not match their JSON (torn appends) are skipped, and
    a later line with a null integrity deletes a key, the way cacache reads it.
    """
    for dummy, raw in index_buckets(cache_dir):
        latest = dict((entry['key'], entry) for n, line, entry in bucket_lines(raw or b''))
        for entry in latest.values():
            if entry.get('integrity'):
                yield entry


_TARBALL = re.compile(r'/((?:@[^/]+/)?[^/]+)/-/(?:[^/]+/)?([^/]+)\.tgz$')


def tarball_package(key):
    """(name, version) of a registry tarball cache key, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    url = key[len(KEY_PREFIX):].split('?', 1)[0]
    m = _TARBALL.search(url)
    if not m:
        return None
    name = m.group(1).replace('%2f', '/').replace('%2F', '/')
    base = name.rsplit('/', 1)[-1]
    stem = m.group(2)
    if not stem.startswith(base + '-'):
        return None
    return name, stem[len(base) + 1:]


PACOTE_PREFIX = 'pacote:tarball:'


def packument_name(key):
    """The package name of a registry packument cache key (``<registry>/<name>``, a scope as ``@s%2fn``), or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    path = urlsplit(key[len(KEY_PREFIX):]).path
    if '/-/' in path:
        return None
    segments = [unquote(x) for x in path.strip('/').split('/')]
    if len(segments) >= 2 and segments[-2].startswith('@') and '/' not in segments[-1]:
        return segments[-2] + '/' + segments[-1]
    return segments[-1] or None


def key_in_use(key, names, versions):
    """Whether a build whose lock files name ``versions`` ((name, version)) of packages ``names`` uses cache key
    ``key``: their packuments, their tarballs (by URL and pacote's ``pacote:tarball:name@version``)."""
    if key.startswith(PACOTE_PREFIX):
        name, sep, version = key[len(PACOTE_PREFIX):].rpartition('@')
        return bool(sep) and (name, version) in versions
    pkg = tarball_package(key)
    if pkg:
        return pkg in versions
    return packument_name(key) in names


def content_paths(integrity):
    """The paths under ``_cacache`` of the content an integrity string (``sha512-<base64> ...``) names."""
    out = []
    for part in (integrity or '').split():
        algo, sep, digest = part.partition('-')
        if not sep or not re.match(r'^[a-z0-9]+$', algo):
            continue
        try:
            hexd = binascii.hexlify(base64.b64decode(digest.split('?', 1)[0], validate=True)).decode('ascii')
        except (binascii.Error, ValueError):
            continue
        if len(hexd) > 4:
            out.append('/'.join(('content-v2', algo, hexd[:2], hexd[2:4], hexd[4:])))
    return out


def prune(cache_dir, keep):
    """Keep in the cacache of ``cache_dir`` only the index entries whose key ``keep(key)`` accepts and the content
    they name; return the number of index entries and content files dropped.

    A bucket keeps the newest line of each kept key, in the order npm wrote them; a bucket left as it was is not
    rewritten (it stays byte-identical), an emptied one goes.
    """
    root = os.path.join(cache_dir, '_cacache')
    wanted, dropped = set(), 0
    for path, raw in index_buckets(cache_dir):
        if raw is None:
            os.unlink(path)
            continue
        latest = dict((entry['key'], (n, line, entry)) for n, line, entry in bucket_lines(raw))
        kept = sorted(v for v in latest.values() if v[2].get('integrity') and keep(v[2]['key']))
        dropped += len(latest) - len(kept)
        for n, line, entry in kept:
            wanted.update(content_paths(entry['integrity']))
        data = b''.join(b'\n' + line for n, line, entry in kept)
        if not kept:
            os.unlink(path)
        elif data != raw:
            with open(path, 'wb') as f:
                f.write(data)
    content = os.path.join(root, 'content-v2')
    for dirpath, dummy, files in os.walk(content):
        for fname in files:
            path = os.path.join(dirpath, fname)
            if os.path.relpath(path, root).replace(os.sep, '/') not in wanted:
                os.unlink(path)
                dropped += 1
    for sub in ('index-v5', 'content-v2'):
        if os.path.isdir(os.path.join(root, sub)):
            remove_empty_dirs(os.path.join(root, sub))
    return dropped


def cached_tarballs(cache_dir):
    """The set of (name, version) whose registry tarball is in the cache."""
    found = set()
    for entry in index_entries(cache_dir):
        pkg = tarball_package(entry['key'])
        if pkg:
            found.add(pkg)
    return found


def tarball_integrities(cache_dir):
    """{(name, version): integrity} of the registry tarballs that npm finds in the cache under both keys that
    ``npm cache add`` writes (the tarball's URL and pacote's ``pacote:tarball:<name>@<version>``) with the same
    integrity."""
    urls, pacote = {}, {}
    for entry in index_entries(cache_dir):
        key = entry['key']
        if key.startswith(PACOTE_PREFIX):
            name, sep, version = key[len(PACOTE_PREFIX):].rpartition('@')
            if sep:
                pacote[(name, version)] = entry['integrity']
            continue
        pkg = tarball_package(key)
        if pkg:
            urls[pkg] = entry['integrity']
    return dict((k, v) for k, v in urls.items() if pacote.get(k) == v)


def to_add(packages, tarballs):
    """The packages of the lock files that ``npm cache add`` must fetch: all but those whose tarball is in the
    cache (``tarball_integrities``) with the integrity the lock file names. A tarball is stored by its content,
    so such an entry is the one ``npm cache add`` would write."""
    return [p for p in packages if not p.get('integrity') or tarballs.get((p['name'], p['version'])) != p['integrity']]


def packument_entries(cache_dir):
    """{package name: live index entry} of the registry packuments in the cache."""
    out = {}
    for entry in index_entries(cache_dir):
        name = packument_name(entry['key'])
        if name:
            out[name] = entry
    return out


def packuments(entries):
    """{package name: (cache key, integrity)} of packument entries (``packument_entries``): what identifies each."""
    return dict((name, (e['key'], e['integrity'])) for name, e in entries.items())


def changed_during(cache_dir, since_ms):
    """The names of the packages whose packument got index lines with two or more different integrities written
    at or after ``since_ms`` (cacache's ``time``, ms since the epoch): their packument changed while the build
    ran, so a lock resolved in it may have been resolved against the older one. The buckets are append-only, so
    this reads every line, not only the live ones (call it before ``prune``)."""
    seen = {}
    for dummy, raw in index_buckets(cache_dir):
        for n, line, entry in bucket_lines(raw or b''):
            when = entry.get('time')
            if not entry.get('integrity') or not isinstance(when, (int, float)) or isinstance(when, bool) or when < since_ms:
                continue
            name = packument_name(entry['key'])
            if name:
                seen.setdefault(name, set()).add(entry['integrity'])
    return set(name for name, integrities in seen.items() if len(integrities) > 1)


def sha512_integrity(digest):
    """cacache's integrity string of a sha512 ``digest`` (bytes)."""
    return 'sha512-' + base64.b64encode(digest).decode('ascii')


def same_digest(integrity, digest):
    """Whether the sha512 ``digest`` (bytes) is the one cacache's ``integrity`` names."""
    return sha512_integrity(digest) in (integrity or '').split()


# The most of a packument the check reads.
PACKUMENT_LIMIT = 256 << 20
# What npm 11's ``npm install`` sends for a packument (the reqHeaders.accept of the entries it writes).
PACKUMENT_ACCEPT = 'application/json'
# A body this much larger than the cached one (its index entry's ``size``) is not read on: it is another one.
SIZE_MARGIN = 4096
# Deadlines of the packument check: one request, and all of them; past them a packument counts as changed.
REQUEST_DEADLINE = 60
CHECK_BUDGET = 300


def stored_accept(entry):
    """The Accept header npm sent for a cached response (``metadata.reqHeaders.accept``), else npm's default:
    a registry that varies by Accept serves the same document to the same header."""
    meta = entry.get('metadata')
    headers = meta.get('reqHeaders') if isinstance(meta, dict) else None
    accept = headers.get('accept') if isinstance(headers, dict) else None
    return accept if isinstance(accept, str) and accept and '\r' not in accept and '\n' not in accept \
        else PACKUMENT_ACCEPT


def size_limit(entry):
    """How many bytes of a packument to read at most: the cached one's size and a margin."""
    size = entry.get('size')
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        return min(size + SIZE_MARGIN, PACKUMENT_LIMIT)
    return PACKUMENT_LIMIT


def reusable(specs, meta, tarballs):
    """{spec: [package dicts]} of the specs whose previous resolution (``meta`` of the previous build) could be
    kept: the previous build resolved the spec and every tarball it names is in the seeded cache
    (``tarball_integrities``; the integrity ``npm cache add`` stored is the one its lock file named), but those
    it left out as other platforms' (marked ``other_platform``)."""
    out = {}
    others = set(x for x in meta.get('other_platforms') or [] if isinstance(x, str))
    for spec in specs:
        res = (meta.get('resolutions') or {}).get(spec)
        if not res or not isinstance(res, list):
            continue
        pk = []
        for ref in res:
            name, sep, version = ref.rpartition('@') if isinstance(ref, str) else ('', '', '')
            if sep and name and ref in others:
                pk.append({'name': name, 'version': version, 'integrity': '', 'other_platform': True})
                continue
            if not sep or not name or not tarballs.get((name, version)):
                pk = None
                break
            pk.append({'name': name, 'version': version, 'integrity': tarballs[(name, version)]})
        if pk:
            out[spec] = pk
    return out


def unchanged_packuments(seeded_entries, names, fetch, workers, registry, budget=CHECK_BUDGET):
    """The names among ``names`` whose packument, fetched again from the registry, is byte for byte the one in
    the seeded cache (``seeded_entries``: ``packument_entries``). ``fetch(url, accept, limit, deadline)`` returns
    the sha512 digest of the body, sent with the Accept header npm sent (``stored_accept``), read up to the cached
    size and a margin (``size_limit``), by the monotonic ``deadline``. Any failure, and whatever is not done
    within ``budget`` seconds in all, counts as changed (npm resolves it then)."""
    todo = sorted(n for n in set(names) if n in seeded_entries
                  and seeded_entries[n]['key'][len(KEY_PREFIX):].startswith(registry))
    deadline = time.monotonic() + budget

    def one(name):
        entry = seeded_entries[name]
        if time.monotonic() >= deadline:
            return False
        try:
            digest = fetch(entry['key'][len(KEY_PREFIX):], stored_accept(entry), size_limit(entry), deadline)
            return same_digest(entry['integrity'], digest) and time.monotonic() < deadline
        except Exception:  # any failure only means: resolve it again
            return False

    if not todo:
        return set()
    with ThreadPoolExecutor(max_workers=max(1, min(16, 4 * int(workers or 4), len(todo)))) as pool:
        return set(n for n, same in zip(todo, pool.map(one, todo)) if same)


def kept_resolutions(candidates, unchanged):
    """The candidates (``reusable``) every package of which has an unchanged packument: npm would resolve each
    of them the way it did, so it is not run for them."""
    return dict((spec, pk) for spec, pk in candidates.items() if all(p['name'] in unchanged for p in pk))


def versions(o, run, scratch):
    rc, out, err = run([o['npm'], 'version', '--json'], clean_env(os.environ), cwd=scratch)
    if rc != 0:
        raise BuildError('cannot run npm (%s): %s' % (o['npm'], tail(err or out)))
    try:
        data = json.loads(out)
        return {'npm': data['npm'], 'node': data.get('node', '')}
    except (ValueError, KeyError, TypeError):
        raise BuildError('npm version --json printed no npm version: %s' % tail(out))


def _resolve(o, specs, cache, scratch, run):
    proj = tempfile.mkdtemp(dir=scratch, prefix='npm-project-')
    with open(os.path.join(proj, 'package.json'), 'w') as f:
        json.dump({'name': 'pkgcache-snapshot', 'version': '0.0.0', 'private': True}, f)
    cmd = [o['npm'], 'install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund',
           '--omit-lockfile-registry-resolved=false'] + npm_args(o, cache) + specs
    rc, out, err = run(cmd, clean_env(os.environ), cwd=proj)
    lock = None
    if rc == 0:
        with open(os.path.join(proj, 'package-lock.json')) as f:
            lock = json.load(f)
    return rc, lock, tail(err or out, 3)


class RegistryClient(object):
    """GETs of packuments from one registry, over keep-alive connections (one per thread) to the address its host
    name resolved to once: a request costs a round trip, not a name lookup, a TCP and a TLS handshake and a load
    of the CA bundle (what a urllib request per URL costs). Proxies from the environment are honoured through
    urllib instead (a request each). ``digest(url, ...)`` returns the sha512 digest of the body of a 200, which it
    streams without keeping it, or raises: on another status, a body larger than ``limit``, or past a deadline
    (``timeout`` seconds for the request, or the caller's monotonic ``deadline`` if earlier)."""

    def __init__(self, registry, cafile=None, timeout=REQUEST_DEADLINE, limit=PACKUMENT_LIMIT):
        parts = urlsplit(registry)
        self.scheme, self.host, self.timeout, self.limit = parts.scheme, parts.hostname, timeout, limit
        self.port = parts.port or (443 if self.scheme == 'https' else 80)
        self.netloc = parts.netloc
        self.context = ssl.create_default_context(cafile=cafile) if self.scheme == 'https' else None
        self.local, self.lock, self.addresses, self.connections = threading.local(), threading.Lock(), None, []
        proxies = urllib.request.getproxies()
        self.proxied = self.scheme in proxies and not urllib.request.proxy_bypass(self.host or '')
        if self.proxied:
            handlers = [urllib.request.ProxyHandler()]
            if self.context:
                handlers.append(urllib.request.HTTPSHandler(context=self.context))
            self.opener = urllib.request.build_opener(*handlers)

    def _connect(self, address, timeout, source_address=None):
        with self.lock:
            if self.addresses is None:
                self.addresses = [a[4][:2] for a in socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)]
            addresses = list(self.addresses)
        error = None
        for addr in addresses:  # as socket.create_connection tries them, without a name lookup each time
            try:
                return socket.create_connection(addr, timeout, source_address)
            except OSError as exc:
                error = exc
        raise error or OSError('%s has no address' % self.host)

    def _connection(self):
        conn = getattr(self.local, 'conn', None)
        if conn is None:
            if self.context:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            conn._create_connection = self._connect  # pylint: disable=protected-access
            self.local.conn = conn
            with self.lock:
                self.connections.append(conn)
        return conn

    def _drop(self, conn):
        conn.close()
        self.local.conn = None

    def close(self):
        """Close the connections of every thread."""
        with self.lock:
            connections, self.connections = self.connections, []
        for conn in connections:
            conn.close()

    @staticmethod
    def _hash(url, resp, limit, deadline):
        """The sha512 digest of the body of ``resp``, read in chunks by ``deadline`` and up to ``limit`` bytes."""
        length = resp.getheader('Content-Length')
        if length and length.strip().isdigit() and int(length) > limit:
            raise OSError('%s is larger than %d bytes' % (url, limit))
        h, size = hashlib.sha512(), 0
        while True:
            if time.monotonic() >= deadline:
                raise OSError('%s: deadline passed' % url)
            chunk = resp.read1(1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise OSError('%s is larger than %d bytes' % (url, limit))
            h.update(chunk)
        if time.monotonic() >= deadline:
            raise OSError('%s: deadline passed' % url)
        if resp.length:  # the connection ended before the Content-Length
            raise OSError('%s: %d bytes missing' % (url, resp.length))
        resp.close()  # read1 leaves it open at the end of a Content-Length: the connection is free again
        return h.digest()

    def digest(self, url, accept=PACKUMENT_ACCEPT, limit=None, deadline=None):
        """The sha512 digest of the body of a GET of ``url`` (a 200) with ``Accept: accept``; see the class."""
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != (self.scheme, self.netloc):
            raise ValueError('%s is not on the registry %s://%s' % (url, self.scheme, self.netloc))
        limit = self.limit if limit is None else min(limit, self.limit)
        own = time.monotonic() + self.timeout
        deadline = own if deadline is None else min(own, deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OSError('%s: deadline passed' % url)
        headers = {'Accept': accept, 'Accept-Encoding': 'identity'}
        if self.proxied:
            with self.opener.open(urllib.request.Request(url, headers=headers), timeout=remaining) as resp:
                return self._hash(url, resp, limit, deadline)
        path = parts.path + ('?' + parts.query if parts.query else '')
        for attempt in (1, 2):  # a kept-alive connection the server closed in between: once more, anew
            conn = self._connection()
            reused = conn.sock is not None
            # Past the deadline a watchdog shuts the socket down: a server that drips its headers or body cannot
            # hold a request longer (the socket's own timeout only bounds each read).
            watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), self._shutdown, (conn,))
            watchdog.daemon = True
            watchdog.start()
            try:
                try:
                    conn.timeout = max(0.001, deadline - time.monotonic())
                    if conn.sock is not None:
                        conn.sock.settimeout(conn.timeout)
                    conn.request('GET', path, headers=headers)
                    resp = conn.getresponse()
                except (http.client.HTTPException, OSError):
                    self._drop(conn)
                    if attempt == 2 or not reused or time.monotonic() >= deadline:
                        raise
                    continue
                try:
                    if resp.status != 200:
                        raise OSError('GET %s: HTTP %d' % (url, resp.status))
                    body = self._hash(url, resp, limit, deadline)
                except BaseException:
                    self._drop(conn)
                    raise
                if resp.will_close:
                    self._drop(conn)
                return body
            finally:
                watchdog.cancel()
        raise AssertionError('unreachable')

    @staticmethod
    def _shutdown(conn):
        sock = conn.sock
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


def packument_fetcher(o):
    """(``fetch(url, accept, limit, deadline) -> sha512 digest``, ``close()``) for the packuments of the registry
    of npm's options ``o``."""
    client = RegistryClient(o['registry'], o.get('cafile'))
    return client.digest, client.close


def platform_names(platforms):
    """``check_platforms``'s value as the build records it: ['linux-x64', ...]."""
    return ['-'.join(p) for p in platforms]


def same_platforms(meta, platforms):
    """Did the previous build (its npm ``meta``) take the packages of ``platforms`` (``platform_names``), by this
    rule?"""
    if not platforms:
        return not meta.get('platforms')
    return meta.get('platforms') == platforms and meta.get('platform_rule') == PLATFORM_RULE


def _previous_resolutions(o, vers, platforms, manifest, specs, cache, opener):
    """Of ``specs``, those whose previous resolution still holds (see ``kept_resolutions``): {spec: packages};
    and the packuments of the seeded cache.

    Needs the previous build (``manifest``, seeded into ``cache``) of the same npm, node, registry and platforms
    (``platforms``: ``platform_names``), and
    ``opener`` (the builder's: the build may go online to reuse), to ask the registry again for the packument
    of every package of those resolutions.
    """
    meta = (manifest or {}).get('npm') or {}
    if not opener or not manifest or meta.get('node_version') != vers['node'] or not same_platforms(meta, platforms):
        return {}, {}
    candidates = reusable(specs, meta, tarball_integrities(cache))
    entries = packument_entries(cache)
    seeded_packuments = packuments(entries)
    names = set(p['name'] for pk in candidates.values() for p in pk)
    if not names:
        return {}, seeded_packuments
    fetch, close = packument_fetcher(o)
    try:
        unchanged = unchanged_packuments(entries, names, fetch, o.get('workers'), o['registry'])
    finally:
        close()
    return kept_resolutions(candidates, unchanged), seeded_packuments


def fill(o, cache, scratch, run, opener=None):
    """Fill ``cache`` (npm's --cache dir); return (packages, misses, metadata, key).

    Every spec is resolved on its own in a fresh project (``npm install
    --package-lock-only``), as ``npm install <spec>`` in a new project would
    resolve it; the union of the lock files goes into the cache.

    Incremental (a seeded cache): with ``opener``, a spec whose previous
    resolution only names packages whose packuments the registry still
    serves byte for byte as cached (fetched again, compared by sha512) would
    resolve the same way, so npm is not run for it; and ``npm cache add``
    only fetches the packages whose tarball is not in the cache with the
    integrity the lock file names.
    """
    specs = check_specs(o.get('packages') or [])
    if not specs:
        raise BuildError('npm: no packages given')
    platforms = check_platforms(o.get('platforms') or [])
    platform_ids = platform_names(platforms)
    # cacache's index times are ms since the epoch; npm writes lines of this build from here on.
    start_ms = int(time.time() * 1000)
    vers = versions(o, run, scratch)
    manifest, files = seeded(o, 'npm', cache, lambda m: (m.get('npm_version'), m.get('registry')) == (vers['npm'], o['registry']),
                             skip=lambda name: name != '_cacache', link=lambda rel: rel.startswith('_cacache/content-v2/'))
    tmp = os.path.join(cache, '_cacache', 'tmp')
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    reused, seeded_packuments = _previous_resolutions(o, vers, platform_ids, manifest, specs, cache, opener)

    def one(spec):
        rc, lock, err = _resolve(o, [spec], cache, scratch, run)
        return rc == 0, lock, err

    results, failures, todo = [], [], [s for s in specs if s not in reused]
    while True:
        if todo:
            more, more_failures = solo.resolve_each(todo, one, o.get('workers'))
            results, failures = results + more, failures + more_failures
        resolved = dict((spec, lock_packages(lock)) for spec, lock in results)
        resolved.update(reused)
        locks = [(spec, resolved[spec]) for spec in specs if spec in resolved]
        packages = solo.union([pk for spec, pk in locks], key=lambda x: (x['name'], x['version']))
        wanted, other = for_platforms(packages, platforms)
        fetch = to_add(wanted, tarball_integrities(cache))
        if fetch:
            cmd = [o['npm'], 'cache', 'add'] + npm_args(o, cache) + ['%s@%s' % (p['name'], p['version']) for p in fetch]
            rc, out, err = run(cmd, clean_env(os.environ), cwd=scratch)
            if rc != 0:
                raise BuildError('npm cache add failed: %s' % tail(err or out))
        # A packument that npm fetched anew after the check (a release in between) takes back the reuse of the
        # specs that name its package: they are resolved again, against what the cache holds now.
        now = packuments(packument_entries(cache)) if reused and (todo or fetch) else seeded_packuments
        todo = [s for s, pk in reused.items() if any(now.get(p['name']) != seeded_packuments.get(p['name']) for p in pk)]
        if not todo:
            break
        for spec in todo:
            del reused[spec]
    solo.require_some(specs, results + list(reused.items()), failures, o['registry'], 'npm')
    misses = solo.misses(failures, o['registry'], 'npm', name=spec_name)
    # A packument that changed while the build ran (npm stored two different ones, a release in between): a lock
    # may have been resolved against the older one, the snapshot holds the newer one. The snapshot stays as it is,
    # but the resolutions naming that package are not recorded, so the next build runs npm for those specs.
    changed = changed_during(cache, start_ms)
    resolutions = dict((spec, ['%s@%s' % (x['name'], x['version']) for x in pk]) for spec, pk in locks
                       if not any(x['name'] in changed for x in pk))
    # Other platforms' packages keep their packuments (npm reads them to resolve), not their tarballs.
    names = set(p['name'] for p in packages)
    versions_used = set((p['name'], p['version']) for p in wanted)
    prune(cache, lambda k: key_in_use(k, names, versions_used))
    have = cached_tarballs(cache)
    cached = []
    for p in wanted:
        if (p['name'], p['version']) in have:
            cached.append(p)
        else:
            misses.append({'package': p['name'], 'version': p['version'], 'ecosystem': 'npm',
                           'reason': 'npm cache add did not leave its tarball in the cache'})
    identity = {
        'npm': vers['npm'], 'registry': o['registry'], 'requested': sorted(specs),
        'packages': sorted((p['name'], p['version'], p['integrity']) for p in cached),
        'misses': sorted(m['package'] for m in misses)}
    if platforms:
        identity['platforms'] = platform_ids
    key = fingerprint(identity)
    tmp = os.path.join(cache, '_cacache', 'tmp')
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    meta = {'npm_version': vers['npm'], 'node_version': vers['node'], 'registry': o['registry'],
            'requested': specs, 'packages': [{'name': p['name'], 'version': p['version']} for p in cached],
            'resolutions': resolutions, 'reused': len(files)}
    if platforms:
        meta.update(platforms=platform_ids, platform_rule=PLATFORM_RULE,
                    other_platforms=sorted('%s@%s' % (p['name'], p['version']) for p in other))
    return cached, misses, meta, key
