"""pkgcache.overlay benchmarks (`make bench`). Run as root on a machine prepared by scripts/bootstrap.sh.

Every figure is a ratio of things measured side by side in this one run, as
the median and the spread (min..max) of several rounds. Nothing here is a
test: no figure is asserted. Results go to bench/results/<name>.md and .png.

  1. time-to-install (`install`): the 50 most downloaded PyPI projects that
     have wheels for the users' Python (bench/hitrate.py's list, with their
     dependencies) installed at once by a non-root user in a fresh venv: cold
     cache vs through the snapshot view vs a warm plain cache (no overlay) vs
     the floor (--no-index --find-links), arms interleaved in every round,
     from nginx serving a static PEP 503 tree with PyPI's cache
     headers, inside a network namespace whose loopback is limited by a tbf
     qdisc (50 Mbit/s) or not limited. `uv` and `npm` (bench/ecosystems.py):
     the same for uv (same packages) and for 30 popular npm packages.
  2. refresh transfer (`transfer`): bytes a host downloads to go from snapshot v1 to v2
     (v2 adds two packages) against the bytes of v2's new objects and of all of v2.
  3. per-user mounts at scale (`scale`, bench/scale.py): the mount role against an
     ansible.posix.mount + file loop for 100 and 500 users in one container, first run and re-run.
  4. store growth (with `transfer`): bytes the second build adds to the builder's store against
     the bytes of the packages that changed.
  5. hit rate (`--only hitrate`, opt-in; bench/hitrate.py): installs of the top N PyPI projects that a snapshot
     serves with no download, snapshot resolved jointly (as before) vs package by package (as now).
  6. weekly rebuild (`--only rebuild`, opt-in; bench/rebuild.py): the hit-rate list built again against an
     unchanged index with and without reuse of the previous resolutions, and after one project's release.
  0. replay (`--only replay`, opt-in, the headline hit rate; bench/replay.py): a corpus of realistic projects
     (bench/corpus/) split at random into last week's users, whose uppers' telemetry feeds the ranking, and this
     week's, installed cold and through the view of the snapshot built from it: hit rate by files and bytes.
  7. push against pull (`push`, bench/push.py): a refresh of 2 hosts from one store, over HTTP and as archives
     carried by `ansible -m copy`, time and bytes to each host.

Benchmarks 2 and 4 run with the pip of this machine and with a current pip:
pip < 23.3 stores response headers inside each HTTP cache entry, >= 23.3
stores bodies apart, which changes both figures.

Each benchmark is one entry of BENCHES below (name, whether the default run
includes it, function of the parsed arguments); a new one is a function and a line.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

import common
from common import (HERE, INDEX, PORT, ROOT, USER, USER_PYTHON, as_user, build, ensure_user, fmt, grouped_bars, install_plot,
                    install_table, machine, mount_view, norm, sh, stats, sync, write)
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store  # noqa: E402 (common puts the collection on sys.path)
import ecosystems
import hitrate

# The transfer and growth benchmarks' set: 20 packages of the test index plus five heavier ones (bench-only wheelhouse).
PACKAGES = ['requests', 'urllib3', 'idna', 'certifi', 'charset-normalizer', 'six', 'python-dateutil', 'packaging',
            'attrs', 'pyparsing', 'typing_extensions', 'click', 'markupsafe', 'jinja2', 'pyyaml', 'iniconfig',
            'pluggy', 'tomli', 'colorama', 'wrapt']
PACKAGES += ['numpy', 'pandas', 'cryptography', 'pydantic', 'protobuf']
V1 = [p for p in PACKAGES if p not in ('pyyaml', 'wrapt')]
# The time-to-install set (pip and uv): the first INSTALL_TOP projects of bench/hitrate.py's ranking.
INSTALL_TOP = 50


# ---------------------------------------------------------------- 1. time-to-install

def install_set(work, top=INSTALL_TOP):
    """(packages, wheelhouse dir, download bytes of one joint install) for the top ``top`` PyPI projects with wheels.

    The wheelhouse holds each package's own download (what the builder's solo
    resolutions pick) and one joint download of the whole list (what a user's
    `pip install` of all of them picks), filled from PyPI once and kept under
    the work dir.
    """
    cache_dir = os.path.join(work, 'hitrate-wheelhouse')
    os.makedirs(cache_dir, exist_ok=True)
    chosen = hitrate.select(top, cache_dir)[0]
    key = hitrate.pc.fingerprint(sorted(norm(n) for n in chosen))[:12]
    # The joint download only fills the bench's index with what one install of the whole list takes; the installs
    # measured use Debian's pip. That pip (23.0.1) backtracked for more than 15 minutes over the boto3 and
    # aiobotocore pins of 2026-12 and gave up; a current pip's resolver finds them in half a minute.
    pip = current_pip_python(work)
    name = 'joint-%s%s' % ('current-pip-' if pip else '', key)
    joint = hitrate.download(os.path.join(cache_dir, name), chosen, pip)
    if not joint['ok']:
        raise RuntimeError('pip download of the top %d failed: %s' % (top, joint['reason']))
    joint['dir'] = os.path.join(cache_dir, name)
    joint['pip'] = sh([pip or USER_PYTHON, '-m', 'pip', '--version']).stdout.split()[1]
    return chosen, hitrate.wheelhouse(cache_dir, chosen, joint, 'flat-install-%d' % top), joint


def traffic(reqs):
    """What one install asked of the index: index pages (200, 304, and how many asked max-age=0) and files fetched."""
    pages = [r for r in reqs if r[1].startswith('/simple/')]
    files = [r for r in reqs if r[1].startswith('/files/') and r[0] == 200]
    return {'pages': len(pages), 'page_200': sum(1 for r in pages if r[0] == 200),
            'page_304': sum(1 for r in pages if r[0] == 304),
            'max_age_0': sum(1 for r in pages if 'max-age=0' in r[3]),
            'files': sorted(os.path.basename(r[1]) for r in files), 'file_bytes': sum(r[2] for r in files)}


def traffic_lines(seen, kinds, labels):
    """Markdown lines of what each arm asked of the index, per link (the same in every round unless stated)."""
    lines = ['', '| link | arm | index pages asked (200 / 304) | of them sent `Cache-Control: max-age=0` '
             '| files fetched | MB fetched |', '| --- | --- | --- | --- | --- | --- |']
    names = {}
    for link, per_kind in seen.items():
        for kind in kinds:
            rounds = per_kind[kind]

            def cell(key):
                values = sorted(set(t[key] for t in rounds))
                return '/'.join(str(v) for v in values)
            lines.append('| %s | %s | %s (%s / %s) | %s | %s | %s |' % (
                link, labels[kind], cell('pages'), cell('page_200'), cell('page_304'), cell('max_age_0'),
                '/'.join(str(v) for v in sorted(set(len(t['files']) for t in rounds))),
                '/'.join('%.1f' % v for v in sorted(set(round(t['file_bytes'] / 1e6, 1) for t in rounds)))))
            if kind in ('overlay', 'warm'):
                for t in rounds:
                    for f in t['files']:
                        names.setdefault(labels[kind], set()).add(f)
    for label, files in sorted(names.items()):
        lines += ['', 'Files the %s fetched (any round, any link): %s.' % (label, ', '.join(sorted(files)))]
    return lines


def current_pip_python(work):
    """A venv of the users' Python with the newest pip of .cache/pypiserver (None if there is none): its python."""
    wheels = current_pips()
    if not wheels:
        return None
    venv = os.path.join(work, 'joint-pip')
    python = os.path.join(venv, 'bin', 'python')
    if not os.path.exists(python):
        sh([USER_PYTHON, '-m', 'venv', venv])
        sh([python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', '--no-index', wheels[-1]])
    return python


def bench_install(env, work, rounds, packages, joint):
    """Four arms, interleaved in every round: cold, the snapshot view, a warm plain cache, the floor.

    Cold runs first in a round (the warm arm is the plain cache it just
    filled); the other three follow in an order that rotates from round to
    round, so that no arm always runs right after another.
    """
    uid, gid, home = ensure_user()
    snap = build(work, 'install', packages)
    host = os.path.join(work, 'host')
    res = sync('file://' + os.path.join(work, 'store-install'), snap['id'], host)
    lower = os.path.join(res['path'], 'pip')
    target = os.path.join(home, '.cache', 'pip')
    scratch = os.path.join(work, 'scratch')
    venv = os.path.join(home, 'venv-bench')
    install = [os.path.join(venv, 'bin', 'pip'), 'install', '-q', '--index-url', INDEX,
               '--trusted-host', '127.0.0.1:%d' % PORT] + packages
    floor = [os.path.join(venv, 'bin', 'pip'), 'install', '-q', '--no-index', '--find-links',
             os.path.join(env.index_root, 'files')] + packages
    cold_cache = os.path.join(work, 'cold-cache')

    def fresh_venv():
        shutil.rmtree(venv, ignore_errors=True)
        sh(['runuser', '-u', USER, '--', USER_PYTHON, '-m', 'venv', venv])

    def arm(kind):
        fresh_venv()
        if kind == 'cold':
            shutil.rmtree(cold_cache, ignore_errors=True)
            os.makedirs(cold_cache)
            os.chown(cold_cache, uid, gid)
            return as_user(install, {'PIP_CACHE_DIR': cold_cache})[0]
        if kind == 'warm':  # the plain cache the round's cold install filled: every file is in it, no overlay
            return as_user(install, {'PIP_CACHE_DIR': cold_cache})[0]
        if kind == 'overlay':
            mount_view(lower, target, scratch, uid, gid)
            return as_user(install)[0]
        return as_user(floor, {'PIP_NO_CACHE_DIR': '1'})[0]

    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    kinds = ('cold', 'overlay', 'warm', 'floor')
    rows, seen, installed = {}, {}, 0
    for rate in ('50mbit', None):
        env.limit(rate)
        link = rate or 'no limit'
        times = dict((k, []) for k in kinds)
        seen[link] = dict((k, []) for k in kinds)
        for r in range(rounds):
            rest = list(kinds[1:])
            order = ['cold'] + rest[r % len(rest):] + rest[:r % len(rest)]
            for kind in order:
                mark = env.mark()
                times[kind].append(arm(kind))
                seen[link][kind].append(traffic(env.requests(mark)))
                if kind == 'cold':
                    installed = common.du(venv)
            print('install: %s round %d: %s' % (link, r + 1, ', '.join('%s %.1fs' % (k, times[k][-1]) for k in order)))
        rows[link] = times
    subprocess.run(['umount', target], capture_output=True, check=False)
    env.limit(None)
    labels = {'cold': 'cold cache', 'overlay': 'snapshot view', 'warm': 'warm plain cache', 'floor': 'floor (--no-index)'}
    lines = install_table('Time to install the %d most downloaded PyPI packages (with dependencies) in a fresh venv, '
                          'as a non-root user' % len(packages),
                          'Index: nginx, static PEP 503 tree with PyPI cache headers, in a network namespace; '
                          'link: tbf qdisc on its loopback. One `pip install` of all of them: %d files, %.1f MB to '
                          'download (a joint `pip download`, pip %s), %.0f MB in the venv. Snapshot: %d packages, %.1f MB. '
                          'Warm plain cache: the cache the round\'s cold install filled, no overlay. '
                          '%d rounds, arms interleaved (cold first, then the other three in an order that rotates); '
                          'median (min..max), each ratio taken round by round.'
                          % (len(joint['files']), joint['bytes'] / 1e6, joint['pip'], installed / 1e6, len(snap['packages']),
                             snap['bytes'] / 1e6, rounds),
                          rows, kinds, [('view / cold', 'overlay', 'cold'), ('view / floor', 'overlay', 'floor'),
                                        ('view / warm', 'overlay', 'warm'), ('warm / floor', 'warm', 'floor')],
                          labels)
    lines += ['', 'What each install asked of the index (values that differ between rounds are all listed, a/b):']
    lines += traffic_lines(seen, kinds, labels)
    lines += ['', 'Packages, in rank order: ' + ', '.join(packages) + '.']
    with open(os.path.join(HERE, 'results', 'time-to-install.json'), 'w') as f:
        json.dump({'rows': rows, 'traffic': seen}, f, indent=1)
    write('time-to-install', lines, install_plot(rows, kinds, 'pip install of %d packages' % len(packages)))
    return rows


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
        series = dict((key, [stats([r[idx] / 1e6 for r in transfer[l]])[0] for l in labels])
                      for key, idx in (('downloaded', 0), ('new objects', 1), ('whole snapshot', 2)))
        grouped_bars(ax, labels, series, 'MB', 'Refresh transfer, v1 -> v2')
    write('refresh-transfer', lines, plot_t)
    lines = ['# Store growth: bytes the second build adds to the store', '', machine(),
             '%d rounds; median (min..max).' % rounds, '',
             '| build pip | store growth | changed content (2 wheels) | growth / changed |', '| --- | --- | --- | --- |']
    for label, g in growth.items():
        cells = (label, fmt([x[0] / 1e6 for x in g], ' MB'), fmt([x[1] / 1e6 for x in g], ' MB'), fmt([x[0] / x[1] for x in g], 'x'))
        lines.append('| %s | %s | %s | %s |' % cells)

    def plot_g(ax):
        labels = list(growth)
        series = dict((key, [stats([r[idx] / 1e6 for r in growth[l]])[0] for l in labels])
                      for key, idx in (('growth', 0), ('changed content', 1)))
        grouped_bars(ax, labels, series, 'MB', 'Store growth of the second build')
    write('store-growth', lines, plot_g)


# ---------------------------------------------------------------- 3. mounts at scale

SCALE_JSON = os.path.join(HERE, 'results', 'mounts-at-scale.json')
SCALE_ROLE_JSON = os.path.join(HERE, 'results', 'mounts-at-scale-role.json')


def bench_scale(work, users_list, rounds):
    """Measure each user count in its own container; sizes measured in earlier runs stay in the table, dated."""
    import scale  # pylint: disable=import-outside-toplevel
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
    # Sizes that ran the role alone (bench/scale.py --users N) keep their rows, after the ones measured here.
    import scale  # pylint: disable=import-outside-toplevel
    role_only = {}
    if os.path.exists(SCALE_ROLE_JSON):
        with open(SCALE_ROLE_JSON) as f:
            role_only = dict((int(n), r) for n, r in json.load(f).items() if int(n) not in results)
    lines += [scale.role_row(n, r, r['rounds'], r['run']) for n, r in sorted(role_only.items())]
    lines += [''] + sorted(set('- %s' % r['machine'] for r in results.values()))
    lines += ['- %s (%d users: the mount role alone, `python3 bench/scale.py --users %d`)' % (r['machine'], n, n)
              for n, r in sorted(role_only.items())]

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


def small_wheelhouse():
    """The transfer benchmark's wheelhouse (PACKAGES from PyPI, once)."""
    wheelhouse = os.path.join(ROOT, '.cache', 'bench-wheelhouse')
    if not os.path.exists(os.path.join(wheelhouse, '.complete')):
        os.makedirs(wheelhouse, exist_ok=True)
        sh([USER_PYTHON, '-m', 'pip', 'download', '-q', '--disable-pip-version-check', '--only-binary', ':all:',
            '-d', wheelhouse] + PACKAGES)
        open(os.path.join(wheelhouse, '.complete'), 'w').close()
    return wheelhouse


def current_pips():
    pypiserver = os.path.join(ROOT, '.cache', 'pypiserver')
    return sorted(os.path.join(pypiserver, f) for f in os.listdir(pypiserver) if f.startswith('pip-'))


def ensure_uv(work):
    uv = os.path.join(work, 'uvtool', 'bin', 'uv')
    if not os.path.exists(uv):
        sh([USER_PYTHON, '-m', 'venv', os.path.join(work, 'uvtool')])
        sh([os.path.join(work, 'uvtool', 'bin', 'pip'), 'install', '-q', '--no-index', '--find-links',
            os.path.join(ROOT, '.cache', 'wheelhouse'), 'uv'])
    return uv


# ---------------------------------------------------------------- dispatch

def run_install(args, done):
    packages, wheelhouse, joint = install_set(args.work)
    with common.serving(args.work, wheelhouse) as env:
        return bench_install(env, args.work, args.rounds, packages, joint)


def run_uv(args, done):
    uv = ensure_uv(args.work)
    packages, wheelhouse, dummy = install_set(args.work)
    with common.serving(args.work, wheelhouse) as env:
        return ecosystems.bench_uv(env, args.work, args.rounds, uv, packages, done.get('install'))


def run_npm(args, dummy):
    ecosystems.ensure_npm_registry()
    no_wheels = os.path.join(args.work, 'no-wheels')  # npm needs the server, not a PEP 503 tree
    os.makedirs(no_wheels, exist_ok=True)
    with common.serving(args.work, no_wheels) as env:
        return ecosystems.bench_npm(env, args.work, args.rounds)


def run_transfer(args, dummy):
    pip_wheels = current_pips()
    with common.serving(args.work, small_wheelhouse(), pip_wheels) as dummy_env:
        current_pip = pip_wheels[0].split('-')[1] if pip_wheels else None
        # Without reuse (every build fills a fresh cache), and with it for the pip whose entries embed headers.
        bench_transfer_growth(args.work, args.rounds, [None, (None, True)] + ([current_pip] if current_pip else []))


def run_push(args, dummy):
    """Push against pull for a refresh of 2 hosts: over a store built with reuse (a weekly refresh) and one without."""
    import push  # pylint: disable=import-outside-toplevel
    stores = []
    with common.serving(args.work, small_wheelhouse(), current_pips()):
        for label, reuse in (('reuse', True), ('no reuse', False)):
            name = 'push-' + label.replace(' ', '-')
            shutil.rmtree(os.path.join(args.work, 'store-' + name), ignore_errors=True)
            build(args.work, name, V1, None, reuse)
            time.sleep(1.1)  # a later build, as next week's would be
            build(args.work, name, PACKAGES, None, reuse)
            stores.append(('v1 -> v2 (+ pyyaml, wrapt), %s' % label, os.path.join(args.work, 'store-' + name)))
    push.bench(stores, args.work, args.rounds, write, machine())


def run_scale(args, dummy):
    bench_scale(args.work, args.users or [100, 500], args.scale_rounds or args.rounds)


def run_hitrate(args, dummy):
    hitrate.bench(args.work, args.hitrate_top)


def run_replay(dummy, dummy2):
    # A process of its own: replay.py sets common's namespace, port and user to its own at import.
    subprocess.run([sys.executable, os.path.join(HERE, 'replay.py')], check=True)


def run_rebuild(args, dummy):
    import rebuild  # pylint: disable=import-outside-toplevel
    rebuild.bench(args.work, args.hitrate_top, current_pips())


# name: (in the default run, function(args, done)); they run in this order, and ``done`` maps the name of each
# benchmark run so far to what it returned (uv takes pip's cold installs from it for uv view / pip cold).
BENCHES = {
    'replay': (False, run_replay),
    'hitrate': (False, run_hitrate),
    'rebuild': (False, run_rebuild),
    'install': (True, run_install),
    'uv': (True, run_uv),
    'npm': (True, run_npm),
    'transfer': (True, run_transfer),
    'push': (True, run_push),
    'scale': (True, run_scale),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--only', choices=list(BENCHES), action='append')
    ap.add_argument('--hitrate-top', type=int, default=100, help='packages for the hit-rate benchmark (default 100)')
    ap.add_argument('--users', type=int, action='append', help='user counts for the scale benchmark (default 100 and 500)')
    ap.add_argument('--scale-rounds', type=int, default=None)
    ap.add_argument('--work', default='/var/tmp/pkgcache-bench')
    args = ap.parse_args()
    only = args.only or [name for name, (default, dummy) in BENCHES.items() if default]
    done = {}
    for name, (dummy, func) in BENCHES.items():
        if name in only:
            done[name] = func(args, done)


if __name__ == '__main__':
    main()
