# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ranking packages by popularity, and reading cache misses out of users' uppers.

Private to the collection; the API may change without notice.

Every source gives counts per package name. Each source's counts are scaled
to [0, 1] by its largest count, multiplied by the source's weight and summed,
so a list of a billion downloads and a handful of fleet misses can be mixed.
Telemetry from uppers is aggregated per host (how many users fetched each
package) and never names a user.

``run_module()`` is package_popularity's main(); it changes nothing, so
check mode and a real run rank the same.
"""

from __future__ import annotations

import copy
import json
import os
import re
import struct
import zlib
from collections import Counter
from urllib.parse import unquote, urlsplit

from . import _npmcache, _walk
from ._ecosystems import ECOSYSTEMS
from ._pipcache import normalize_name, requirement_name

SOURCE_TYPES = ('top_pypi_json', 'ranked_list', 'access_log', 'pip_log', 'npm_log', 'counts', 'uppers')

# package_popularity's arguments.
ARGUMENT_SPEC = dict(
    ecosystem=dict(type='str', required=True, choices=list(ECOSYSTEMS)),
    sources=dict(type='list', elements='dict', default=[]),
    top=dict(type='int', default=100),
    pins=dict(type='list', elements='str', default=[]),
    blocks=dict(type='list', elements='str', default=[]),
)


def argument_spec():
    return copy.deepcopy(ARGUMENT_SPEC)


class PopularityError(ValueError):
    """A source that cannot be read; the message names it."""


# ---------------------------------------------------------------- file names

_WHEEL = re.compile(r'^([A-Za-z0-9_.]+?)-(\d[^-]*)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$')
_SDIST = re.compile(r'^([A-Za-z0-9_.-]+?)-(\d[A-Za-z0-9_.!+]*)\.(tar\.gz|zip|tar\.bz2|tgz)$')


def python_file_package(filename):
    """(normalised name, version) of a wheel or sdist file name, or None."""
    m = _WHEEL.match(filename) or _SDIST.match(filename)
    if not m:
        return None
    return normalize_name(m.group(1)), m.group(2)


def maven_path_package(path):
    """'groupId:artifactId:version' of a repository path to a .jar or .pom, or None."""
    parts = [p for p in path.split('/') if p]
    if len(parts) < 4:
        return None
    fname, version, artifact = parts[-1], parts[-2], parts[-3]
    if not fname.startswith(artifact + '-' + version) or not fname.endswith(('.jar', '.pom')):
        return None
    return '%s:%s:%s' % ('.'.join(parts[:-3]), artifact, version)


# ------------------------------------------------------------------ parsers

def parse_top_pypi_json(text, source='top_pypi_json'):
    """Counts from the top-pypi-packages JSON format: {"rows": [{"project", "download_count"}]}."""
    try:
        rows = json.loads(text)['rows']
        return dict((normalize_name(r['project']), int(r['download_count'])) for r in rows)
    except (ValueError, KeyError, TypeError) as exc:
        raise PopularityError('%s: not in the top-pypi-packages format (a "rows" list of project and '
                              'download_count): %s' % (source, exc))


def parse_ranked_list(text, ecosystem):
    """Scores from a ranked list, one name a line, most popular first (N for the first, 1 for the last)."""
    names = []
    for line in text.splitlines():
        name = line.split('#', 1)[0].strip()
        if name and name not in names:
            names.append(name)
    return dict((canonical(ecosystem, n), len(names) - i) for i, n in enumerate(names))


_REQUEST = re.compile(r'"(?:GET|HEAD) (\S+) HTTP/[0-9.]+" (\d{3}) ')


def parse_access_log(text, ecosystem):
    """Counts of successful package file downloads in an access log (nginx/Apache combined, pypiserver)."""
    found = (_REQUEST.search(line) for line in text.splitlines())
    names = (path_package(unquote(urlsplit(m.group(1)).path), ecosystem)
             for m in found if m and m.group(2) in ('200', '206', '304'))
    return dict(Counter(n for n in names if n))


def path_package(path, ecosystem):
    if ecosystem in ('pip', 'uv'):
        pkg = python_file_package(path.rsplit('/', 1)[-1])
        return pkg[0] if pkg else None
    if ecosystem == 'npm':
        pkg = _npmcache.tarball_package(_npmcache.KEY_PREFIX + 'http://registry' + path)
        return pkg[0] if pkg else None
    return maven_path_package(path)


_PIP_FETCH = re.compile(r'(?:Downloading|Using cached) (\S+)')


def parse_pip_log(text):
    """Counts of the files pip fetched or took from its cache, from ``pip --log`` files."""
    files = (python_file_package(unquote(m.group(1)).rsplit('/', 1)[-1]) for m in _PIP_FETCH.finditer(text))
    return dict(Counter(pkg[0] for pkg in files if pkg))


_NPM_FETCH = re.compile(r'http fetch GET (\d{3}) (\S+)')


def parse_npm_log(text):
    """Counts of the tarballs npm fetched, from npm's debug logs (~/.npm/_logs)."""
    tarballs = (_npmcache.tarball_package(_npmcache.KEY_PREFIX + m.group(2))
                for m in _NPM_FETCH.finditer(text) if m.group(1) in ('200', '304'))
    return dict(Counter(pkg[0] for pkg in tarballs if pkg))


