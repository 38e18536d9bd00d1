# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""overlay_mounts: the argument spec, the users, one plan for every user, and its execution.

Private to the collection; the API may change without notice.

``plan()`` decides, read-only, what a run does and why: the directories to
create or fix, the fstab block to write, per user and ecosystem the mount,
switch or merge and the cache link, the targets to unmount and the users to
purge. Check mode returns it; a real run computes the same plan under the
lock and ``execute()`` carries it out. The directory work and the mounts are
in _views; every operation near a user's files goes through _safefs
(O_NOFOLLOW fds and *at() calls) and is checked again when it is done.
"""

from __future__ import annotations

import copy
import os
import posixpath
import pwd
import stat
import time

from . import _mountinfo as mi
from . import _overlay as ov
from . import _safefs as sf
from . import _views
from ._fstab import FstabError, block_entries, block_lines, parse_line, replace_block
from ._fstabfile import read_text, update_block
from ._lock import VIEWS_LOCK, LockError, StoreLock
from ._mountcmd import MountError, mount_overlay

BLOCK = 'mounts'
UnsafePathError = sf.UnsafePathError

# The module's arguments; the action plugin validates a task's arguments against the same spec.
ARGUMENT_SPEC = dict(
    repls=dict(type='list', elements='dict', required=True, options=dict(
        name=dict(type='str', required=True),
        uid=dict(type='int'),
        gid=dict(type='int'),
        home=dict(type='path'),
        scratch=dict(type='path'),
    )),
    ecosystems=dict(type='list', elements='str', default=['pip'], choices=sorted(ov.ECOSYSTEMS)),
    lower_root=dict(type='path', required=True),
    scratch_root=dict(type='path', default='/mnt/scratch'),
    views_root=dict(type='path', default=ov.VIEWS_ROOT),
    state_dir=dict(type='path', default='/var/lib/pkgcache'),
    strict=dict(type='bool', default=False),
    lock_timeout=dict(type='int', default=60),
    fstab=dict(type='path', default='/etc/fstab'),
    backup=dict(type='bool', default=False),
    state=dict(type='str', default='mounted', choices=['mounted', 'present']),
    purge_removed=dict(type='bool', default=False),
    lazy=dict(type='bool', default=False),
    compact=dict(type='bool', default=False),
    template=dict(type='str'),
    fstab_lines=dict(type='list', elements='str'),
)
ERRORS = (ov.OverlayInputError, sf.UnsafePathError, FstabError, MountError, LockError, OSError)


def argument_spec():
    return copy.deepcopy(ARGUMENT_SPEC)


def given_unresolved(repls):
    """Names of the repls whose uid, gid or home is not given (the host's passwd database fills them)."""
    return set(r.get('name') for r in repls if any(r.get(k) is None for k in ('uid', 'gid', 'home')))


def check_filesystems(mountinfo, mount):
    """Refuse an upper on overlayfs, and upper and work on different filesystems."""
    upper = mi.mount_of(mountinfo, mount['upperdir'])
    work = mi.mount_of(mountinfo, mount['workdir'])
    if upper is not None and upper['fstype'] == 'overlay':
        raise ov.OverlayInputError('repl %s: upperdir %s is on overlayfs (mounted at %s), which cannot be an upper layer; '
                                   'put the scratch root on a volume or a tmpfs' % (mount['user'], mount['upperdir'], upper['mount_point']))
    if upper is not None and work is not None and upper['dev'] != work['dev']:
        raise ov.OverlayInputError('repl %s: upperdir %s and workdir %s are on different filesystems (%s, %s)'
                                   % (mount['user'], mount['upperdir'], mount['workdir'], upper['mount_point'], work['mount_point']))


def kept_line(block, mount, lower_root):
    """The line of the managed block (``block``: its lines) that mounts ``mount`` as planned but for an earlier
    snapshot's tree beside ``lower_root``, or None.

    A user whose mount fails this run (not resolved, a broken area, a failed switch) keeps the view she has, and
    such a line brings it back after a reboot. It names root's paths only: the planned view, upper and work dirs,
    and a snapshot tree. A line of an earlier layout (a mount in a home) is never kept.
    """
    for line in block:
        fields = parse_line(line)
        if not fields or fields[1] != mount['target']:
            continue
        lower = (mi.split_options(fields[3]).get('lowerdir') or '') if len(fields) > 3 else ''
        try:
            ov.validate_path(lower, 'lowerdir')
            if posixpath.dirname(posixpath.dirname(lower)) != posixpath.dirname(lower_root) \
                    or posixpath.basename(lower) != posixpath.basename(mount['lowerdir']):
                return None
            ov.check_line(line, dict(mount, lowerdir=lower))
        except ov.OverlayInputError:
            return None
        return line
    return None


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


class Run(object):
    """What one run works on: the planned mounts, their fstab lines and the host's mount table.

    Built by ``prepare()`` from explicit arguments; ``plan()`` and ``execute()`` take it.
    """

    def __init__(self, mounts, paired, unresolved, info, fstab, lower_root, scratch_root, views_root, state_dir,
                 state, lazy, compact, purge_removed, now=None):
        self.mounts, self.paired, self.unresolved, self.info = mounts, paired, unresolved, info
        self.fstab, self.lower_root, self.scratch_root, self.views_root = fstab, lower_root, scratch_root, views_root
        self.state_dir, self.state, self.lazy, self.compact = state_dir, state, lazy, compact
        self.purge_removed = purge_removed
        self.now = time.time() if now is None else now
        self.live = False  # True when ``info`` is this host's mount table, read again under the lock

    def converge(self, mount_fn, check_mode):
        run = _views.Converge(self.mounts, self.info, mount_fn, check_mode, state=self.state, state_dir=self.state_dir,
                              views_root=self.views_root, scratch_root=self.scratch_root, lazy=self.lazy,
                              compact=self.compact, now=self.now)
        for m in self.mounts:
            if m['user'] in self.unresolved:
                run.fail(m, self.unresolved[m['user']])
        for root, mode in ((self.views_root, 0o711), (self.scratch_root, 0o755)):
            fd = run.ensure_root_chain(root, mode)
            if fd is not None:
                os.close(fd)
        return run

    def lines(self, failed):
        """The managed block's lines: the planned ones, but for a user's mount that failed, its line of the block
        as it is (``kept_line``), or none."""
        out, block = [], None
        for line, m in self.paired:
            if m is not None and m['ecosystem'] in failed.get(m['user'], {}):
                if block is None:
                    block = block_lines(read_text(self.fstab), BLOCK)
                line = kept_line(block, m, self.lower_root)
            if line is not None:
                out.append(line)
        return out


def prepare(repls, ecosystems, lower_root, scratch_root, views_root, state_dir, fstab, fstab_lines, state, lazy,
            compact, purge_removed, check_mode, warn, getpwnam=None, mountinfo=None):
    """Resolve the users, plan their mounts, pair the fstab lines and check the host; return a Run.

    Raises OverlayInputError for input that cannot be planned at all; a user
    the host does not know is only left unserved.
    """
    repls, unresolved = ov.resolve_repls(repls, getpwnam or pwd.getpwnam)
    mounts = ov.plan_mounts(repls, ecosystems, lower_root, scratch_root, views_root, unresolved=unresolved)
    paired = render_lines(mounts, fstab_lines)
    info = mi.current() if mountinfo is None else mountinfo
    # Check mode on a host that has not fetched the snapshot yet (the sync, in check mode too, would fetch it).
    unfetched = check_mode and not os.path.isdir(lower_root)
    if unfetched:
        warn('check mode: the snapshot at %s is not on this host yet; the mounts are planned on it as a real '
             'run would fetch it' % lower_root)
    for m in mounts:
        check_filesystems(info, m)
        if not unfetched and not os.path.isdir(m['lowerdir']):
            raise ov.OverlayInputError(
                'ecosystem %s: the snapshot at %s has no %s cache (%s is missing); build it with that ecosystem '
                'or remove it from ecosystems' % (m['ecosystem'], lower_root, m['ecosystem'], m['lowerdir']))
    run = Run(mounts, paired, unresolved, info, fstab, lower_root, scratch_root, views_root, state_dir, state, lazy,
              compact, purge_removed)
    run.live = mountinfo is None
    return run


def _mount_step(run, planner, m, recorded):
    """The planned mount action for ``m`` and why: mount, switch, merge, none.

    ``recorded`` holds the layer dirs of the detached generations recorded in
    the state dir: only those are ever merged, so a view without one needs no
    look into its layer dir.
    """
    if run.state == 'present':
        return 'none', 'state=present writes fstab and the directories only'
    cur = mi.mounted_at(run.info, m['target'])
    state = mi.overlay_state(run.info, m)
    if state == 'absent':
        return 'mount', 'nothing is mounted at %s' % m['target']
    if state == 'stale':
        if cur['fstype'] != 'overlay':
            return 'switch', '%s is mounted there, not the planned overlay' % cur['fstype']
        lower = cur['super_options'].get('lowerdir')
        return 'switch', 'mounted with other layers (lowerdir %s, planned %s)' % (lower, m['lowerdir'])
    if m['layers'] in recorded and planner.generations(m):
        return 'merge', 'mounted; detached generations are folded in once no overlay holds them'
    return 'none', 'mounted with the planned layers'


def _view_state(info, target):
    """What is mounted at a view's target, in words (the plan's and the diff's before)."""
    cur = mi.mounted_at(info, target)
    if cur is None:
        return 'not mounted'
    if cur['fstype'] != 'overlay':
        return '%s mounted' % cur['fstype']
    return 'overlay of %s' % cur['super_options'].get('lowerdir')


def _view_after(run, m, action, before):
    if action in ('mount', 'switch'):
        return 'overlay of %s' % m['lowerdir']
    if action == 'merge':
        return before + ', detached generations merged'
    return before


def plan(run, made_roots=None):
    """Decide, read-only, what a run does; return (plan, the check-mode Converge that recorded it).

    A real run makes the views and scratch roots before it takes the lock in
    one; ``made_roots`` (what that created) then stands for them in the plan.
    """
    planner = run.converge(None, True)
    if made_roots is not None:
        planner.created[:] = list(made_roots)
    steps, prepare_users, unchanged = [], [], 0
    recorded = set(os.path.dirname(gen) for gen in _views.load_records(run.state_dir))
    placed = _views.load_links(run.state_dir)
    planner.links_in_place = {}  # (user, ecosystem): the mount whose link already stands (recorded after a real run)
    for user_mounts in _by_user(run.mounts):
        user = user_mounts[0]['user']
        if user in run.unresolved:
            continue
        before = (len(planner.created), dict(planner.repaired), dict(planner.retired))
        ready = planner.prepare_user(user_mounts)
        changed = len(planner.created) > before[0] or planner.repaired != before[1] or planner.retired != before[2]
        user_steps = []
        for m in ready:
            action, why = _mount_step(run, planner, m, recorded)
            seen = {}
            try:
                link = {'already': 'keep', 'created': 'create', 'replaced': 'replace'}[
                    _views.place_link(m, True, run.now, seen)]
            except (sf.UnsafePathError, OSError) as exc:
                # The user's own link place is broken, or changing under us: that costs the link only. The view is
                # still mounted and kept in fstab; the link is tried (and a failure reported) when the run executes.
                link, why = 'retry', '%s; link: %s' % (why, exc)
                seen['before'] = 'cannot be reached: %s' % exc
            step = {'user': user, 'ecosystem': m['ecosystem'], 'target': m['target'], 'action': action,
                    'why': why, 'link': link, 'compact': run.compact and action == 'switch',
                    'link_path': m['link'], 'link_before': seen.get('before'), 'link_from': None,
                    'view_before': _view_state(run.info, m['target'])}
            step['view_after'] = _view_after(run, m, action, step['view_before'])
            old = placed.get(user, {}).get(m['ecosystem'])
            if old is not None and old['link'] != m['link']:
                # Her home moved since an earlier run placed her link: the new one is placed, the old one retired.
                fate, reason = _views.retire_link(old, m, True)
                if link != 'keep' or fate != 'gone':
                    step['link_from'] = {'path': old['link'], 'home': old['home'], 'fate': fate, 'why': reason}
                    link = step['link'] = 'retry' if link == 'retry' else 'move'
            if link == 'keep':
                planner.links_in_place[(user, m['ecosystem'])] = m
            user_steps.append(step)
            state = {'mount': 'mounted', 'switch': 'switched'}.get(
                action, 'present' if run.state == 'present' and mi.overlay_state(run.info, m) != 'mounted' else 'already')
            planner.note(planner.users, m, 'link-moved' if state in ('already', 'present') and link == 'move' else state)
            changed = changed or action != 'none' or link != 'keep'
        # A user with nothing to do is left out (and counted): the run does not walk them again.
        if changed:
            prepare_users.append(user)
            steps += user_steps
        else:
            unchanged += len(user_steps)
    before = read_text(run.fstab)
    after = replace_block(before, BLOCK, run.lines(planner.failed))
    old_block, new_block = block_lines(before, BLOCK), block_lines(after, BLOCK)
    planned = set(m['target'] for m in run.mounts)
    retired = set(t for u in planner.retired.values() for t in u.values())
    unmount = []
    for target in sorted(set(f[1] for f in block_entries(before, BLOCK)) - planned - retired):
        cur = mi.mounted_at(run.info, target)
        if run.state == 'mounted' and cur is not None and cur['fstype'] == 'overlay':
            unmount.append({'target': target, 'why': 'left the managed block (its user or ecosystem was dropped)'})
    if run.purge_removed and run.state == 'mounted':
        # Nothing is unmounted yet: leave out what the run unmounts first.
        gone = set(u['target'] for u in unmount)
        left = [x for x in run.info if x['mount_point'] not in gone]
        for user in planner.removed_users():
            planner.purge(user, left)
    return {'create': list(planner.created), 'repair': dict(planner.repaired), 'retire': dict(planner.retired),
            'prepare': prepare_users, 'mounts': steps, 'unchanged': unchanged,
            'fstab': {'path': run.fstab, 'write': after != before, 'add': [l for l in new_block if l not in old_block],
                      'remove': [l for l in old_block if l not in new_block]},
            'unmount': unmount, 'purge': dict(planner.purged), 'unserved': dict(planner.failed)}, planner


def record_links(run, in_place):
    """Record where this run's cache links stand (``in_place``: (user, ecosystem) -> mount), so that a later run sees
    a moved home and retires the old link. Users this run did not place a link for keep their record."""
    before = _views.load_links(run.state_dir)
    table = copy.deepcopy(before)
    for (user, eco), m in in_place.items():
        table.setdefault(user, {})[eco] = {'home': m['home'], 'link': m['link']}
    if table != before:
        _views.save_links(run.state_dir, table)


def execute(run, the_plan, planner, doer, update):
    """Carry out ``the_plan`` with ``doer`` (a real Converge from run.converge()); every check is made again where
    it is done. ``update(lines)`` writes the managed block and returns update_block's result.
    """
    for user, ecos in the_plan['unserved'].items():
        for m in run.mounts:
            if m['user'] == user and m['ecosystem'] in ecos:
                doer.fail(m, ecos[m['ecosystem']])
    steps = dict(((s['user'], s['ecosystem']), s) for s in the_plan['mounts'])
    ready = []
    for user_mounts in _by_user(run.mounts):
        for m in user_mounts:
            if (m['user'], m['ecosystem']) not in steps and m['ecosystem'] in planner.users.get(m['user'], {}) \
                    and m['ecosystem'] not in doer.failed.get(m['user'], {}):
                doer.note(doer.users, m, planner.users[m['user']][m['ecosystem']])
        user_mounts = [m for m in user_mounts if (m['user'], m['ecosystem']) in steps]
        if user_mounts:
            ready += doer.prepare_user(user_mounts)
    fstab = update(run.lines(doer.failed))
    linked = False
    for m in ready:
        step = steps[(m['user'], m['ecosystem'])]
        try:
            if step['action'] == 'none':
                doer.note(doer.users, m, planner.users[m['user']][m['ecosystem']])
            else:
                doer.activate(m)
            if step['link'] != 'keep':
                old = step['link_from']
                linked = doer.link(m, old and {'home': old['home'], 'link': old['path']}) or linked
                planner.links_in_place[(m['user'], m['ecosystem'])] = m
        except (sf.UnsafePathError, MountError, OSError) as exc:
            doer.fail(m, str(exc))
    record_links(run, planner.links_in_place)
    removed = {}
    for item in the_plan['unmount']:
        cur = mi.mounted_at(run.info, item['target'])
        try:
            outcome = sf.umount(item['target'], cur['mount_id'], lazy=run.lazy) if cur else 'gone'
        except (OSError, sf.UnsafePathError) as exc:  # one stale mount that will not go: reported, the run goes on
            outcome = 'failed: %s' % exc
        if outcome != 'gone':
            removed[item['target']] = outcome
    if the_plan['purge']:
        fresh = mi.current()
        deadline = time.monotonic() + _views.PURGE_SECONDS
        for user in sorted(the_plan['purge']):
            doer.purge(user, fresh, deadline)
    return doer, fstab, removed, linked


def _link_line(key, path, what, target):
    if what == 'symlink to the view %s' % target:
        return '%s link %s -> %s' % (key, path, target)
    return '%s link place %s: %s' % (key, path, what)


def plan_diff(run, the_plan, conv, check_mode):
    """The plan's views, cache links, directories, unmounts and purges as --diff's before and after text.

    Check mode shows what the run would do; a real run what it did (a user's step that failed keeps its before).
    """
    before, after = [], []
    for path in the_plan['create']:
        after.append('directory %s: made, or its owner and mode set' % path)
    for user, ecos in sorted(the_plan['retire'].items()):
        for eco, point in sorted(ecos.items()):
            before.append('%s/%s old mount %s: overlay of the earlier layout' % (user, eco, point))
            after.append('%s/%s old mount %s: unmounted' % (user, eco, point))
    for user, ecos in sorted(the_plan['repair'].items()):
        for eco, what in sorted(ecos.items()):
            after.append('%s/%s repaired: %s' % (user, eco, what))
    for s in the_plan['mounts']:
        key = '%s/%s' % (s['user'], s['ecosystem'])
        failed = not check_mode and s['ecosystem'] in conv.failed.get(s['user'], {})
        b, a = [], []
        b.append('%s view %s: %s' % (key, s['target'], s['view_before']))
        a.append('%s view %s: %s' % (key, s['target'], s['view_after']))
        old = s.get('link_from')
        if old:
            fate = conv.old_links.get(s['user'], {}).get(s['ecosystem'], old) if not check_mode else old
            line = _link_line(key, old['path'], 'symlink to the view %s' % s['target'], s['target'])
            if fate['fate'] in ('remove', 'removed'):
                b.append(line)
            elif fate['fate'] == 'left':
                b.append('%s link place %s: left as it is (%s)' % (key, old['path'], fate['why']))
                a.append(b[-1])
        if s['link_path']:
            if s['link_before'] is not None:
                b.append(_link_line(key, s['link_path'], s['link_before'], s['target']))
            a.append(_link_line(key, s['link_path'], 'symlink to the view %s' % s['target'], s['target']))
        before += b
        after += b if failed else a
    for item in the_plan['unmount']:
        before.append('view %s: %s' % (item['target'], _view_state(run.info, item['target'])))
        after.append('view %s: unmounted (%s)' % (item['target'], item['why']))
    for user, outcome in sorted((conv.purged if not check_mode else the_plan['purge']).items()):
        before.append('removed user %s: scratch and view dirs' % user)
        after.append('removed user %s: %s' % (user, outcome))
    header = 'views, cache links and directories (%s)' % run.views_root
    return {'before': ''.join(l + '\n' for l in before), 'after': ''.join(l + '\n' for l in after),
            'before_header': header, 'after_header': header}


def link_report(the_plan, conv, check_mode):
    """Per user and ecosystem, every cache link the run places, replaces or moves (see RETURN ``links``)."""
    out = {}
    for s in the_plan['mounts']:
        if s['link'] == 'keep':
            continue
        item = {'action': s['link'], 'path': s['link_path'], 'target': s['target'], 'before': s['link_before']}
        if s['link_from']:
            old = s['link_from'] if check_mode else conv.old_links.get(s['user'], {}).get(s['ecosystem'])
            item['from'] = s['link_from']['path']
            item['old_link'] = '%s: %s' % (old['fate'], old['why']) if old else 'not retired: the new link failed'
        if not check_mode and s['ecosystem'] in conv.failed.get(s['user'], {}):
            item['failed'] = conv.failed[s['user']][s['ecosystem']]
        out.setdefault(s['user'], {})[s['ecosystem']] = item
    return out


def result(run, conv, fstab, removed, linked, the_plan, warn, diff, check_mode=False):
    """The module's result from the Converge that planned (check mode) or executed the run."""
    gids = {}
    for m in run.mounts:
        if m['gid'] is not None:
            gids.setdefault(m['gid'], set()).add(m['user'])
    for gid, users in sorted(gids.items()):
        if len(users) > 1:
            warn('repl users %s share the primary group %d: each can look up the others\' mount points '
                 '(<views_root>/<user> is 0710 root:<group>) and keep them busy; give each a group of its own'
                 % (', '.join(sorted(users)), gid))
    changed = bool(conv.created) or fstab['changed'] or bool(removed) or linked or bool(conv.repaired) or \
        bool(conv.retired) or 'purged' in conv.purged.values() or any(
            s in ('mounted', 'switched', 'merged') for u in conv.users.values() for s in u.values())
    out = {'changed': changed, 'users': conv.users, 'busy': conv.busy, 'removed': removed, 'compacted': conv.compacted,
           'compacted_bytes': sum(c['bytes'] for u in conv.compacted.values() for c in u.values()),
           'created': conv.created, 'mounts': run.mounts, 'unserved': conv.failed, 'saved': conv.saved,
           'repaired': conv.repaired, 'retired': conv.retired, 'detached': conv.detached, 'merged': conv.merged,
           'purged': conv.purged, 'links': link_report(the_plan, conv, check_mode), 'plan': the_plan}
    if fstab['backup_file']:
        out['backup_file'] = fstab['backup_file']
    if diff:
        diffs = [fstab['diff']] if fstab['changed'] else []
        views = plan_diff(run, the_plan, conv, check_mode)
        if views['before'] != views['after']:
            diffs.append(views)
        if diffs:
            out['diff'] = diffs[0] if len(diffs) == 1 else diffs
    return out


def drop_old_lock(views_root):
    """Remove the lock file of earlier versions (``<views_root>/.lock``, root's regular file): its name is the view
    dir of a user called ``.lock``. Done under the current lock; a directory of that name is hers and stays."""
    fd = sf.open_dir(views_root, 'views_root')
    try:
        st = sf.entry(fd, '.lock')
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_uid == 0:
            os.unlink('.lock', dir_fd=fd)
    finally:
        os.close(fd)


def converge(run, check_mode, update, warn, diff, lock_timeout):
    """Plan the run; in check mode return the plan as the result, else execute it under the lock of the views root."""
    if check_mode:
        the_plan, planner = plan(run)
        fstab = update(run.lines(planner.failed))
        removed = dict((u['target'], 'unmounted') for u in the_plan['unmount'])
        linked = any(s['link'] != 'keep' for s in the_plan['mounts'])
        return result(run, planner, fstab, removed, linked, the_plan, warn, diff, check_mode=True)
    options = dict((m['target'], parse_line(line)[3]) for line, m in run.paired if m is not None)

    def mount_fn(m):
        mount_overlay(m['target'], options[m['target']], m['layers'], m['uid'])

    doer = run.converge(mount_fn, False)  # makes the roots: the lock is in the views root
    with StoreLock(run.views_root, lock_timeout, name=VIEWS_LOCK):
        drop_old_lock(run.views_root)
        if run.live:  # what another run mounted or switched while this one waited for the lock
            run.info = doer.info = mi.current()
            for m in run.mounts:
                check_filesystems(run.info, m)
        the_plan, planner = plan(run, doer.created)
        doer, fstab, removed, linked = execute(run, the_plan, planner, doer, update)
    return result(run, doer, fstab, removed, linked, the_plan, warn, diff)


def run_module(module):
    """overlay_mounts' main(): one run over every user of the host, from the module's arguments."""
    p = module.params
    try:
        run = prepare(p['repls'], p['ecosystems'], p['lower_root'], p['scratch_root'], p['views_root'], p['state_dir'],
                      p['fstab'], p['fstab_lines'], p['state'], p['lazy'], p['compact'], p['purge_removed'],
                      module.check_mode, module.warn)
        out = converge(run, module.check_mode, lambda lines: update_block(module, p['fstab'], BLOCK, lines, p['backup']),
                       module.warn, module._diff, p['lock_timeout'])
    except ERRORS as exc:
        module.fail_json(msg=str(exc))
    if p['strict'] and out['unserved']:
        module.fail_json(msg='repl users not served: %s' % ', '.join(sorted(out['unserved'])), **out)
    module.exit_json(**out)
