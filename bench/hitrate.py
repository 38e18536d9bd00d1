"""Hit rate of a snapshot: installs it serves without a download (`--only hitrate`; bench/run.py runs it).

The builder resolves every requested package on its own (one `pip install
--target` per package, in parallel, into one shared cache). Before, it
resolved the whole list in one pip run. This measures what that buys: for the
N most popular projects that have wheels for the users' Python, two snapshots
are built from the same list against the same index:

  joint: one pip install of the whole list, as the builder did before (the
         builder's own _install, cache check, key and store code);
  solo:  _builder.build as it is now (workers=4).

Both are built and measured in two set-ups: (1) the users' pip (Debian's
23.0.1, the build's default) from an index without PEP 658 metadata, which is
what that pip gets from PyPI too (it reads only the pre-PEP 714 key), so it
downloads every wheel it considers while resolving and a joint build caches
the newer versions it backtracked over as well; (2) a current pip (the wheel
in .cache/pypiserver) for the build and in the users' venvs, from the same
index serving PEP 658 metadata as PyPI does, so a resolution reads only the
METADATA of the versions it gives up.

Each snapshot is then mounted as the bench user's pip cache (a fresh upper
for every package), and every listed package is installed into a fresh venv
with `pip install <pkg>` from the same index. The nginx access log counts the
files each install fetched from /files/ and their bytes; a hit is an install
that fetched none. If the joint resolution fails, that is its result: no
snapshot, a 0 % hit rate.

The index is a static PEP 503 tree (nginx, PyPI's cache headers, in the bench
network namespace) over a wheelhouse filled from PyPI with one
`pip download --only-binary :all: <pkg>` per package (so it holds every
version each solo install picks) plus one joint download of the whole list
(so it holds what the joint resolution picks too). It is kept under the bench
work dir with a stamp per download, so reruns are quick.
"""

import contextlib
import datetime
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import zipfile

import common as b
from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc  # noqa: E402 (common puts it on sys.path)

FIXTURE = os.path.join(b.ROOT, 'tests', 'unit', 'fixtures', 'popularity', 'top-pypi-packages-30-days.min.json')
# The popularity fixture has only 16 rows. The list goes on with PyPI's most downloaded projects in rank order
# (ranks 1..200 of November 2026); projects already taken from the fixture are skipped.
RANKED = '''boto3 packaging urllib3 certifi idna requests typing-extensions charset-normalizer setuptools botocore
cryptography aiobotocore python-dateutil six pyyaml pydantic pygments cffi click numpy pluggy pycparser
pydantic-core grpcio-status anyio s3transfer attrs protobuf h11 pytest annotated-types iniconfig fsspec httpx
httpcore typing-inspection pandas pip s3fs markupsafe platformdirs python-dotenv pathspec pyjwt jinja2 rich
jmespath markdown-it-py aiohttp filelock importlib-metadata yarl starlette multidict jsonschema zipp uvicorn
propcache wheel mdurl pyasn1 pytz google-auth googleapis-common-protos frozenlist litellm fastapi rpds-py
tqdm annotated-doc aiosignal referencing jsonschema-specifications trove-classifiers tzdata google-api-core
aiohappyeyeballs pillow virtualenv greenlet colorama pyasn1-modules typer grpcio opentelemetry-sdk tenacity
wrapt requests-oauthlib opentelemetry-api pyarrow awscli websockets opentelemetry-semantic-conventions
python-multipart scipy sniffio pydantic-settings sqlalchemy pyparsing shellingham tomli lxml beautifulsoup4
oauthlib soupsieve psutil regex cachetools textual sglang openai exceptiongroup hatchling opentelemetry-proto
more-itertools requests-toolbelt watchfiles rsa tomlkit proto-plus distro distlib jiter mcp websocket-client
mypy-extensions opentelemetry-exporter-otlp-proto-http langchain openpyxl et-xmlfile sse-starlette wcwidth
editables coverage docutils huggingface-hub grpcio-tools pydantic-ai-slim dnspython werkzeug networkx
google-cloud-storage redis gitpython google-genai msgpack psycopg2-binary pyopenssl ptyprocess decorator
python-discovery opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-common smmap
pexpect opentelemetry-instrumentation ruff docker pynacl sortedcontainers keyring docstring-parser uvloop
httptools fonttools multiprocess tabulate gitdb matplotlib isodate async-timeout httpx-sse prompt-toolkit
jaraco-classes azure-core secretstorage jeepney azure-identity scikit-learn itsdangerous flask
google-cloud-core hf-xet bcrypt jaraco-functools kiwisolver jaraco-context dill joblib pytest-cov
pytest-asyncio contourpy alembic orjson email-validator deprecated msal google-resumable-media google-crc32c
chardet'''.split()
MAX_TREE_MB = 400  # a project whose wheels (with dependencies) weigh more is left out of the list
DOWNLOAD_TIMEOUT = 900
WORKERS = 4
MODES = ('joint', 'solo')


