# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filling and checking a pip cache with pip itself.

Private to the collection; the API may change without notice.

Every requested package is installed on its own (_solo) into a throwaway
target, by the pip of a build venv that this module manages, all through one
cache; packages whose earlier resolution still holds are copied from the
previous snapshot instead (_reuse).

pip's HTTP cache keys a response by its URL: the entry lives at
``http-v2/a/b/c/d/e/<sha224(url)>`` (pip >= 23.3, with a ``.body`` file
beside it) or ``http/a/b/c/d/e/<sha224(url)>`` (older pip). Wheels that pip
built from an sdist go to ``wheels/``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from urllib.parse import urlsplit, urlunsplit

from . import _budget as budget
from . import _reuse as reuse
from . import _solo as solo
from . import _store as st
from . import _sync
from ._fill import BuildError, fingerprint, tail, with_defaults

# pip's options: the top-level options of snapshot_build (the other ecosystems have a dict option each).
OPTIONS = dict(
    packages=dict(type='list', elements='str', default=[]),
    requirements=dict(type='path'),
    index_url=dict(type='str'),
    trusted_host=dict(type='str'),
    python=dict(type='str', default='python3'),
    pip_version=dict(type='str'),
    venv_dir=dict(type='path'),
    max_bytes=dict(type='int', default=0),
    max_project_bytes=dict(type='int', default=0),
    scores=dict(type='dict'),
)
ITEMS = 'packages'
# Top-level names of pip's cache dir that never go into a snapshot.
EXCLUDE = ('selfcheck',)
_NAME_NORM = re.compile(r'[-_.]+')
_SPEC_NAME = re.compile(r'^\s*([A-Za-z0-9][A-Za-z0-9._-]*)')
VERSIONS = 'import json, sys, pip; print(json.dumps({"pip": pip.__version__, "python": "%d.%d.%d" % sys.version_info[:3]}))'


def normalize_name(name):
    return _NAME_NORM.sub('-', name).lower()


def requirement_name(spec):
    m = _SPEC_NAME.match(spec)
    return normalize_name(m.group(1)) if m else None


item_name = requirement_name


def exclude(cache):
    """Top-level names of pip's cache dir that stay out of a snapshot."""
    return EXCLUDE


def read_requirements(text, source):
    """Return requirement specs from requirements-file text; options and includes are refused."""
    specs = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(' #', 1)[0].strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('-'):
            raise BuildError('%s line %d: pip options (%r) are not allowed in a snapshot requirements file; '
                             'use the module options instead' % (source, lineno, line))
        specs.append(line)
    return specs


_NAME = r'[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?'
_CLAUSE = r'(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9][A-Za-z0-9._*+!-]*'
# What a requested package may be: a PEP 508 name, optional extras, optional version clauses. No URL, no marker,
# no option: the build resolves what the index serves, the way a user's ``pip install name[extra]==1.0`` does.
SPEC = re.compile(r'^(%s)\s*(?:\[\s*(%s(?:\s*,\s*%s)*)?\s*\])?\s*(%s(?:\s*,\s*%s)*)?$'
                  % (_NAME, _NAME, _NAME, _CLAUSE, _CLAUSE))


def check_specs(specs):
    """Return the specs stripped; refuse anything but ``name``, ``name[extra,...]`` and version clauses
    (``name[extra]==1.0``, ``name>=2,<3``), naming the spec."""
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip() or spec.strip().startswith('-') or '\n' in spec:
            raise BuildError('package %r is not a requirement specifier' % (spec,))
        if requirement_name(spec) is None:
            raise BuildError('package %r does not start with a project name' % (spec,))
        if '@' in spec or '://' in spec:
            raise BuildError('package %r is a direct reference (name @ URL); a snapshot caches what the index '
                             'serves, so give a name and a version range' % (spec,))
        if not SPEC.match(spec.strip()):
            raise BuildError('package %r is not a project name with optional extras and version clauses (for '
                             'example uvicorn[standard] or django==4.2.7); markers and options are refused' % (spec,))
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
        raise BuildError('pip wrote a report that is not JSON: %s' % exc)
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


