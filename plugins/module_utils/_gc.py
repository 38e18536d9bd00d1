# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Garbage collection of snapshots and objects, on repl hosts and builders.

Private to the collection; the API may change without notice.

Kept: the N newest snapshots, the active one (``current`` on a host,
``refs/latest`` on a builder), and every snapshot whose id a live mount
(/proc/self/mountinfo) or an fstab line names. Everything else goes, then
every object that no kept manifest lists.

``run_module()`` is snapshot_gc's main(): one plan, which check mode returns
and a real run, under the store lock, carries out.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re

from . import _hoststate as hs
from . import _module
from . import _store as st
from . import _views
from ._busy import held_files
from ._fstabfile import read_text
from ._mountinfo import mountinfo_text
from ._lock import LockError, StoreLock
from ._manifest import ManifestError

ID_IN_TEXT = re.compile(r'trees/([0-9a-f]{64})')

# snapshot_gc's arguments.
ARGUMENT_SPEC = dict(
    store=dict(type='path', default='/var/lib/pkgcache'),
    keep=dict(type='int', default=3),
    fstab=dict(type='path', default='/etc/fstab'),
    lock_timeout=dict(type='int', default=0),
)


def argument_spec():
    return copy.deepcopy(ARGUMENT_SPEC)


def referenced_ids(*texts):
    """Snapshot ids that mountinfo or fstab text names (as trees/<id>)."""
    ids = set()
    for text in texts:
        ids.update(ID_IN_TEXT.findall(text or ''))
    return ids


def _manifest_ids(store):
    d = os.path.join(store, 'snapshots')
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return [n[:-5] for n in names if n.endswith('.json') and len(n) == 69]


def _tree_ids(store):
    d = os.path.join(store, 'trees')
    try:
        return [n for n in os.listdir(d) if len(n) == 64 and not n.startswith('.')]
    except OSError:
        return []


def _builder_order(store, ids):
    """Ids oldest first, in two groups: snapshots, then shard builds (each keeps its own newest)."""
    info = {}
    for snap_id in ids:
        try:
            m = st.read_manifest(store, snap_id)[1]
            info[snap_id] = (bool(m.get('shard')), m.get('created') or '', snap_id)
        except (OSError, ManifestError):
            info[snap_id] = (False, '', snap_id)
    ordered = sorted(ids, key=lambda i: info[i][1:])
    return [[i for i in ordered if not info[i][0]], [i for i in ordered if info[i][0]]]


def _host_order(store, ids):
    hist = hs.history(store)
    rank = dict((snap_id, n) for n, snap_id in enumerate(hist))  # last activation wins
    return [sorted(ids, key=lambda i: (rank.get(i, -1), i))]


def _file_shas(store, snap_id):
    manifest = st.read_manifest(store, snap_id)[1]
    return set(e['sha256'] for e in manifest['entries'] if e['type'] == 'file')


def reached_ids(store, ids, held):
    """Ids among ``ids`` whose tree holds a directory that a process has as cwd, root or open fd.

    ``held`` holds (st_dev, st_ino) keys, from _busy.held_files(). Such a
    process (a reader inside /mnt/cacache after a busy sync, say) would see
    the tree empty if it went. Files do not count: an open file outlives its
    name, and object files are shared between trees.
    """
    found = set()
    if not held:
        return found
    for snap_id in ids:
        for root, dirs, files in os.walk(st.tree_path(store, snap_id)):
            s = os.lstat(root)
            if (s.st_dev, s.st_ino) in held:
                found.add(snap_id)
                break
    return found


def blind_cause(held):
    """Why the process scan says nothing at all (every tree must then be kept), or None.

    That is only so when the cause is the host's, never one user's: /proc
    cannot be listed, or root lacks CAP_SYS_PTRACE and so cannot read any
    other user's process. A uid whose scan was cut short or refused
    (``held.unknown``) blinds GC to that uid's fds alone (see plan()).
    """
    if held is None:
        return None
    scan = held.scan
    if 'all' in scan.unknown:
        return 'the processes cannot be listed (%s)' % scan.unknown['all']
    if not scan.can_trace and any('EACCES' in cause for cause in scan.unknown.values()):
        return 'some processes cannot be inspected (root lacks CAP_SYS_PTRACE)'
    return None


