# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host status for operators: active snapshot, users' mounts, uppers, last sync, store size.

Private to the collection; the API may change without notice.

``run_module()`` is snapshot_status' main(): one report, which check mode
returns and a real run also writes for Prometheus.
"""

from __future__ import annotations

import copy
import datetime
import os
import re
import socket

from . import _hoststate as hs
from . import _module
from . import _publish
from . import _store as st
from . import _views
from . import _walk
from ._busy import find_busy
from ._fstab import block_entries
from ._fstabfile import read_text
from ._manifest import ManifestError
from ._mountinfo import mounted_at, mountinfo_text, parse_mountinfo, split_options

VERSION_KEYS = ('pip_version', 'python_version', 'npm_version', 'node_version', 'maven_version', 'java_version', 'uv_version')
UPPER_RE = re.compile(r'^(?P<scratch>.*)/cacache_(?P<eco>[a-z0-9]+)/upper$')
STATES = ('mounted', 'older', 'busy', 'missing')

# snapshot_status' arguments.
ARGUMENT_SPEC = dict(
    store=dict(type='path', default='/var/lib/pkgcache'),
    fstab=dict(type='path', default='/etc/fstab'),
    textfile_dir=dict(type='path'),
    include_user_names=dict(type='bool', default=False),
    top_users=dict(type='int', default=5),
    scratch_root=dict(type='path', default='/mnt/scratch'),
)


def argument_spec():
    return copy.deepcopy(ARGUMENT_SPEC)


# Uppers belong to repl users: sizes come from a bounded walk (see _walk) that
# opens the upper by an fd chain with O_NOFOLLOW on every component, follows no
# symlink and reads no file, only lstat()s entries. Many files are fine here;
# the deadline bounds the time one user can cost.
STATUS_LIMITS = _walk.Limits(max_files=1000000, max_seconds=10.0)


def upper_usage(path, limits=None, walk=None):
    """(bytes, problem): disk space of the regular files under the upper ``path``, and why it is incomplete.

    The space is what is allocated (``st_blocks`` * 512), not the apparent
    size: a user's sparse file of 256 MiB costs the disk nothing and counts
    as nothing.

    ``problem`` is None for a full count (or a missing upper, 0 bytes), else
    the cap that stopped the walk (``max_files``, ``max_depth``...) or why the
    upper was refused (a symlink on the way, say); symlinks are never followed.
    """
    walk = walk if walk is not None else _walk.Walk(limits or STATUS_LIMITS)
    total = 0
    try:
        fd = _walk.open_dir(path)
    except FileNotFoundError:
        return 0, None
    except OSError as exc:
        return 0, 'refused: %s' % exc
    try:
        for dummy, dummy2, dummy3, dummy4, s in walk.tree(fd):
            total += allocated(s)
    except OSError as exc:
        return total, 'error: %s' % exc
    finally:
        os.close(fd)
    return total, walk.truncated


def allocated(s):
    """Bytes of disk a file takes: its allocated 512-byte blocks (st_blocks), whatever its apparent size."""
    return s.st_blocks * 512


def tree_bytes(path):
    """Allocated bytes of the regular files under ``path`` (an upper); symlinks are never followed, the walk is bounded."""
    return upper_usage(path)[0]


def store_usage(store):
    sizes = [s.st_size for dummy, dummy2, s in st.iter_objects(store)]
    return len(sizes), sum(sizes)


def users_from_fstab(fstab_text):
    """Planned overlays from the managed block: user, ecosystem, target, lowerdir, upperdir."""
    users = []
    # overlay_mounts' block, and pkgcache-host's (the users served at login; _mounts.HOST_BLOCK).
    for fields in block_entries(fstab_text, 'mounts') + block_entries(fstab_text, 'host-users'):
        if fields[2] != 'overlay' or len(fields) < 4:
            continue
        opts = split_options(fields[3])
        m = UPPER_RE.match(opts.get('upperdir') or '')
        if not m:
            continue
        users.append({'user': os.path.basename(m.group('scratch')), 'ecosystem': m.group('eco'), 'target': fields[1],
                      'lowerdir': opts.get('lowerdir'), 'upperdir': opts['upperdir']})
    return users


def _epoch(iso):
    try:
        return int(datetime.datetime.fromisoformat(iso).timestamp())
    except (TypeError, ValueError):
        return None


def record_status(store):
    """The newest revision record this host took: {revision, serial, expires, expires_epoch}, or None (no record yet)."""
    newest = hs.newest_applied(store)
    if not newest or newest['revision'] is None:
        return None
    try:
        expires_epoch = _publish.parse_time(newest['expires'], 'expires')
    except ValueError:
        expires_epoch = None
    return {'revision': newest['revision'], 'serial': newest['serial'], 'expires': newest['expires'],
            'expires_epoch': expires_epoch}


def _revision(store, active):
    """The builder's revision of the active snapshot, as the host recorded it when it applied it (or None)."""
    newest = hs.newest_applied(store)
    return newest['revision'] if newest and newest['id'] == active else None