def install_command(python, index_url, trusted_host, cache_dir, target, report, reqfile):
    """The pip command that fills the cache when a resolution takes an sdist: resolve, download, build its wheel
    once (pip caches it), install to a throwaway target."""
    return [python, '-m', 'pip', 'install', '--ignore-installed', '--use-pep517',
            '--report', report, '-r', reqfile] + pip_args(index_url, trusted_host, cache_dir) + ['--target', target]


def resolve_command(python, index_url, trusted_host, cache_dir, report, reqfile):
    """The pip command that resolves as ``pip install`` in a fresh venv would and installs nothing: it fetches the
    index pages and, for each file, its metadata (PEP 658) or, where the index serves none, the whole file."""
    return [python, '-m', 'pip', 'install', '--dry-run', '--ignore-installed', '--use-pep517',
            '--report', report, '-r', reqfile] + pip_args(index_url, trusted_host, cache_dir)


def download_command(python, index_url, trusted_host, cache_dir, dest, urls):
    """The pip command that fetches files by URL through the cache (as ``pip install`` fetches them)."""
    return [python, '-m', 'pip', 'download', '--no-deps', '--dest', dest] + \
        pip_args(index_url, trusted_host, cache_dir) + list(urls)


def build_key(ecosystem, index_url, pip_version, python_version, packages, misses, requested):
    """Fingerprint of a build's inputs and resolution, for idempotence."""
    return fingerprint({'ecosystem': ecosystem, 'index_url': index_url, 'pip': pip_version, 'python': python_version,
                        'requested': sorted(requested),
                        'packages': sorted((p['name'], p['version'], p['url']) for p in packages),
                        'misses': sorted(m['package'] for m in misses)})


def options(p):
    """pip's options from snapshot_build's params ``p``: the requested specs (``packages`` and the lines of
    ``requirements``, checked), the index, the build venv, and the store and work dir that reuse and the venv use."""
    o = with_defaults(OPTIONS, dict((k, p.get(k)) for k in OPTIONS))
    specs = list(o['packages'])
    if o.get('requirements'):
        try:
            with open(o['requirements']) as f:
                specs += read_requirements(f.read(), o['requirements'])
        except OSError as exc:
            raise BuildError('cannot read requirements %s: %s' % (o['requirements'], exc))
    specs = check_specs(specs)
    if not specs:
        raise BuildError('no packages given: set packages or requirements')
    if not o.get('index_url'):
        raise BuildError('pip: index_url is not set')
    for name in ('max_bytes', 'max_project_bytes'):
        if not isinstance(o.get(name), int) or o[name] < 0:
            raise BuildError('%s must be a number of bytes, 0 or more (0: no limit), not %r' % (name, o.get(name)))
    for spec, score in (o.get('scores') or {}).items():
        try:
            if float(score) < 0:
                raise ValueError()
        except (TypeError, ValueError):
            raise BuildError('scores: the score of %r must be a number, 0 or more, not %r' % (spec, score))
    o.update(packages=specs, store=p['store'], work_dir=p['work_dir'], deadline=p.get('deadline'))
    return o


def ensure_venv(python, venv_dir, pip_version, index_url, trusted_host, run, scratch):
    """Create the build venv if needed, pin pip if asked; return (venv python, versions, changed)."""
    vpy = os.path.join(venv_dir, 'bin', 'python')
    changed = False
    if not os.path.exists(vpy):
        rc, out, err = run([python, '-m', 'venv', venv_dir], None)
        if rc != 0:
            raise BuildError('cannot create the build venv %s with %s: %s' % (venv_dir, python, tail(err or out)))
        changed = True
    rc, out, err = run([vpy, '-c', VERSIONS], None)
    if rc != 0:
        raise BuildError('the build venv %s is broken: %s' % (venv_dir, tail(err or out)))
    versions = json.loads(out.strip().splitlines()[-1])
    if pip_version and versions['pip'] != pip_version:
        cache = tempfile.mkdtemp(dir=scratch, prefix='pipcache-bootstrap-')
        cmd = [vpy, '-m', 'pip', 'install', 'pip==' + pip_version] + pip_args(index_url, trusted_host, cache)
        rc, out, err = run(cmd, clean_env(os.environ, cache))
        if rc != 0:
            raise BuildError('cannot install pip %s into the build venv from %s: %s' % (pip_version, index_url, tail(err or out)))
        rc, out, err = run([vpy, '-c', VERSIONS], None)
        versions = json.loads(out.strip().splitlines()[-1])
        changed = True
    return vpy, versions, changed


