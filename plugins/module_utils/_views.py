# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-user overlay views: the layout, migration, switching and detached generations.

Private to the collection; the API may change without notice.

Layout (every directory root's unless marked)::

    <views_root>                 0711
      <user>/                    0710 root:<the user's group>
        <ecosystem>/             0700, the mount point of the user's view
    <scratch>                    0700 (default <scratch_root>/<user>)
      cacache_<ecosystem>/       0700
        upper/                   the user's, 0700: the root of their view
        work/                    0700
        detached-<stamp>/        layers a lazy switch left to a detached overlay
    <home>/<cache dir>           the user's symlink to <views_root>/<user>/<ecosystem>

Every path handed to mount(8), the kernel or fstab is root's, and so is
every directory above it; the user cannot rename ``upper`` because its
parent is root's. The only thing made in a home is the symlink, with *at()
calls on O_NOFOLLOW fds, so a swapped parent only moves it inside the home.
One user's broken area fails that user alone.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import time

from . import _mountinfo as mi
from . import _safefs as sf
from ._busy import find_busy
from ._compact import compact

OPAQUE = ('trusted.overlay.opaque', 'user.overlay.opaque', 'trusted.overlay.redirect', 'user.overlay.redirect')
MERGE_MAX_ENTRIES = 1000000
MERGE_MAX_DEPTH = 256
MERGE_SECONDS = 120          # for all merges of one run
MAX_LIVE_GENERATIONS = 2     # detached generations a user may keep alive per ecosystem
PURGE_MAX_DEPTH = 256        # a removed user's tree deeper than this is kept and reported (one fd per level)
PURGE_SECONDS = 120          # for all purges of one run


def _stamp(now):
    return time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))


