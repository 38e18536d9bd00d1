# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filling and checking a pip cache with pip itself.

Private to the collection; the API may change without notice.

pip's HTTP cache keys a response by its URL: the entry lives at
``http-v2/a/b/c/d/e/<sha224(url)>`` (pip >= 23.3, with a ``.body`` file
beside it) or ``http/a/b/c/d/e/<sha224(url)>`` (older pip). Wheels that pip
built from an sdist go to ``wheels/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from urllib.parse import urlsplit, urlunsplit

# Top-level names of pip's cache dir that never go into a snapshot.
EXCLUDE = ('selfcheck',)
_NAME_NORM = re.compile(r'[-_.]+')
_SPEC_NAME = re.compile(r'^\s*([A-Za-z0-9][A-Za-z0-9._-]*)')


class BuildError(RuntimeError):
    """The build cannot go on; the message says why."""


PipBuildError = BuildError


def tail(text, lines=15, drop=None):
    """The last ``lines`` lines of a tool's output, leaving out lines that contain ``drop``."""
    kept = [l for l in (text or '').strip().splitlines() if not (drop and drop in l)]
    return '\n'.join(kept[-lines:])


def fingerprint(data):
    """sha256 of a JSON value with sorted keys: the build key of an ecosystem (or of a whole build)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode('utf-8')).hexdigest()


def normalize_name(name):
    return _NAME_NORM.sub('-', name).lower()


def requirement_name(spec):
    m = _SPEC_NAME.match(spec)
    return normalize_name(m.group(1)) if m else None


def read_requirements(text, source):
    """Return requirement specs from requirements-file text; options and includes are refused."""
    specs = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(' #', 1)[0].strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('-'):
            raise PipBuildError('%s line %d: pip options (%r) are not allowed in a snapshot requirements file; '
                                'use the module options instead' % (source, lineno, line))
        specs.append(line)
    return specs


def check_specs(specs):
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip() or spec.strip().startswith('-') or '\n' in spec:
            raise PipBuildError('package %r is not a requirement specifier' % (spec,))
        if requirement_name(spec) is None:
            raise PipBuildError('package %r does not start with a project name' % (spec,))
        if '@' in spec or '://' in spec:
            raise PipBuildError('package %r is a direct reference (name @ URL); a snapshot caches what the index '
                                'serves, so give a name and a version range' % (spec,))
    return [s.strip() for s in specs]


def cache_url(url):
    """Normalise a URL the way pip's CacheControl does before hashing it."""
    parts = urlsplit(url)
    path = parts.path or '/'
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ''))


def http_cache_paths(cache_dir, url):
    """Return the possible cache entry paths of a URL (http-v2, then http)."""
    key = hashlib.sha224(cache_url(url).encode('utf-8')).hexdigest()
    rel = os.path.join(*(list(key[:5]) + [key]))
    return [os.path.join(cache_dir, 'http-v2', rel), os.path.join(cache_dir, 'http', rel)]


def url_cached(cache_dir, url):
    return any(os.path.isfile(p) for p in http_cache_paths(cache_dir, url))


def built_wheels(cache_dir):
    """Return the set of normalised project names that have a wheel in pip's wheels/ cache."""
    names = set()
    for root, dummy, files in os.walk(os.path.join(cache_dir, 'wheels')):
        for f in files:
            if f.endswith('.whl'):
                names.add(normalize_name(f.split('-', 1)[0]))
    return names


def parse_report(data):
    """Return the packages a pip --report lists: name, version, url, requested, is_wheel."""
    try:
        report = json.loads(data)
    except ValueError as exc:
        raise PipBuildError('pip wrote a report that is not JSON: %s' % exc)
    packages = []
    for item in report.get('install', []):
        meta = item.get('metadata') or {}
        info = item.get('download_info') or {}
        url = info.get('url', '')
        packages.append({
            'name': normalize_name(meta.get('name', '')),
            'version': meta.get('version', ''),
            'url': url,
            'requested': bool(item.get('requested')),
            'is_wheel': urlsplit(url).path.endswith('.whl'),
        })
    return sorted(packages, key=lambda p: p['name'])


def check_cached(cache_dir, packages):
    """Split report packages into (cached, misses) by looking for them in the cache dir."""
    wheels = built_wheels(cache_dir)
    cached, misses = [], []
    for p in packages:
        if not p['url'].startswith(('http://', 'https://')):
            misses.append({'package': p['name'], 'version': p['version'], 'reason': 'not fetched from the index (%s)' % p['url']})
        elif not url_cached(cache_dir, p['url']):
            misses.append({'package': p['name'], 'version': p['version'],
                           'reason': 'pip fetched %s but did not cache it' % p['url']})
        elif not p['is_wheel'] and p['name'] not in wheels:
            misses.append({'package': p['name'], 'version': p['version'],
                           'reason': 'the sdist is cached but pip did not cache the wheel it built'})
        else:
            cached.append(p)
    return cached, misses


def clean_env(environ, cache_dir):
    """Environment for the build's pip: no PIP_* settings or config files from the host."""
    env = dict((k, v) for k, v in environ.items() if not k.startswith('PIP_'))
    env.update({'PIP_CONFIG_FILE': os.devnull, 'PIP_CACHE_DIR': cache_dir,
                'PIP_DISABLE_PIP_VERSION_CHECK': '1', 'PIP_NO_INPUT': '1', 'PYTHONDONTWRITEBYTECODE': '1'})
    return env


def pip_args(index_url, trusted_host, cache_dir):
    args = ['--index-url', index_url, '--cache-dir', cache_dir]
    if trusted_host:
        args += ['--trusted-host', trusted_host]
    return args


def install_command(python, index_url, trusted_host, cache_dir, target, report, reqfile, dry_run=False):
    """The pip command that fills the cache: resolve, download, build wheels once, install to a throwaway target."""
    cmd = [python, '-m', 'pip', 'install', '--ignore-installed', '--use-pep517',
           '--report', report, '-r', reqfile] + pip_args(index_url, trusted_host, cache_dir)
    if dry_run:
        cmd.append('--dry-run')
    else:
        cmd += ['--target', target]
    return cmd


def build_key(ecosystem, index_url, pip_version, python_version, packages, misses, requested):
    """Fingerprint of a build's inputs and resolution, for idempotence."""
    return fingerprint({'ecosystem': ecosystem, 'index_url': index_url, 'pip': pip_version, 'python': python_version,
                        'requested': sorted(requested),
                        'packages': sorted((p['name'], p['version'], p['url']) for p in packages),
                        'misses': sorted(m['package'] for m in misses)})