def spec_key(ecosystem, spec):
    """The package name a pin names: ``six==1.17`` -> ``six``, ``chalk@4`` -> ``chalk``; Maven coordinates as given."""
    spec = spec.strip()
    if ecosystem in ('pip', 'uv'):
        return requirement_name(spec) or normalize_name(spec)
    if ecosystem == 'npm':
        return _npmcache.spec_name(spec)
    return spec


def canonical(ecosystem, name):
    return normalize_name(name) if ecosystem in ('pip', 'uv') else name


# What a package name of each ecosystem may be. Names from logs, lists and
# users' uppers go into the build's requirements: a name like
# ``x @ http://host/x`` would make the builder's pip fetch and run code from
# anywhere, so whatever is not a plain name is dropped (and only counted).
VALID_NAME = {
    'pip': re.compile(r'^[a-z0-9]([a-z0-9-]{0,198}[a-z0-9])?$'),
    'uv': re.compile(r'^[a-z0-9]([a-z0-9-]{0,198}[a-z0-9])?$'),
    'npm': re.compile(r'^(@[a-z0-9][a-z0-9._~-]{0,100}/)?[A-Za-z0-9][A-Za-z0-9._~-]{0,213}$'),
    'maven': re.compile(r'^[A-Za-z0-9_.-]{1,200}:[A-Za-z0-9_.-]{1,200}(:[A-Za-z0-9_.+-]{1,100})?$'),
}


def valid_name(ecosystem, name):
    return isinstance(name, str) and bool(VALID_NAME[ecosystem].match(name))


def read_source(src, ecosystem, read, report=None):
    """Counts {name: n} of one source dict; ``read(path)`` returns a file's text; ``report``: see scan_uppers."""
    kind = src.get('type')
    if kind not in SOURCE_TYPES:
        raise PopularityError('source type %r is not one of %s' % (kind, ', '.join(SOURCE_TYPES)))
    if kind == 'uppers':
        return scan_uppers(ecosystem, src, report)
    merged = Counter()
    if kind == 'counts':
        data = src.get('counts')
        for part in data if isinstance(data, list) else [data]:
            if not isinstance(part, dict):
                raise PopularityError('counts source: %r is not a mapping of package to count' % (part,))
            for name, n in part.items():
                if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                    raise PopularityError('counts source: count %r of %s is not a non-negative integer' % (n, name))
                merged[canonical(ecosystem, name)] += n
        return dict(merged)
    paths = src.get('paths') or []
    if not paths:
        raise PopularityError('%s source has no paths' % kind)
    parse = {
        'top_pypi_json': parse_top_pypi_json,
        'ranked_list': lambda text, path: parse_ranked_list(text, ecosystem),
        'access_log': lambda text, path: parse_access_log(text, ecosystem),
        'pip_log': lambda text, path: parse_pip_log(text),
        'npm_log': lambda text, path: parse_npm_log(text),
    }[kind]
    for path in paths:
        try:
            text = read(path)
        except OSError as exc:
            raise PopularityError('%s source %s cannot be read: %s' % (kind, path, exc))
        merged.update(parse(text, path))
    return dict(merged)


