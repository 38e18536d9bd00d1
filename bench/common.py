"""What the benchmarks share: the bench namespace and its index, builds, syncs, the bench user, tables and plots.

bench/run.py (the entry point) and the benchmark files (ecosystems, hitrate,
rebuild, scale) import this module; none of them imports run.py.
"""

import contextlib
import datetime
import hashlib
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, '.cache', 'collections'))
from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder, _sync  # noqa: E402

NS = 'pkgbench'
# Debian's Python, which every user can run; the build uses it too, so the cache matches the users' pip and Python.
USER_PYTHON = '/usr/bin/python3'
PORT = 8390
INDEX = 'http://127.0.0.1:%d/simple/' % PORT
USER = 'pkgbench'
# The static npm registry (bench/ecosystems.py fills it) that the index server also serves, under NPM_PREFIX.
NPM_PREFIX = '/npm/'
REGISTRY = 'http://127.0.0.1:%d%s' % (PORT, NPM_PREFIX)
NPM_ROOT = os.path.join(ROOT, '.cache', 'bench-npm-registry')


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def in_ns(argv):
    return ['ip', 'netns', 'exec', NS] + argv


def norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


# ---------------------------------------------------------------- environment

class Env(object):
    def __init__(self, work):
        self.work = work
        self.index_root = os.path.join(work, 'index')
        self.nginx = None
        self.log = os.path.join(work, 'access.log')

    def start(self, wheelhouse, extra_wheels):
        os.makedirs(self.work, exist_ok=True)
        subprocess.run(['ip', 'netns', 'del', NS], capture_output=True, check=False)
        sh(['ip', 'netns', 'add', NS])
        sh(in_ns(['ip', 'link', 'set', 'lo', 'mtu', '1500', 'up']))  # tbf drops packets larger than its burst
        self._index(wheelhouse, extra_wheels)
        npm_locations = nginx_locations()
        conf = os.path.join(self.work, 'nginx.conf')
        with open(conf, 'w') as f:
            f.write('''daemon off; worker_processes 2; pid %(w)s/nginx.pid; error_log %(w)s/nginx-error.log;
events { worker_connections 256; }
http { sendfile on; types { application/octet-stream whl; text/html html; }
  log_format bench '$status $uri $body_bytes_sent "$http_cache_control"'; access_log %(w)s/access.log bench;
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
        os.makedirs(os.path.join(self.index_root, 'simple'), exist_ok=True)  # no wheels: npm's server only
        with open(os.path.join(self.index_root, 'simple', 'index.html'), 'w') as f:
            f.write(''.join('<a href="%s/">%s</a><br>\n' % (p, p) for p in sorted(projects)))

    def mark(self):
        """Where the access log ends now: requests() from here on are the ones made after this call."""
        return os.path.getsize(self.log) if os.path.exists(self.log) else 0

    def requests(self, since):
        """[(status, path, bytes, the request's Cache-Control)] the index served since ``mark()`` gave ``since``."""
        with open(self.log, 'rb') as f:
            f.seek(since)
            text = f.read().decode('utf-8', 'replace')
        out = []
        for line in text.splitlines():
            head, dummy, cc = line.partition(' "')
            status, path, size = head.split()
            out.append((int(status), path, int(size), cc.rstrip('"')))
        return out

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


# ---------------------------------------------------------------- time-to-install helpers

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


def grouped_bars(ax, labels, series, ylabel, title):
    """Bars of each series ({name: [median per label]}) side by side for each label."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(labels))], values, width, label=name)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))])
    ax.set_xticklabels(labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()


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


def nginx_locations():
    """The nginx locations that serve the static npm registry (in Env's server block)."""
    return ('location %s { root %s; default_type application/json; try_files $uri $uri/index.json =404;'
            ' add_header Cache-Control "public, max-age=300"; }' % (NPM_PREFIX, NPM_ROOT))


@contextlib.contextmanager
def serving(work, wheelhouse, extra_wheels=()):
    """An Env started over ``wheelhouse`` (plus ``extra_wheels``), stopped on the way out."""
    env = Env(work)
    env.start(wheelhouse, list(extra_wheels))
    try:
        yield env
    finally:
        env.stop()


def du(path):
    return int(sh(['du', '-sb', path]).stdout.split()[0])
