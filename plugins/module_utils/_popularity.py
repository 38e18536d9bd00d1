# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ranking packages by popularity, and reading cache misses out of users' uppers.

Private to the collection; the API may change without notice.

Every source gives counts per package name. Each source's counts become
shares of its total (``normalize='share'``: the fraction of that source's
installs that went to the package) or fractions of its largest count
(``'max'``); the score is the weighted mean of the sources' shares, so a list
of a billion downloads and a handful of fleet installs can be mixed, and the
weights say how much of next week's installs each source is taken to predict.

Telemetry from uppers is aggregated per host (how many users fetched each
package, and each version of it) and never names a user. On the builder, the
``fleet`` source takes every host's counts and lets a package (or a version)
into the ranking only when it was seen on at least ``min_hosts`` hosts, so
that one user's planted guesses, which count on her own host only, change
nothing a build serves. The per-package counts stay in the module's result on
the builder; ``provenance`` (what a manifest records) keeps only the sources
and their totals after the thresholds.

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

SOURCE_TYPES = ('top_pypi_json', 'ranked_list', 'access_log', 'pip_log', 'npm_log', 'counts', 'uppers', 'fleet')
NORMALIZE = ('share', 'max')
MIN_HOSTS = 3
TELEMETRY = ('uppers', 'fleet')    # sources of the fleet's misses (see rank: they add projects beyond ``top``)
VERSIONS_PER_PROJECT = 3

# package_popularity's arguments.
ARGUMENT_SPEC = dict(
    ecosystem=dict(type='str', required=True, choices=list(ECOSYSTEMS)),
    sources=dict(type='list', elements='dict', default=[]),
    top=dict(type='int', default=100),
    pins=dict(type='list', elements='str', default=[]),
    blocks=dict(type='list', elements='str', default=[]),
    min_hosts=dict(type='int', default=MIN_HOSTS),
    versions=dict(type='int', default=VERSIONS_PER_PROJECT),
    extras=dict(type='dict', default={}),
    normalize=dict(type='str', default='share', choices=list(NORMALIZE)),
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


# What a version taken from telemetry may be (it becomes ``name==version`` or ``name@version`` in the build's
# list): PEP 440 and semver characters only, never a space, a ``;`` or a ``@``.
VALID_VERSION = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+!-]{0,63}$')
_EXTRA = re.compile(r'^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$')


def valid_version(version):
    return isinstance(version, str) and bool(VALID_VERSION.match(version))