class Converge(object):
    """One overlay_mounts run: ``prepare()`` for every user, write fstab, then ``activate()``."""

    def __init__(self, mounts, info, mount_fn, check_mode, state='mounted', state_dir='/var/lib/pkgcache',
                 views_root=None, scratch_root=None, lazy=False, compact=False, now=None):
        self.state, self.state_dir, self.views_root, self.scratch_root = state, state_dir, views_root, scratch_root
        self.lazy, self.compact = lazy, compact
        self.mounts = mounts
        self.info = info
        self.mount_fn = mount_fn
        self.check_mode = check_mode
        self.now = time.time() if now is None else now
        self.created, self.failed, self.users, self.busy = [], {}, {}, {}
        self.compacted, self.saved, self.repaired, self.merged, self.detached = {}, {}, {}, {}, {}
        self.retired = {}
        self.purged = {}
        self.old_links = {}
        self.merge_deadline = time.monotonic() + MERGE_SECONDS

    # -- helpers -------------------------------------------------------
    def fail(self, m, reason):
        self.failed.setdefault(m['user'], {})[m['ecosystem']] = reason
        self.users.setdefault(m['user'], {})[m['ecosystem']] = 'failed'

    def note(self, table, m, value):
        table.setdefault(m['user'], {})[m['ecosystem']] = value

    def in_use(self, upperdir, workdir):
        """True, False or None (cannot tell, or check mode): does a live overlay anywhere still use these layers?"""
        if self.check_mode:
            return None
        return probe_layers(self.state_dir, upperdir, workdir)

    def ensure_root_chain(self, path, mode, adopt=(0,), gid=0):
        """Make ``path`` a directory of root (group ``gid``) with ``mode``; its parent must be root's all the way up."""
        parent, name = os.path.split(path.rstrip('/'))
        try:
            pfd = sf.open_dir(parent, 'parent of %s' % path)
        except FileNotFoundError:
            if not self.check_mode:
                raise
            self.created.append(path)
            return None
        try:
            fd = sf.ensure_dir(pfd, name, 0, gid, mode, self.check_mode, self.created, path, adopt)
        finally:
            os.close(pfd)
        if fd is not None and not self.check_mode:
            sf.check_root_dir(os.fstat(fd), path, 'directory')
        return fd

    def fix_layer_dir(self, pfd, name, path, uid, gid, m):
        """ensure_dir, but an entry that is not a directory (a user's planted symlink) is moved aside first.

        Only called once ``pfd`` is root's, so nobody can race the rename.
        """
        st = sf.entry(pfd, name)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            self.move_aside(pfd, name, path, m, 'was not a directory')
            if self.check_mode:
                return None
            st = None
        # A root dir of the layout that the earlier layout left to the user.
        taken_over = st is not None and st.st_uid != 0 and uid == 0 and not self.check_mode
        if taken_over and name == 'work':
            # Whatever the user put in their work dir is theirs too: start afresh.
            self.move_aside(pfd, name, path, m, 'was the user\'s work dir')
        # The earlier layout made these the user's: only root's or this user's are taken over.
        fd = sf.ensure_dir(pfd, name, uid, gid, 0o700, self.check_mode, self.created, path, adopt=(0, m['uid']))
        if fd is not None and taken_over:
            self.clear_taken_over(fd, path, m, keep=('upper', 'work') if name.startswith('cacache_') else ())
        return fd

    def existing(self, path):
        """lstat of ``path`` through its root-owned parent; None if it (or, in check mode, its parent) is missing."""
        parent, name = os.path.split(path)
        try:
            pfd = sf.open_dir(parent, 'parent of %s' % path)
        except FileNotFoundError:
            if not self.check_mode:
                raise
            return None
        try:
            return sf.entry(pfd, name)
        finally:
            os.close(pfd)

    def move_aside(self, pfd, name, path, m, why):
        aside = '%s.unsafe-%s' % (name, _stamp(self.now))
        while sf.entry(pfd, aside) is not None:
            aside += '-'
        self.note(self.repaired, m, '%s %s; moved to %s' % (path, why, aside))
        if not self.check_mode:
            os.rename(name, aside, src_dir_fd=pfd, dst_dir_fd=pfd)

    def clear_taken_over(self, fd, path, m, keep):
        """A dir the user owned until now may hold anything they put there (a symlink named like a
        generation, say): everything but ``keep`` (and cacache_* in a scratch dir) is moved aside."""
        for name in sorted(os.listdir(fd)):
            if name in keep or '.unsafe-' in name or (not keep and name.startswith('cacache_')):
                continue
            self.move_aside(fd, name, os.path.join(path, name), m, 'was left by the user')

    # -- prepare: directories and old mounts ---------------------------
    def prepare_user(self, user_mounts):
        """Everything before fstab: root's scratch chain, layer dirs, view mount points, old mounts."""
        first = user_mounts[0]
        try:
            before = self.existing(first['scratch'])
            sfd = self.ensure_root_chain(first['scratch'], 0o700, adopt=(0, first['uid']))
            if sfd is not None and before is not None and before.st_uid != 0:
                self.clear_taken_over(sfd, first['scratch'], first, keep=())
        except (sf.UnsafePathError, OSError) as exc:
            for m in user_mounts:
                self.fail(m, 'scratch: %s' % exc)
            return []
        ready = []
        try:
            for m in user_mounts:
                try:
                    if self.prepare_mount(m, sfd):
                        ready.append(m)
                except (sf.UnsafePathError, OSError) as exc:
                    self.fail(m, str(exc))
        finally:
            if sfd is not None:
                os.close(sfd)
        return ready

    def prepare_mount(self, m, sfd):
        lfd = ufd = wfd = None
        try:
            if sfd is not None:
                lfd = self.fix_layer_dir(sfd, 'cacache_' + m['ecosystem'], m['layers'], 0, 0, m)
            if lfd is not None:
                ufd = self.fix_layer_dir(lfd, 'upper', m['upperdir'], m['uid'], m['gid'], m)
                wfd = self.fix_layer_dir(lfd, 'work', m['workdir'], 0, 0, m)
            self.prepare_view_dir(m)
            return self.retire_old_mounts(m, lfd)
        finally:
            for fd in (lfd, ufd, wfd):
                if fd is not None:
                    os.close(fd)

    def prepare_view_dir(self, m):
        # root:<the user's group> 0710: only that user (and their group) can even look up the mount point,
        # so nobody else can pin it with an O_PATH fd and keep it busy.
        vfd = self.ensure_root_chain(os.path.dirname(m['target']), 0o710, gid=m['gid'])
        if vfd is None:
            self.created.append(m['target'])
            return
        try:
            if mi.mounted_at(self.info, m['target']) is None:
                fd = sf.ensure_dir(vfd, m['ecosystem'], 0, 0, 0o700, self.check_mode, self.created, m['target'])
                if fd is not None:
                    os.close(fd)
        finally:
            os.close(vfd)

    def retire_old_mounts(self, m, lfd):
        """Unmount overlays elsewhere (the old layout mounted them in homes) that use this user's layers.

        Returns False when one is busy and stays: the view then waits, since
        two overlays must never share an upper or work dir.
        """
        for old in mi.using_layers(self.info, m['upperdir'], m['workdir']):
            if old['mount_point'] == m['target']:
                continue
            so = old['super_options']
            self.note(self.retired, m, old['mount_point'])
            if self.check_mode:
                continue
            dev = self.mount_dev(old)
            outcome = sf.umount(old['mount_point'], old['mount_id'], lazy=False)
            if outcome == 'busy':
                if not self.lazy:
                    # Decided by the kernel's EBUSY; the pids are for the report only (paths can be spoofed).
                    self.note(self.busy, m, find_busy([old['mount_point']]).get(old['mount_point']) or 'EBUSY')
                    self.users.setdefault(m['user'], {})[m['ecosystem']] = 'busy'
                    return False
                sf.umount(old['mount_point'], old['mount_id'], lazy=True)
                if lfd is not None:
                    self.detach_generation(m, lfd, dev, so.get('lowerdir'))
        return True

    # -- detached generations ------------------------------------------
    @staticmethod
    def mount_dev(mount):
        major, minor = mount['dev'].split(':')
        return os.makedev(int(major), int(minor))

    def detach(self, m, dev, lowerdir):
        lfd = sf.open_dir(m['layers'], 'layers of repl %s' % m['user'])
        try:
            self.detach_generation(m, lfd, dev, lowerdir)
        finally:
            os.close(lfd)

    def detach_generation(self, m, lfd, dev, lowerdir):
        """Move upper and work of a lazily detached overlay aside, so the new view gets fresh ones."""
        gen = 'detached-%s-%d' % (_stamp(self.now), dev or 0)
        while sf.entry(lfd, gen) is not None:
            gen += '-'
        os.mkdir(gen, 0o700, dir_fd=lfd)
        gfd = os.open(gen, sf.DIR_FLAGS, dir_fd=lfd)
        try:
            for name in ('upper', 'work'):
                os.rename(name, name, src_dir_fd=lfd, dst_dir_fd=gfd)
        finally:
            os.close(gfd)
        for name, uid, gid in (('upper', m['uid'], m['gid']), ('work', 0, 0)):
            os.close(sf.ensure_dir(lfd, name, uid, gid, 0o700, False, [], os.path.join(m['layers'], name)))
        rdir = records_dir(self.state_dir)
        os.makedirs(rdir, mode=0o700, exist_ok=True)
        record = {'user': m['user'], 'ecosystem': m['ecosystem'], 'dev': dev, 'lowerdir': lowerdir,
                  'generation': os.path.join(m['layers'], gen), 'detached_at': int(self.now)}
        with open(os.path.join(rdir, '%s.json' % gen.replace('detached-', '%s-%s-' % (m['user'], m['ecosystem']))), 'w') as f:
            json.dump(record, f)
        self.note(self.detached, m, os.path.join(m['layers'], gen))

    def generations(self, m):
        """Detached generations of this user's layers: [(name, record path or None, live)].

        Live unless the kernel says no overlay uses its upper and work any
        more (see _safefs.layers_in_use): that catches processes, fds in
        flight, mappings and copies of the mount in other namespaces alike.
        """
        try:
            lfd = sf.open_dir(m['layers'], 'layers of repl %s' % m['user'])
        except (sf.UnsafePathError, OSError):
            return []
        out = []
        try:
            names = sorted(n for n in os.listdir(lfd) if n.startswith('detached-'))
            records = load_records(self.state_dir) if names else {}
            for name in names:
                gen = os.path.join(m['layers'], name)
                rec = records.get(gen)
                st = sf.entry(lfd, name)
                # Only what root detached and recorded counts; anything else is never handed to mount(2).
                if rec is None or st is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
                    continue
                gfd = os.open(name, sf.DIR_FLAGS, dir_fd=lfd)
                try:
                    parts = [sf.entry(gfd, x) for x in ('upper', 'work')]
                finally:
                    os.close(gfd)
                if not all(x is not None and stat.S_ISDIR(x.st_mode) for x in parts):
                    continue
                live = self.in_use(os.path.join(gen, 'upper'), os.path.join(gen, 'work')) is not False
                out.append((name, rec[0], live))
        finally:
            os.close(lfd)
        return out

    def merge_dead(self, m, dead):
        """Fold the upper of the ``dead`` detached generations into the current upper (the view is unmounted).

        A generation is removed only once its merge completed; what a capped
        merge left stays for the next run. Never raises: the view must be
        mounted again whatever happens here.
        """
        moved = 0
        deadline = self.merge_deadline
        try:
            lfd = sf.open_dir(m['layers'], 'layers of repl %s' % m['user'])
        except (sf.UnsafePathError, OSError) as exc:
            self.note(self.merged, m, 'not merged: %s' % exc)
            return 0
        try:
            for name, record, dummy in dead:
                try:
                    gfd = os.open(name, sf.DIR_FLAGS, dir_fd=lfd)
                    try:
                        complete = True
                        if sf.entry(gfd, 'upper') is not None:
                            src = os.open('upper', sf.DIR_FLAGS, dir_fd=gfd)
                            dst = os.open('upper', sf.DIR_FLAGS, dir_fd=lfd)
                            try:
                                n, complete = merge_upper(src, dst, deadline=deadline)
                                moved += n
                            finally:
                                os.close(src)
                                os.close(dst)
                    finally:
                        os.close(gfd)
                    if not complete:
                        # Not retried every run: kept, under a name no run merges again.
                        stuck = 'stuck-' + name[len('detached-'):]
                        os.rename(name, stuck, src_dir_fd=lfd, dst_dir_fd=lfd)
                        if record:
                            os.unlink(record)
                        self.note(self.merged, m, 'partly merged (%d entries); the rest is kept in %s' % (moved, stuck))
                        return moved
                    sf.remove_tree(lfd, name)
                    if record:
                        os.unlink(record)
                except (OSError, MemoryError) as exc:
                    self.note(self.merged, m, 'not merged: %s' % exc)
                    return moved
        finally:
            os.close(lfd)
        return moved

    # -- activate: mounts, switches, links ------------------------------
    def activate(self, m):
        state = mi.overlay_state(self.info, m)
        if self.state == 'present':
            self.note(self.users, m, 'already' if state == 'mounted' else 'present')
            return
        # One probe of each generation per run: a switch below only adds a live one.
        gens = self.generations(m)
        dead = [g for g in gens if not g[2]]
        live = len(gens) - len(dead)
        if state == 'mounted' and not dead:
            self.note(self.users, m, 'already')
            return
        if self.check_mode:
            self.note(self.users, m, {'absent': 'mounted', 'stale': 'switched', 'mounted': 'merged'}[state])
            return
        outcome = 'mounted'
        lazily = False
        if state != 'absent':
            current = mi.mounted_at(self.info, m['target'])
            dev = self.mount_dev(current)
            result = sf.umount(m['target'], current['mount_id'])
            if result == 'busy' and not self.lazy:
                # Decided by the kernel's EBUSY; the pids are for the report only (paths can be spoofed).
                self.note(self.busy, m, find_busy([m['target']]).get(m['target']) or 'EBUSY')
                self.note(self.users, m, 'busy')
                return
            outcome = 'switched' if state == 'stale' else 'merged'
            if result == 'busy':
                if live >= MAX_LIVE_GENERATIONS:
                    self.note(self.busy, m, 'EBUSY, and %d detached generations are still held' % live)
                    self.note(self.users, m, 'busy')
                    return
                sf.umount(m['target'], current['mount_id'], lazy=True)
                self.detach(m, dev, current['super_options'].get('lowerdir'))
                lazily = True
        if not lazily and self.in_use(m['upperdir'], m['workdir']) is not False:
            # Still held (or the kernel cannot say): a copy of the old view in a user's own mount namespace,
            # or an old mount that could not be unmounted. Never share layers: the new view gets fresh ones.
            if live >= MAX_LIVE_GENERATIONS:
                raise sf.UnsafePathError('the layers of repl %s (%s) are still held elsewhere, and so are %d detached '
                                         'generations; not mounted until they are let go'
                                         % (m['user'], m['ecosystem'], MAX_LIVE_GENERATIONS))
            self.detach(m, None, current['super_options'].get('lowerdir') if state != 'absent' else None)
            lazily = True
        if not lazily and self.compact and state == 'stale':
            files, size = compact(m['upperdir'], m['lowerdir'])
            self.note(self.compacted, m, {'files': files, 'bytes': size})
        merged = self.merge_dead(m, dead)
        if merged and m['ecosystem'] not in self.merged.get(m['user'], {}):
            self.note(self.merged, m, merged)
        self.mount_fn(m)
        self.note(self.users, m, outcome)

    def link(self, m, old=None):
        """Point the package manager's cache dir at the view; return True when something changed.

        ``old`` ({'home', 'link'}): where an earlier run placed her link (her home moved). Once the new link is in
        place, that one is retired (retire_link) and its fate noted in ``old_links``.
        """
        result = place_link(m, self.check_mode, self.now)
        changed = result in ('created', 'replaced')
        if result.startswith('saved:'):
            self.note(self.saved, m, result[len('saved:'):])
            changed = True
        if old is not None:
            fate, why = retire_link(old, m, self.check_mode)
            self.note(self.old_links, m, {'path': old['link'], 'fate': fate, 'why': why})
            changed = changed or fate in ('remove', 'removed')
        return changed

    # -- purge: the data of users this run no longer serves --------------
    def _planned_paths(self):
        return [p for m in self.mounts for p in (m['scratch'], m['home'], m['target'], os.path.dirname(m['target']))
                if p]

    def removed_users(self):
        """Users with a view dir or a scratch dir of ours (root, 0700, with cacache_* in it) that this run does not serve.

        A dir that is, holds or lies inside a served user's scratch dir, home or view is never one (a user may have
        a scratch dir of another name).
        """
        planned = set(m['user'] for m in self.mounts)
        paths = self._planned_paths()
        found = set()
        for root, ours in ((self.views_root, lambda fd, name, st: True), (self.scratch_root, is_our_scratch)):
            for name in our_dirs(root, ours) - planned:
                path = os.path.join(root, name)
                if not any(path == q or q.startswith(path + '/') or path.startswith(q + '/') for q in paths):
                    found.add(name)
        return sorted(found)

    def purge(self, user, info, deadline=None):
        """Remove a removed user's scratch and view dirs, root-side: by fds from root's roots, no symlink followed,
        never into a mount, and only when no overlay anywhere still uses one of the user's layers.

        Each root's dir goes only if that root's own test passes (ours, root's). Failures are the user's alone.
        """
        scratch = os.path.join(self.scratch_root, user)
        views = os.path.join(self.views_root, user)
        for mi in info:
            opts = mi.get('super_options') or {}
            used = [mi['mount_point']] + [opts.get(k) or '' for k in ('upperdir', 'workdir', 'lowerdir')]
            if any(u == d or u.startswith(d + '/') for u in used for d in (scratch, views)):
                self.purged[user] = 'kept: %s is still mounted' % mi['mount_point']
                return
        roots = ((self.scratch_root, is_our_scratch), (self.views_root, lambda fd, name, st: True))
        targets = [(root, user) for root, ours in roots if user in our_dirs(root, ours)]
        if self.check_mode:
            self.purged[user] = 'purged'
            return
        removed = [0]
        try:
            for upper, work in _layer_pairs(scratch) if (self.scratch_root, user) in targets else []:
                live = probe_layers(self.state_dir, upper, work)
                if live is not False:
                    self.purged[user] = 'kept: an overlay %s %s' % ('may still use' if live is None else 'still uses', upper)
                    return
            for root, name in targets:
                rfd = sf.open_dir(root, 'root of the views or scratch dirs')
                try:
                    sf.remove_tree(rfd, name, max_depth=PURGE_MAX_DEPTH, one_filesystem=True, deadline=deadline,
                                   counter=removed)
                finally:
                    os.close(rfd)
        except (OSError, sf.UnsafePathError) as exc:
            self.purged[user] = 'failed after %d entries: %s' % (removed[0], exc)
            return
        for gen, (path, rec) in load_records(self.state_dir).items():
            if gen.startswith(scratch + '/'):
                os.unlink(path)
        self.purged[user] = 'purged'


