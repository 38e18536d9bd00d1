"""Push against pull for a refresh of 2 hosts (`bench/run.py --only push`, or this file with --store LABEL=PATH).

Both hosts hold snapshot v1 and go to v2, from one builder store that holds both.
- pull: each host runs the sync against the store served over HTTP on 127.0.0.1 (Python's threading HTTP server,
  the hosts in turn, as two hosts fetching from one server would, each with 8 workers);
- push: the builder packs the head and the objects the hosts lack (once: both lack the same set), one
  `ansible -m copy` over the local connection carries the archives to both hosts (forks 2), each host unpacks them
  and runs the same sync against its staging dir.
Bytes are what crosses the wire to a host (HTTP bodies; archive files). Time is wall time of the whole refresh of
both hosts, median of the rounds. The local connection has no SSH: a real push adds SSH's throughput and each
task's start-up, a real pull the network's round trips; both move the bytes reported here.
"""

import argparse
import contextlib
import functools
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, '.cache', 'collections'))
from ansible_collections.pkgcache.overlay.plugins.module_utils import _push, _store, _sync  # noqa: E402

PORT = 8391


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def served(directory):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', PORT), functools.partial(_Quiet, directory=directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d' % PORT
    finally:
        server.shutdown()
        server.server_close()


def sync(host, opener, url, snap):
    p = {'mirrors': [url], 'snapshot': snap, 'store': host, 'workers': 8, 'max_manifest_size': 1 << 30, 'lock_timeout': 0}
    with _sync.locked(p, False):
        return _sync.sync(p, opener, now='bench')


def hosts_at(store, v1, work, label):
    """Two host stores at v1 (synced from the store itself)."""
    hosts = []
    for n in (1, 2):
        host = os.path.join(work, 'push-%s-host%d' % (label, n))
        shutil.rmtree(host, ignore_errors=True)
        sync(host, _push.store_opener(store), _push.source_url(store), v1)
        hosts.append(host)
    return hosts


def refresh_pull(store, v1, v2, work):
    hosts = hosts_at(store, v1, work, 'pull')
    with served(store) as url:
        started = time.monotonic()
        results = [sync(h, urllib.request.urlopen, url, v2) for h in hosts]
        seconds = time.monotonic() - started
    return seconds, [r['fetched_bytes'] for r in results], results[0]['missing_bytes']


def refresh_push(store, v1, v2, work):
    hosts = hosts_at(store, v1, work, 'push')
    carried = os.path.join(work, 'push-carried')
    shutil.rmtree(carried, ignore_errors=True)
    stagings = [h + '-staging' for h in hosts]
    for s in stagings:
        shutil.rmtree(s, ignore_errors=True)
        os.makedirs(os.path.join(s, _push.INCOMING))
    inventory = os.path.join(work, 'push-inventory.ini')
    with open(inventory, 'w') as f:
        for n, s in enumerate(stagings):
            f.write('h%d ansible_connection=local ansible_python_interpreter=%s staging=%s\n' % (n, sys.executable, s))
    started = time.monotonic()
    plan = _push.plan_pack(store, v2, [], 1 << 28)
    _push.pack(store, carried, plan)
    carry(inventory, [(os.path.join(carried, plan['head']['name']), _push.HEAD)])
    wants = [_push.receive(s, h) for s, h in zip(stagings, hosts)]
    plan = _push.plan_pack(store, v2, sorted({tuple(w['wanted']) for w in wants}), 1 << 28)
    _push.pack(store, carried, plan)
    parts = plan['sets'][wants[0]['wanted_key']]
    carry(inventory, [(os.path.join(carried, p['name']), os.path.join(_push.INCOMING, p['name'])) for p in parts])
    results = []
    for s, h in zip(stagings, hosts):
        _push.receive(s, h, check_staged=False)
        results.append(sync(h, _push.source_opener(s), _push.source_url(s), v2))
        _push.clear_staged(s)
    seconds = time.monotonic() - started
    sent = os.path.getsize(os.path.join(carried, plan['head']['name'])) + sum(
        os.path.getsize(os.path.join(carried, p['name'])) for p in parts)
    return seconds, [sent] * len(hosts), results[0]['missing_bytes']


