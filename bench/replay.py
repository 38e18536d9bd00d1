"""Replay: what real projects install, served from a snapshot built from popularity and last week's fleet.

Run as root on a machine prepared by scripts/bootstrap.sh:

    python3 bench/replay.py [--seed 22] [--work /var/tmp/pkgcache-replay]

The corpus (bench/corpus/pip/*.txt, bench/corpus/npm/*.json) is split at
random with a fixed seed into two halves per ecosystem:

  last week:  each set is one repl user installing it (a fresh venv or
              project, a fresh upper) through the view of an earlier
              snapshot, built from the public download ranking alone. What
              those users downloaded is read out of their uppers by the
              collection's own telemetry (_popularity.fleet_misses).
  this week:  the combined ranking (_popularity.rank over the public
              ranking and that telemetry, with weights) gives the list, the
              builder (_builder.build) builds the new snapshot, and every set
              of this half is installed twice as a repl user, interleaved:
              cold (empty cache) and through a fresh view of the snapshot.

The index is nginx in a network namespace of its own (bench/common.py's Env),
serving a static PEP 503 tree with PyPI's cache headers over a wheelhouse
filled from PyPI with `pip download` (one per corpus set, the users' pip, and
one per listed package, as the builder resolves them) and a static npm
registry (packuments trimmed to the versions used, tarballs byte for byte from
the npm registry). Every request is in nginx's access log: the files a cold
install fetches are the set's files; the ones the view's install fetched are
its misses, each given a cause (bench/replaylib.py).
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import zipfile

import common as b
import replaylib as rl
from ansible_collections.pkgcache.overlay.plugins.module_utils import _popularity as pop  # noqa: E402

CORPUS = os.path.join(b.HERE, 'corpus')
PACKAGES = '/work/.library/env/packages'
PYPI_TSV = os.path.join(PACKAGES, 'pypi.tsv')
NPM_TSV = os.path.join(PACKAGES, 'npm.tsv')

# A namespace, port and user of its own, so that other benchmarks can run beside it.
b.NS = 'pkgreplay'
b.PORT = 8396
b.INDEX = 'http://127.0.0.1:%d/simple/' % b.PORT
b.REGISTRY = 'http://127.0.0.1:%d%s' % (b.PORT, b.NPM_PREFIX)
b.USER = 'pkgreplay'

SET_CAP_MB = 1500      # a corpus set whose download weighs more is reported and left out
PACKAGE_CAP_MB = 400   # a listed package whose download (with dependencies) weighs more stays out of the index
DOWNLOAD_TIMEOUT = 900


def log(*args):
    print(time.strftime('%H:%M:%S'), 'replay:', *args, flush=True)


# ---------------------------------------------------------------- corpus

def corpus(eco):
    d = os.path.join(CORPUS, eco)
    out = {}
    for f in sorted(os.listdir(d)):
        with open(os.path.join(d, f)) as fh:
            text = fh.read()
        name = f.rsplit('.', 1)[0]
        specs = rl.npm_dependencies(text) if eco == 'npm' else rl.requirements(text)
        out[name] = {'path': os.path.join(d, f), 'text': text, 'specs': specs, 'pinned': rl.pinned(specs, eco)}
    return out


# ---------------------------------------------------------------- pip wheelhouse

def dir_bytes(path):
    total = 0
    for root, dummy, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def pip_download(dest, args, cap_mb):
    """One `pip download` (the users' pip, this machine's settings) into ``dest``; stamped, so reruns are quick.

    Stopped when ``dest`` grows over ``cap_mb``; the result then says so and the dir is emptied."""
    stamp = os.path.join(dest, '.done.json')
    if os.path.exists(stamp):
        with open(stamp) as f:
            return json.load(f)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    cmd = [b.USER_PYTHON, '-m', 'pip', 'download', '--disable-pip-version-check', '-q', '-d', dest] + args
    start = time.monotonic()
    # pip keeps what it downloads in TMPDIR until the resolution is done: a TMPDIR inside dest counts it.
    tmp = os.path.join(dest, '.tmp')
    os.makedirs(tmp)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, TMPDIR=tmp))
    reason = ''
    while proc.poll() is None:
        time.sleep(2)
        if dir_bytes(dest) > cap_mb * 1e6:
            reason = 'download over %d MB' % cap_mb
        elif time.monotonic() - start > DOWNLOAD_TIMEOUT:
            reason = 'download over %d s' % DOWNLOAD_TIMEOUT
        if reason:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            break
    out = proc.stdout.read()
    if not reason and proc.returncode:
        reason = ' / '.join(l.strip() for l in out.splitlines() if l.strip())[-400:]
    shutil.rmtree(tmp, ignore_errors=True)
    files = sorted(f for f in os.listdir(dest) if not f.startswith('.'))
    info = {'ok': not reason, 'reason': reason, 'seconds': round(time.monotonic() - start, 1),
            'files': dict((f, os.path.getsize(os.path.join(dest, f))) for f in files)}
    if reason:
        for f in files:
            os.remove(os.path.join(dest, f))
    with open(stamp, 'w') as f:
        json.dump(info, f, indent=1)
    return info


def download_sets(cache, sets, workers=3):
    def one(item):
        name, s = item
        return name, pip_download(os.path.join(cache, 'set', name), ['-r', s['path']], SET_CAP_MB)
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        out = dict(ex.map(one, sorted(sets.items())))
    for name, info in sorted(out.items()):
        line = 'set %-28s %s %3d files %7.1f MB %5.0f s' % (
            name, 'ok ' if info['ok'] else 'BAD', len(info['files']), sum(info['files'].values()) / 1e6, info['seconds'])
        log(line, info['reason'][:200])
    return out


def download_listed(cache, names, workers=4):
    def one(name):
        return name, pip_download(os.path.join(cache, 'pkg', b.norm(name)), [name], PACKAGE_CAP_MB)
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        out = dict(ex.map(one, names))
    bad = dict((n, i['reason']) for n, i in out.items() if not i['ok'])
    log('listed packages downloaded: %d, %d left out of the index: %s'
        % (len(out), len(bad), '; '.join('%s (%s)' % (n, r[:80]) for n, r in sorted(bad.items()))))
    return out


def flat_wheelhouse(cache, dirs, name='flat'):
    flat = os.path.join(cache, name)
    shutil.rmtree(flat, ignore_errors=True)
    os.makedirs(flat)
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for f in os.listdir(d):
            if not f.startswith('.') and not os.path.exists(os.path.join(flat, f)):
                os.link(os.path.join(d, f), os.path.join(flat, f))
    return flat


def base_wheels(cache):
    """setuptools and wheel, which pip's isolated builds of an sdist fetch from the index."""
    return pip_download(os.path.join(cache, 'base'), ['--only-binary', ':all:', 'setuptools', 'wheel'], 100)