def our_dirs(root, ours):
    """Names in ``root`` (opened by a root-owned fd chain) of root-owned dirs that pass ``ours(fd, name, lstat)``.

    Names that begin with '.' count too (a repl user may be called '.alice'); an entry that goes meanwhile is
    skipped.
    """
    try:
        rfd = sf.open_dir(root, 'root of the views or scratch dirs')
    except (OSError, sf.UnsafePathError):
        return set()
    try:
        found = set()
        for name in os.listdir(rfd):
            st = sf.entry(rfd, name)
            if (st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == 0
                    and ours(rfd, name, st)):
                found.add(name)
        return found
    finally:
        os.close(rfd)


def is_our_scratch(rfd, name, st):
    """A scratch dir this collection made: root's, 0700, with a cacache_<ecosystem> dir of root's in it."""
    if stat.S_IMODE(st.st_mode) != 0o700:
        return False
    try:
        fd = os.open(name, sf.DIR_FLAGS, dir_fd=rfd)
    except OSError:
        return False
    try:
        for child in os.listdir(fd):
            cst = sf.entry(fd, child)
            if child.startswith('cacache_') and cst is not None and stat.S_ISDIR(cst.st_mode) and cst.st_uid == 0:
                return True
        return False
    finally:
        os.close(fd)