class JointFailed(Exception):
    """The joint resolution of the whole list failed: the old builder made no snapshot."""


def candidates():
    with open(FIXTURE) as f:
        names = [r['project'] for r in json.load(f)['rows']]
    seen, out = set(), []
    for name in names + RANKED:
        if b.norm(name) not in seen:
            seen.add(b.norm(name))
            out.append(name)
    return out, len(names)


def wheel_project(filename):
    """(normalised project, version) of a wheel or sdist file name."""
    if filename.endswith('.whl'):
        parts = filename[:-4].split('-')
        return b.norm(parts[0]), parts[1]
    stem = re.sub(r'\.(tar\.gz|zip)$', '', filename)
    name, dummy, version = stem.rpartition('-')
    return b.norm(name), version


def tail(text, lines=4):
    keep = [l for l in (text or '').splitlines() if l.strip() and 'is ignored: it is neither a file' not in l]
    return ' / '.join(l.strip() for l in keep[-lines:])


def download(dest, specs, python=None):
    """One `pip download --only-binary :all:` of ``specs`` into ``dest`` with this machine's pip settings (cached);
    ``python``: whose pip (default the users' Python)."""
    stamp = os.path.join(dest, '.done.json')
    if os.path.exists(stamp):
        with open(stamp) as f:
            return json.load(f)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    cmd = [python or b.USER_PYTHON, '-m', 'pip', 'download', '--disable-pip-version-check', '--only-binary', ':all:',
           '-d', dest] + specs
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=DOWNLOAD_TIMEOUT)
        ok, reason = proc.returncode == 0, '' if proc.returncode == 0 else tail(proc.stderr or proc.stdout)
    except subprocess.TimeoutExpired:
        ok, reason = False, 'pip download took more than %d s' % DOWNLOAD_TIMEOUT
    files = sorted(f for f in os.listdir(dest) if not f.startswith('.'))
    info = {'ok': ok, 'reason': reason, 'files': files, 'seconds': round(time.monotonic() - start, 1),
            'bytes': sum(os.path.getsize(os.path.join(dest, f)) for f in files)}
    with open(stamp, 'w') as f:
        json.dump(info, f, indent=1)
    return info


def fresh_venv_projects():
    """Projects a fresh venv of the users' Python already has (pip install of one of them downloads nothing)."""
    tmp = '/tmp/pkgcache-hitrate-venv-probe'
    shutil.rmtree(tmp, ignore_errors=True)
    b.sh([b.USER_PYTHON, '-m', 'venv', tmp])
    out = b.sh([os.path.join(tmp, 'bin', 'python'), '-m', 'pip', 'list', '--format=json', '--disable-pip-version-check'],
               env=dict(os.environ, PIP_CONFIG_FILE=os.devnull)).stdout
    shutil.rmtree(tmp)
    return dict((b.norm(x['name']), x['version']) for x in json.loads(out))


def select(top, cache_dir):
    """The first ``top`` candidates whose own download (with dependencies) succeeds with wheels only."""
    names, from_fixture = candidates()
    in_venv = fresh_venv_projects()
    chosen, skipped, infos = [], [], {}
    for name in names:
        if len(chosen) >= top:
            break
        if b.norm(name) in in_venv:
            skipped.append((name, 'already in a fresh venv (%s %s): pip install does nothing'
                            % (b.norm(name), in_venv[b.norm(name)])))
            continue
        info = download(os.path.join(cache_dir, 'pkg', b.norm(name)), [name])
        own = [f for f in info['files'] if wheel_project(f)[0] == b.norm(name)]
        if not info['ok']:
            skipped.append((name, 'no wheels for %s: %s' % (b.USER_PYTHON, info['reason'][-300:])))
        elif not own or not own[0].endswith('.whl'):
            skipped.append((name, 'its own file is not a wheel'))
        elif info['bytes'] > MAX_TREE_MB * 1e6:
            skipped.append((name, 'its wheels weigh %.0f MB (> %d MB)' % (info['bytes'] / 1e6, MAX_TREE_MB)))
        else:
            chosen.append(name)
            infos[name] = info
            print('hitrate: %3d %-40s %3d files %7.1f MB' % (len(chosen), name, len(info['files']), info['bytes'] / 1e6))
    return chosen, skipped, infos, from_fixture