def carry(inventory, files):
    """One `ansible -m copy` per file for both hosts at once (forks 2), as the distribute role's copy task does."""
    for src, rel in files:
        subprocess.run(['ansible', 'all', '-i', inventory, '-f', '2', '-m', 'ansible.builtin.copy',
                        '-a', json.dumps({'src': src, 'dest': '{{ staging }}/' + rel, 'mode': '0600'})],
                       check=True, capture_output=True)


def snapshots(store):
    """(v1, v2): the store's two newest snapshots, oldest first."""
    found = []
    for name in os.listdir(os.path.join(store, 'snapshots')):
        if name.endswith('.json'):
            with open(os.path.join(store, 'snapshots', name)) as f:
                found.append((json.load(f).get('created') or '', name[:-5]))
    found.sort()
    return found[-2][1], found[-1][1]


def bench(stores, work, rounds, write=None, machine=''):
    """One table row pair per store (each holding v1 and v2)."""
    lines = ['# Push against pull: a refresh of 2 hosts', '', machine,
             '%d rounds; time is the median wall time of the refresh of both hosts (each round\'s in brackets).' % rounds,
             '', '| store: v2, new to the hosts | method | time, 2 hosts | bytes to each host | ÷ new objects '
             '| ÷ whole snapshot |', '|---|---|---|---|---|---|']
    ratios, plotted = [], []
    for label, store in stores:
        v1, v2 = snapshots(store)
        rows = {'pull': [], 'push': []}
        for _round in range(rounds):
            rows['pull'].append(refresh_pull(store, v1, v2, work))
            rows['push'].append(refresh_push(store, v1, v2, work))
        new_bytes = rows['pull'][0][2]
        snap_bytes = sum(e['size'] for e in _load(store, v2)['entries'] if e['type'] == 'file')
        med = {k: statistics.median(r[0] for r in v) for k, v in rows.items()}
        per_host = {k: v[0][1][0] for k, v in rows.items()}
        for k in ('pull', 'push'):
            lines.append('| %s: %.2f MB, %.2f MB new | %s | %.2f s (%s) | %.2f MB | %.3f | %.3f |' % (
                label, snap_bytes / 1e6, new_bytes / 1e6, k, med[k], ', '.join('%.2f' % r[0] for r in rows[k]),
                per_host[k] / 1e6, per_host[k] / new_bytes, per_host[k] / snap_bytes))
        ratios.append('%s: push ÷ pull, time %.2f, bytes %.3f' % (label, med['push'] / med['pull'],
                                                                  per_host['push'] / per_host['pull']))
        plotted.append((label, med, per_host))
    lines += [''] + ['- ' + r for r in ratios] + [
        '', 'Pull counts HTTP bodies (the new objects and the manifest); push counts the archives (the head with '
        'manifest, revision record and signatures, and the objects, gzip\'d). Push time is mostly the start-up of '
        'the two `ansible -m copy` runs (one per archive set, both hosts at once), which does not grow with the '
        'fleet: Ansible forks carry the archives in parallel. The local connection has no SSH.']
    if write:
        write('push-pull', lines, lambda ax: _plot(ax, plotted))
    else:
        print('\n'.join(lines))
    return lines


def _plot(ax, plotted):
    x = 0
    for label, med, per_host in plotted:
        for k, color in (('pull', '#4c72b0'), ('push', '#dd8452')):
            ax.bar(x, med[k], color=color)
            ax.text(x, med[k], '%.1f MB' % (per_host[k] / 1e6), ha='center', va='bottom', fontsize=8)
            x += 1
        x += 0.5
    ax.set_xticks([i * 2.5 + 0.5 for i in range(len(plotted))])
    ax.set_xticklabels([p[0] for p in plotted])
    ax.set_ylabel('seconds, refresh of 2 hosts (blue pull, orange push)')
    ax.set_title('Push against pull (bytes to each host above the bars)')


def _load(store, snap_id):
    with open(_store.manifest_path(store, snap_id)) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--store', action='append', required=True, metavar='LABEL=PATH',
                    help='a builder store holding two snapshots (v1 and v2); repeat for more')
    ap.add_argument('--work', default='/var/tmp/pkgcache-bench')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--write', action='store_true', help='write bench/results/push-pull.md and .png')
    args = ap.parse_args()
    if args.write:
        import common  # pylint: disable=import-outside-toplevel
        bench([tuple(s.split('=', 1)) for s in args.store], args.work, args.rounds, common.write, common.machine())
    else:
        bench([tuple(s.split('=', 1)) for s in args.store], args.work, args.rounds)


if __name__ == '__main__':
    main()