def _resolved_name(item):
    """The package name of a resolution item: ``name==1.0`` (pip, uv) or ``name@1.0`` / ``@scope/name@1.0`` (npm)."""
    if '==' in item:
        return item.split('==', 1)[0]
    at = item.rfind('@')
    return item[:at] if at > 0 else item


def coverage(meta):
    """The build's hit rate of one ecosystem: {listed, hits, ratio}.

    A listed package is a hit when it resolved on its own and no package of
    its resolution is a miss: installed alone, it needs no download. Without
    resolutions (Maven), a listed artifact is a hit unless it is a miss.
    """
    listed = meta.get('requested') or []
    missed = set(m.get('package') for m in meta.get('misses') or [])
    resolutions = meta.get('resolutions')
    if resolutions is None:
        hits = [x for x in listed if x not in missed and x.rsplit(':', 1)[0] not in missed]
    else:
        hits = [x for x in listed if x in resolutions and not missed & set(_resolved_name(r) for r in resolutions[x])]
    return {'listed': len(listed), 'hits': len(hits), 'ratio': round(float(len(hits)) / len(listed), 4) if listed else 0.0}


def orphaned_scratch(scratch_root, served):
    """Scratch dirs of the collection's (root's, 0700, with cacache_* in them) of users no planned overlay serves.

    [{user, bytes, truncated}]: what overlay_mounts' purge_removed would remove. Root-side like the upper walks.
    """
    out = []
    for name in sorted(_views.our_dirs(scratch_root, _views.is_our_scratch) - set(served)):
        size, problem = upper_usage(os.path.join(scratch_root, name))
        out.append({'user': name, 'bytes': size, 'truncated': problem})
    return out


def collect(store, fstab_text, mountinfo, busy, now, scratch_root=None):
    """Gather the status dict; ``busy`` maps mount targets to pids (see _busy.find_busy)."""
    active = hs.active_id(store)
    snap = {'id': active}
    if active:
        try:
            manifest = st.read_manifest(store, active)[1]
            files = [e for e in manifest['entries'] if e['type'] == 'file']
            versions, cover = {}, {}
            for eco in manifest.get('ecosystems', []):
                meta = manifest.get(eco) or {}
                versions[eco] = dict((k, meta[k]) for k in VERSION_KEYS if k in meta)
                cover[eco] = coverage(meta)
            snap.update({'created': manifest.get('created'), 'ecosystems': manifest.get('ecosystems', []),
                         'created_epoch': _epoch(manifest.get('created')), 'revision': _revision(store, active),
                         'files': len(files), 'bytes': sum(e['size'] for e in files), 'versions': versions,
                         'coverage': cover})
        except (OSError, ManifestError):
            snap['error'] = 'manifest missing, unreadable or not valid'
    users = []
    for u in users_from_fstab(fstab_text):
        m = mounted_at(mountinfo, u['target'])
        if m is None or m['fstype'] != 'overlay':
            state = 'missing'
        elif active and ('/trees/%s/' % active) not in (m['super_options'].get('lowerdir') or '') + '/':
            state = 'busy' if u['target'] in busy else 'older'
        else:
            state = 'mounted'
        size, problem = upper_usage(u['upperdir'])
        u.update({'state': state, 'upper_bytes': size, 'upper_truncated': problem})
        users.append(u)
    last = hs.read_last_sync(store)
    objects, size = store_usage(store)
    orphaned = orphaned_scratch(scratch_root, set(u['user'] for u in users)) if scratch_root else []
    return {'snapshot': snap, 'users': users, 'last_sync': last, 'store': {'objects': objects, 'bytes': size},
            'record': record_status(store),
            'upper_bytes_total': sum(u['upper_bytes'] for u in users), 'time': now, 'orphaned': orphaned}