class Env(b.Env):
    """common's Env, whose index hardlinks the files (GBs here) and names a project by the file's full name
    (an older sdist such as django-crispy-forms-1.14.0.tar.gz is not project 'django')."""

    def _index(self, wheelhouse, extra_wheels):
        import hashlib
        shutil.rmtree(self.index_root, ignore_errors=True)
        files = os.path.join(self.index_root, 'files')
        os.makedirs(files)
        projects = {}
        for name in sorted(os.listdir(wheelhouse)):
            proj, dummy, kind = rl.file_package(name)
            if kind not in ('wheel', 'sdist'):
                continue
            src = os.path.join(wheelhouse, name)
            os.link(src, os.path.join(files, name))
            h = hashlib.sha256()
            with open(src, 'rb') as f:
                for chunk in iter(lambda: f.read(1 << 20), b''):
                    h.update(chunk)
            projects.setdefault(proj, []).append((name, h.hexdigest()))
        for project, items in projects.items():
            d = os.path.join(self.index_root, 'simple', project)
            os.makedirs(d)
            with open(os.path.join(d, 'index.html'), 'w') as f:
                f.write('<!DOCTYPE html><html><body>\n' + ''.join(
                    '<a href="../../files/%s#sha256=%s">%s</a><br>\n' % (n, h, n) for n, h in items) + '</body></html>\n')
        with open(os.path.join(self.index_root, 'simple', 'index.html'), 'w') as f:
            f.write(''.join('<a href="%s/">%s</a><br>\n' % (p, p) for p in sorted(projects)))


# ---------------------------------------------------------------- npm registry

def npm_lock(deps, cache_dir):
    """The package-lock npm resolves for ``deps`` ({name: range}) against the npm registry (no install); kept in
    ``cache_dir`` by the deps' hash for reruns."""
    import hashlib
    import tempfile
    kept = os.path.join(cache_dir, hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest() + '.json')
    if os.path.exists(kept):
        with open(kept) as f:
            return json.load(f), ''
    proj = tempfile.mkdtemp(dir=cache_dir, prefix='.resolve-')
    try:
        with open(os.path.join(proj, 'package.json'), 'w') as f:
            json.dump({'name': 'resolve', 'version': '0.0.0', 'private': True, 'dependencies': deps}, f)
        proc = subprocess.run(['npm', 'install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund',
                               '--omit-lockfile-registry-resolved=false', '--cache', os.path.join(cache_dir, '.npmcache')],
                              cwd=proj, capture_output=True, text=True, check=False, timeout=600)
        if proc.returncode:
            return None, (proc.stderr or proc.stdout)[-400:]
        shutil.copy(os.path.join(proj, 'package-lock.json'), kept)
        with open(kept) as f:
            return json.load(f), ''
    finally:
        shutil.rmtree(proj, ignore_errors=True)


def npm_dep(spec):
    """{name: range} of a listed npm spec: ``react`` -> latest, ``react@18.2.0`` -> 18.2.0."""
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _npmcache
    name = _npmcache.spec_name(spec)
    return {name: spec[len(name) + 1:] or 'latest'}