def wheelhouse(cache_dir, chosen, joint_info, name='flat'):
    """A flat dir (``name``) of hard links to every file of the chosen packages' downloads and of the joint download."""
    flat = os.path.join(cache_dir, name)
    shutil.rmtree(flat, ignore_errors=True)
    os.makedirs(flat)
    dirs = [os.path.join(cache_dir, 'pkg', b.norm(n)) for n in chosen]
    if joint_info:
        dirs.append(joint_info['dir'])
    for d in dirs:
        for f in os.listdir(d):
            if not f.startswith('.') and not os.path.exists(os.path.join(flat, f)):
                os.link(os.path.join(d, f), os.path.join(flat, f))
    return flat


# ---------------------------------------------------------------- builds

def params(work, name, packages, pip_version):
    return {'packages': packages, 'requirements': None, 'index_url': b.INDEX, 'trusted_host': '127.0.0.1:%d' % b.PORT,
            'python': b.USER_PYTHON, 'pip_version': pip_version,
            'venv_dir': os.path.join(work, 'venv-build-%s' % (pip_version or 'default')),
            'work_dir': os.path.join(work, 'build-' + name), 'store': os.path.join(work, 'store-' + name),
            'publish': True, 'workers': WORKERS}


def conflict(text):
    """The lines of pip's output that say why a resolution failed."""
    lines = [l.rstrip() for l in (text or '').splitlines() if l.strip() and 'WARNING' not in l]
    if 'The conflict is caused by:' in lines:
        i = lines.index('The conflict is caused by:')
        keep = [lines[i - 1]] if i else []
        keep += [l.strip() for l in lines[i + 1:] if l.startswith('    ')][:8]
        return ' / '.join(keep)
    errors = [l.strip() for l in lines if l.startswith('ERROR')]
    return ' / '.join(errors[-3:]) or pc.tail(text, 3)


@contextlib.contextmanager
def joint_filler():
    """Make _builder.build fill its cache the way it did before: one pip run over the whole list."""
    solo_fill = pc.fill_cache

    def fill(vpy, p, specs, cache, scratch, run, reused=None):  # pylint: disable=unused-argument
        out = {}

        def keep(argv, env=None, data=None):
            rc, so, se = run(argv, env, data)
            out['text'] = (so or '') + '\n' + (se or '')
            return rc, so, se

        rc, data, dummy = pc._install(vpy, p, specs, cache, scratch, keep)  # pylint: disable=protected-access
        if rc != 0:
            raise JointFailed(conflict(out.get('text')))
        return pc.parse_report(data), [], {}

    pc.fill_cache = fill
    try:
        yield
    finally:
        pc.fill_cache = solo_fill


def build(work, name, mode, packages, pip_version):
    p = params(work, name, packages, pip_version)
    for d in (p['store'], p['work_dir']):
        shutil.rmtree(d, ignore_errors=True)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    start = time.monotonic()
    try:
        if mode == 'joint':
            with joint_filler():
                snap = b._builder.build(p, b.run_cmd, now=now)  # pylint: disable=protected-access
        else:
            snap = b._builder.build(p, b.run_cmd, now=now)  # pylint: disable=protected-access
        snap['failed'] = None
    except JointFailed as exc:
        snap = {'failed': str(exc), 'misses': [], 'packages': [], 'bytes': 0, 'files': 0}
    snap['seconds'] = time.monotonic() - start
    return snap


# ---------------------------------------------------------------- index