def _label(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _labels(**kw):
    return '{' + ','.join('%s="%s"' % (k, _label(v)) for k, v in sorted(kw.items())) + '}'


def prometheus(status, host, include_user_names=False):
    """Render the status in the Prometheus text format for node_exporter's textfile collector."""
    out = []

    def metric(name, help_text, kind, samples):
        out.append('# HELP %s %s' % (name, help_text))
        out.append('# TYPE %s %s' % (name, kind))
        for labels, value in samples:
            out.append('%s%s %s' % (name, _labels(host=host, **labels), value))

    snap = status['snapshot']
    if snap.get('id'):
        metric('pkgcache_snapshot_info', 'The active snapshot (value 1), per ecosystem, with the versions it was built with.',
               'gauge', [(dict(dict(snapshot_id=snap['id'], ecosystem=eco), **snap.get('versions', {}).get(eco, {})), 1)
                         for eco in snap.get('ecosystems', [])] or [({'snapshot_id': snap['id'], 'ecosystem': ''}, 1)])
        if snap.get('created_epoch'):
            metric('pkgcache_snapshot_created_timestamp_seconds', 'When the active snapshot was built (Unix time).',
                   'gauge', [({'snapshot_id': snap['id']}, snap['created_epoch'])])
        if snap.get('revision'):
            metric('pkgcache_snapshot_revision', 'The builder\'s revision of the active snapshot.', 'gauge',
                   [({'snapshot_id': snap['id']}, snap['revision'])])
        metric('pkgcache_snapshot_files', 'Files in the active snapshot.', 'gauge',
               [({'snapshot_id': snap['id']}, snap.get('files', 0))])
        metric('pkgcache_snapshot_bytes', 'Bytes of the files in the active snapshot.', 'gauge',
               [({'snapshot_id': snap['id']}, snap.get('bytes', 0))])
        cover = sorted((snap.get('coverage') or {}).items())
        metric('pkgcache_snapshot_packages_listed', 'Packages the active snapshot was asked to hold, per ecosystem.', 'gauge',
               [({'ecosystem': eco}, c['listed']) for eco, c in cover])
        metric('pkgcache_snapshot_packages_hit', 'Listed packages that install alone with no download, per ecosystem '
               '(resolved on their own at build time, every file cached).', 'gauge',
               [({'ecosystem': eco}, c['hits']) for eco, c in cover])
        metric('pkgcache_snapshot_hit_ratio', 'pkgcache_snapshot_packages_hit / pkgcache_snapshot_packages_listed.',
               'gauge', [({'ecosystem': eco}, c['ratio']) for eco, c in cover])
    record = status.get('record') or {}
    if record.get('expires_epoch'):
        metric('pkgcache_revision_expires_timestamp', 'When the newest revision record this host took expires (Unix '
               'time): after it the host refuses that record (a frozen mirror) and keeps its snapshot.', 'gauge',
               [({}, record['expires_epoch'])])
    counts = {}
    for u in status['users']:
        counts[u['state']] = counts.get(u['state'], 0) + 1
    metric('pkgcache_repl_mounts', 'Repl users\' overlays by state (mounted, older, busy, missing).', 'gauge',
           [({'state': s}, counts.get(s, 0)) for s in ('mounted', 'older', 'busy', 'missing')])
    metric('pkgcache_upper_bytes_total', 'Bytes of disk allocated to the files in all repl users\' uppers (st_blocks * 512, '
           'not the apparent size: sparse files count what they take).', 'gauge', [({}, status['upper_bytes_total'])])
    metric('pkgcache_uppers_truncated', 'Uppers whose size is a lower bound (refused, or a cap of the walk reached).', 'gauge',
           [({}, sum(1 for u in status['users'] if u.get('upper_truncated')))])
    if include_user_names:
        metric('pkgcache_upper_bytes', 'Bytes of disk allocated in one repl user\'s upper (st_blocks * 512; operator opt-in).',
               'gauge',
               [({'user': u['user'], 'ecosystem': u['ecosystem']}, u['upper_bytes']) for u in status['users']])
    orphaned = status.get('orphaned') or []
    metric('pkgcache_orphaned_scratch_dirs', 'Scratch dirs of users no overlay serves any more (mount_purge_removed '
           'removes them).', 'gauge', [({}, len(orphaned))])
    metric('pkgcache_orphaned_scratch_bytes', 'Bytes of disk allocated in those scratch dirs (st_blocks * 512).', 'gauge',
           [({}, sum(o['bytes'] for o in orphaned))])
    metric('pkgcache_store_objects', 'Objects in the host\'s store.', 'gauge', [({}, status['store']['objects'])])
    metric('pkgcache_store_bytes', 'Bytes of the objects in the host\'s store.', 'gauge', [({}, status['store']['bytes'])])
    last = status.get('last_sync') or {}
    if last:
        metric('pkgcache_last_sync_success', '1 if the last sync succeeded, else 0.', 'gauge', [({}, 1 if last.get('ok') else 0)])
        metric('pkgcache_last_sync_timestamp_seconds', 'When the last sync ended (Unix time).', 'gauge',
               [({}, last.get('epoch', 0))])
    return '\n'.join(out) + '\n'


def gather(store, fstab_path, scratch_root, now):
    """collect() on this host: its fstab, mountinfo and busy mounts (what snapshot_status and the timer both run)."""
    fstab_text = read_text(fstab_path)
    targets = [u['target'] for u in users_from_fstab(fstab_text)]
    return collect(store, fstab_text, parse_mountinfo(mountinfo_text()), find_busy(targets), now, scratch_root)


def write_metrics(status, textfile_dir, host, include_user_names=False):
    """Write ``<textfile_dir>/pkgcache.prom`` atomically (node_exporter reads it); return its path."""
    path = os.path.join(textfile_dir, 'pkgcache.prom')
    os.makedirs(textfile_dir, mode=0o755, exist_ok=True)
    st.write_bytes_atomic(path, prometheus(status, host, include_user_names).encode('utf-8'), 0o644)
    return path


def module_result(status, top_users):
    """The module's result from ``status``: the counts per state and the ``top_users`` largest uppers added."""
    counts = dict((s, sum(1 for u in status['users'] if u['state'] == s)) for s in STATES)
    largest = sorted(status['users'], key=lambda u: -u['upper_bytes'])[:top_users]
    return dict(status, counts=counts, changed=False,
                largest_users=[{'user': u['user'], 'ecosystem': u['ecosystem'], 'upper_bytes': u['upper_bytes']} for u in largest])


def run_module(module):
    """snapshot_status' main(): gather the status; a real run with ``textfile_dir`` also writes the metrics file."""
    p = module.params
    try:
        status = gather(p['store'], p['fstab'], p['scratch_root'], _module.utc_now())
    except OSError as exc:
        module.fail_json(msg=str(exc))
    result = module_result(status, p['top_users'])
    if p['textfile_dir'] and not module.check_mode:
        try:
            result['metrics_file'] = write_metrics(status, p['textfile_dir'], socket.getfqdn(), p['include_user_names'])
        except OSError as exc:
            module.fail_json(msg='cannot write %s/pkgcache.prom: %s' % (p['textfile_dir'], exc))
    module.exit_json(**result)