def npm_locks_of(jobs, lock_cache):
    """({job: lock}, {job: error}) of npm_lock for every job ({name: deps}), four at a time."""
    def one(item):
        return item[0], npm_lock(item[1], lock_cache)
    locks, bad = {}, {}
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        for key, (lock, err) in ex.map(one, sorted(jobs.items())):
            if lock:
                locks[key] = lock
            else:
                bad[key] = err
                log('npm lock %s failed: %s' % (key, err[-200:]))
    return locks, bad


def npm_fetch(url, tries=3):
    for i in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=120) as r:
                return r.read()
        except OSError:
            if i == tries - 1:
                raise
            time.sleep(2)


def fill_npm_registry(root, locks):
    """Trimmed packuments and this platform's tarballs for every package of ``locks`` under ``root``."""
    import ecosystems
    wanted = {}
    for lock in locks:
        for path, meta in lock['packages'].items():
            if path and 'node_modules/' in path and meta.get('resolved'):
                name = meta.get('name') or path.rsplit('node_modules/', 1)[1]
                wanted.setdefault(name, {})[meta['version']] = meta['resolved']
    stamp = os.path.join(root, '.wanted.json')
    if os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == wanted:
                return wanted

    def one(item):
        name, versions = item
        doc = json.loads(npm_fetch('https://registry.npmjs.org/' + name.replace('/', '%2f')))
        keep = {}
        for version, resolved in versions.items():
            info = doc['versions'][version]
            fname = resolved.rsplit('/', 1)[1]
            path = os.path.join(root, name, '-', fname)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if ecosystems.platform_ok(info) and not os.path.exists(path):
                data = npm_fetch(resolved)
                with open(path + '.tmp', 'wb') as f:
                    f.write(data)
                os.rename(path + '.tmp', path)
            info['dist']['tarball'] = b.REGISTRY + name + '/-/' + fname
            keep[version] = info
        latest = sorted(keep, key=lambda v: [int(x) if x.isdigit() else 0 for x in v.split('-')[0].split('.')])[-1]
        packument = {'name': name, 'dist-tags': {'latest': latest}, 'versions': keep,
                     'time': dict((v, doc.get('time', {}).get(v, '')) for v in keep)}
        with open(os.path.join(root, name, 'index.json'), 'w') as f:
            json.dump(packument, f)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(one, sorted(wanted.items())))
    with open(stamp, 'w') as f:
        json.dump(wanted, f)
    return wanted


# ---------------------------------------------------------------- popularity

def public_pip_source(work):
    """PyPI's download ranking (the 15,000 most downloaded projects, in /work/.library/env/packages/pypi.tsv) as a
    `counts` source: rank r gets 10**9 / r downloads (Zipf's law, which download counts follow), so that the fleet's
    counts, scaled the same way, weigh against a heavy-tailed list and not a flat one."""
    rows = []
    with open(PYPI_TSV) as f:
        next(f)
        for line in f:
            parts = line.rstrip('\n').split('\t')
            if len(parts) > 3 and parts[3].isdigit():
                rows.append((int(parts[3]), parts[0]))
    rows.sort()
    return {'type': 'counts', 'name': 'pypi-downloads', 'counts': dict((n, int(1e9 / r)) for r, n in rows)}


def public_npm_source():
    counts = {}
    with open(NPM_TSV) as f:
        next(f)
        for line in f:
            parts = line.rstrip('\n').split('\t')
            if len(parts) > 2 and parts[2].isdigit() and int(parts[2]) > 1000000:
                counts[parts[0]] = int(parts[2])
    return {'type': 'counts', 'name': 'npm-downloads', 'counts': counts}


def role_extras(eco):
    """The build role's default extras of an ecosystem (build_popularity_extras), as the shipped configuration
    passes them to the ranking."""
    import yaml
    with open(os.path.join(b.ROOT, 'roles', 'build', 'defaults', 'main.yml')) as f:
        return (yaml.safe_load(f).get('build_popularity_extras') or {}).get(eco) or {}


def ranked(eco, sources, top, args=None):
    """The build's list from the collection's ranking (_popularity.rank), with the telemetry options where the
    collection has them (min_hosts, versions per project) and the role's default extras."""
    kw = {'extras': role_extras(eco)}
    if 'fleet' in pop.SOURCE_TYPES and args is not None:
        kw.update(min_hosts=args.min_hosts, versions=args.versions)
    res = pop.rank(eco, sources, pop.read_text, top, **kw)
    return [x['name'] for x in res['packages']], res


def telemetry(eco, host_roots, lower_root):
    """The fleet's source for the ranking: each host's telemetry (``scan_uppers`` over its users' uppers against the
    snapshot they used) as a ``fleet`` source; with a collection that has no fleet source, the users' counts
    (``fleet_misses``) as a ``counts`` source."""
    if 'fleet' in pop.SOURCE_TYPES:
        hosts = []
        for root in host_roots:
            versions = {}
            counts = pop.scan_uppers(eco, {'scratch_root': root, 'lower_root': lower_root}, {}, versions)
            hosts.append({'packages': counts, 'versions': versions})
        return {'type': 'fleet', 'name': 'fleet', 'hosts': hosts}
    uppers = [os.path.join(root, u, 'cacache_%s' % eco, 'upper') for root in host_roots for u in os.listdir(root)]
    return {'type': 'counts', 'name': 'fleet', 'counts': pop.fleet_misses(eco, uppers, os.path.join(lower_root, eco))}