def _count(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PopularityError('%s is not a non-negative integer' % what)
    return value


def _counts_source(ecosystem, data):
    merged = Counter()
    for part in data if isinstance(data, list) else [data]:
        if not isinstance(part, dict):
            raise PopularityError('counts source: %r is not a mapping of package to count' % (part,))
        for name, n in part.items():
            merged[canonical(ecosystem, name)] += _count(n, 'counts source: count %r of %s' % (n, name))
    return dict(merged)


def read_fleet(ecosystem, src, min_hosts):
    """Counts of a ``fleet`` source, its version counts and what its thresholds left out.

    ``src['hosts']`` is a list with one entry per host, what that host's
    telemetry sent: ``{packages: {name: users}, versions: {name: {version: users}}}``
    (``versions`` optional). A package counts only when at least ``min_hosts``
    hosts sent it, and so does each version. Returns (counts {name: users},
    versions {name: {version: users}}, report {hosts, dropped}); the counts and
    the totals of what passed never depend on what was left out.
    """
    hosts = src.get('hosts')
    if not isinstance(hosts, list):
        raise PopularityError('fleet source: hosts %r is not a list of the hosts\' telemetry' % (hosts,))
    seen, users, vseen, vusers = Counter(), Counter(), Counter(), Counter()
    for i, host in enumerate(hosts):
        where = 'fleet source: host %d' % (i + 1)
        if not isinstance(host, dict) or not isinstance(host.get('packages', {}), dict) \
                or not isinstance(host.get('versions', {}), dict):
            raise PopularityError('%s: %r is not a mapping with packages (name: users) and versions '
                                  '(name: version: users)' % (where, host))
        unknown = sorted(set(host) - set(('packages', 'versions')))
        if unknown:
            raise PopularityError('%s: unknown keys %s (a host sends packages and versions; telemetry of an older '
                                  'mount role sends a bare mapping of package to users)' % (where, ', '.join(unknown)))
        names = Counter()
        for name, n in host.get('packages', {}).items():
            names[canonical(ecosystem, name)] += _count(n, '%s: count %r of %s' % (where, n, name))
        for name, n in names.items():
            if n > 0:
                seen[name] += 1
                users[name] += n
        pairs = Counter()
        for name, by_version in host.get('versions', {}).items():
            if not isinstance(by_version, dict):
                raise PopularityError('%s: versions of %s: %r is not a mapping of version to users'
                                      % (where, name, by_version))
            for version, n in by_version.items():
                pairs[(canonical(ecosystem, name), str(version))] += _count(
                    n, '%s: count %r of %s %s' % (where, n, name, version))
        for pair, n in pairs.items():
            if n > 0:
                vseen[pair] += 1
                vusers[pair] += n
    counts = dict((name, n) for name, n in users.items() if seen[name] >= min_hosts)
    versions = {}
    for (name, version), n in vusers.items():
        if vseen[(name, version)] >= min_hosts and name in counts:
            versions.setdefault(name, {})[version] = n
    report = {'hosts': len(hosts), 'dropped': len(users) - len(counts)}
    return counts, versions, report


def read_source(src, ecosystem, read, report=None, versions=None, min_hosts=MIN_HOSTS):
    """Counts {name: n} of one source dict; ``read(path)`` returns a file's text; ``report``: see scan_uppers;
    ``versions`` (a dict), if given, receives the source's counts per version ({name: {version: n}})."""
    kind = src.get('type')
    if kind not in SOURCE_TYPES:
        raise PopularityError('source type %r is not one of %s' % (kind, ', '.join(SOURCE_TYPES)))
    versions = versions if versions is not None else {}
    if kind == 'uppers':
        return scan_uppers(ecosystem, src, report, versions)
    if kind == 'fleet':
        counts, found, fleet = read_fleet(ecosystem, src, min_hosts)
        versions.update(found)
        if report is not None:
            report.update(fleet)
        return counts
    if kind == 'counts':
        return _counts_source(ecosystem, src.get('counts'))
    merged = Counter()
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


def check_extras(ecosystem, extras):
    """{project: 'e1,e2'} of the ``extras`` option ({project: [extra, ...]}), checked: PEP 508 names only, pip and uv."""
    if not extras:
        return {}
    if ecosystem not in ('pip', 'uv'):
        raise PopularityError('extras are a pip and uv feature; %s has none' % ecosystem)
    if not isinstance(extras, dict):
        raise PopularityError('extras %r is not a mapping of project to its extras' % (extras,))
    out = {}
    for project, names in extras.items():
        key = canonical(ecosystem, str(project))
        if not valid_name(ecosystem, key):
            raise PopularityError('extras: %r is not a project name' % (project,))
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(e, str) and _EXTRA.match(e) for e in names):
            raise PopularityError('extras of %s: %r is not a list of extra names (letters, digits, ".", "_", "-")'
                                  % (project, names))
        out[key] = ','.join(sorted(set(normalize_name(e) for e in names)))
    return out


def requirement(ecosystem, project, version=None, extras=None):
    """The build's requirement string: ``name``, ``name[extras]``, ``name==version`` (pip, uv) or ``name@version`` (npm)."""
    base = project + ('[%s]' % extras if extras else '')
    if version is None:
        return base
    return '%s@%s' % (base, version) if ecosystem == 'npm' else '%s==%s' % (base, version)


_BARE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
_EXACT_PIN = re.compile(r'^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*([A-Za-z0-9._+!-]+)\s*$')


def pinned_version(ecosystem, spec):
    """(project, version) of a pin that names one exact version (``six==1.17.0``, ``chalk@4.1.2``), else None."""
    if ecosystem in ('pip', 'uv'):
        m = _EXACT_PIN.match(spec)
        return (normalize_name(m.group(1)), m.group(2)) if m else None
    if ecosystem == 'npm':
        name = _npmcache.spec_name(spec.strip())
        version = spec.strip()[len(name) + 1:]
        return (name, version) if version and valid_version(version) else None
    return None


