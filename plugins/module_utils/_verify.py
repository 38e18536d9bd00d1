# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verifying a host's store and checkouts, and repairing them without touching a live lower.

Private to the collection; the API may change without notice.

Repair never writes into an existing file or tree. A bad or missing object
is fetched again, checked, and renamed into objects/ (a new inode; trees that
hardlink the old inode keep it). A damaged tree is rebuilt beside the old one
and swapped in with two renames; the old tree moves to
trees/.quarantine-<id>-*. Overlays that are mounted on the old tree keep
their view (a mount holds its lower by reference, not by name) until they are
remounted; new mounts get the repaired tree. A quarantined tree is deleted at
once if no mount names its id, else by snapshot_gc once none does.

``run_module()`` is snapshot_verify's main(): one report, which check mode
returns and a real run with ``repair`` acts on.
"""

from __future__ import annotations

import copy
import os
import stat
import time

from . import _manifest as mf
from . import _module
from . import _store as st
from ._mountinfo import mountinfo_text
from ._gc import referenced_ids
from ._lock import LockError, StoreLock

# snapshot_verify's arguments.
ARGUMENT_SPEC = dict(
    store=dict(type='path', default='/var/lib/pkgcache'),
    repair=dict(type='bool', default=False),
    url=dict(type='str'),
    fail_on_problems=dict(type='bool', default=True),
    lock_timeout=dict(type='int', default=0),
    **_module.store_http_options()
)
REQUIRED_IF = [('repair', True, ('url',))]


def argument_spec():
    return copy.deepcopy(ARGUMENT_SPEC)


def check_objects(store):
    """Re-hash every object; return (count, [bad object digests], {(dev, ino) of good objects})."""
    bad, good_inodes, count = [], set(), 0
    for digest, path, s in st.iter_objects(store):
        count += 1
        if not stat.S_ISREG(s.st_mode) or mf.sha256_file(path)[0] != digest:
            bad.append(digest)
        else:
            good_inodes.add((s.st_dev, s.st_ino))
    return count, bad, good_inodes


def check_tree(store, manifest, good_inodes):
    """Compare trees/<id> with its manifest; return {'missing': [], 'mismatch': [], 'extra': []}."""
    root = st.tree_path(store, manifest['id'])
    problems = {'missing': [], 'mismatch': [], 'extra': []}
    wanted = dict((e['path'], e) for e in manifest['entries'])
    for path, e in sorted(wanted.items()):
        full = os.path.join(root, path)
        try:
            s = os.lstat(full)
        except OSError:
            problems['missing'].append(path)
            continue
        if e['type'] == 'dir':
            ok = stat.S_ISDIR(s.st_mode) and stat.S_IMODE(s.st_mode) == int(e['mode'], 8)
        elif e['type'] == 'symlink':
            ok = stat.S_ISLNK(s.st_mode) and os.readlink(full) == e['target']
        else:
            ok = (stat.S_ISREG(s.st_mode) and stat.S_IMODE(s.st_mode) == int(e['mode'], 8) and s.st_size == e['size']
                  and ((s.st_dev, s.st_ino) in good_inodes or mf.sha256_file(full)[0] == e['sha256']))
        if not ok:
            problems['mismatch'].append(path)
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if rel not in wanted:
                problems['extra'].append(rel)
    problems['extra'].sort()
    return problems


def verify(store):
    """Check objects and every checked-out tree that has a manifest; return the report."""
    count, bad, good_inodes = check_objects(store)
    trees, missing_objects = {}, set()
    tree_dir = os.path.join(store, 'trees')
    for snap_id in sorted(os.listdir(tree_dir)) if os.path.isdir(tree_dir) else []:
        if snap_id.startswith('.'):
            continue
        try:
            manifest = st.read_manifest(store, snap_id)[1]
        except (OSError, mf.ManifestError):
            trees[snap_id] = {'missing': [], 'mismatch': [], 'extra': [], 'no_manifest': True}
            continue
        for e in manifest['entries']:
            if e['type'] == 'file' and not os.path.exists(st.object_path(store, e['sha256'])):
                missing_objects.add(e['sha256'])
        problems = check_tree(store, manifest, good_inodes)
        if any(problems.values()):
            trees[snap_id] = problems
    return {'objects_checked': count, 'bad_objects': bad, 'missing_objects': sorted(missing_objects), 'trees': trees,
            'ok': not bad and not missing_objects and not trees}


def repair(store, report, base_url, opener, in_use_ids, workers=8, deadline=None):
    """Re-fetch bad and missing objects, rebuild damaged trees by swapping; return what was done.

    Each download must end within ``deadline`` seconds (default _store.DEFAULT_DEADLINE), see _store.fetch_objects.
    """
    need = {}
    for digest in report['bad_objects'] + report['missing_objects']:
        need[digest] = None
    sizes = {}
    for name in os.listdir(os.path.join(store, 'snapshots')):
        if name.endswith('.json') and mf.HEX64.match(name[:-5]):
            try:
                entries = st.read_manifest(store, name[:-5])[1]['entries']
            except (OSError, mf.ManifestError):
                continue  # not a valid manifest: it names no size to trust
            for e in entries:
                if e['type'] == 'file' and e['sha256'] in need:
                    sizes[e['sha256']] = e['size']
    unknown = [d for d in need if d not in sizes]
    for digest in unknown:  # a bad object that no manifest lists: just drop it
        os.unlink(st.object_path(store, digest))
    fetched = st.fetch_objects(store, base_url, dict((d, sizes[d]) for d in sizes), opener, workers, deadline) if sizes else 0
    rebuilt, remount_needed = [], []
    damaged = set(report['trees'])
    # A tree that hardlinks a bad object's old inode is damaged too, even if it was not listed.
    for snap_id in damaged | set(i for i in os.listdir(os.path.join(store, 'trees')) if not i.startswith('.')):
        if snap_id not in damaged and not report['bad_objects']:
            continue
        try:
            manifest = st.read_manifest(store, snap_id)[1]
        except (OSError, mf.ManifestError):
            continue
        if snap_id not in damaged and not any(e.get('sha256') in report['bad_objects'] for e in manifest['entries']):
            continue
        new = st.build_tree(store, manifest)
        final = st.tree_path(store, snap_id)
        quarantine = os.path.join(store, 'trees', '.quarantine-%s-%d' % (snap_id, int(time.time())))
        os.rename(final, quarantine)
        os.rename(new, final)
        rebuilt.append(snap_id)
        if snap_id in in_use_ids:
            remount_needed.append(snap_id)
        else:
            st.remove_tree(quarantine)
    return {'fetched_objects': len(sizes), 'fetched_bytes': fetched, 'dropped_objects': unknown,
            'rebuilt_trees': sorted(rebuilt), 'remount_needed': sorted(remount_needed)}


def run_module(module):
    """snapshot_verify's main(): verify; in a real run with ``repair``, repair what the report names, under the
    store lock, and verify again; fail when problems remain and ``fail_on_problems``."""
    p = module.params
    _module.require_at_least(module, 'deadline', 1)
    result = {'changed': False, 'remount_needed': []}
    try:
        report = verify(p['store'])
        result.update(report)
        if p['repair'] and not report['ok'] and not module.check_mode:
            with StoreLock(p['store'], p['lock_timeout']):
                done = repair(p['store'], report, p['url'].rstrip('/'), _module.opener(p['timeout'], p['validate_certs']),
                              referenced_ids(mountinfo_text()), p['workers'], p['deadline'])
            result.update({'changed': True, 'repaired': done, 'remount_needed': done['remount_needed']})
            result['ok'] = verify(p['store'])['ok']
    except (st.StoreError, LockError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc), **result)
    if not result['ok'] and p['fail_on_problems']:
        module.fail_json(msg='the store %s has problems: %d bad objects, %d missing objects, %d damaged trees'
                         % (p['store'], len(report['bad_objects']), len(report['missing_objects']), len(report['trees'])),
                         **result)
    module.exit_json(**result)