def serve_metadata(index_root):
    """Serve PEP 658 metadata as PyPI does: files/<wheel>.metadata, and data-core-metadata (PEP 714) on every link.

    With it, a pip that reads the key (>= 23.2) learns a candidate's dependencies without downloading the
    wheel, so a resolution that backtracks fetches (and caches) only the METADATA of the versions it gives
    up. pip 23.0.1 asks for JSON pages and reads only their old key (dist-info-metadata), which PyPI does
    not send (PEP 714), so against PyPI it downloads every wheel it considers. (Given the old HTML key,
    data-dist-info-metadata, pip 23.0.1 fails on every project whose METADATA Name differs from the
    requested name in case or separators, e.g. PyYAML, typing_extensions: it compares them unnormalised.)
    """
    files = os.path.join(index_root, 'files')
    digests = {}
    for name in os.listdir(files):
        if not name.endswith('.whl'):
            continue
        with zipfile.ZipFile(os.path.join(files, name)) as z:
            meta = [n for n in z.namelist() if n.count('/') == 1 and n.endswith('.dist-info/METADATA')]
            data = z.read(meta[0])
        with open(os.path.join(files, name + '.metadata'), 'wb') as f:
            f.write(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    simple = os.path.join(index_root, 'simple')
    for project in os.listdir(simple):
        page = os.path.join(simple, project, 'index.html')
        if not os.path.isfile(page):
            continue
        with open(page) as f:
            text = f.read()
        text = re.sub(r'<a href="../../files/([^"#]+)#',
                      lambda m: '<a data-core-metadata="sha256=%s" href="../../files/%s#'
                      % (digests[m.group(1)], m.group(1)) if m.group(1) in digests else m.group(0),
                      text)
        with open(page, 'w') as f:
            f.write(text)


def held(lower, index_root):
    """{project: {version}} of the wheels whose download ``lower`` (a pip cache) holds, found by their URLs."""
    out = {}
    for name in os.listdir(os.path.join(index_root, 'files')):
        if name.endswith('.whl') and pc.url_cached(lower, 'http://127.0.0.1:%d/files/%s' % (b.PORT, name)):
            proj, version = wheel_project(name)
            out.setdefault(proj, set()).add(version)
    return out


# ---------------------------------------------------------------- installs

def enable_access_log(env):
    """Log every request of the bench's nginx (status, bytes sent, URI) and reload it; return the log path."""
    log = os.path.join(env.work, 'access.log')
    if os.path.exists(log):
        os.remove(log)
    conf = os.path.join(env.work, 'nginx.conf')
    with open(conf) as f:
        text = f.read()
    text = text.replace('access_log off;', "log_format hitrate '$status $body_bytes_sent $request_uri'; "
                                           "access_log %s hitrate;" % log)
    with open(conf, 'w') as f:
        f.write(text)
    b.sh(b.in_ns(['nginx', '-c', conf, '-p', env.work, '-s', 'reload']))
    for dummy in range(100):
        subprocess.run(b.in_ns(['python3', '-c', 'import urllib.request; urllib.request.urlopen("%s")' % b.INDEX]),
                       capture_output=True, check=False)
        if os.path.exists(log) and os.path.getsize(log):
            return log
        time.sleep(0.1)
    raise RuntimeError('nginx did not start its access log')


def fetched_files(log, offset):
    """[(file name, bytes)] of the /files/ requests nginx served since ``offset``."""
    with open(log) as f:
        f.seek(offset)
        lines = f.read().splitlines()
    out = []
    for line in lines:
        status, size, uri = line.split(' ', 2)
        if uri.startswith('/files/') and status in ('200', '206'):
            out.append((os.path.basename(uri), int(size)))
    return out


PIP_DOWNLOADING = re.compile(r'^\s*Downloading (\S+)')
PIP_CACHED = re.compile(r'^\s*Using cached (\S+)')


def pristine_venv(home, pip_wheel):
    """A venv that /usr/bin/python3 -m venv made as the bench user at ~/venv-hitrate (its pip upgraded from
    ``pip_wheel`` if given), kept aside to be copied back before every install."""
    venv = os.path.join(home, 'venv-hitrate')
    pristine = os.path.join(home, '.venv-hitrate-pristine-' + (os.path.basename(pip_wheel) if pip_wheel else 'debian'))
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.rmtree(venv, ignore_errors=True)
    b.sh(['runuser', '-u', b.USER, '--', b.USER_PYTHON, '-m', 'venv', venv])
    if pip_wheel:
        wheel = os.path.join('/tmp', os.path.basename(pip_wheel))
        shutil.copy(pip_wheel, wheel)
        os.chmod(wheel, 0o644)
        b.sh(['runuser', '-u', b.USER, '--', os.path.join(venv, 'bin', 'python'), '-m', 'pip', 'install', '-q',
              '--no-index', '--no-cache-dir', '--disable-pip-version-check', wheel])
        os.remove(wheel)
    b.sh(['cp', '-a', venv, pristine])
    return pristine


def measure(lower, packages, log, home, uid, gid, work, pip_wheel):
    """Install every package alone through a fresh view of ``lower``; return a record per package."""
    target = os.path.join(home, '.cache', 'pip')
    scratch = os.path.join(work, 'scratch-hitrate')
    venv = os.path.join(home, 'venv-hitrate')
    subprocess.run(['umount', target], capture_output=True, check=False)
    pristine = pristine_venv(home, pip_wheel)
    records = []
    for pkg in packages:
        # A fresh venv: a copy of one that /usr/bin/python3 -m venv made at this path (same bytes, 3 s less).
        shutil.rmtree(venv)
        b.sh(['cp', '-a', pristine, venv])
        b.mount_view(lower, target, scratch, uid, gid)
        offset = os.path.getsize(log)
        error, out = None, ''
        start = time.monotonic()
        try:
            dummy, out = b.as_user([os.path.join(venv, 'bin', 'pip'), 'install', '--index-url', b.INDEX,
                                    '--trusted-host', '127.0.0.1:%d' % b.PORT, pkg])
        except RuntimeError as exc:
            error = tail(str(exc), 3)
        took = time.monotonic() - start
        fetched = fetched_files(log, offset)
        files = [(n, s) for n, s in fetched if not n.endswith('.metadata')]
        said = [os.path.basename(m.group(1)) for m in map(PIP_DOWNLOADING.match, out.splitlines()) if m]
        cached = [os.path.basename(m.group(1)) for m in map(PIP_CACHED.match, out.splitlines()) if m]
        rec = {'package': pkg, 'error': error, 'files': files, 'bytes': sum(s for dummy, s in files),
               'metadata': [(n, s) for n, s in fetched if n.endswith('.metadata')],
               'pip_downloading': said, 'pip_cached': len(cached), 'seconds': round(took, 2)}
        records.append(rec)
        print('hitrate: %-40s %s %2d files %8.2f MB%s' % (pkg, 'hit ' if not files and not error else 'MISS',
                                                          len(files), rec['bytes'] / 1e6,
                                                          ' ERROR ' + error if error else ''))
    subprocess.run(['umount', target], capture_output=True, check=False)
    return records


# ---------------------------------------------------------------- report

# The two set-ups measured: the users' pip (Debian's 23.0.1, which the build uses by default) from an index
# without PEP 658 metadata (what it gets from PyPI too, see serve_metadata), and a current pip (build_pip_version,
# and the same pip in the users' venvs) from the same index serving PEP 658 metadata, as PyPI does.
VARIANTS = ('plain', 'pep658')
INDEX_LABELS = {'plain': 'no PEP 658 metadata', 'pep658': 'PEP 658 metadata'}


def summary(snap, records, listed):
    if snap['failed']:
        return {'listed': len(listed), 'reported': None, 'hits': 0, 'rate': 0.0, 'rate_ok': 0.0, 'files': None,
                'mean': None, 'max': None, 'total': None, 'metadata': None}
    reported = set(b.norm(m['package']) for m in snap['misses']) & set(b.norm(p) for p in listed)
    hits = [r for r in records if not r['files'] and not r['error']]
    ok_listed = [p for p in listed if b.norm(p) not in reported]
    ok_hits = [r for r in hits if b.norm(r['package']) not in reported]
    sizes = [r['bytes'] for r in records]
    return {'listed': len(listed), 'reported': len(reported), 'hits': len(hits), 'rate': len(hits) / len(listed),
            'rate_ok': len(ok_hits) / len(ok_listed) if ok_listed else 0.0,
            'files': sum(len(r['files']) for r in records), 'mean': sum(sizes) / len(sizes), 'max': max(sizes),
            'total': sum(sizes), 'metadata': sum(len(r['metadata']) for r in records)}


def mb(n):
    return '%.2f' % (n / 1e6)


def report(top, chosen, skipped, infos, from_fixture, joint_download, runs, times, machine):
    """runs: {(index, mode): {'snap', 'records', 'held'}}."""
    keys = list(runs)
    sums = dict((k, summary(runs[k]['snap'], runs[k]['records'], chosen)) for k in keys)
    some = next(r['snap'] for r in runs.values() if not r['snap']['failed'])
    pips = dict((k[0], r['snap']['pip_version']) for k, r in runs.items() if r['snap'].get('pip_version'))

    def label(index):
        return 'pip %s, %s' % (pips.get(index, '?'), INDEX_LABELS[index])
    cold = [infos[n]['bytes'] for n in chosen]
    lines = ['# Hit rate: installs that the snapshot serves without a download', '', machine, '',
             'Packages: the first %d projects of PyPI\'s most downloaded (the %d rows of '
             '`tests/unit/fixtures/popularity/top-pypi-packages-30-days.min.json`, then the download ranks of '
             'November 2026) whose `pip download --only-binary :all:` with dependencies succeeds for %s '
             '(Python %s, %s). Wheelhouse: one `pip download` per package from PyPI, plus one joint download of '
             'the whole list, served by nginx as a static PEP 503 tree with PyPI\'s cache headers in the bench '
             'network namespace. Joint: one `pip install` of the whole list (the builder before); solo: '
             '`_builder.build` as now, %d workers. Each install: a fresh venv of the bench user, a fresh upper over '
             'the snapshot, `pip install <pkg>` from the same index; wheels fetched = /files/ requests in the nginx '
             'access log for that install; a hit fetched none.'
             % (len(chosen), from_fixture, b.USER_PYTHON, some.get('python_version', '?'), os.uname().machine,
                WORKERS), '',
             'Two set-ups, each with both snapshots: (1) the users\' pip, Debian\'s %s, which builds use by default, '
             'from an index without PEP 658 metadata. That is what this pip gets from PyPI too: it asks for the JSON '
             'pages and reads PEP 658 metadata only under their `dist-info-metadata` key, which PyPI does not send '
             '(PEP 714 renamed it `core-metadata`), so it downloads every wheel it considers while resolving. '
             '(2) a current pip (%s) for the build (`build_pip_version`) and in the users\' venvs, from the same index '
             'serving PEP 658 metadata (`data-core-metadata`, as '
             'PyPI): a resolution then reads the METADATA of the versions it gives up, not their wheels.'
             % (pips.get('plain', '?'), pips.get('pep658', '?')), '']
    if len(chosen) < top:
        lines += ['Only %d of the %d packages asked for (--hitrate-top) qualified from the candidates.' % (len(chosen), top), '']
    lines += ['| set-up | mode | packages listed | misses the build reported | build | snapshot | hits | hit rate | '
              'hit rate (not reported) | wheels fetched | MB fetched per install: mean | max | total | metadata files fetched |',
              '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for k in keys:
        (index, mode), s, snap = k, sums[k], runs[k]['snap']
        if snap['failed']:
            lines.append('| %s | %s | %d | joint resolution failed: %s | %.0f s | none | 0 | 0 %% | 0 %% | - | - | - | - | - |'
                         % (label(index), mode, s['listed'], snap['failed'].replace('|', '/'), snap['seconds']))
            continue
        wheels = sum(len(v) for v in runs[k]['held'].values())
        lines.append('| %s | %s | %d | %d (%d entries) | %.0f s | %s MB, %d wheels | %d | %.1f %% | %.1f %% | %d | %s | %s | %s | %d |' % (
            label(index), mode, s['listed'], s['reported'], len(snap['misses']), snap['seconds'], mb(snap['bytes']), wheels,
            s['hits'], 100 * s['rate'], 100 * s['rate_ok'], s['files'], mb(s['mean']), mb(s['max']), mb(s['total']),
            s['metadata']))
    lines += ['', 'Without a snapshot every install fetches its whole tree: %s MB on average (max %s, total %s) for these '
              'packages (the sizes of their downloads).' % (mb(sum(cold) / len(cold)), mb(max(cold)), mb(sum(cold))),
              '', 'Joint download from PyPI (the whole list in one `pip download`): %s.'
              % ('%d files, %s MB, %.0f s' % (len(joint_download['files']), mb(joint_download['bytes']), joint_download['seconds'])
                 if joint_download['ok'] else 'FAILED: ' + joint_download['reason'])]
    versions = {}
    for f in [f for n in chosen for f in infos[n]['files']] + (joint_download['files'] if joint_download['ok'] else []):
        proj, version = wheel_project(f)
        versions.setdefault(proj, set()).add(version)
    multi = sorted('%s (%s)' % (p, ', '.join(sorted(v))) for p, v in versions.items() if len(v) > 1)
    lines += ['', 'The index holds, per project, only the versions these downloads picked: %d projects, %d of them in '
              'more than one version: %s. So a joint resolution backtracks over few versions here; against PyPI, '
              'pip 23.0.1 would also download (and a joint build cache) every release it walks past.'
              % (len(versions), len(multi), '; '.join(multi) or 'none')]
    for k in keys:
        (index, mode), snap, have = k, runs[k]['snap'], runs[k]['held']
        lines += ['', '## %s, %s: misses' % (label(index), mode), '']
        if snap['failed']:
            lines += ['Joint resolution failed, no snapshot: ' + snap['failed']]
            continue
        resolved = held_versions(snap)
        for miss in snap['misses']:
            lines.append('- reported by the build: %s %s: %s' % (miss['package'], miss['version'], miss['reason'][:300]))
        missed = [r for r in runs[k]['records'] if r['files'] or r['error']]
        if not missed and not snap['misses']:
            lines.append('none: every install was served from the snapshot')
        for r in missed:
            parts = []
            for name, size in r['files']:
                proj, version = wheel_project(name)
                parts.append('%s %s (%s MB; snapshot holds %s)' % (proj, version, mb(size),
                                                                   ', '.join(sorted(have.get(proj, []))) or 'no version'))
            lines.append('- `%s`: %s%s' % (r['package'], '; '.join(parts) or 'no file',
                                           ' (install failed: %s)' % r['error'] if r['error'] else ''))
        if mode == 'joint':
            extra = sorted('%s %s' % (p, v) for p, vs in have.items() for v in vs if v not in resolved.get(p, set()))
            lines += ['', 'The joint snapshot holds %d wheels, %d of them versions that the joint resolution did not '
                      'pick (pip downloaded them while backtracking)%s' % (
                          sum(len(v) for v in have.values()), len(extra), ': ' + ', '.join(extra) + '.' if extra else '.')]
            shared = {}
            for r in missed:
                for name, dummy in r['files']:
                    shared.setdefault(wheel_project(name), []).append(r['package'])
            if shared:
                lines += ['', 'Wheels the joint snapshot lacked, by how many installs fetched them:', '']
                for (proj, version), pkgs in sorted(shared.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                    lines.append('- %s %s (joint resolution picked %s): %d installs (%s)' % (
                        proj, version, ', '.join(sorted(resolved.get(proj, []))) or 'none', len(pkgs), ', '.join(pkgs)))
    lines += ['', '## Candidates left out', '']
    lines += ['- %s: %s' % (n, r) for n, r in skipped] or ['none']
    lines += ['', '## Run time', '',
              '%s; total %.0f s. Filling the wheelhouse (kept across runs) took %.0f s (one download per '
              'package) and %.0f s (the joint download).'
              % (', '.join('%s %.0f s' % kv for kv in times.items() if kv[0] != 'total'), times['total'],
                 sum(infos[n]['seconds'] for n in chosen), joint_download['seconds']),
              '', 'Packages, in order: ' + ', '.join(chosen) + '.']

    def plot(ax):
        fig = ax.figure
        fig.set_size_inches(9, 3.8)
        ax.remove()
        ax1, ax2 = fig.subplots(1, 2)
        indexes = list(dict.fromkeys(k[0] for k in keys))
        x = list(range(len(indexes)))
        width = 0.8 / len(MODES)
        for i, mode in enumerate(MODES):
            xs = [j + (i - (len(MODES) - 1) / 2) * width for j in x]
            rates = [100 * sums[(ix, mode)]['rate'] for ix in indexes]
            ax1.bar(xs, rates, width, label=mode)
            for xx, rr, ix in zip(xs, rates, indexes):
                ax1.text(xx, rr + 1, 'failed' if runs[(ix, mode)]['snap']['failed'] else '%.0f%%' % rr,
                         ha='center', fontsize=7)
            means = [(sums[(ix, mode)]['mean'] or 0) / 1e6 for ix in indexes]
            ax2.bar(xs, means, width, label=mode + ' (mean)',
                    yerr=[[0] * len(indexes),
                          [((sums[(ix, mode)]['max'] or 0) - (sums[(ix, mode)]['mean'] or 0)) / 1e6 for ix in indexes]],
                    capsize=3)
            for xx, mm in zip(xs, means):
                ax2.text(xx + width * 0.1, mm, ' %.2f' % mm, ha='left', va='bottom', fontsize=7)
        for ax_ in (ax1, ax2):
            ax_.set_xticks(x)
            ax_.set_xticklabels([label(ix).replace(', ', '\n') for ix in indexes], fontsize=8)
            ax_.legend(fontsize=7)
        ax1.set_ylim(0, 110)
        ax1.set_ylabel('% of installs with no download')
        ax1.set_title('Hit rate, %d packages' % len(chosen), fontsize=9)
        ax2.set_ylim(bottom=0)
        ax2.set_ylabel('MB per install (bar: mean, line: max)')
        ax2.set_title('MB fetched per install (no snapshot: %.1f mean)' % (sum(cold) / len(cold) / 1e6), fontsize=9)
    b.write('hit-rate', lines, plot)


def held_versions(snap):
    """{project: {version}} that the build's resolution(s) picked."""
    out = {}
    for x in snap.get('packages', []):
        out.setdefault(b.norm(x['name']), set()).add(x['version'])
    return out


def save(path, top, chosen, skipped, infos, from_fixture, joint_download, runs, times, machine):
    """The raw records, for a closer look and for render() (not part of the results)."""
    data = {'top': top, 'chosen': chosen, 'skipped': skipped, 'infos': infos, 'from_fixture': from_fixture,
            'joint_download': joint_download, 'times': times, 'machine': machine, 'runs': []}
    for (index, mode), r in runs.items():
        snap = dict((k, v) for k, v in r['snap'].items() if k in ('failed', 'misses', 'packages', 'bytes', 'files',
                                                                  'seconds', 'id', 'pip_version', 'python_version'))
        data['runs'].append({'index': index, 'mode': mode, 'snap': snap, 'records': r['records'],
                             'held': dict((p, sorted(v)) for p, v in r['held'].items())})
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)


def render(path='/var/tmp/pkgcache-bench/hitrate/records.json'):
    """Write bench/results/hit-rate.md and .png again from the records of the last run (no measuring)."""
    with open(path) as f:
        d = json.load(f)
    runs = dict(((r['index'], r['mode']), {'snap': r['snap'], 'records': r['records'],
                                           'held': dict((p, set(v)) for p, v in r['held'].items())}) for r in d['runs'])
    report(d['top'], d['chosen'], [tuple(x) for x in d['skipped']], d['infos'], d['from_fixture'], d['joint_download'],
           runs, d['times'], d['machine'])


# ---------------------------------------------------------------- main

def bench(work, top, variants=VARIANTS):
    t0 = time.monotonic()
    times = {}
    uid, gid, home = b.ensure_user()
    cache_dir = os.path.join(work, 'hitrate-wheelhouse')
    hwork = os.path.join(work, 'hitrate')
    os.makedirs(cache_dir, exist_ok=True)
    os.makedirs(hwork, exist_ok=True)
    for d in (work, hwork):
        os.chmod(d, 0o755)
    chosen, skipped, infos, from_fixture = select(top, cache_dir)
    joint_key = pc.fingerprint(sorted(b.norm(n) for n in chosen))[:12]
    joint_download = download(os.path.join(cache_dir, 'joint-' + joint_key), chosen)
    joint_download['dir'] = os.path.join(cache_dir, 'joint-' + joint_key)
    times['downloads'] = time.monotonic() - t0
    flat = wheelhouse(cache_dir, chosen, joint_download)
    pip_wheels = sorted(glob.glob(os.path.join(b.ROOT, '.cache', 'pypiserver', 'pip-*.whl')))
    if not pip_wheels:
        print('hitrate: no current pip wheel in .cache/pypiserver (scripts/bootstrap.sh): pip 23.0.1 only')
        variants = [v for v in variants if v != 'pep658']
    runs = {}
    for index in variants:
        pip_wheel = pip_wheels[-1] if index == 'pep658' else None
        pip_version = os.path.basename(pip_wheel).split('-')[1] if pip_wheel else None
        env = b.Env(hwork)
        env.start(flat, pip_wheels)
        try:
            if index == 'pep658':
                serve_metadata(env.index_root)
            log = enable_access_log(env)
            for mode in MODES:
                name = '%s-%s' % (index, mode)
                t = time.monotonic()
                snap = build(hwork, name, mode, chosen, pip_version)
                times['%s build' % name] = time.monotonic() - t
                print('hitrate: %s build: %s' % (name, snap['failed'] or '%d files, %.1f MB, %d misses' % (
                    snap['files'], snap['bytes'] / 1e6, len(snap['misses']))))
                runs[(index, mode)] = {'snap': snap, 'records': [], 'held': {}}
                if snap['failed']:
                    continue
                t = time.monotonic()
                host = os.path.join(hwork, 'host-' + name)
                shutil.rmtree(host, ignore_errors=True)
                res = b.sync('file://' + os.path.join(hwork, 'store-' + name), snap['id'], host)
                lower = os.path.join(res['path'], 'pip')
                runs[(index, mode)]['held'] = held(lower, env.index_root)
                runs[(index, mode)]['records'] = measure(lower, chosen, log, home, uid, gid, hwork, pip_wheel)
                times['%s installs' % name] = time.monotonic() - t
        finally:
            env.stop()
    times['total'] = time.monotonic() - t0
    path = os.path.join(hwork, 'records.json')
    save(path, top, chosen, skipped, infos, from_fixture, joint_download, runs, times, b.machine())
    render(path)
