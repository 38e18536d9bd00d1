"""pkgcache.overlay benchmarks (`make bench`). Run as root on a machine prepared by scripts/bootstrap.sh.

Every figure is a ratio of things measured side by side in this one run, as
the median and the spread (min..max) of several rounds. Nothing here is a
test: no figure is asserted. Results go to bench/results/<name>.md and .png.

  1. time-to-install: 20 popular packages (with dependencies) installed by a
     non-root user in a fresh venv, cold vs through the snapshot overlay vs the
     floor (--no-index --find-links), from nginx serving a static PEP 503 tree
     with PyPI's cache headers, inside a network namespace whose loopback is
     limited by a tbf qdisc (50 Mbit/s) or not limited.
  2. refresh transfer: bytes a host downloads to go from snapshot v1 to v2
     (v2 adds two packages) against the bytes of v2's new objects and of all of v2.
  3. per-user mounts at scale: the mount role against an ansible.posix.mount +
     file loop for 100 and 500 users in one container, first run and re-run.
  4. store growth: bytes the second build adds to the builder's store against
     the bytes of the packages that changed.
  5. hit rate (`--only hitrate`, opt-in; bench/hitrate.py): installs of the top N PyPI projects that a snapshot
     serves with no download, snapshot resolved jointly (as before) vs package by package (as now).
  6. weekly rebuild (`--only rebuild`, opt-in; bench/rebuild.py): the hit-rate list built again against an
     unchanged index with and without reuse of the previous resolutions, and after one project's release.

Benchmarks 2 and 4 run with the pip of this machine and with a current pip:
pip < 23.3 stores response headers inside each HTTP cache entry, >= 23.3
stores bodies apart, which changes both figures.
"""

import argparse
import datetime
import hashlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, '.cache', 'collections'))
from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder, _store, _sync  # noqa: E402

NS = 'pkgbench'
# Debian's Python, which every user can run; the build uses it too, so the cache matches the users' pip and Python.
USER_PYTHON = '/usr/bin/python3'
PORT = 8390
INDEX = 'http://127.0.0.1:%d/simple/' % PORT
USER = 'pkgbench'
PACKAGES = ['requests', 'urllib3', 'idna', 'certifi', 'charset-normalizer', 'six', 'python-dateutil', 'packaging',
            'attrs', 'pyparsing', 'typing_extensions', 'click', 'markupsafe', 'jinja2', 'pyyaml', 'iniconfig',
            'pluggy', 'tomli', 'colorama', 'wrapt']
# Heavier popular packages, so that the download is a fair share of an install (bench-only wheelhouse).
PACKAGES += ['numpy', 'pandas', 'cryptography', 'pydantic', 'protobuf']
V1 = [p for p in PACKAGES if p not in ('pyyaml', 'wrapt')]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def in_ns(argv):
    return ['ip', 'netns', 'exec', NS] + argv


def norm(name):
    import re
    return re.sub(r'[-_.]+', '-', name).lower()


# ---------------------------------------------------------------- environment