def rank(ecosystem, sources, read, top, pins=(), blocks=()):
    """Rank packages; return dict(packages=[{name, score, sources}], blocked=[...], source_counts, upper_scans, invalid_names).

    ``invalid_names`` counts, per source, the names dropped because they are
    not plain package names of the ecosystem (never the names themselves).

    ``upper_scans`` maps the label of each ``uppers`` source to its scan
    report (see scan_uppers): users scanned, users skipped or truncated by
    name and why, and what the scan read. It names no package.
    """
    if ecosystem not in ECOSYSTEMS:
        raise PopularityError('ecosystem %r is not one of %s' % (ecosystem, ', '.join(ECOSYSTEMS)))
    blocked = set(spec_key(ecosystem, b) for b in blocks)
    scores, origin, raw, scans, dropped = {}, {}, {}, {}, {}
    for i, src in enumerate(sources):
        if not isinstance(src, dict):
            raise PopularityError('source %d is not a mapping: %r' % (i + 1, src))
        weight = src.get('weight', 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise PopularityError('source %d (%s): weight %r is not a non-negative number' % (i + 1, src.get('type'), weight))
        label = src.get('name') or src.get('type')
        if label in raw:
            label = '%s-%d' % (label, i + 1)
        report = {}
        counts = read_source(src, ecosystem, read, report)
        if src.get('type') == 'uppers':
            scans[label] = report
        invalid = [name for name in counts if not valid_name(ecosystem, name)]
        for name in invalid:
            del counts[name]
        if invalid:
            dropped[label] = len(invalid)
        raw[label] = counts
        peak = max(counts.values()) if counts else 0
        for name, n in counts.items():
            if n <= 0 or peak <= 0:
                continue
            scores[name] = scores.get(name, 0.0) + weight * float(n) / peak
            origin.setdefault(name, []).append(label)
    result, pinned = [], set()
    for spec in pins:
        name = spec_key(ecosystem, spec)
        if name in blocked:
            raise PopularityError('package %s is both pinned and blocked' % name)
        if name not in pinned:
            pinned.add(name)
            result.append({'name': spec.strip(), 'score': round(scores.get(name, 0.0), 6),
                           'sources': ['pin'] + origin.get(name, [])})
    ranked = sorted((n for n in scores if n not in blocked and n not in pinned), key=lambda n: (-scores[n], n))
    for name in ranked[:top] if top is not None else ranked:
        result.append({'name': name, 'score': round(scores[name], 6), 'sources': origin[name]})
    return {'packages': result, 'blocked': sorted(n for n in blocked if n in scores), 'source_counts': raw,
            'upper_scans': scans, 'invalid_names': dropped}


# ------------------------------------------------------- misses in uppers
#
# Users' uppers are theirs: any path in them may be a symlink, a FIFO, a sparse
# file of any size, or a tree thousands of levels deep, and may change while it
# is read. Every upper is opened by an fd chain with O_NOFOLLOW on each
# component and walked by _walk (bounded: entries, bytes read, depth, entries
# per dir, time); files are opened with O_NOFOLLOW|O_NONBLOCK and checked with
# fstat. Wheels are read through their central directory, npm index buckets
# line by line, each with a byte cap; at most ``max_names`` packages are taken
# from one upper. A user whose upper is refused or hits a cap is reported by
# name and the others are counted all the same.

MAX_NAMES = 2000           # packages taken from one upper
MAX_PACKAGES = 20000       # packages an ``uppers`` source returns
BUCKET_BYTES = 4 << 20     # bytes read from one npm index bucket
LINE_BYTES = 256 << 10     # longest npm index line read
HEAD_BYTES = 256           # a cached body must show a zip local header this early
UPPERS_LIMITS = _walk.Limits()
_METADATA = b'.dist-info/METADATA'
_ERRORS = (OSError, ValueError, struct.error, zlib.error)


def _is_metadata(name):
    return name.count(b'/') == 1 and name.endswith(_METADATA)


def _metadata_package(text):
    """(normalised name, version) from the head of a METADATA file, or None."""
    if not text:
        return None
    name = version = None
    for line in text.decode('utf-8', 'replace').splitlines():
        if not line.strip():
            break
        if line.startswith('Name:'):
            name = line[5:].strip()
        elif line.startswith('Version:'):
            version = line[8:].strip()
    if name and version:
        return normalize_name(name), version
    return None


def wheel_metadata(data):
    """(normalised name, version) from the METADATA of a wheel held in ``data`` (a raw body, or pip's older serialized entry), or None."""
    def pread(offset, size):
        return data[offset:offset + size]
    return _metadata_package(_walk.zip_member(pread, len(data), _is_metadata, _METADATA))


def _wheel_in_file(walk, fd, size):
    """(name, version) of the wheel in the open file ``fd``: reads its head, its end and its central directory only."""
    head = walk.pread(fd, min(size, HEAD_BYTES), 0)
    if not head or b'PK\x03\x04' not in head:
        return None

    def pread(offset, n):
        return walk.pread(fd, n, offset)
    return _metadata_package(_walk.zip_member(pread, size, _is_metadata, _METADATA))


class _Lower(object):
    """The snapshot's cache (root's, read-only): which paths it has, and (npm) which tarballs."""

    def __init__(self, path):
        self.path = path
        self._tarballs = None

    def has(self, rel):
        return bool(self.path) and os.path.lexists(os.path.join(self.path, rel))

    def tarballs(self):
        if self._tarballs is None:
            self._tarballs = _npmcache.cached_tarballs(self.path) if self.path else set()
        return self._tarballs


def _read_with(walk, dir_fd, name, st, reader):
    """``reader(walk, fd, size)`` on file ``name`` of ``dir_fd`` (lstat ``st``), or None: sparse files are
    skipped unread, and the file is opened by the walk (O_NOFOLLOW, O_NONBLOCK, regular files only)."""
    if _walk.is_sparse(st):
        walk.skipped['sparse'] += 1
        return None
    fd, fst = walk.open_file(dir_fd, name)
    if fd is None:
        return None
    try:
        return reader(walk, fd, fst.st_size)
    finally:
        os.close(fd)


def _bucket_keys(walk, fd, size):
    """{key: live} of one cacache index bucket, read line by line (at most BUCKET_BYTES); a later line wins."""
    latest = {}
    for line in walk.lines(fd, size, BUCKET_BYTES, LINE_BYTES):
        entry = _npmcache.index_line(line)
        if entry is not None:
            latest[entry['key']] = bool(entry.get('integrity'))
    return latest


def _npm_misses(walk, upper_fd, lower, add):
    try:
        index = _walk.open_dir('_cacache/index-v5', upper_fd)
    except FileNotFoundError:
        return
    try:
        for dummy, dir_fd, rel, name, st in walk.tree(index):
            keys = _read_with(walk, dir_fd, name, st, _bucket_keys) or {}
            for key, live in sorted(keys.items()):
                pkg = _npmcache.tarball_package(key) if live else None
                if pkg and pkg not in lower.tarballs():
                    add(pkg[0])
    finally:
        os.close(index)


def _prune(ecosystem):
    if ecosystem != 'uv':
        return None

    def enter(ctx, rel, fd):
        # uv's archive-v*/ holds unpacked wheels: package contents, never cache entries.
        return _walk.SKIP if '/' not in rel and rel.startswith('archive-v') else None
    return enter


def _misses_in(ecosystem, upper_fd, lower, walk, found, max_names=MAX_NAMES, max_body=None):
    """Add to the set ``found`` the packages of the open upper ``upper_fd`` that ``lower`` (a _Lower) lacks."""
    def add(name):
        if name not in found:
            if len(found) >= max_names:
                walk.stop('max_names')
            else:
                found.add(name)

    if ecosystem == 'npm':
        return _npm_misses(walk, upper_fd, lower, add)
    for dummy, dir_fd, rel, base, st in walk.tree(upper_fd, enter=_prune(ecosystem)):
        if ecosystem == 'maven':
            pkg = maven_path_package(rel)
            if pkg and not lower.has(rel):
                add(pkg)
            continue
        if base.endswith('.whl'):
            pkg = python_file_package(base)
            if pkg and not lower.has(rel):
                add(pkg[0])
            continue
        if ecosystem == 'uv':
            if rel.startswith('wheels-v') and base.endswith('.http') and rel.count('/') >= 3 and not lower.has(rel):
                add(normalize_name(rel.split('/')[-2]))
            continue
        if not rel.startswith(('http/', 'http-v2/')) or base.endswith('.lock') or lower.has(rel):
            continue
        if max_body is not None and st.st_size > max_body:
            walk.skipped['too_big'] += 1
            continue
        pkg = _read_with(walk, dir_fd, base, st, _wheel_in_file)
        if pkg:
            add(pkg[0])


def upper_misses(ecosystem, upper, lower, max_body=None, walk=None, max_names=MAX_NAMES):
    """The set of packages a user's upper holds that the snapshot (``lower``) does not.

    pip/uv: package names read from wheel metadata in the cached bodies (and
    built wheels' file names); npm: tarball keys of the cacache index missing
    from the lower's index; maven: repository paths of .jar/.pom. ``upper`` is
    opened from ``/`` with O_NOFOLLOW on every component (UnsafePathError, an
    OSError, if one is a symlink); ``walk`` (a _walk.Walk) bounds the work and
    keeps its counters; files larger than ``max_body`` are not opened.
    """
    walk = walk if walk is not None else _walk.Walk(UPPERS_LIMITS)
    found = set()
    fd = _walk.open_dir(upper)
    try:
        _misses_in(ecosystem, fd, _Lower(lower), walk, found, max_names, max_body)
    finally:
        os.close(fd)
    return found


def _add_counters(report, walk):
    totals = report.setdefault('walk', {'entries': 0, 'bytes_read': 0, 'files_opened': 0, 'skipped': {}})
    for key in ('entries', 'bytes_read', 'files_opened'):
        totals[key] += getattr(walk, key)
    for key, n in walk.skipped.items():
        totals['skipped'][key] = totals['skipped'].get(key, 0) + n


def _count(ecosystem, uppers, lower, limits, max_names, report):
    """Counter {package: users} over ``uppers``: (label, open) pairs, ``open()`` giving the upper's dir fd."""
    counts = Counter()
    report.setdefault('users', 0)
    report.setdefault('skipped', {})
    report.setdefault('truncated', {})
    for label, opener in uppers:
        try:
            fd = opener()
        except FileNotFoundError:
            continue
        except OSError as exc:
            report['skipped'][label] = str(exc)
            continue
        walk = _walk.Walk(limits)
        found = set()
        try:
            _misses_in(ecosystem, fd, lower, walk, found, max_names)
        except _ERRORS as exc:
            report['skipped'][label] = 'scan failed: %s' % exc
        finally:
            os.close(fd)
        report['users'] += 1
        if walk.truncated:
            report['truncated'][label] = walk.truncated
        _add_counters(report, walk)
        counts.update(found)
    return counts


def _option(src, key, default):
    value = src.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PopularityError('uppers source: %s %r is not a positive integer' % (key, value))
    return value


def _limits(src):
    given = src.get('limits') or {}
    if not isinstance(given, dict):
        raise PopularityError('uppers source: limits %r is not a mapping' % (given,))
    try:
        return UPPERS_LIMITS.replace(**given)
    except (TypeError, ValueError) as exc:
        raise PopularityError('uppers source: limits: %s' % exc)


def _upper_label(path):
    parts = path.rstrip('/').split('/')
    return parts[-3] if len(parts) >= 3 and parts[-1] == 'upper' and parts[-2].startswith('cacache_') else path


def scan_uppers(ecosystem, src, report=None):
    """Counts of an ``uppers`` source: every ``<scratch_root>/*/cacache_<ecosystem>/upper`` against the lower.

    ``report`` (a dict), if given, receives: ``users`` scanned, ``skipped``
    and ``truncated`` (user name: why), ``walk`` (summed counters) and
    ``packages_dropped`` (over ``max_packages``). The source may set
    ``max_names`` (packages per upper), ``max_packages`` and ``limits`` (caps
    per upper, see _walk.Limits).
    """
    report = report if report is not None else {}
    root = src.get('scratch_root') or '/mnt/scratch'
    lower_root = src.get('lower_root') or '/mnt/cacache'
    min_users = _option(src, 'min_users', 1)
    max_names = _option(src, 'max_names', MAX_NAMES)
    max_packages = _option(src, 'max_packages', MAX_PACKAGES)
    limits = _limits(src)
    try:
        root_fd = _walk.open_dir(root)
    except OSError as exc:
        raise PopularityError('uppers source: scratch_root %s is not a directory: %s' % (root, exc.strerror or exc))
    try:
        with os.scandir(root_fd) as it:
            users = sorted(e.name for e in it if e.is_dir(follow_symlinks=False) or e.is_symlink())
        lower = os.path.join(lower_root, ecosystem)
        rel = 'cacache_%s/upper' % ecosystem
        uppers = [(user, lambda user=user: _walk.open_dir(user + '/' + rel, root_fd)) for user in users]
        counts = _count(ecosystem, uppers, _Lower(lower if os.path.isdir(lower) else None), limits, max_names, report)
    finally:
        os.close(root_fd)
    kept = sorted(((k, v) for k, v in counts.items() if v >= min_users), key=lambda kv: (-kv[1], kv[0]))
    report['packages_dropped'] = max(0, len(kept) - max_packages)
    return dict(kept[:max_packages])


def fleet_misses(ecosystem, uppers, lower, limits=None, max_names=MAX_NAMES, report=None):
    """Counts {package: number of users} over ``uppers`` (a list of dirs), names of users left out.

    Each upper is opened from ``/`` with O_NOFOLLOW on every component; one
    that is missing is left out, one that is refused or fails is named in
    ``report['skipped']`` (by user name) and the others are counted.
    """
    report = report if report is not None else {}
    items = [(_upper_label(u), lambda u=u: _walk.open_dir(u)) for u in uppers]
    return dict(_count(ecosystem, items, _Lower(lower), limits or UPPERS_LIMITS, max_names, report))


def read_text(path):
    """A source file's text (undecodable bytes replaced); raises OSError, whose reason the source's error names."""
    with open(path, 'rb') as f:
        return f.read().decode('utf-8', 'replace')


def run_module(module):
    """package_popularity's main(): rank the sources' packages (the same in check mode: nothing is written)."""
    p = module.params
    if p['top'] < 0:
        module.fail_json(msg='top %d is negative' % p['top'])
    try:
        result = rank(p['ecosystem'], p['sources'], read_text, p['top'], p['pins'], p['blocks'])
    except PopularityError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, names=[x['name'] for x in result['packages']], **result)