def fleet_packages(src):
    """{package: users} over the hosts of a fleet source (or the counts of a counts source)."""
    if src['type'] == 'counts':
        return dict(src['counts'])
    out = {}
    for h in src['hosts']:
        for n, c in h['packages'].items():
            out[n] = out.get(n, 0) + c
    return out


# ---------------------------------------------------------------- builds

def build(work, store, eco_opts, reuse=True):
    """_builder.build of ``eco_opts``; a build of the same inputs within a day is found, not made again (max_age:
    what makes --resume quick)."""
    p = {'ecosystems': list(eco_opts), 'work_dir': os.path.join(work, 'build'), 'store': store, 'publish': True,
         'workers': 4, 'reuse': reuse, 'max_age': 86400}
    if 'pip' in eco_opts:
        pip = eco_opts['pip']
        p.update({'packages': pip['packages'], 'requirements': None, 'index_url': b.INDEX,
                  'trusted_host': '127.0.0.1:%d' % b.PORT, 'python': b.USER_PYTHON, 'pip_version': None,
                  'venv_dir': os.path.join(work, 'venv-build')})
    for eco in ('npm', 'uv'):
        if eco in eco_opts:
            p[eco] = eco_opts[eco]
    start = time.monotonic()
    snap = b._builder.build(p, b.run_cmd, now=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                            opener=b.page_opener if reuse else None)  # pylint: disable=protected-access
    snap['seconds'] = round(time.monotonic() - start, 1)
    return snap


def host_tree(work, store, snap, name):
    host = os.path.join(work, 'host-' + name + TAG)
    shutil.rmtree(host, ignore_errors=True)
    return b.sync('file://' + store, snap['id'], host)['path']


def held_pip(lower, index_root):
    """(file names, {project: {versions}}) of the index's files whose download ``lower`` (a pip cache) holds."""
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc
    files, versions = set(), {}
    for name in os.listdir(os.path.join(index_root, 'files')):
        if pc.url_cached(lower, 'http://127.0.0.1:%d/files/%s' % (b.PORT, name)):
            files.add(name)
            proj, version, dummy = rl.file_package(name)
            versions.setdefault(proj, set()).add(version)
    return files, versions


def held_npm(snap):
    files, versions = set(), {}
    for x in snap.get('packages', []):
        if x.get('ecosystem', 'npm') != 'npm':
            continue
        versions.setdefault(x['name'], set()).add(x['version'])
    return files, versions


# ---------------------------------------------------------------- installs

class Installer(object):
    """Installs as the bench user: a fresh venv or project each time, a fresh view (or an empty cache)."""

    def __init__(self, work, env, access_log):
        self.uid, self.gid, self.home = b.ensure_user()
        self.work, self.env, self.log = work, env, access_log
        self.venv = os.path.join(self.home, 'venv-replay')
        self.pristine = os.path.join(self.home, '.venv-replay-pristine')
        shutil.rmtree(self.pristine, ignore_errors=True)
        shutil.rmtree(self.venv, ignore_errors=True)
        b.sh(['runuser', '-u', b.USER, '--', b.USER_PYTHON, '-m', 'venv', self.venv])
        b.sh(['cp', '-a', self.venv, self.pristine])
        self.proj = os.path.join(self.home, 'project')

    def target(self, eco):
        return os.path.join(self.home, {'pip': '.cache/pip', 'uv': '.cache/uv', 'npm': '.npm'}[eco])

    def prepare(self, eco, lower, scratch):
        """Mount a fresh view of ``lower`` (or, with no lower, an empty cache) where ``eco`` looks."""
        target = self.target(eco)
        subprocess.run(['umount', target], capture_output=True, check=False)
        if lower:
            b.mount_view(lower, target, scratch, self.uid, self.gid)
        else:
            shutil.rmtree(target, ignore_errors=True)
            os.makedirs(target)
            for d in (os.path.dirname(target), target):
                os.chown(d, self.uid, self.gid)

    def done(self, eco):
        subprocess.run(['umount', self.target(eco)], capture_output=True, check=False)

    def install(self, eco, s, lower, scratch):
        """Install set ``s``; return {seconds, fetched [(file, bytes)], error}."""
        self.prepare(eco, lower, scratch)
        offset = os.path.getsize(self.log)
        if eco == 'npm':
            shutil.rmtree(self.proj, ignore_errors=True)
            os.makedirs(self.proj)
            shutil.copy(s['path'], os.path.join(self.proj, 'package.json'))
            for d in (self.proj, os.path.join(self.proj, 'package.json')):
                os.chown(d, self.uid, self.gid)
            argv = ['sh', '-c', 'cd %s && npm install --no-audit --no-fund --ignore-scripts --registry %s'
                    % (self.proj, b.REGISTRY)]
        else:
            shutil.rmtree(self.venv)
            b.sh(['cp', '-a', self.pristine, self.venv])
            req = os.path.join(self.home, 'requirements.txt')
            shutil.copy(s['path'], req)
            os.chown(req, self.uid, self.gid)
            if eco == 'pip':
                argv = [os.path.join(self.venv, 'bin', 'pip'), 'install', '-q', '--index-url', b.INDEX,
                        '--trusted-host', '127.0.0.1:%d' % b.PORT, '-r', req]
            else:
                argv = [UV, 'pip', 'install', '-q', '--python', os.path.join(self.venv, 'bin', 'python'),
                        '--index-url', b.INDEX, '-r', req]
        env = {'UV_NO_CONFIG': '1', 'UV_LINK_MODE': 'copy'} if eco == 'uv' else None
        error = None
        start = time.monotonic()
        try:
            b.as_user(argv, env)
        except RuntimeError as exc:
            error = str(exc)[-600:]
        took = time.monotonic() - start
        self.done(eco)
        return {'seconds': round(took, 2), 'fetched': fetched(self.log, offset, eco), 'error': error}


