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
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections import Counter
from urllib.parse import unquote, urlsplit

from . import _npmcache
from ._pipcache import normalize_name, requirement_name

ECOSYSTEMS = ('pip', 'npm', 'maven', 'uv')
SOURCE_TYPES = ('top_pypi_json', 'ranked_list', 'access_log', 'pip_log', 'npm_log', 'counts', 'uppers')


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


def read_source(src, ecosystem, read):
    """Counts {name: n} of one source dict; ``read(path)`` returns a file's text."""
    kind = src.get('type')
    if kind not in SOURCE_TYPES:
        raise PopularityError('source type %r is not one of %s' % (kind, ', '.join(SOURCE_TYPES)))
    if kind == 'uppers':
        return scan_uppers(ecosystem, src)
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
        except (IOError, OSError) as exc:
            raise PopularityError('%s source %s cannot be read: %s' % (kind, path, exc))
        merged.update(parse(text, path))
    return dict(merged)


def rank(ecosystem, sources, read, top, pins=(), blocks=()):
    """Rank packages; return dict(packages=[{name, score, sources}], blocked=[...])."""
    if ecosystem not in ECOSYSTEMS:
        raise PopularityError('ecosystem %r is not one of %s' % (ecosystem, ', '.join(ECOSYSTEMS)))
    blocked = set(spec_key(ecosystem, b) for b in blocks)
    scores, origin, raw = {}, {}, {}
    for i, src in enumerate(sources):
        if not isinstance(src, dict):
            raise PopularityError('source %d is not a mapping: %r' % (i + 1, src))
        weight = src.get('weight', 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise PopularityError('source %d (%s): weight %r is not a non-negative number' % (i + 1, src.get('type'), weight))
        label = src.get('name') or src.get('type')
        if label in raw:
            label = '%s-%d' % (label, i + 1)
        counts = read_source(src, ecosystem, read)
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
    return {'packages': result, 'blocked': sorted(n for n in blocked if n in scores), 'source_counts': raw}


# ------------------------------------------------------- misses in uppers

def _zip_members(data):
    """Open the first zip archive embedded in ``data`` (a raw body, or pip's older serialized entry)."""
    start = data.find(b'PK\x03\x04')
    end = data.rfind(b'PK\x05\x06')
    if start < 0 or end < start or len(data) < end + 22:
        return None
    comment = int.from_bytes(data[end + 20:end + 22], 'little')
    try:
        return zipfile.ZipFile(io.BytesIO(data[start:end + 22 + comment]))
    except (zipfile.BadZipfile, ValueError):
        return None


def wheel_metadata(data):
    """(normalised name, version) from the METADATA of a wheel held in ``data``, or None."""
    zf = _zip_members(data)
    if zf is None:
        return None
    for info in zf.infolist():
        if info.filename.count('/') == 1 and info.filename.endswith('.dist-info/METADATA') and info.file_size < 4 << 20:
            name = version = None
            for line in zf.read(info).decode('utf-8', 'replace').splitlines():
                if not line.strip():
                    break
                if line.startswith('Name:'):
                    name = line[5:].strip()
                elif line.startswith('Version:'):
                    version = line[8:].strip()
            if name and version:
                return normalize_name(name), version
    return None


def _new_files(upper, lower):
    """Yield (relative path, real path) of regular files in ``upper`` that the lower does not have."""
    for dirpath, dirs, files in os.walk(upper):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
        rel_dir = os.path.relpath(dirpath, upper)
        for f in files:
            real = os.path.join(dirpath, f)
            rel = f if rel_dir == '.' else rel_dir + '/' + f
            if os.path.islink(real) or not os.path.isfile(real):
                continue
            if lower and os.path.lexists(os.path.join(lower, rel)):
                continue
            yield rel, real


def upper_misses(ecosystem, upper, lower, max_body=256 << 20):
    """The set of packages a user's upper holds that the snapshot (``lower``) does not.

    pip/uv: package names and versions read from wheel metadata in the cached
    bodies (and built wheels' file names); npm: tarball keys of the cacache
    index missing from the lower's index; maven: repository paths of .jar/.pom.
    """
    found = set()
    if ecosystem == 'npm':
        have = _npmcache.cached_tarballs(lower) if lower else set()
        return set(name for name, version in _npmcache.cached_tarballs(upper) - have)
    for rel, real in _new_files(upper, lower):
        base = rel.rsplit('/', 1)[-1]
        if ecosystem == 'maven':
            pkg = maven_path_package(rel)
            if pkg:
                found.add(pkg)
            continue
        if base.endswith('.whl'):
            pkg = python_file_package(base)
            if pkg:
                found.add(pkg[0])
            continue
        if ecosystem == 'uv':
            if rel.startswith('wheels-v') and base.endswith('.http') and rel.count('/') >= 3:
                found.add(normalize_name(rel.split('/')[-2]))
            continue
        if not (rel.startswith(('http/', 'http-v2/'))) or base.endswith('.lock'):
            continue
        data = _npmcache.read_regular_file(real, max_body)
        if data is None:
            continue
        pkg = wheel_metadata(data)
        if pkg:
            found.add(pkg[0])
    return found


def scan_uppers(ecosystem, src):
    """Counts of an ``uppers`` source: every ``<scratch_root>/*/cacache_<ecosystem>/upper`` against the lower."""
    root = src.get('scratch_root') or '/mnt/scratch'
    lower_root = src.get('lower_root') or '/mnt/cacache'
    min_users = src.get('min_users', 1)
    if not isinstance(min_users, int) or isinstance(min_users, bool) or min_users < 1:
        raise PopularityError('uppers source: min_users %r is not a positive integer' % (min_users,))
    if not os.path.isdir(root):
        raise PopularityError('uppers source: scratch_root %s is not a directory' % root)
    uppers = [os.path.join(root, d, 'cacache_' + ecosystem, 'upper') for d in sorted(os.listdir(root))]
    lower = os.path.join(lower_root, ecosystem)
    counts = fleet_misses(ecosystem, uppers, lower if os.path.isdir(lower) else None)
    return dict((k, v) for k, v in counts.items() if v >= min_users)


def fleet_misses(ecosystem, uppers, lower):
    """Counts {package: number of users} over ``uppers`` (a list of dirs), names of users left out."""
    return dict(Counter(name for upper in uppers if os.path.isdir(upper)
                        for name in upper_misses(ecosystem, upper, lower)))