class Env(object):
    def __init__(self, work):
        self.work = work
        self.index_root = os.path.join(work, 'index')
        self.nginx = None

    def start(self, wheelhouse, extra_wheels):
        os.makedirs(self.work, exist_ok=True)
        subprocess.run(['ip', 'netns', 'del', NS], capture_output=True, check=False)
        sh(['ip', 'netns', 'add', NS])
        sh(in_ns(['ip', 'link', 'set', 'lo', 'mtu', '1500', 'up']))  # tbf drops packets larger than its burst
        self._index(wheelhouse, extra_wheels)
        import ecosystems  # pylint: disable=import-outside-toplevel
        npm_locations = ecosystems.nginx_locations()
        conf = os.path.join(self.work, 'nginx.conf')
        with open(conf, 'w') as f:
            f.write('''daemon off; worker_processes 2; pid %(w)s/nginx.pid; error_log %(w)s/nginx-error.log;
events { worker_connections 256; }
http { access_log off; sendfile on; types { application/octet-stream whl; text/html html; }
  server { listen 127.0.0.1:%(port)d; root %(root)s;
    location /simple/ { index index.html; add_header Cache-Control "max-age=600, public"; }
    location /files/ { add_header Cache-Control "max-age=365000000, immutable, public"; }
    %(npm)s } }
''' % {'w': self.work, 'port': PORT, 'root': self.index_root, 'npm': npm_locations})
        self.nginx = subprocess.Popen(in_ns(['nginx', '-c', conf, '-p', self.work]))
        for dummy in range(50):
            if subprocess.run(in_ns(['python3', '-c', 'import urllib.request; urllib.request.urlopen("%s")' % INDEX]),
                              capture_output=True, check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError('nginx did not start in the namespace')

    def _index(self, wheelhouse, extra_wheels):
        """A static PEP 503 tree: simple/<project>/index.html linking files/<wheel>#sha256=..."""
        shutil.rmtree(self.index_root, ignore_errors=True)
        files = os.path.join(self.index_root, 'files')
        os.makedirs(files)
        projects = {}
        for src in [os.path.join(wheelhouse, f) for f in os.listdir(wheelhouse)] + extra_wheels:
            name = os.path.basename(src)
            if not (name.endswith('.whl') or name.endswith('.tar.gz')):
                continue
            shutil.copy(src, files)
            digest = hashlib.sha256(open(src, 'rb').read()).hexdigest()
            projects.setdefault(norm(name.split('-')[0]), []).append((name, digest))
        for project, items in projects.items():
            d = os.path.join(self.index_root, 'simple', project)
            os.makedirs(d)
            with open(os.path.join(d, 'index.html'), 'w') as f:
                f.write('<!DOCTYPE html><html><body>\n' + ''.join(
                    '<a href="../../files/%s#sha256=%s">%s</a><br>\n' % (n, h, n) for n, h in items) + '</body></html>\n')
        with open(os.path.join(self.index_root, 'simple', 'index.html'), 'w') as f:
            f.write(''.join('<a href="%s/">%s</a><br>\n' % (p, p) for p in sorted(projects)))

    def limit(self, rate):
        subprocess.run(in_ns(['tc', 'qdisc', 'del', 'dev', 'lo', 'root']), capture_output=True, check=False)
        if rate:
            sh(in_ns(['tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', rate, 'burst', '64kb', 'latency', '100ms']))

    def stop(self):
        if self.nginx:
            self.nginx.terminate()
            self.nginx.wait()
        subprocess.run(['ip', 'netns', 'del', NS], capture_output=True, check=False)


def run_cmd(argv, env=None, data=None, cwd=None):
    full_env = None
    if env is not None:
        full_env = dict((k, v) for k, v in os.environ.items() if not k.startswith('PIP_'))
        full_env.update(env)
    proc = subprocess.run(in_ns(argv), env=full_env, capture_output=True, text=True, input=data, check=False, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def page_opener(url):
    """Fetch an index page in the bench namespace (the index only listens there): reuse's page check."""
    proc = subprocess.run(in_ns(['curl', '-sf', '--max-time', '30', url]), capture_output=True, check=False)
    if proc.returncode != 0:
        raise IOError('curl %s: exit %d' % (url, proc.returncode))
    return io.BytesIO(proc.stdout)


def build(work, name, packages, pip_version=None, reuse=False):
    p = {'packages': packages, 'requirements': None, 'index_url': INDEX, 'trusted_host': '127.0.0.1:%d' % PORT,
         'python': USER_PYTHON, 'pip_version': pip_version,
         'venv_dir': os.path.join(work, 'venv-build-%s' % (pip_version or 'default')),
         'work_dir': os.path.join(work, 'build'), 'store': os.path.join(work, 'store-' + name), 'publish': True}
    return _builder.build(p, run_cmd, now=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                          opener=page_opener if reuse else None)


def sync(store_url, snap, host_store):
    p = {'url': store_url, 'snapshot': snap, 'store': host_store, 'workers': 8, 'max_manifest_size': 1 << 30,
         'lock_timeout': 0}
    with _sync.locked(p, False):
        return _sync.sync(p, urllib.request.urlopen, now='bench')


def stats(values):
    return statistics.median(values), min(values), max(values)


def fmt(values, unit='s'):
    med, lo, hi = stats(values)
    return '%.2f%s (%.2f..%.2f)' % (med, unit, lo, hi)


def write(name, lines, plot):
    os.makedirs(os.path.join(HERE, 'results'), exist_ok=True)
    md = os.path.join(HERE, 'results', name + '.md')
    with open(md, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 3.5))
        plot(ax)
        fig.tight_layout()
        fig.savefig(os.path.join(HERE, 'results', name + '.png'), dpi=110)
        plt.close(fig)
    except ImportError:
        print('matplotlib is not installed: no plot for %s' % name)


def machine():
    users = sh([USER_PYTHON, '-c', 'import sys, ensurepip; print("%d.%d.%d" % sys.version_info[:3], ensurepip.version())']).stdout.split()
    return ('Machine: %s, %s, %d cores; users\' Python %s with pip %s (%s); %s. Run %s.'
            % (platform.node(), platform.machine(), os.cpu_count(), users[0], users[1], USER_PYTHON,
               platform.platform(), datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()))


# ---------------------------------------------------------------- 1. time-to-install

def ensure_user():
    if subprocess.run(['id', USER], capture_output=True, check=False).returncode != 0:
        sh(['useradd', '-m', '-s', '/bin/bash', USER])
    pw = sh(['getent', 'passwd', USER]).stdout.split(':')
    return int(pw[2]), int(pw[3]), pw[5]


def as_user(argv, env=None):
    """Run argv as the bench user inside the namespace; return seconds taken and the output."""
    e = ['env', '-i', 'HOME=/home/%s' % USER, 'PATH=/usr/bin:/bin', 'PIP_DISABLE_PIP_VERSION_CHECK=1',
         'PIP_CONFIG_FILE=/dev/null'] + ['%s=%s' % kv for kv in (env or {}).items()]
    start = time.monotonic()
    proc = subprocess.run(in_ns(['runuser', '-u', USER, '--'] + e + argv), capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError('%s failed: %s' % (' '.join(argv), proc.stderr[-2000:]))
    return took, proc.stdout


def mount_view(lower, target, scratch, uid, gid):
    """Mount a fresh overlay view of ``lower`` at ``target`` for the bench user (new upper and work in ``scratch``)."""
    subprocess.run(['umount', target], capture_output=True, check=False)
    shutil.rmtree(scratch, ignore_errors=True)
    for d in ('upper', 'work'):
        os.makedirs(os.path.join(scratch, d))
        os.chown(os.path.join(scratch, d), uid, gid)
    os.makedirs(target, exist_ok=True)
    os.chown(os.path.dirname(target), uid, gid)
    os.chown(target, uid, gid)
    sh(['mount', '-t', 'overlay', 'overlay', '-o', 'lowerdir=%s,upperdir=%s/upper,workdir=%s/work,index=off,xino=off'
        % (lower, scratch, scratch), target])


def install_table(title, env_line, rows, kinds, ratios, labels=None):
    """Markdown lines of a time-to-install table: rows {link: {kind: [seconds]}}, ratios [(header, num, den)]."""
    labels = labels or {}
    lines = ['# ' + title, '', machine(), env_line, '',
             '| link | ' + ' | '.join(labels.get(k, k) for k in kinds) + ' | ' + ' | '.join(r[0] for r in ratios) + ' |',
             '| --- |' + ' --- |' * (len(kinds) + len(ratios))]
    for link, t in rows.items():
        cells = [fmt(t[k]) for k in kinds]
        cells += [fmt([x / y for x, y in zip(t[num], t[den])], 'x') for dummy, num, den in ratios]
        lines.append('| %s | %s |' % (link, ' | '.join(cells)))
    return lines


def install_plot(rows, kinds, title):
    """A plot function for write(): grouped bars of the median per link and kind, min..max as error bars."""
    def plot(ax):
        links = list(rows)
        width = 0.8 / len(kinds)
        for i, kind in enumerate(kinds):
            meds = [stats(rows[l][kind])[0] for l in links]
            errs = [[m - stats(rows[l][kind])[1] for m, l in zip(meds, links)],
                    [stats(rows[l][kind])[2] - m for m, l in zip(meds, links)]]
            ax.bar([x + i * width for x in range(len(links))], meds, width, yerr=errs, label=kind, capsize=3)
        ax.set_xticks([x + width * (len(kinds) - 1) / 2 for x in range(len(links))])
        ax.set_xticklabels(links)
        ax.set_ylabel('seconds (median, min..max)')
        ax.set_title(title)
        ax.legend(fontsize=7)
    return plot


def bench_install(env, work, rounds, wheelhouse):
    uid, gid, home = ensure_user()
    snap = build(work, 'install', PACKAGES)
    host = os.path.join(work, 'host')
    res = sync('file://' + os.path.join(work, 'store-install'), snap['id'], host)
    lower = os.path.join(res['path'], 'pip')
    target = os.path.join(home, '.cache', 'pip')
    scratch = os.path.join(work, 'scratch')
    venv = os.path.join(home, 'venv-bench')
    install = [os.path.join(venv, 'bin', 'pip'), 'install', '-q', '--index-url', INDEX,
               '--trusted-host', '127.0.0.1:%d' % PORT] + PACKAGES
    floor = [os.path.join(venv, 'bin', 'pip'), 'install', '-q', '--no-index', '--find-links',
             os.path.join(env.index_root, 'files')] + PACKAGES

    def fresh_venv():
        shutil.rmtree(venv, ignore_errors=True)
        sh(['runuser', '-u', USER, '--', USER_PYTHON, '-m', 'venv', venv])

    def fresh_overlay():
        mount_view(lower, target, scratch, uid, gid)

    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    rows = {}
    for rate in ('50mbit', None):
        env.limit(rate)
        times = {'cold': [], 'overlay': [], 'floor': []}
        for dummy in range(rounds):
            fresh_venv()
            cold_cache = os.path.join(work, 'cold-cache')
            shutil.rmtree(cold_cache, ignore_errors=True)
            os.makedirs(cold_cache)
            os.chown(cold_cache, uid, gid)
            times['cold'].append(as_user(install, {'PIP_CACHE_DIR': cold_cache})[0])
            fresh_venv()
            fresh_overlay()
            took, out = as_user(install)
            times['overlay'].append(took)
            fresh_venv()
            times['floor'].append(as_user(floor, {'PIP_NO_CACHE_DIR': '1'})[0])
        rows[rate or 'no limit'] = times
    subprocess.run(['umount', target], capture_output=True, check=False)
    env.limit(None)
    kinds = ('cold', 'overlay', 'floor')
    lines = install_table('Time to install %d packages (with dependencies) in a fresh venv, as a non-root user' % len(PACKAGES),
                          'Index: nginx, static PEP 503 tree with PyPI cache headers, in a network namespace; '
                          'link: tbf qdisc on its loopback. %d rounds; median (min..max).' % rounds,
                          rows, kinds, [('cold / overlay', 'cold', 'overlay'), ('overlay / floor', 'overlay', 'floor')],
                          {'cold': 'cold cache', 'overlay': 'snapshot overlay', 'floor': 'floor (--no-index)'})
    plot = install_plot(rows, kinds, 'pip install of %d packages' % len(PACKAGES))
    write('time-to-install', lines, plot)


# ---------------------------------------------------------------- 2 and 4. transfer and growth

def object_sizes(store, snap_id):
    with open(_store.manifest_path(store, snap_id)) as f:
        m = json.load(f)
    return dict((e['sha256'], e['size']) for e in m['entries'] if e['type'] == 'file')


def bench_transfer_growth(work, rounds, pip_versions):
    transfer, growth = {}, {}
    for pv in pip_versions:
        pv, reuse = pv if isinstance(pv, tuple) else (pv, False)
        t_rows, g_rows = [], []
        for r in range(rounds):
            name = 'tg-%s-%s-%d' % (pv or 'default', 'reuse' if reuse else 'fresh', r)
            shutil.rmtree(os.path.join(work, 'store-' + name), ignore_errors=True)
            v1 = build(work, name, V1, pv, reuse)
            time.sleep(1.1)  # a later build, as next week's would be
            v2 = build(work, name, PACKAGES, pv, reuse)
            store = os.path.join(work, 'store-' + name)
            o1, o2 = object_sizes(store, v1['id']), object_sizes(store, v2['id'])
            new_bytes = sum(s for d, s in o2.items() if d not in o1)
            host = os.path.join(work, 'host-' + name)
            shutil.rmtree(host, ignore_errors=True)
            sync('file://' + store, v1['id'], host)
            fetched = sync('file://' + store, v2['id'], host)['fetched_bytes']
            t_rows.append((fetched, new_bytes, sum(o2.values())))
            # The content that changed: the files of the two added packages.
            added = [f for f in os.listdir(os.path.join(work, 'index', 'files'))
                     if norm(f.split('-')[0]) in ('pyyaml', 'wrapt')]
            changed = sum(os.path.getsize(os.path.join(work, 'index', 'files', f)) for f in added)
            g_rows.append((v2['new_bytes'], changed))
        label = 'pip %s (%s)%s' % (v2['pip_version'], 'http-v2 cache' if int(v2['pip_version'].split('.')[0]) >= 24 else 'http cache',
                                   ', reusing v1\'s resolutions' if reuse else '')
        transfer[label], growth[label] = t_rows, g_rows
    lines = ['# Refresh transfer: v1 (%d packages) to v2 (+ pyyaml, wrapt)' % len(V1), '', machine(),
             '%d rounds; median (min..max).' % rounds, '',
             '| build pip | downloaded by the host | new objects of v2 | all of v2 | downloaded / new | downloaded / all |',
             '| --- | --- | --- | --- | --- | --- |']
    for label, t in transfer.items():
        lines.append('| %s | %s | %s | %s | %s | %s |' % (
            label, fmt([x[0] / 1e6 for x in t], ' MB'), fmt([x[1] / 1e6 for x in t], ' MB'), fmt([x[2] / 1e6 for x in t], ' MB'),
            fmt([x[0] / x[1] for x in t], 'x'), fmt([x[0] / x[2] for x in t], 'x')))

    def plot_t(ax):
        labels = list(transfer)
        for i, (key, idx) in enumerate((('downloaded', 0), ('new objects', 1), ('whole snapshot', 2))):
            ax.bar([x + i * 0.25 for x in range(len(labels))], [stats([r[idx] / 1e6 for r in transfer[l]])[0] for l in labels],
                   0.25, label=key)
        ax.set_xticks([x + 0.25 for x in range(len(labels))])
        ax.set_xticklabels(labels)
        ax.set_ylabel('MB')
        ax.set_title('Refresh transfer, v1 -> v2')
        ax.legend()
    write('refresh-transfer', lines, plot_t)
    lines = ['# Store growth: bytes the second build adds to the store', '', machine(),
             '%d rounds; median (min..max).' % rounds, '',
             '| build pip | store growth | changed content (2 wheels) | growth / changed |', '| --- | --- | --- | --- |']
    for label, g in growth.items():
        cells = (label, fmt([x[0] / 1e6 for x in g], ' MB'), fmt([x[1] / 1e6 for x in g], ' MB'), fmt([x[0] / x[1] for x in g], 'x'))
        lines.append('| %s | %s | %s | %s |' % cells)

    def plot_g(ax):
        labels = list(growth)
        ax.bar(list(range(len(labels))), [stats([r[0] / 1e6 for r in growth[l]])[0] for l in labels], 0.35, label='growth')
        ax.bar([x + 0.35 for x in range(len(labels))], [stats([r[1] / 1e6 for r in growth[l]])[0] for l in labels], 0.35,
               label='changed content')
        ax.set_xticks([x + 0.17 for x in range(len(labels))])
        ax.set_xticklabels(labels)
        ax.set_ylabel('MB')
        ax.set_title('Store growth of the second build')
        ax.legend()
    write('store-growth', lines, plot_g)


# ---------------------------------------------------------------- 3. mounts at scale

SCALE_JSON = os.path.join(HERE, 'results', 'mounts-at-scale.json')


def bench_scale(work, users_list, rounds):
    """Measure each user count in its own container; sizes measured in earlier runs stay in the table, dated."""
    sys.path.insert(0, HERE)
    import scale
    results = {}
    if os.path.exists(SCALE_JSON):
        with open(SCALE_JSON) as f:
            results = dict((int(n), r) for n, r in json.load(f).items())
    for n in users_list:  # the table is rewritten after each size
        run_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
        for size, r in scale.run(work, [n], rounds).items():
            results[size] = dict(r, rounds=rounds, run=run_at, machine=machine())
        with open(SCALE_JSON, 'w') as f:
            json.dump(results, f, indent=1, sort_keys=True)
        write_scale(results)


def write_scale(results):
    lines = ['# Per-user mounts at scale: one container, through the same docker connection', '',
             'Each size is measured in its own container; role and loop of a size in the same run. '
             'Median (min..max) seconds of ansible-playbook over the rounds given.', '',
             '| users | mount role, first run | mount role, re-run | posix.mount + file loop, first run | loop, re-run '
             '| loop / role (first) | loop / role (re-run) | rounds | measured |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for n, r in sorted(results.items()):
        lines.append('| %d | %s | %s | %s | %s | %s | %s | %d | %s |' % (
            n, fmt(r['role'][0]), fmt(r['role'][1]), fmt(r['loop'][0]), fmt(r['loop'][1]),
            fmt([a / b for a, b in zip(r['loop'][0], r['role'][0])], 'x'),
            fmt([a / b for a, b in zip(r['loop'][1], r['role'][1])], 'x'), r['rounds'], r['run']))
    lines += [''] + sorted(set('- %s' % r['machine'] for r in results.values()))

    def plot(ax):
        ns = sorted(results)
        for i, (label, key, idx) in enumerate((('role first', 'role', 0), ('role re-run', 'role', 1),
                                               ('loop first', 'loop', 0), ('loop re-run', 'loop', 1))):
            ax.bar([x + i * 0.2 for x in range(len(ns))], [stats(results[n][key][idx])[0] for n in ns], 0.2, label=label)
        ax.set_xticks([x + 0.3 for x in range(len(ns))])
        ax.set_xticklabels(['%d users' % n for n in ns])
        ax.set_yscale('log')
        ax.set_ylabel('seconds (log scale)')
        ax.set_title('Mounting every user')
        ax.legend()
    write('mounts-at-scale', lines, plot)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--only', choices=['install', 'uv', 'npm', 'transfer', 'scale', 'hitrate', 'rebuild'], action='append')
    ap.add_argument('--hitrate-top', type=int, default=100, help='packages for the hit-rate benchmark (default 100)')
    ap.add_argument('--users', type=int, action='append', help='user counts for the scale benchmark (default 100 and 500)')
    ap.add_argument('--scale-rounds', type=int, default=None)
    ap.add_argument('--work', default='/var/tmp/pkgcache-bench')
    args = ap.parse_args()
    only = args.only or ['install', 'uv', 'npm', 'transfer', 'scale']
    if 'hitrate' in only:
        import hitrate  # pylint: disable=import-outside-toplevel
        hitrate.bench(args.work, args.hitrate_top)
    if 'rebuild' in only:
        import rebuild  # pylint: disable=import-outside-toplevel
        rebuild.bench(args.work, args.hitrate_top)
    only = [o for o in only if o not in ('hitrate', 'rebuild')]
    if not only:
        return
    wheelhouse = os.path.join(ROOT, '.cache', 'bench-wheelhouse')
    if not os.path.exists(os.path.join(wheelhouse, '.complete')):
        os.makedirs(wheelhouse, exist_ok=True)
        sh([USER_PYTHON, '-m', 'pip', 'download', '-q', '--disable-pip-version-check', '--only-binary', ':all:',
            '-d', wheelhouse] + PACKAGES)
        open(os.path.join(wheelhouse, '.complete'), 'w').close()
    pip_wheels = [os.path.join(ROOT, '.cache', 'pypiserver', f) for f in os.listdir(os.path.join(ROOT, '.cache', 'pypiserver'))
                  if f.startswith('pip-')]
    import ecosystems  # pylint: disable=import-outside-toplevel
    if 'npm' in only:
        ecosystems.ensure_npm_registry()
    uv = os.path.join(args.work, 'uvtool', 'bin', 'uv')
    if 'uv' in only and not os.path.exists(uv):
        sh([USER_PYTHON, '-m', 'venv', os.path.join(args.work, 'uvtool')])
        sh([os.path.join(args.work, 'uvtool', 'bin', 'pip'), 'install', '-q', '--no-index', '--find-links',
            os.path.join(ROOT, '.cache', 'wheelhouse'), 'uv'])
    env = Env(args.work)
    env.start(wheelhouse, pip_wheels)
    try:
        if 'install' in only:
            bench_install(env, args.work, args.rounds, wheelhouse)
        if 'uv' in only:
            ecosystems.bench_uv(env, args.work, args.rounds, uv)
        if 'npm' in only:
            ecosystems.bench_npm(env, args.work, args.rounds)
        if 'transfer' in only:
            current_pip = pip_wheels[0].split('-')[1] if pip_wheels else None
            # Without reuse (every build fills a fresh cache), and with it for the pip whose entries embed headers.
            bench_transfer_growth(args.work, args.rounds, [None, (None, True)] + ([current_pip] if current_pip else []))
    finally:
        env.stop()
    if 'scale' in only:
        bench_scale(args.work, args.users or [100, 500], args.scale_rounds or args.rounds)


if __name__ == '__main__':
    main()