def _root_dirs(fd, prefixes):
    """Names in ``fd`` that start with one of ``prefixes`` and are real directories of root's (lstat, no symlink)."""
    out = []
    for name in sorted(os.listdir(fd)):
        st = sf.entry(fd, name)
        if name.startswith(prefixes) and st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == 0:
            out.append(name)
    return out


def _layer_pairs(scratch):
    """(upper, work) of every generation under a user's scratch dir: cacache_*/ and its detached-*/stuck-* dirs.

    Read through fds: every dir on the way is a real directory of root's (a user's planted symlink, in a scratch dir
    migrated from the earlier layout, is not followed), ``work`` is root's and ``upper`` a real directory, so the
    paths handed to the probe name only what root made.
    """
    out = []
    try:
        sfd = sf.open_dir(scratch, 'scratch dir')
    except FileNotFoundError:
        return out
    try:
        for layers in _root_dirs(sfd, ('cacache_',)):
            lfd = os.open(layers, sf.DIR_FLAGS, dir_fd=sfd)
            gens = [(lfd, None)]
            try:
                for gen in _root_dirs(lfd, ('detached-', 'stuck-')):
                    gens.append((os.open(gen, sf.DIR_FLAGS, dir_fd=lfd), gen))
                for gfd, gen in gens:
                    upper, work = sf.entry(gfd, 'upper'), sf.entry(gfd, 'work')
                    if upper is not None and stat.S_ISDIR(upper.st_mode) and work is not None \
                            and stat.S_ISDIR(work.st_mode) and work.st_uid == 0:
                        base = os.path.join(scratch, layers, *([gen] if gen else []))
                        out.append((os.path.join(base, 'upper'), os.path.join(base, 'work')))
            finally:
                for gfd, dummy in gens:
                    os.close(gfd)
    finally:
        os.close(sfd)
    return out


