# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""overlay_mounts: checks, the fstab lines, and one run over every user.

Private to the collection; the API may change without notice.

The directory work and the mounts are in _views; every operation near a
user's files goes through _safefs (O_NOFOLLOW fds and *at() calls).
"""

from __future__ import annotations

import os
import time

from . import _overlay as ov
from . import _safefs as sf
from . import _views
from ._fstab import block_entries, parse_line
from ._fstabfile import mountinfo_text, read_text, update_block
from ._lock import StoreLock
from ._mountcmd import MountError, mount_from_fstab

BLOCK = 'mounts'
UnsafePathError = sf.UnsafePathError


def check_filesystems(mountinfo, mount):
    """Refuse an upper on overlayfs, and upper and work on different filesystems."""
    upper = ov.mount_of(mountinfo, mount['upperdir'])
    work = ov.mount_of(mountinfo, mount['workdir'])
    if upper is not None and upper['fstype'] == 'overlay':
        raise ov.OverlayInputError('repl %s: upperdir %s is on overlayfs (mounted at %s), which cannot be an upper layer; '
                                   'put the scratch root on a volume or a tmpfs' % (mount['user'], mount['upperdir'], upper['mount_point']))
    if upper is not None and work is not None and upper['dev'] != work['dev']:
        raise ov.OverlayInputError('repl %s: upperdir %s and workdir %s are on different filesystems (%s, %s)'
                                   % (mount['user'], mount['upperdir'], mount['workdir'], upper['mount_point'], work['mount_point']))


def render_lines(mounts, lines):
    """Pair fstab lines (given, or the default format) with planned mounts: [(line, mount or None)], checking each."""
    if lines is None:
        return [(ov.default_line(m), m) for m in mounts]
    entries = [l for l in lines if parse_line(l)]
    if len(entries) != len(mounts):
        raise ov.OverlayInputError('the fstab template gave %d entries for %d planned mounts' % (len(entries), len(mounts)))
    paired, it = [], iter(mounts)
    for line in lines:
        mount = next(it) if parse_line(line) else None
        if mount is not None:
            ov.check_line(line, mount)
        paired.append((line, mount))
    return paired


def _by_user(mounts):
    users, order = {}, []
    for m in mounts:
        if m['user'] not in users:
            order.append(m['user'])
        users.setdefault(m['user'], []).append(m)
    return [users[u] for u in order]


def converge(module):
    """One run of overlay_mounts; returns the module result. Only bad input or shared roots fail it as a whole."""
    p = module.params
    mounts = ov.plan_mounts(p['repls'], p['ecosystems'], p['lower_root'], p['scratch_root'], p['views_root'])
    paired = render_lines(mounts, p['fstab_lines'])
    info = ov.parse_mountinfo(mountinfo_text())
    # Check mode on a host that has not fetched the snapshot yet (the sync, in check mode too, would fetch it).
    unfetched = module.check_mode and not os.path.isdir(p['lower_root'])
    if unfetched:
        module.warn('check mode: the snapshot at %s is not on this host yet; the mounts are planned on it as a real '
                    'run would fetch it' % p['lower_root'])
    for m in mounts:
        check_filesystems(info, m)
        if not unfetched and not os.path.isdir(m['lowerdir']):
            raise ov.OverlayInputError(
                'ecosystem %s: the snapshot at %s has no %s cache (%s is missing); build it with that ecosystem '
                'or remove it from ecosystems' % (m['ecosystem'], p['lower_root'], m['ecosystem'], m['lowerdir']))

    def mount_fn(target):
        mount_from_fstab(module.run_command, p['fstab'], target)

    run = _views.Converge(p, mounts, info, mount_fn, module.check_mode)
    for root, mode in ((p['views_root'], 0o711), (p['scratch_root'], 0o755)):
        fd = run.ensure_root_chain(root, mode)
        if fd is not None:
            os.close(fd)
    if module.check_mode:
        return _execute(module, run, paired)
    with StoreLock(p['views_root'], p['lock_timeout']):
        return _execute(module, run, paired)


def _execute(module, run, paired):
    p = module.params
    ready = []
    for user_mounts in _by_user(run.mounts):
        ready += run.prepare_user(user_mounts)
    lines = [line for line, m in paired if m is None or m['ecosystem'] not in run.failed.get(m['user'], {})]
    old_targets = set(f[1] for f in block_entries(read_text(p['fstab']), BLOCK))
    fstab = update_block(module, p['fstab'], BLOCK, lines, p['backup'])
    linked = False
    for m in ready:
        try:
            run.activate(m)
            linked = run.link(m) or linked
        except (sf.UnsafePathError, MountError, OSError) as exc:
            run.fail(m, str(exc))
    removed = {}
    planned = set(m['target'] for m in run.mounts)
    retired = set(t for u in run.retired.values() for t in u.values())
    for target in sorted(old_targets - planned - retired):
        cur = ov.mounted_at(run.info, target)
        if p['state'] == 'mounted' and cur is not None and cur['fstype'] == 'overlay':
            outcome = 'unmounted' if module.check_mode else sf.umount(target, cur['mount_id'], lazy=p['lazy'])
            if outcome != 'gone':
                removed[target] = outcome
    if p.get('purge_removed') and p['state'] == 'mounted':
        # Check mode unmounted nothing: leave out what a real run unmounts first.
        fresh = ov.parse_mountinfo(mountinfo_text()) if not module.check_mode else \
            [mi for mi in run.info if mi['mount_point'] not in removed]
        deadline = time.monotonic() + _views.PURGE_SECONDS
        for user in run.removed_users():
            run.purge(user, fresh, deadline)
    gids = {}
    for m in run.mounts:
        gids.setdefault(m['gid'], set()).add(m['user'])
    for gid, users in sorted(gids.items()):
        if len(users) > 1:
            module.warn('repl users %s share the primary group %d: each can look up the others\' mount points '
                        '(<views_root>/<user> is 0710 root:<group>) and keep them busy; give each a group of its own'
                        % (', '.join(sorted(users)), gid))
    changed = bool(run.created) or fstab['changed'] or bool(removed) or linked or bool(run.repaired) or bool(run.retired) or \
        'purged' in run.purged.values() or any(
        s in ('mounted', 'switched', 'merged') for u in run.users.values() for s in u.values())
    result = {'changed': changed, 'users': run.users, 'busy': run.busy, 'removed': removed, 'compacted': run.compacted,
              'compacted_bytes': sum(c['bytes'] for u in run.compacted.values() for c in u.values()),
              'created': run.created, 'mounts': run.mounts, 'unserved': run.failed, 'saved': run.saved,
              'repaired': run.repaired, 'retired': run.retired, 'detached': run.detached, 'merged': run.merged,
              'purged': run.purged}
    if fstab['backup_file']:
        result['backup_file'] = fstab['backup_file']
    if module._diff and fstab['changed']:
        result['diff'] = fstab['diff']
    return result