UV = None


def fetched(logpath, offset, eco):
    """[(file, bytes)] of the package files nginx served since ``offset`` (wheels and sdists, or npm tarballs)."""
    with open(logpath) as f:
        f.seek(offset)
        lines = f.read().splitlines()
    out = {}
    for line in lines:
        status, size, uri = line.split(' ', 2)
        if status not in ('200', '206'):
            continue
        if eco == 'npm':
            if uri.startswith(b.NPM_PREFIX) and uri.endswith('.tgz'):
                rest = urllib.request.unquote(uri[len(b.NPM_PREFIX):])
                name = rest.split('/-/')[0]
                f = '%s/%s' % (name, rest.rsplit('/', 1)[1]) if name.startswith('@') else rest.rsplit('/', 1)[1]
                out[f] = out.get(f, 0) + int(size)
        elif uri.startswith('/files/'):
            # uv reads a wheel's METADATA with range requests (206) before it downloads the wheel: one file, the
            # bytes of all its requests.
            f = os.path.basename(uri)
            out[f] = out.get(f, 0) + int(size)
    return sorted(out.items())


def npm_file_package(f):
    """(name, version) of 'name-1.0.0.tgz' or '@scope/name/name-1.0.0.tgz' as fetched() names them."""
    if f.startswith('@'):
        scope_name, fname = f.rsplit('/', 1)
        version = fname[len(scope_name.split('/')[1]) + 1:-4]
        return scope_name, version
    p = rl.file_package(f, 'npm')
    return p[0], p[1]


def extras_reached(s, index_root):
    """Projects that the set's ``name[extra]`` lines add: Requires-Dist lines of the named wheels marked with one of
    the extras asked for (one level)."""
    out = set()
    files = os.listdir(os.path.join(index_root, 'files'))
    for name, extras, dummy in s['specs']:
        if not extras:
            continue
        for f in files:
            if f.endswith('.whl') and rl.file_package(f)[0] == name:
                with zipfile.ZipFile(os.path.join(index_root, 'files', f)) as z:
                    meta = [n for n in z.namelist() if n.count('/') == 1 and n.endswith('.dist-info/METADATA')]
                    text = z.read(meta[0]).decode('utf-8', 'replace')
                for line in text.splitlines():
                    if line.startswith('Requires-Dist:') and 'extra ==' in line:
                        marker = line.split(';', 1)[1]
                        if any('"%s"' % e in marker or "'%s'" % e in marker for e in extras):
                            req = rl.requirements(line[len('Requires-Dist:'):].split(';', 1)[0].replace('(', ' ').replace(')', ''))
                            out.update(r[0] for r in req)
    return out


# ---------------------------------------------------------------- the benchmark