def records_dir(state_dir):
    """Where the records of detached generations are (root's store), for overlay_mounts and snapshot_gc."""
    return os.path.join(state_dir, 'detached')


def load_records(state_dir):
    """{generation path: (record file, record)} of the detached generations recorded in ``state_dir``."""
    rdir = records_dir(state_dir)
    out = {}
    try:
        names = os.listdir(rdir)
    except OSError:
        return out
    for name in names:
        path = os.path.join(rdir, name)
        try:
            with open(path) as f:
                rec = json.load(f)
            out[rec['generation']] = (path, rec)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def probe_layers(state_dir, upperdir, workdir):
    """_safefs.layers_in_use with the probe dir kept in ``state_dir`` (root's store)."""
    probe = os.path.join(state_dir, '.probe')
    os.makedirs(probe, mode=0o700, exist_ok=True)
    return sf.layers_in_use(upperdir, workdir, probe)


def live_lowerdirs(state_dir):
    """Lower dirs of detached overlays that may still be in use (the kernel says so, or cannot tell)."""
    out = set()
    for gen, (path, rec) in load_records(state_dir).items():
        if not rec.get('lowerdir'):
            continue
        try:
            if not os.path.isdir(os.path.join(gen, 'upper')):
                continue
            live = probe_layers(state_dir, os.path.join(gen, 'upper'), os.path.join(gen, 'work'))
        except OSError:
            live = None
        if live is not False:
            out.add(rec['lowerdir'])
    return out