def _read_report(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read()


def _spec_files(tmp, specs):
    reqfile = os.path.join(tmp, 'requirements.txt')
    with open(reqfile, 'w') as f:
        f.write('\n'.join(specs) + '\n')
    return reqfile, os.path.join(tmp, 'report.json')


def _resolve(vpy, o, specs, cache, scratch, run):
    """Resolve ``specs`` with pip as a user's ``pip install`` into a fresh venv would, installing nothing
    (``--dry-run``); return (rc, the report's text or None, the tail of pip's output)."""
    tmp = tempfile.mkdtemp(dir=scratch, prefix='pip-')
    reqfile, report = _spec_files(tmp, specs)
    rc, out, err = run(resolve_command(vpy, o['index_url'], o['trusted_host'], cache, report, reqfile),
                       clean_env(os.environ, cache))
    data = _read_report(report) if rc == 0 else None
    st.remove_tree(tmp)
    return rc, data, tail(err or out, 3)


def _fetch(vpy, o, specs, data, cache, scratch, run):
    """Leave in ``cache`` every file of the resolution ``data`` (a dry run's report of ``specs``) that a user's
    ``pip install`` of them fetches; return (rc, the report's text or None, the tail of pip's output).

    If the resolution takes only wheels, the ones the dry run did not fetch whole (an index that serves PEP 658
    metadata) are fetched by URL; if it takes an sdist, the specs are installed for real into a throwaway target,
    so that pip builds the wheel and caches it as a user's install would find it.
    """
    packages = parse_report(data)
    index = (o['index_url'], o['trusted_host'], cache)
    env = clean_env(os.environ, cache)
    rc, out, err = 0, '', ''
    tmp = tempfile.mkdtemp(dir=scratch, prefix='pip-')
    if not all(p['is_wheel'] for p in packages):
        reqfile, report = _spec_files(tmp, specs)
        rc, out, err = run(install_command(vpy, *(index + (os.path.join(tmp, 'target'), report, reqfile))), env)
        data = _read_report(report) if rc == 0 else None
    else:
        urls = [p['url'] for p in packages if p['url'].startswith(('http://', 'https://')) and not url_cached(cache, p['url'])]
        if urls:
            rc, out, err = run(download_command(vpy, *(index + (os.path.join(tmp, 'download'), urls))), env)
            data = data if rc == 0 else None
    st.remove_tree(tmp)
    return rc, data, tail(err or out, 3)


def _install(vpy, o, specs, cache, scratch, run):
    """Resolve ``specs`` (``_resolve``) and fetch what the resolution takes (``_fetch``); return (rc, the report's
    text or None, the tail of pip's output)."""
    rc, data, err = _resolve(vpy, o, specs, cache, scratch, run)
    if data is None:
        return rc, data, err
    return _fetch(vpy, o, specs, data, cache, scratch, run)


def _no_store(cc):
    return 'no-store' in [d.strip().split('=', 1)[0].lower() for d in cc.split(',')]


def header_problem(headers):
    """What in a file response's headers keeps pip (CacheControl) from caching it, or None when pip caches it: it
    keeps a 200 response that carries an ETag, or a Date with Cache-Control max-age > 0 or Expires, unless
    Cache-Control says no-store."""
    cc = headers.get('Cache-Control') or ''
    if _no_store(cc):
        return 'Cache-Control: %s (no-store)' % cc
    if headers.get('ETag'):
        return None
    max_age = re.search(r'(?:^|,)\s*max-age\s*=\s*"?(\d+)', cc, re.I)
    if (max_age and int(max_age.group(1)) > 0) or headers.get('Expires'):
        return None if headers.get('Date') else 'no Date header (pip keeps a response by its age only with a Date)'
    if max_age:
        return 'Cache-Control: %s (max-age is 0)' % cc
    return 'no Cache-Control header (nor Expires or ETag)'


def _headers(opener, url):
    """The headers of ``url`` from a HEAD request through ``opener``, or None when it cannot tell."""
    if opener is None:
        return None
    try:
        resp = opener(url, method='HEAD')
        try:
            return resp.headers
        finally:
            resp.close()
    except Exception:  # any failure (a server without HEAD, a stand-in opener): no verdict, pip's cache decides
        return None


def check_index_caches(o, cache, spec, packages, opener, fetched):
    """Fail the build at once when pip cannot cache what the index serves: the first resolved spec's files are
    not in the cache, and the index's response for one of them lacks the headers pip needs (a HEAD request), or
    pip fetched them (``fetched``) and cached none. Returns the headers checked, or None."""
    urls = [p['url'] for p in packages if p['url'].startswith(('http://', 'https://'))]
    if not urls or any(url_cached(cache, u) for u in urls):
        return None
    headers = _headers(opener, urls[0])
    problem = header_problem(headers) if headers is not None else None
    if problem is None and not fetched:
        return headers
    raise BuildError(
        'pip cannot cache what the index %s serves: %s, fetched for %s, came with %s, so the snapshot would hold '
        'none of the files. Serve files with cache headers (pypiserver: --cache-control; nginx: expires or '
        'add_header Cache-Control), and give an http index as trusted_host.'
        % (o['index_url'], urls[0], spec, problem or 'headers pip did not cache it by (pip needs Cache-Control '
           'max-age, Expires or ETag, over https or from a trusted_host)'))


def _first(specs, attempt, check):
    """Run ``attempt(spec) -> (ok, data, reason)`` on the specs one by one until one succeeds, then ``check(spec,
    data)``; return (results, failures, the specs not tried)."""
    failures = []
    for n, spec in enumerate(specs):
        ok, data, reason = attempt(spec)
        if ok:
            check(spec, data)
            return [(spec, data)], failures, specs[n + 1:]
        failures.append((spec, reason))
    return [], failures, []


def each_checked(specs, attempt, workers, check):
    """``solo.resolve_each``, but the first spec that succeeds runs alone and is checked (``check``) before the
    others start: an index that pip cannot cache from fails the build after one package, not after all of them."""
    results, failures, rest = _first(list(specs), attempt, check)
    more, more_failures = solo.resolve_each(rest, attempt, workers) if rest else ([], [])
    order = dict((spec, n) for n, spec in enumerate(specs))
    return (sorted(results + more, key=lambda r: order[r[0]]),
            sorted(failures + more_failures, key=lambda r: order[r[0]]))


def file_size(cache, url, opener):
    """The size of the file at ``url``: its body in the cache where a dry run fetched it whole (http-v2's
    ``.body``; an ``http/`` entry with its few headers), else the Content-Length of a HEAD request; None if
    neither tells."""
    v2, v1 = http_cache_paths(cache, url)
    for path in (v2 + '.body', v1):
        if os.path.isfile(path):
            return os.path.getsize(path)
    headers = _headers(opener, url)
    try:
        return int(headers.get('Content-Length')) if headers is not None else None
    except (TypeError, ValueError):
        return None


def budgeted(o):
    """Whether the build has a budget (``max_bytes`` or ``max_project_bytes``)."""
    return bool(o.get('max_bytes') or o.get('max_project_bytes'))


def choose(o, specs, reports, cache, opener):
    """The specs to fetch within the budget (_budget.choose), from their resolutions ``reports`` ({spec: parsed
    report}, reused ones included) and the sizes of their files; return (chosen specs, left_out, bytes)."""
    urls = sorted(set(p['url'] for r in reports.values() for p in r if p['url'].startswith(('http://', 'https://'))))
    found = solo.resolve_each(urls, lambda u: (True, file_size(cache, u, opener), ''), o.get('workers'))[0] if urls else []
    sizes = dict(found)
    ranked = [s for s in specs if s in reports]
    scores = budget.rank_scores(ranked, o.get('scores'))
    candidates = [{'spec': s, 'score': scores[s], 'files': dict((p['url'], sizes.get(p['url'])) for p in reports[s]
                                                                if p['url'] in sizes)} for s in ranked]
    return budget.choose(candidates, o.get('max_bytes') or 0, o.get('max_project_bytes') or 0)


def fill_cache(vpy, o, specs, cache, scratch, run, reused=None, opener=None):
    """Install every spec on its own into a fresh target, all through one cache ``cache``.

    Returns (packages, misses, resolutions, left_out): the union of what the
    solo installs took (name, version, url), a miss per spec that cannot be
    installed alone, per spec the ``name==version`` list it resolved to, and
    what the budget left out. ``reused`` ({spec: packages}) are specs whose
    earlier resolution was kept (see _reuse, their files seeded in ``cache``);
    they count as resolved and are candidates of the budget too.

    The first spec that resolves runs alone and its files are checked
    (``check_index_caches``). With a budget (``max_bytes``,
    ``max_project_bytes``) every spec is first only resolved (a dry run: index
    pages and PEP 658 metadata), the specs within the budget are chosen from
    the sizes of their closures, and only those are fetched: a package left
    out is never downloaded (unless the index serves no metadata, when the dry
    run itself fetches the files).
    """
    reused = reused or {}
    limited = budgeted(o)

    def install(spec):
        rc, data, err = _install(vpy, o, [spec], cache, scratch, run)
        return rc == 0, data, err

    def resolve(spec):
        rc, data, err = _resolve(vpy, o, [spec], cache, scratch, run)
        return rc == 0, data, err

    def fetch(item):
        rc, data, err = _fetch(vpy, o, [item[0]], item[1], cache, scratch, run)
        return rc == 0, data, err

    def check(spec, data):
        check_index_caches(o, cache, spec, parse_report(data), opener, fetched=not limited)

    results, failures = each_checked(specs, resolve if limited else install, o.get('workers'), check) \
        if specs else ([], [])
    if not reused:
        solo.require_some(specs, results, failures, o['index_url'], 'pip')
    left_out = []
    if limited:
        reports = dict((spec, parse_report(data)) for spec, data in results)
        reports.update(reused)
        chosen, left_out, dummy = choose(o, o['packages'], reports, cache, opener)
        todo = [r for r in results if r[0] in set(chosen)]
        fetched, fetch_failures = solo.resolve_each(todo, fetch, o.get('workers')) if todo else ([], [])
        results = [(item[0], data) for item, data in fetched]
        failures = sorted(failures + [(item[0], reason) for item, reason in fetch_failures],
                          key=lambda f: specs.index(f[0]))
    reports = [(spec, parse_report(data)) for spec, data in results]
    packages = solo.union([r for spec, r in reports], key=lambda x: (x['name'], x['version'], x['url']))
    resolutions = dict((spec, sorted('%s==%s' % (x['name'], x['version']) for x in r)) for spec, r in reports)
    return packages, solo.misses(failures, o['index_url'], 'pip'), resolutions, left_out


def _reuse_previous(o, versions, specs, cache, fetch):
    """Seed ``cache`` with the previous build's entries of the specs the index has nothing newer for.

    Returns (reused {spec: resolution}, their packages, specs to resolve, pages).
    """
    prev = reuse.previous(o['store'], versions, o['index_url'])
    if prev is None:
        return {}, [], specs, {}
    pages = reuse.fingerprints(o['index_url'], reuse.projects_of(prev['pip'], specs), fetch, o.get('workers'))
    reused, todo = reuse.plan(specs, prev['pip'], pages)
    packages = reuse.packages_of(prev['pip'], reused)
    # The file, its PEP 658 metadata (a current pip reads that first) and the project's page, keyed by URL.
    urls = [x['url'] for x in packages] + [x['url'] + '.metadata' for x in packages] + \
        [reuse.page_url(o['index_url'], x['name']) for x in packages]
    try:
        reuse.seed(cache, o['store'], prev, urls, set(x['name'] for x in packages if not x['is_wheel']))
    except OSError:
        # An object went (a GC between the choice and the copy): resolve everything as without reuse.
        for name in os.listdir(cache):
            st.remove_tree(os.path.join(cache, name))
        return {}, [], specs, pages
    return reused, packages, todo, pages


def _reused_reports(reused, kept):
    """{spec: its packages} of the reused resolutions ({spec: ['name==version', ...]})."""
    by_pin = dict(('%s==%s' % (x['name'], x['version']), x) for x in kept)
    return dict((spec, [by_pin[r] for r in res if r in by_pin]) for spec, res in reused.items())


def _drop_left_out(cache, reused, kept, left_out, packages):
    """Forget the reused specs that the budget left out, and remove from ``cache`` the seeded files that no spec
    kept uses any more; return (reused, kept) without them."""
    out = set(x['package'] for x in left_out)
    reused = dict((s, r) for s, r in reused.items() if s not in out)
    wanted = set(r for res in reused.values() for r in res)
    still = [x for x in kept if '%s==%s' % (x['name'], x['version']) in wanted]
    used = set(x['url'] for x in still) | set(x['url'] for x in packages)
    for x in kept:
        if x['url'] not in used:
            for url in (x['url'], x['url'] + '.metadata'):
                for path in http_cache_paths(cache, url):
                    for f in (path, path + '.body'):
                        if os.path.isfile(f):
                            os.unlink(f)
    return reused, still


def _page(opener, deadline, url):
    return _sync.read_url(opener, url, reuse.PAGE_LIMIT, 'the index page', deadline or 120)


def fill(o, cache, scratch, run, opener=None):
    """Fill ``cache`` (pip's --cache-dir) with pip; return (packages, misses, metadata, key).

    With ``opener`` and ``reuse`` on, the previous build's resolutions that still hold are copied instead of
    resolved, and the metadata records the index page of every cached project for the next build. ``opener`` also
    asks the index for the headers (HEAD) of a file pip did not cache (``check_index_caches``) and, with a budget,
    for the sizes of the files a dry run did not fetch.
    """
    specs = o['packages']
    venv_dir = o.get('venv_dir') or os.path.join(o['work_dir'], 'venv-' + os.path.basename(o['python']))
    vpy, versions, dummy = ensure_venv(o['python'], venv_dir, o.get('pip_version'), o['index_url'],
                                       o.get('trusted_host'), run, scratch)
    fetch = functools.partial(_page, opener, o.get('deadline'))
    reuse_on = opener is not None and o.get('reuse', True)
    reused, kept, todo, pages = _reuse_previous(o, versions, specs, cache, fetch) if reuse_on else ({}, [], specs, {})
    packages, misses, resolutions, left_out = fill_cache(vpy, o, todo, cache, scratch, run,
                                                         _reused_reports(reused, kept), opener)
    if left_out:
        reused, kept = _drop_left_out(cache, reused, kept, left_out, packages)
    packages = solo.union([packages, kept], key=lambda x: (x['name'], x['version'], x['url']))
    resolutions.update(reused)
    cached, not_cached = check_cached(cache, packages)
    misses += not_cached
    for m in misses:
        m['ecosystem'] = 'pip'
    if not cached:
        raise BuildError(
            'pip cached none of the %d files it fetched from %s. The index must send cache headers '
            '(pypiserver: --cache-control; nginx: Cache-Control/expires), and an http index must be given '
            'as trusted_host. Misses: %s' % (len(packages), o['index_url'], '; '.join(m['reason'] for m in misses[:3])))
    key = build_key('pip', o['index_url'], versions['pip'], versions['python'], cached, misses, specs)
    if reuse_on:
        # Pages of projects first seen in this build are fetched now, after pip read them: a release in
        # between only means that the next build resolves that package again once more.
        names = set(c['name'] for c in cached)
        pages.update(reuse.fingerprints(o['index_url'], names - set(pages), fetch, o.get('workers')))
        pages = dict((n, h) for n, h in pages.items() if n in names and h)
    packages = [{'name': c['name'], 'version': c['version'], 'url': c['url']} for c in cached]
    meta = {'pip_version': versions['pip'], 'python_version': versions['python'],
            'index_url': o['index_url'], 'trusted_host': o.get('trusted_host') or None,
            'requested': specs, 'packages': packages, 'resolutions': resolutions, 'reused': len(reused)}
    if budgeted(o):
        meta['budget'] = {'max_bytes': o.get('max_bytes') or 0, 'max_project_bytes': o.get('max_project_bytes') or 0,
                          'left_out': left_out}
    if pages:
        meta['pages'] = pages
    return packages, misses, meta, key


def stored(store, snap_id, meta):
    """After the snapshot is stored: remember its resolutions and pages for the next build's reuse."""
    reuse.remember(store, snap_id, meta)