def run(args):
    t0 = time.monotonic()
    work = args.work
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    cache = args.wheelhouse or os.path.join(work, 'wheelhouse')
    os.makedirs(cache, exist_ok=True)
    ecos = args.ecosystems
    sets = dict((eco, corpus('npm' if eco == 'npm' else 'pip')) for eco in ('pip', 'npm'))
    halves = dict((eco, rl.split(sets[eco], args.seed)) for eco in sets)
    if args.max_sets:
        halves = dict((e, (h[0][:args.max_sets], h[1][:args.max_sets])) for e, h in halves.items())
        sets = dict((e, dict((n, s) for n, s in sets[e].items() if n in halves[e][0] + halves[e][1])) for e in sets)
    for eco, (train, test) in halves.items():
        log('%s: %d sets (%d pinned); last week %d, this week %d (seed %d)'
            % (eco, len(sets[eco]), sum(1 for s in sets[eco].values() if s['pinned']), len(train), len(test), args.seed))
    times = {}
    results = {'seed': args.seed, 'split': dict((e, {'last_week': h[0], 'this_week': h[1]}) for e, h in halves.items()),
               'pinned': dict((e, sorted(n for n, s in sets[e].items() if s['pinned'])) for e in sets),
               'budget_bytes': args.budget, 'top': {'pip': args.top_pip, 'npm': args.top_npm},
               'fleet_weight': args.fleet_weight, 'min_hosts': args.min_hosts, 'versions': args.versions,
               'users_per_host': args.users_per_host, 'rate': args.rate, 'machine': b.machine()}

    # -- downloads: every corpus set (pip), and npm locks of every set
    t = time.monotonic()
    set_dl = download_sets(cache, sets['pip'])
    results['set_downloads'] = dict((n, {'ok': i['ok'], 'reason': i['reason'], 'files': len(i['files']),
                                         'bytes': sum(i['files'].values())}) for n, i in set_dl.items())
    base_wheels(cache)
    pip_public = public_pip_source(work)
    list0, dummy = ranked('pip', [dict(pip_public, weight=1.0)], args.top_pip)
    listed_dl = download_listed(cache, list0)
    npm_root = os.path.join(work, 'npm-registry')
    b.NPM_ROOT = npm_root
    os.makedirs(npm_root, exist_ok=True)
    npm_public = public_npm_source()
    nlist0, dummy = ranked('npm', [dict(npm_public, weight=1.0)], args.top_npm)
    npm_locks, npm_bad = {}, {}
    if 'npm' in ecos:
        lock_cache = os.path.join(work, 'npm-locks')
        os.makedirs(lock_cache, exist_ok=True)
        jobs = dict(('set:' + n, s['specs']) for n, s in sets['npm'].items())
        jobs.update(('listed:' + n, npm_dep(n)) for n in nlist0)
        npm_locks, npm_bad = npm_locks_of(jobs, lock_cache)
    times['downloads (first pass)'] = time.monotonic() - t

    # -- the index over everything so far
    def start_env(extra_dirs=()):
        dirs = [os.path.join(cache, 'set', n) for n in sets['pip']] + [os.path.join(cache, 'base')]
        dirs += [os.path.join(cache, 'pkg', d) for d in os.listdir(os.path.join(cache, 'pkg'))] + list(extra_dirs)
        flat = flat_wheelhouse(cache, dirs, 'flat' + TAG)
        env = Env(os.path.join(work, 'env' + TAG))
        env.start(flat, [])
        import hitrate
        return env, hitrate.enable_access_log(env)

    if npm_locks:
        t = time.monotonic()
        fill_npm_registry(os.path.join(npm_root, 'npm'), list(npm_locks.values()))
        times['npm registry'] = time.monotonic() - t
    env, access = start_env()
    try:
        inst = Installer(work, env, access)
        store = os.path.join(work, 'store')
        if not args.resume:
            shutil.rmtree(store, ignore_errors=True)
            shutil.rmtree(os.path.join(work, 'fleet'), ignore_errors=True)
        # -- last week's snapshot: the public ranking alone
        opts0 = {'pip': {'packages': list0}} if 'pip' in ecos else {}
        if 'npm' in ecos:
            opts0['npm'] = {'packages': nlist0, 'registry': b.REGISTRY, 'npm': 'npm', 'platforms': ['linux-x64']}
        t = time.monotonic()
        snap0 = build(work, store, opts0)
        times['build, last week'] = time.monotonic() - t
        log('snapshot 0: %s, %.1f MB, %d misses' % (snap0['id'][:12], snap0['bytes'] / 1e6, len(snap0['misses'])))
        tree0 = host_tree(work, store, snap0, 'week0')
        results['snapshot0'] = {'bytes': snap0['bytes'], 'files': snap0['files'], 'misses': snap0['misses'][:50],
                                'listed': {'pip': list0, 'npm': nlist0}}
        # -- last week's users, through snapshot 0's view; telemetry from their uppers
        fleet = {}
        t = time.monotonic()
        saved = os.path.join(work, 'fleet', 'telemetry.json')
        if args.resume and os.path.exists(saved):
            with open(saved) as f:
                fleet = json.load(f)
            log('telemetry of last week read from %s (--resume)' % saved)
        for eco in [e for e in ('pip', 'npm') if e in ecos and e not in fleet]:
            hosts = {}
            for i, name in enumerate(halves[eco][0]):
                host = os.path.join(work, 'fleet', eco, 'host%02d' % (i // args.users_per_host))
                scratch = os.path.join(host, name, 'cacache_%s' % eco)
                r = inst.install(eco, sets[eco][name], os.path.join(tree0, eco), scratch)
                hosts[host] = True
                log('last week %s %-28s %5.1f s %3d files fetched%s' % (
                    eco, name, r['seconds'], len(r['fetched']), ' ERROR' if r['error'] else ''))
            fleet[eco] = telemetry(eco, sorted(hosts), tree0)
            log('telemetry %s: %d hosts, %d packages' % (eco, len(hosts), len(fleet_packages(fleet[eco]))))
        times['last week installs'] = time.monotonic() - t
        with open(saved, 'w') as f:
            json.dump(fleet, f)
        results['telemetry'] = dict((e, {'packages': len(fleet_packages(src)), 'counts': fleet_packages(src),
                                         'source': dict((k, v) for k, v in src.items() if k != 'counts')})
                                    for e, src in fleet.items())
        # -- this week's list: the combined ranking
        opts1, list1, rank1 = {}, [], {}
        if 'pip' in ecos:
            list1, rank1 = ranked('pip', [dict(pip_public, weight=1.0), dict(fleet['pip'], weight=args.fleet_weight)],
                                  args.top_pip, args)
            listed_dl.update(download_listed(cache, [n for n in list1 if n not in list0]))
            opts1['pip'] = {'packages': list1}
        nlist1 = nlist0
        if 'npm' in ecos:
            nlist1, dummy = ranked('npm', [dict(npm_public, weight=1.0), dict(fleet['npm'], weight=args.fleet_weight)],
                                   args.top_npm, args)
            nnew = [n for n in nlist1 if n not in nlist0]
            if nnew:
                more, bad = npm_locks_of(dict(('listed:' + n, npm_dep(n)) for n in nnew), os.path.join(work, 'npm-locks'))
                npm_locks.update(more)
                npm_bad.update(bad)
                fill_npm_registry(os.path.join(npm_root, 'npm'), list(npm_locks.values()))
            opts1['npm'] = dict(opts0['npm'], packages=nlist1)
        env.stop()
        env, access = start_env()
        inst.env, inst.log = env, access
        t = time.monotonic()
        snap1 = build(work, store, opts1)
        times['build, this week'] = time.monotonic() - t
        log('snapshot 1: %s, %.1f MB, %d misses' % (snap1['id'][:12], snap1['bytes'] / 1e6, len(snap1['misses'])))
        tree1 = host_tree(work, store, snap1, 'week1')
        # This week's installs (and uv's build after them) over a shaped link: a repl's downloads do not come
        # over loopback.
        env.limit(args.rate)
        results['snapshot_bytes'] = snap1['bytes']
        results['snapshot1'] = {'bytes': snap1['bytes'], 'files': snap1['files'], 'misses': snap1['misses'][:80],
                                'listed': {'pip': list1, 'npm': nlist1}, 'provenance': rank1.get('provenance'),
                                'seconds': snap1['seconds'], 'left_out': snap1.get('left_out')}
        results['eco_bytes'] = dict((e, b.du(os.path.join(tree1, e))) for e in os.listdir(tree1)
                                    if os.path.isdir(os.path.join(tree1, e)))
        # -- this week's users: cold and through the view, interleaved
        t = time.monotonic()
        results['replay'] = {}
        index_root = env.index_root
        held = {'pip': held_pip(os.path.join(tree1, 'pip'), index_root)} if 'pip' in ecos else {}
        if 'npm' in ecos:
            held['npm'] = held_npm(snap1)
        for eco in [e for e in ('pip', 'npm') if e in ecos]:
            results['replay'][eco] = []
            replay_half(eco, sets, halves, inst, tree1, held, index_root, work, results['replay'][eco],
                        lambda: save(results, times, t0))
        times['this week installs'] = time.monotonic() - t
        if 'uv' in ecos:
            # uv's part joins the same snapshot in a build of its own, after pip's and npm's replay (the builder
            # reuses their parts as they are): the pip and npm figures do not wait for it.
            t = time.monotonic()
            opts2 = dict(opts1, uv={'packages': list1, 'index_url': b.INDEX, 'uv': UV, 'python': b.USER_PYTHON})
            snap2 = build(work, store, opts2)
            times['build, this week with uv'] = time.monotonic() - t
            log('snapshot 1 with uv: %s, %.1f MB, %d misses' % (snap2['id'][:12], snap2['bytes'] / 1e6, len(snap2['misses'])))
            tree2 = host_tree(work, store, snap2, 'week1-uv')
            results['snapshot_bytes'] = snap2['bytes']
            results['snapshot1_uv'] = {'bytes': snap2['bytes'], 'files': snap2['files'], 'misses': snap2['misses'][:80],
                                       'seconds': snap2['seconds']}
            results['eco_bytes'] = dict((e, b.du(os.path.join(tree2, e))) for e in os.listdir(tree2)
                                        if os.path.isdir(os.path.join(tree2, e)))
            held['uv'] = held['pip']
            t = time.monotonic()
            results['replay']['uv'] = []
            replay_half('uv', sets, halves, inst, tree2, held, index_root, work, results['replay']['uv'],
                        lambda: save(results, times, t0))
            times['this week installs, uv'] = time.monotonic() - t
    finally:
        env.stop()
    results['npm_lock_failures'] = npm_bad
    save(results, times, t0)


def replay_half(eco, sets, halves, inst, tree, held, index_root, work, rows, saved):
    """This week's sets of ``eco``, each installed cold and then through a fresh view of ``tree``: a row per set
    appended to ``rows``, and ``saved()`` called after each."""
    kind = 'npm' if eco == 'npm' else 'pip'
    for name in (reversed(halves[kind][1]) if REVERSE else halves[kind][1]):
        s = sets[kind][name]
        cold = inst.install(eco, s, None, None)
        view = inst.install(eco, s, os.path.join(tree, eco), os.path.join(work, 'scratch-replay' + TAG))
        rates = rl.set_rates(cold['fetched'], view['fetched'])
        extras = extras_reached(s, index_root) if kind == 'pip' else set()
        misses = []
        for f, size in view['fetched']:
            if kind == 'npm':
                proj, version = npm_file_package(f)
                cause = rl.classify_npm(proj, version, held['npm'][1])
            else:
                cause = rl.classify(f, held[eco][0], held[eco][1], extras)
            misses.append({'file': f, 'bytes': size, 'cause': cause})
        row = dict(rates, set=name, pinned=s['pinned'], cold_seconds=cold['seconds'], view_seconds=view['seconds'],
                   misses=misses, cold_error=cold['error'], view_error=view['error'])
        rows.append(row)
        saved()
        log('this week %s %-28s files %5.1f %% bytes %5.1f %% view %.1f s cold %.1f s%s'
            % (eco, name, row['files_pct'], row['bytes_pct'], view['seconds'], cold['seconds'],
               ' ERROR' if view['error'] or cold['error'] else ''))
    return rows


def save(results, times, t0):
    times['total'] = time.monotonic() - t0
    results['times'] = dict((k, round(v)) for k, v in times.items())
    path = os.path.join(WORKDIR, 'records%s.json' % TAG)
    with open(path, 'w') as f:
        json.dump(results, f, indent=1, default=sorted)


WORKDIR = '/var/tmp/pkgcache-replay'
TAG = ''
REVERSE = False


def uv_binary(work):
    """uv from the wheel in .cache/wheelhouse (scripts/bootstrap.sh fetches it), unpacked under ``work``."""
    import glob
    wheels = sorted(glob.glob(os.path.join(b.ROOT, '.cache', 'wheelhouse', 'uv-*.whl')))
    if not wheels:
        return None
    dest = os.path.join(work, 'uvtool')
    with zipfile.ZipFile(wheels[-1]) as z:
        member = [n for n in z.namelist() if n.endswith('/scripts/uv')][0]
        z.extract(member, dest)
    path = os.path.join(dest, member)
    os.chmod(path, 0o755)
    for d in (dest, os.path.dirname(os.path.dirname(path)), os.path.dirname(path)):
        os.chmod(d, 0o755)
    return path


def main():
    global UV, WORKDIR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--work', default=WORKDIR)
    ap.add_argument('--seed', type=int, default=22)
    ap.add_argument('--top-pip', type=int, default=300)
    ap.add_argument('--top-npm', type=int, default=150)
    ap.add_argument('--fleet-weight', type=float, default=1.0)
    ap.add_argument('--budget', type=int, default=8 * 10 ** 9)
    ap.add_argument('--ecosystems', default='pip,npm,uv')
    ap.add_argument('--min-hosts', type=int, default=3, help='the ranking\'s min_hosts (package_popularity\'s default: 3)')
    ap.add_argument('--versions', type=int, default=3, help='versions per project (package_popularity\'s default: 3)')
    ap.add_argument('--users-per-host', type=int, default=1)
    ap.add_argument('--wheelhouse', help='where the downloads are kept (default: WORK/wheelhouse)')
    ap.add_argument('--resume', action='store_true',
                    help='keep the store and last week\'s telemetry of the previous run (after a failure in the replay)')
    ap.add_argument('--rate', default='50mbit', help='tbf rate of the index link for this week\'s installs')
    ap.add_argument('--ns', default=b.NS, help='network namespace (two runs side by side need two)')
    ap.add_argument('--port', type=int, default=b.PORT)
    ap.add_argument('--user', default=b.USER)
    ap.add_argument('--tag', default='', help='a second process on the same work dir (with --resume): its own index, '
                    'host trees and records (records-TAG.json)')
    ap.add_argument('--reverse', action='store_true', help='replay this week\'s sets in reverse order (a second '
                    'process meets the first in the middle; --merge joins their rows)')
    ap.add_argument('--max-sets', type=int, default=0, help='a smoke run: at most this many sets per half')
    ap.add_argument('--merge', action='append', help='records.json of a run of other ecosystems to join in the results')
    ap.add_argument('--out', default='replay', help='results name: bench/results/OUT.md and OUT.json')
    ap.add_argument('--render', action='store_true', help='write the results from the last run\'s records only')
    args = ap.parse_args()
    args.ecosystems = args.ecosystems.split(',')
    if 'uv' in args.ecosystems and 'pip' not in args.ecosystems:
        ap.error('uv replays the pip corpus and list: give pip too')
    b.NS, b.PORT, b.USER = args.ns, args.port, args.user
    global TAG, REVERSE
    TAG, REVERSE = ('-' + args.tag if args.tag else ''), args.reverse
    b.INDEX = 'http://127.0.0.1:%d/simple/' % b.PORT
    b.REGISTRY = 'http://127.0.0.1:%d%s' % (b.PORT, b.NPM_PREFIX)
    WORKDIR = args.work
    UV = shutil.which('uv') or uv_binary(WORKDIR)
    if not args.render:
        run(args)
    import replayreport
    replayreport.render([os.path.join(WORKDIR, 'records%s.json' % TAG)] + (args.merge or []), args.out)


if __name__ == '__main__':
    main()