def _special_dir(fd):
    for name in OPAQUE:
        try:
            os.getxattr(fd, name)
            return True
        except OSError:
            continue
    return False


def merge_upper(src_fd, dst_fd, max_entries=MERGE_MAX_ENTRIES, max_depth=MERGE_MAX_DEPTH, deadline=None):
    """Move what ``dst`` lacks from upper ``src`` into upper ``dst``; return (entries moved, complete).

    Entries are renamed (whiteouts and xattrs travel with them); where both
    have a directory, neither opaque nor redirected, it descends; on any other
    clash the current upper wins. Never follows a symlink. Depth first with
    one pair of open dirs per level, so fds stay bounded by the depth; past
    ``max_entries``, ``max_depth`` or ``deadline`` it stops and says so, and
    the caller keeps what was not merged.
    """
    moved = seen = 0
    complete = True
    stack = [(src_fd, dst_fd, iter(os.listdir(src_fd)), False)]
    try:
        while stack:
            s, d, names, owned = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if owned:
                    os.close(s)
                    os.close(d)
                continue
            seen += 1
            if seen > max_entries or (deadline is not None and time.monotonic() > deadline):
                return moved, False
            there = sf.entry(d, name)
            if there is None:
                os.rename(name, name, src_dir_fd=s, dst_dir_fd=d)
                moved += 1
                continue
            here = sf.entry(s, name)
            if here is None or not (stat.S_ISDIR(here.st_mode) and stat.S_ISDIR(there.st_mode)):
                continue
            if len(stack) >= max_depth:
                complete = False
                continue
            cs = os.open(name, sf.DIR_FLAGS, dir_fd=s)
            cd = os.open(name, sf.DIR_FLAGS, dir_fd=d)
            if _special_dir(cs) or _special_dir(cd):
                os.close(cs)
                os.close(cd)
                continue
            stack.append((cs, cd, iter(os.listdir(cs)), True))
    finally:
        for s, d, names, owned in stack:
            if owned:
                os.close(s)
                os.close(d)
    return moved, complete