def _weight(src, i):
    weight = src.get('weight', 1.0)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
        raise PopularityError('source %d (%s): weight %r is not a non-negative number' % (i + 1, src.get('type'), weight))
    return float(weight)


def _positive(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PopularityError('%s %r is not a non-negative integer' % (what, value))
    return value


def rank(ecosystem, sources, read, top, pins=(), blocks=(), min_hosts=MIN_HOSTS, versions=VERSIONS_PER_PROJECT,
         extras=None, normalize='share'):
    """Rank packages; return dict(packages=[{name, project, score, sources[, version]}], blocked, source_counts,
    version_counts, upper_scans, fleet, invalid_names, provenance).

    ``packages`` is the build's list in order: the pins, then the ranked
    projects by score: the ``top`` ones that a source other than telemetry
    (``fleet``, ``uppers``) counted, and beyond them up to ``top`` that only
    telemetry counted (a small telemetry total makes one host's miss score
    like a high public rank, and it must not push public projects out), each
    followed by up to ``versions`` of its versions that
    the sources counted (``name==version``, most installed first) beside the
    project's newest (the bare name). ``name`` is a requirement string;
    ``extras`` ({project: [extra]}) resolves a project with those extras
    (``uvicorn[standard]``, ``uvicorn[standard]==0.30.0``).

    A ``fleet`` source counts a package or a version only when ``min_hosts``
    hosts sent it; an ``uppers`` source is one host, so its packages enter the
    ranking only with ``min_hosts`` 1 (its ``source_counts`` are reported all
    the same: they are what a host's telemetry sends).

    ``invalid_names`` counts, per source, the names dropped because they are
    not plain package names of the ecosystem (never the names themselves).

    ``upper_scans`` maps the label of each ``uppers`` source to its scan
    report (see scan_uppers): users scanned, users skipped or truncated by
    name and why, and what the scan read. It names no package.

    ``provenance`` is what a snapshot's manifest may record: per source its
    label, type, weight and the totals of what it brought into the ranking
    (packages, count; hosts for ``fleet``), and the totals of the list. It
    names no package and holds no count of one.
    """
    if ecosystem not in ECOSYSTEMS:
        raise PopularityError('ecosystem %r is not one of %s' % (ecosystem, ', '.join(ECOSYSTEMS)))
    if normalize not in NORMALIZE:
        raise PopularityError('normalize %r is not one of %s' % (normalize, ', '.join(NORMALIZE)))
    if not isinstance(min_hosts, int) or isinstance(min_hosts, bool) or min_hosts < 1:
        raise PopularityError('min_hosts %r is not a positive integer' % (min_hosts,))
    versions = _positive(versions, 'versions')
    extras = check_extras(ecosystem, extras)
    blocked = set(spec_key(ecosystem, b) for b in blocks)
    scores, vscores, origin, raw, rawv, scans, fleets, dropped, prov = {}, {}, {}, {}, {}, {}, {}, {}, []
    telemetry = set()
    total_weight = sum(_weight(src, i) for i, src in enumerate(sources) if isinstance(src, dict)) or 1.0
    for i, src in enumerate(sources):
        if not isinstance(src, dict):
            raise PopularityError('source %d is not a mapping: %r' % (i + 1, src))
        weight = _weight(src, i)
        label = src.get('name') or src.get('type')
        if label in raw:
            label = '%s-%d' % (label, i + 1)
        report, found = {}, {}
        counts = read_source(src, ecosystem, read, report, found, min_hosts)
        if src.get('type') == 'uppers':
            scans[label] = report
        elif src.get('type') == 'fleet':
            fleets[label] = report
        invalid = [name for name in counts if not valid_name(ecosystem, name)]
        for name in invalid:
            del counts[name]
        if invalid:
            dropped[label] = len(invalid)
        found = dict((name, dict((v, n) for v, n in by.items() if valid_version(v) and n > 0))
                     for name, by in found.items() if name in counts)
        raw[label] = counts
        rawv[label] = dict((name, by) for name, by in found.items() if by)
        ranked = counts if src.get('type') != 'uppers' or min_hosts <= 1 else {}
        scale = float(sum(ranked.values()) if normalize == 'share' else max(ranked.values() or [0]))
        entry = {'name': label, 'type': src.get('type'), 'weight': weight,
                 'packages': len([n for n in ranked.values() if n > 0]), 'total': sum(ranked.values())}
        if src.get('type') == 'fleet':
            entry.update(hosts=report['hosts'], min_hosts=min_hosts)
        if src.get('type') in TELEMETRY:
            telemetry.add(label)
        prov.append(entry)
        if scale <= 0:
            continue
        for name, n in ranked.items():
            if n <= 0:
                continue
            scores[name] = scores.get(name, 0.0) + weight * n / scale / total_weight
            origin.setdefault(name, []).append(label)
            for version, vn in found.get(name, {}).items():
                key = (name, version)
                vscores[key] = vscores.get(key, 0.0) + weight * vn / scale / total_weight
    by_project = {}
    for (name, version), score in vscores.items():
        by_project.setdefault(name, []).append((score, version))
    result, pinned, taken = [], set(), set()

    def add(name, spec, score, labels, version=None):
        item = {'name': spec, 'project': name, 'score': float('%.6g' % score), 'sources': labels}
        if version is not None:
            item['version'] = version
        result.append(item)

    def add_versions(name):
        if ecosystem == 'maven' or not versions:
            return
        top_versions = sorted(by_project.get(name, []), key=lambda sv: (-sv[0], sv[1]))
        for score, version in [sv for sv in top_versions if (name, sv[1]) not in taken][:versions]:
            taken.add((name, version))
            add(name, requirement(ecosystem, name, version, extras.get(name)), score, origin.get(name, []), version)

    for spec in pins:
        name = spec_key(ecosystem, spec)
        if name in blocked:
            raise PopularityError('package %s is both pinned and blocked' % name)
        if name in pinned:
            continue
        pinned.add(name)
        spec = spec.strip()
        if name in extras and _BARE.match(spec):
            spec = requirement(ecosystem, name, None, extras[name])
        exact = pinned_version(ecosystem, spec)
        if exact:
            taken.add(exact)
        add(name, spec, scores.get(name, 0.0), ['pin'] + origin.get(name, []), exact[1] if exact else None)
        add_versions(name)
    ranked = sorted((n for n in scores if n not in blocked and n not in pinned), key=lambda n: (-scores[n], n))
    if top is not None:
        # A telemetry source's total is small, so one host's miss scores like a
        # high public rank: it must not push public projects out of ``top``.
        # ``top`` bounds the projects a non-telemetry source counted; the ones
        # only telemetry counted come beyond it, up to another ``top``, each
        # with its score (the size budget decides what fits).
        public = set(n for n in ranked if not telemetry.issuperset(origin[n]))
        chosen = set([n for n in ranked if n in public][:top])
        chosen.update([n for n in ranked if n not in public][:top])
        ranked = [n for n in ranked if n in chosen]
    for name in ranked:
        add(name, requirement(ecosystem, name, None, extras.get(name)), scores[name], origin[name])
        add_versions(name)
    summary = {'sources': prov, 'normalize': normalize, 'top': top, 'packages': len(result), 'pins': len(pinned),
               'versions': sum(1 for x in result if 'version' in x and 'pin' not in x['sources']),
               'extras': sum(1 for x in result if '[' in x['name'])}
    return {'packages': result, 'blocked': sorted(n for n in blocked if n in scores), 'source_counts': raw,
            'version_counts': rawv, 'upper_scans': scans, 'fleet': fleets, 'invalid_names': dropped,
            'provenance': summary}


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
                    add(pkg[0], pkg[1])
    finally:
        os.close(index)


def _prune(ecosystem):
    if ecosystem != 'uv':
        return None

    def enter(ctx, rel, fd):
        # uv's archive-v*/ holds unpacked wheels: package contents, never cache entries.
        return _walk.SKIP if '/' not in rel and rel.startswith('archive-v') else None
    return enter


def _uv_version(base):
    """The version in the name of a uv wheel entry (``0.10.0-py3-none-any.http``), or None."""
    version = base[:-len('.http')].split('-', 1)[0]
    return version if version and version[0].isdigit() else None


def _misses_in(ecosystem, upper_fd, lower, walk, found, max_names=MAX_NAMES, max_body=None):
    """Add to the set ``found`` the (name, version) pairs of the packages of the open upper ``upper_fd`` that
    ``lower`` (a _Lower) lacks; the version is None where the cache does not tell it (Maven's is in the name)."""
    def add(name, version=None):
        if (name, version) not in found:
            if len(found) >= max_names:
                walk.stop('max_names')
            else:
                found.add((name, version))

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
                add(pkg[0], pkg[1])
            continue
        if ecosystem == 'uv':
            if rel.startswith('wheels-v') and base.endswith('.http') and rel.count('/') >= 3 and not lower.has(rel):
                add(normalize_name(rel.split('/')[-2]), _uv_version(base))
            continue
        if not rel.startswith(('http/', 'http-v2/')) or base.endswith('.lock') or lower.has(rel):
            continue
        if max_body is not None and st.st_size > max_body:
            walk.skipped['too_big'] += 1
            continue
        pkg = _read_with(walk, dir_fd, base, st, _wheel_in_file)
        if pkg:
            add(pkg[0], pkg[1])


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
    return set(name for name, version in found)


def _add_counters(report, walk):
    totals = report.setdefault('walk', {'entries': 0, 'bytes_read': 0, 'files_opened': 0, 'skipped': {}})
    for key in ('entries', 'bytes_read', 'files_opened'):
        totals[key] += getattr(walk, key)
    for key, n in walk.skipped.items():
        totals['skipped'][key] = totals['skipped'].get(key, 0) + n


def _count_users(ecosystem, uppers, lower, limits, max_names, report):
    """Counters ({package: users}, {(package, version): users}) over ``uppers``: (label, open) pairs, ``open()``
    giving the upper's dir fd."""
    counts, versions = Counter(), Counter()
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
        counts.update(set(name for name, version in found))
        versions.update(pair for pair in found if pair[1] is not None)
    return counts, versions


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


def scan_uppers(ecosystem, src, report=None, versions=None):
    """Counts of an ``uppers`` source: every ``<scratch_root>/*/cacache_<ecosystem>/upper`` against the lower.

    ``report`` (a dict), if given, receives: ``users`` scanned, ``skipped``
    and ``truncated`` (user name: why), ``walk`` (summed counters) and
    ``packages_dropped`` (over ``max_packages``). The source may set
    ``max_names`` (packages per upper), ``max_packages`` and ``limits`` (caps
    per upper, see _walk.Limits). ``versions`` (a dict), if given, receives
    {package: {version: users}} for the packages returned, with the same
    ``min_users`` threshold per version.
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
        counts, by_version = _count_users(ecosystem, uppers, _Lower(lower if os.path.isdir(lower) else None), limits,
                                          max_names, report)
    finally:
        os.close(root_fd)
    kept = sorted(((k, v) for k, v in counts.items() if v >= min_users), key=lambda kv: (-kv[1], kv[0]))
    report['packages_dropped'] = max(0, len(kept) - max_packages)
    kept = dict(kept[:max_packages])
    if versions is not None:
        for (name, version), n in sorted(by_version.items()):
            if name in kept and n >= min_users:
                versions.setdefault(name, {})[version] = n
    return kept


def fleet_misses(ecosystem, uppers, lower, limits=None, max_names=MAX_NAMES, report=None):
    """Counts {package: number of users} over ``uppers`` (a list of dirs), names of users left out.

    Each upper is opened from ``/`` with O_NOFOLLOW on every component; one
    that is missing is left out, one that is refused or fails is named in
    ``report['skipped']`` (by user name) and the others are counted.
    """
    report = report if report is not None else {}
    items = [(_upper_label(u), lambda u=u: _walk.open_dir(u)) for u in uppers]
    return dict(_count_users(ecosystem, items, _Lower(lower), limits or UPPERS_LIMITS, max_names, report)[0])


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
        result = rank(p['ecosystem'], p['sources'], read_text, p['top'], p['pins'], p['blocks'], p['min_hosts'],
                      p['versions'], p['extras'], p['normalize'])
    except PopularityError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, names=[x['name'] for x in result['packages']], **result)