def plan(store, keep, mountinfo_text, fstab_text, host, held=None, detached_lowers=()):
    """Return the GC plan: kept ids (with the reason), removed ids, objects to delete and their bytes.

    Besides the newest, the active and the referenced ids, it keeps every
    tree that a lazily detached overlay still uses (``detached_lowers``, from
    _views.live_lowerdirs) and every tree a process still reaches (``held``).

    A uid in ``held.unknown`` (its scan hit its time or count budget, or root
    may not read one of its processes) protects only the trees found in the
    part of it that was scanned. Its other fds could only hold a tree it
    opened through /mnt/cacache before a lazy switch (the store is root's,
    and a view's dirs are the overlay's, not the tree's); removing such a
    tree reaches that uid's own processes and nobody else's, since every
    other uid was scanned whole and its holds keep the tree. The mounts, the
    fstab and the detached overlays (the kernel probe, in any namespace) are
    read without the process scan and keep what they name whatever the scan
    found. Only a blind scan (blind_cause) keeps every tree.
    """
    all_ids = set(_manifest_ids(store)) | set(_tree_ids(store))
    reasons = {}
    for ordered in (_host_order if host else _builder_order)(store, all_ids):
        for snap_id in ordered[max(0, len(ordered) - keep):] if keep > 0 else []:
            reasons.setdefault(snap_id, 'newest')
    active = hs.active_id(store) if host else _latest(store)
    if active:
        reasons[active] = 'active'
    for snap_id in referenced_ids(mountinfo_text, fstab_text) & all_ids:
        reasons.setdefault(snap_id, 'referenced by a mount or fstab')
    for snap_id in referenced_ids('\n'.join(detached_lowers)) & all_ids:
        reasons.setdefault(snap_id, 'used by a lazily detached overlay')
    blind = blind_cause(held)
    if blind:
        for snap_id in all_ids - set(reasons):
            reasons[snap_id] = '%s; kept to be safe' % blind
    for snap_id in reached_ids(store, sorted(all_ids - set(reasons)), held):
        reasons.setdefault(snap_id, 'a process is inside it')
    remove = sorted(all_ids - set(reasons))
    scan = {} if held is None else {'scan': held.scan.report()}
    wanted = set()
    for snap_id in reasons:
        if os.path.exists(st.manifest_path(store, snap_id)):
            wanted |= _file_shas(store, snap_id)
        elif snap_id in _tree_ids(store):
            # A tree without its manifest: keep every object to be safe.
            return dict(scan, keep=reasons, remove=remove, objects=[], bytes=0, incomplete=snap_id)
    objects, freed = [], 0
    for digest, path, s in st.iter_objects(store):
        if digest not in wanted and len(digest) == 64:
            objects.append(path)
            freed += s.st_size
    for snap_id in remove:
        freed += _unshared_tree_bytes(st.tree_path(store, snap_id))
    referenced = referenced_ids(mountinfo_text)
    quarantined = []
    tree_dir = os.path.join(store, 'trees')
    for name in sorted(os.listdir(tree_dir)) if os.path.isdir(tree_dir) else []:
        if name.startswith('.quarantine-') and name[len('.quarantine-'):][:64] not in referenced:
            quarantined.append(os.path.join(tree_dir, name))
    result = dict(scan, keep=reasons, remove=remove, objects=sorted(objects), bytes=freed, incomplete=None)
    if quarantined:
        result['quarantine'] = quarantined
    return result


def _latest(store):
    return st.read_latest(store)


def _unshared_tree_bytes(tree):
    """Bytes of a tree's files that are not hardlinks to objects (copies of executable files)."""
    total = 0
    for root, dirs, files in os.walk(tree):
        for name in files:
            s = os.lstat(os.path.join(root, name))
            if s.st_nlink == 1:
                total += s.st_size
    return total


def apply(store, gc_plan):
    """Delete what the plan removes: trees first, then manifests and build refs, then objects."""
    for snap_id in gc_plan['remove']:
        st.remove_tree(st.tree_path(store, snap_id))
        try:
            os.unlink(st.manifest_path(store, snap_id))
        except FileNotFoundError:
            pass
    builds = os.path.join(store, 'refs', 'builds')
    if os.path.isdir(builds):
        for name in os.listdir(builds):
            path = os.path.join(builds, name)
            with open(path) as f:
                if f.read().strip() in gc_plan['remove']:
                    os.unlink(path)
    for path in gc_plan['objects']:
        os.unlink(path)
    for path in gc_plan.get('quarantine', []):
        st.remove_tree(path)


def module_plan(p, host):
    """The plan of a run with the module's arguments ``p``, from the live mounts and processes."""
    return plan(p['store'], p['keep'], mountinfo_text(), read_text(p['fstab']), host,
                held=held_files(dev=_store_dev(p['store'])), detached_lowers=_views.live_lowerdirs(p['store']))


def _store_dev(store):
    """st_dev of the store's trees: only directories on that filesystem can hold a tree."""
    try:
        return os.stat(os.path.join(store, 'trees')).st_dev
    except OSError:
        return None


def run_module(module):
    """snapshot_gc's main(): check mode returns the plan; a real run removes the leftovers of a killed run, then
    plans under the store lock and applies that plan."""
    p = module.params
    _module.require_at_least(module, 'keep', 0)
    host = not os.path.isdir(os.path.join(p['store'], 'refs'))
    leftovers = []
    try:
        with contextlib.nullcontext() if module.check_mode else StoreLock(p['store'], p['lock_timeout']):
            if not module.check_mode:
                leftovers = st.cleanup_leftovers(p['store'])
            gc_plan = module_plan(p, host)
            if not module.check_mode:
                apply(p['store'], gc_plan)
    except (LockError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    for text in scan_warnings(gc_plan):
        module.warn(text)
    if gc_plan['incomplete']:
        module.warn('snapshot %s has a tree but no manifest; no object was removed' % gc_plan['incomplete'])
    module.exit_json(changed=bool(gc_plan['remove'] or gc_plan['objects'] or leftovers), kept=gc_plan['keep'],
                     removed=gc_plan['remove'], removed_objects=len(gc_plan['objects']), freed_bytes=gc_plan['bytes'],
                     busy_scan=gc_plan.get('scan'))


def scan_warnings(gc_plan, most=5):
    """The module's warnings about the process scan, each with its real cause."""
    blind = [r for r in gc_plan['keep'].values() if r.endswith('; kept to be safe')]
    if blind:
        return ['%s, so no snapshot could be proven unused; every snapshot was kept' % blind[0][:-len('; kept to be safe')]]
    unknown = (gc_plan.get('scan') or {}).get('unknown') or {}
    if not unknown:
        return []
    shown = sorted(unknown.items())[:most]
    return ['the processes of %d uid(s) were not all inspected (%s%s); a tree that only their unscanned fds hold '
            'is not protected, every other tree was decided as usual'
            % (len(unknown), '; '.join('uid %s: %s' % kv for kv in shown), '; ...' if len(unknown) > most else '')]