class HomeGone(sf.UnsafePathError):
    """The home (or its parent) does not exist."""


def _open_home(user, uid, home):
    """An O_NOFOLLOW fd of ``home``, opened from its root-owned parent; the home must be root's or ``uid``'s."""
    try:
        pfd = sf.open_dir(os.path.dirname(home), 'parent of the home of repl %s' % user)
    except FileNotFoundError as exc:
        raise HomeGone('the parent of home %s of repl %s is missing: %s' % (home, user, exc.strerror))
    try:
        try:
            fd = os.open(sf.components(home)[-1], sf.DIR_FLAGS, dir_fd=pfd)
        except OSError as exc:
            error = HomeGone if exc.errno == errno.ENOENT else sf.UnsafePathError
            raise error('home %s of repl %s cannot be used: %s' % (home, user, exc.strerror))
    finally:
        os.close(pfd)
    st = os.fstat(fd)
    if st.st_uid not in (0, uid):
        os.close(fd)
        raise sf.UnsafePathError('home %s of repl %s belongs to uid %d' % (home, user, st.st_uid))
    return fd


def describe_entry(fd, name, target):
    """What stands at ``name`` in ``fd``, in words (for the plan and the diff); None when nothing does."""
    st = sf.entry(fd, name)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        to = os.readlink(name, dir_fd=fd)
        return 'symlink to the view %s' % to if to == target else 'symlink to %s' % to
    return 'directory' if stat.S_ISDIR(st.st_mode) else 'file'


def place_link(m, check_mode, now, seen=None):
    """Make ``m['link']`` a symlink to the view, with *at() calls from an O_NOFOLLOW walk of the home.

    The home's parents must be root's. Missing dirs below the home are made
    as the user's (0700). What stands at the link's place is replaced if it
    is a symlink or an empty dir, and moved aside (kept) otherwise.
    Returns 'already', 'created', 'replaced' or 'saved:<name>'. A dict
    ``seen`` gets what stood there before, in words (``before``, None for
    nothing).
    """
    seen = {} if seen is None else seen
    rel = sf.components(m['link'])[len(sf.components(m['home'])):]
    fd = _open_home(m['user'], m['uid'], m['home'])
    try:
        path = m['home']
        for name in rel[:-1]:
            path += '/' + name
            try:
                nfd = os.open(name, sf.DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                seen['before'] = None
                if check_mode:
                    return 'created'
                os.mkdir(name, 0o700, dir_fd=fd)
                try:
                    nfd = os.open(name, sf.DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise sf.UnsafePathError('%s of repl %s: %s' % (path, m['user'], exc.strerror))
                if os.fstat(nfd).st_uid != 0:  # not the dir root just made: the user swapped it in
                    os.close(nfd)
                    raise sf.UnsafePathError('%s of repl %s was replaced while it was made; try again' % (path, m['user']))
                os.fchown(nfd, m['uid'], m['gid'])
            except OSError as exc:
                raise sf.UnsafePathError('%s of repl %s is a symlink or not a directory (%s); its cache link was not placed'
                                         % (path, m['user'], exc.strerror))
            os.close(fd)
            fd = nfd
        seen['before'] = describe_entry(fd, rel[-1], m['target'])
        return _link_at(fd, rel[-1], m, check_mode, now)
    finally:
        os.close(fd)


def retire_link(old, m, check_mode):
    """The cache link an earlier run placed at ``old`` ({'home', 'link'}), now that ``m`` places it elsewhere
    (the user's home moved): removed when it is still root's symlink to her view, else left.

    Walked like place_link (O_NOFOLLOW fds from the home's root-owned parent, nothing created); the home must still
    be root's or hers. Returns (fate, why): fate is 'remove' (check mode) or 'removed', 'gone' (nothing of ours
    stands there any more) or 'left' (it cannot be reached safely, or is no longer the link: kept, and said why).
    """
    link, home = old['link'], old['home']
    rel = sf.components(link)[len(sf.components(home)):]
    try:
        fd = _open_home(m['user'], m['uid'], home)
    except HomeGone:
        return 'gone', 'the old home %s is gone' % home
    except (sf.UnsafePathError, OSError) as exc:
        return 'left', str(exc)
    try:
        path = home
        for name in rel[:-1]:
            path += '/' + name
            try:
                nfd = os.open(name, sf.DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return 'gone', '%s is gone' % path
            except OSError as exc:
                return 'left', '%s is a symlink or not a directory (%s)' % (path, exc.strerror)
            os.close(fd)
            fd = nfd
        try:
            st = sf.entry(fd, rel[-1])
            if st is None:
                return 'gone', 'nothing stands at %s any more' % link
            what = describe_entry(fd, rel[-1], m['target'])
            ours = stat.S_ISLNK(st.st_mode) and st.st_uid == 0 and os.readlink(rel[-1], dir_fd=fd) == m['target']
        except OSError as exc:  # changing under us: her own dir
            return 'left', '%s: %s' % (link, exc.strerror)
        if not ours:
            return 'left', '%s is no longer root\'s link to her view (%s)' % (link, what)
        if check_mode:
            return 'remove', 'the link to her view is still there'
        # Her own dir: she could swap the entry between the check and this unlink, and would lose only her own entry.
        try:
            os.unlink(rel[-1], dir_fd=fd)
        except OSError as exc:
            return 'left', '%s could not be removed: %s' % (link, exc.strerror)
        return 'removed', 'the link to her view was removed'
    finally:
        os.close(fd)


def links_file(state_dir):
    """Where the cache links the last real runs placed are recorded (root's store), to see a home move."""
    return os.path.join(state_dir, 'links.json')


def load_links(state_dir):
    """{user: {ecosystem: {'home', 'link'}}} of the cache links placed by earlier runs ({} if none or unreadable)."""
    try:
        with open(links_file(state_dir)) as f:
            table = json.load(f)
    except (OSError, ValueError):
        return {}
    out = {}
    if isinstance(table, dict):
        for user, ecos in table.items():
            for eco, rec in (ecos.items() if isinstance(ecos, dict) else ()):
                if isinstance(rec, dict) and isinstance(rec.get('home'), str) and isinstance(rec.get('link'), str) \
                        and rec['link'].startswith(rec['home'].rstrip('/') + '/') and rec['home'].startswith('/'):
                    out.setdefault(user, {})[eco] = {'home': rec['home'], 'link': rec['link']}
    return out


def save_links(state_dir, table):
    """Write the record of placed links atomically (a temp file in the state dir, then rename)."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix='.links-')
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(table, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, links_file(state_dir))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _link_at(fd, name, m, check_mode, now):
    st = sf.entry(fd, name)
    if st is not None and stat.S_ISLNK(st.st_mode):
        if os.readlink(name, dir_fd=fd) == m['target']:
            return 'already'
    if check_mode:
        return 'created' if st is None else 'replaced'
    outcome = 'created' if st is None else 'replaced'
    if st is not None and stat.S_ISDIR(st.st_mode):
        try:
            os.rmdir(name, dir_fd=fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            aside = '%s.pkgcache-saved-%s' % (name, _stamp(now))
            os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
            outcome = 'saved:' + aside
    elif st is not None and not stat.S_ISLNK(st.st_mode):
        aside = '%s.pkgcache-saved-%s' % (name, _stamp(now))
        os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
        outcome = 'saved:' + aside
    tmp = '.%s.pkgcache-%d' % (name, os.getpid())
    try:
        os.unlink(tmp, dir_fd=fd)
    except FileNotFoundError:
        pass
    # The link stays root's: chowning it would be a chown by name in the user's dir. The user may still
    # remove or replace it (the dir is theirs); that only changes where their own package manager looks.
    os.symlink(m['target'], tmp, dir_fd=fd)
    try:
        os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=fd)
        except OSError:
            pass
        raise
    return outcome
