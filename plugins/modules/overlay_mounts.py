#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: overlay_mounts
short_description: Give every repl user of a host a copy-on-write overlay view of the snapshot
version_added: 0.1.0
description:
  - One call handles all repl users of a host. For each user and ecosystem it mounts an OverlayFS view at a
    root-owned place, C(<views_root>/<user>/<ecosystem>), and points the package manager's cache dir (for pip
    C(~/.cache/pip)) at it with a symlink. The lower layer is the versioned snapshot tree; the upper and work dirs
    sit in C(<scratch>/cacache_<ecosystem>/), whose parents are root's; only C(upper), the root of the view,
    belongs to the user.
  - Every path handed to mount(8), the kernel or fstab is root's, and so is every directory above it, so no repl
    user can redirect a mount, at run time or at boot. The symlink is made with C(*at()) calls on O_NOFOLLOW fds.
  - Writes the fstab lines as one marked block, atomically, with optional backup, diff and check mode; every other
    line of fstab is kept byte for byte. Mounts what is missing, switches idle users whose view shows another
    snapshot, and leaves busy users on their current snapshot (reported as V(busy)).
  - Migrates the earlier layout (overlays mounted in the homes, user-owned scratch dirs) in place. The old mounts
    are unmounted, the scratch chain becomes root's, and the users' uppers are kept and show up in the new views.
  - A user whose home or scratch dir cannot be used is skipped and reported in RV(unserved); everyone else is served.
    A view she already has stays mounted, and keeps its line in the managed block if that line names only the
    planned view, upper and work dirs and a snapshot tree beside O(lower_root), so it comes back after a reboot.
    With O(strict) the task then fails, after serving the others.
  - Refuses, with an error that names the input and before changing anything, an upper dir on overlayfs, upper
    and work on different filesystems, paths holding C(,), C(:), C(#), C(\\) or whitespace, user names that
    cannot be a path component, homes or scratch dirs inside one another, and templates that drop
    C(nosuid,nodev) or add options outside a short allow list.
  - With the action plugin (the normal way to call it), the fstab lines come from the Jinja2 template O(template),
    rendered on the controller with the planned mounts in C(pkgcache_mounts). The action plugin validates the
    task's arguments against the module's own argument spec first.
  - The users' uid, gid and home are read from the host's passwd database when absent, in the same call.
  - When a user's home changes, her view and its fstab line stay; her cache link moves. The new link is placed, and
    the one an earlier run placed in the old home (recorded in C(<state_dir>/links.json)) is removed, through
    O_NOFOLLOW fds, if it is still root's link to her view; anything else there is left and reported in RV(links).
  - One plan decides what the run does and why (RV(plan)). Check mode returns it and changes nothing; a real run
    computes it under the lock and carries it out, checking every path again as it acts.
  - Overlays are mounted with mount(2) directly (no mount(8) process per mount), with the options of their fstab
    line, on the root-owned target opened by an O_NOFOLLOW chain and passed as C(/proc/self/fd/N).
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - Linux with OverlayFS, run as root
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.fstab_block
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the change of the fstab file, and a second text of the views, cache links, directories, unmounts and
        purges, each with its before and after (a moved home shows the old link going and the new one coming).
  action:
    support: full
    details: The action plugin renders O(template) into O(fstab_lines).
  async:
    support: none
  bypass_host_loop:
    support: none
options:
  repls:
    description: The repl users of this host.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The user name; also the name of its scratch dir and view dir. Any name C(useradd) accepts, except
            C(.), C(..) and names holding C(/), C(,), C(:), C(\\), C(#) or whitespace. Names that begin with C(.)
            are served like any other (the lock file of O(views_root) is C(#lock), which no user name can be).
        type: str
        required: true
      uid:
        description:
          - The user's uid (not 0). Read from the host's passwd database when absent.
          - A user the host does not know must be given O(repls[].uid), O(repls[].gid) and O(repls[].home); else it
            is reported in RV(unserved), naming the user, and everyone else is served.
          - A uid given for a user the host knows must be the one in its passwd database; else that user is reported
            in RV(unserved), since her view and upper would belong to another account.
        type: int
      gid:
        description: The user's primary gid (not 0). Read from the host's passwd database when absent.
        type: int
      home:
        description: The user's home. Read from the host's passwd database when absent.
        type: path
      scratch:
        description: The user's scratch dir. Defaults to C(<scratch_root>/<name>).
        type: path
  ecosystems:
    description:
      - The ecosystems to mount for every user, each linked from its package manager's cache dir under the home
        (pip C(~/.cache/pip), npm C(~/.npm), maven C(~/.m2/repository), uv C(~/.cache/uv)).
      - Each must be a directory of O(lower_root), that is, the snapshot must have been built with it.
    type: list
    elements: str
    choices: [maven, npm, pip, uv]
    default: [pip]
  lower_root:
    description:
      - The versioned snapshot tree (the RV(pkgcache.overlay.snapshot_sync#module:path) of M(pkgcache.overlay.snapshot_sync)).
        Each ecosystem's lower dir is a directory of it. Never a path whose contents change.
    type: path
    required: true
  scratch_root:
    description:
      - Where the users' scratch dirs are. It must not be on overlayfs (use a volume or a tmpfs), and it and every
        directory above it must be root's and closed to writes by others.
    type: path
    default: /mnt/scratch
  views_root:
    description:
      - Root-owned directory (made 0711) under which every user's views are mounted, as C(<user>/<ecosystem>).
        It and every directory above it must be root's and closed to writes by others.
    type: path
    default: /var/lib/pkgcache-views
    version_added: 0.3.0
  state_dir:
    description:
      - Where the records of lazily detached overlays are kept (C(<state_dir>/detached/)), for
        M(pkgcache.overlay.snapshot_gc). The host's store.
    type: path
    default: /var/lib/pkgcache
    version_added: 0.3.0
  strict:
    description: Fail the task when any user could not be served (after serving all the others).
    type: bool
    default: false
    version_added: 0.3.0
  lock_timeout:
    description: Seconds to wait for another run that holds the lock of O(views_root).
    type: int
    default: 60
    version_added: 0.3.0
  state:
    description: V(mounted) writes fstab and mounts; V(present) only writes fstab and creates the directories.
    type: str
    choices: [mounted, present]
    default: mounted
  lazy:
    description:
      - Switch busy users with a lazy unmount. Processes that hold the old view keep it until they let go.
      - The detached overlay keeps its upper and work, moved aside to C(detached-*) beside them; the new view gets
        fresh ones. Once no process holds the detached overlay, a later run folds its upper into the current one.
    type: bool
    default: false
  compact:
    description:
      - When a user switches to a new snapshot, remove the files of its upper that the new lower holds byte for
        byte, while the overlay is unmounted. Whiteouts, symlinks, directories, opaque or redirected directories
        and files that differ are kept; symlinks are never followed. Not done on a lazy switch.
    type: bool
    default: false
    version_added: 0.2.0
  purge_removed:
    description:
      - Remove the data of users this run no longer serves (not in O(repls)) after their views are unmounted, the
        directories under O(views_root) and the collection's scratch dirs under O(scratch_root) (root's, 0700, with
        C(cacache_*) in them; nothing else there is touched). Root-side, through fds from root's directories, no
        symlink followed, never into a mount point, and only when no overlay anywhere still uses one of the
        user's layers (else the user is kept and reported). Check mode reports what would go.
      - Only with O(state=mounted).
    type: bool
    default: false
    version_added: 0.4.0
  template:
    description:
      - A Jinja2 template that renders one fstab line per planned mount, looked up like the template module's C(src).
        Rendered by the action plugin on the controller; the module itself only receives O(fstab_lines).
    type: str
  fstab_lines:
    description:
      - The rendered fstab lines, in the order of the planned mounts (users in the given order, then ecosystems).
        Each line must mount type C(overlay) at the planned target with the planned C(lowerdir), C(upperdir) and
        C(workdir), once each, and keep C(index=off,xino=off,metacopy=off,nosuid,nodev). The only options it may
        add are atime and sync flags, C(noexec), C(ro), C(nofail), C(noauto), C(auto), C(_netdev), C(x-*) and
        C(comment=). Omitted means the built-in format.
    type: list
    elements: str
seealso:
  - module: pkgcache.overlay.snapshot_sync
"""

EXAMPLES = r"""
- name: Mount pip overlays for all repl users
  pkgcache.overlay.overlay_mounts:
    repls:
      - name: alice            # uid, gid and home from the host's passwd database
      - {name: bob, uid: 2002, gid: 2002, home: /srv/repls/bob}
    ecosystems: [pip]
    lower_root: "{{ sync.path }}"
    template: overlay-fstab.j2
    backup: true
"""

RETURN = r"""
users:
  description:
    - Per user and ecosystem, the state of the view (V(mounted), V(already), V(switched), V(merged), V(busy),
      V(present), V(link-moved) or V(failed)). V(merged) means the upper of a detached generation was folded in;
      V(link-moved) that the view needed nothing but the user's cache link moved (her home changed; see RV(links)).
  returned: success
  type: dict
  sample: {alice: {pip: mounted}, bob: {pip: busy}}
links:
  description:
    - Per user and ecosystem, every cache link the run places (check mode, would place). C(action) is V(create),
      V(replace), V(move) or V(retry) (the place could not be reached while planning); C(path) the link, C(target)
      the view, C(before) what stood at C(path) (null for nothing).
    - For V(move) (the home changed), C(from) is the link an earlier run placed, and C(old_link) its fate, with
      why. V(remove) (check mode) or V(removed) when it was still root's link to the view, V(gone), or V(left) when
      something else stands there now or the old home cannot be used safely. Anything but root's link is left.
  returned: success
  type: dict
  sample: {u3: {pip: {action: move, path: /srv/alt-u3/.cache/pip, target: /var/lib/pkgcache-views/u3/pip,
                      before: null, from: /home/u3/.cache/pip, old_link: "removed: the link to her view was removed"}}}
unserved:
  description: Per user and ecosystem, why it could not be served (a home or scratch dir that cannot be used).
  returned: success
  type: dict
  sample: {mallory: {pip: "/home/mallory/.cache of repl mallory is a symlink or not a directory"}}
retired:
  description: Per user and ecosystem, an overlay of the earlier layout (in the home) that was unmounted.
  returned: success
  type: dict
saved:
  description: Per user and ecosystem, where a non-empty dir that stood at the cache dir's place was moved (in the home).
  returned: success
  type: dict
repaired:
  description: Per user and ecosystem, layer dirs that were not directories (planted symlinks) and were moved aside.
  returned: success
  type: dict
detached:
  description: Per user and ecosystem, the generation (old upper and work) left to a lazily detached overlay.
  returned: success
  type: dict
merged:
  description: Per user and ecosystem, entries moved from dead detached generations into the current upper.
  returned: success
  type: dict
purged:
  description: Per removed user, V(purged), or why the data was kept (C(kept ...), C(failed ...)); see O(purge_removed).
  returned: success
  type: dict
busy:
  description:
    - Users left on their current snapshot because their overlay was in use, per ecosystem, with the pids that
      use it (or V(EBUSY) when only the unmount told). A later run, or the next boot, switches them.
  returned: success
  type: dict
  sample: {carol: {pip: [4242]}}
compacted:
  description: Per user and ecosystem, the files and bytes that compaction removed from the upper.
  returned: success
  type: dict
  sample: {alice: {pip: {files: 3, bytes: 81234}}}
compacted_bytes:
  description: Bytes that compaction saved in all uppers.
  returned: success
  type: int
removed:
  description: Targets that left the managed block and were unmounted (or are busy).
  returned: success
  type: dict
created:
  description: Directories that were created or whose owner or mode was fixed.
  returned: success
  type: list
  elements: str
mounts:
  description: The planned mounts.
  returned: success
  type: list
  elements: dict
plan:
  description:
    - What the run does, and why, decided before anything changes (check mode returns it and stops there).
    - C(create) the directories to make or fix; C(repair), C(retire) what is moved aside or unmounted from the
      earlier layout; C(prepare) the users whose directories are worked on; C(fstab) whether the block is written
      (C(write)) and the lines it gains (C(add)) and loses (C(remove));
      C(mounts) per user and ecosystem of the users with something to do the C(action) (V(mount), V(switch),
      V(merge) or V(none)) with C(why), the cache C(link) (V(create), V(replace), V(move), V(retry) or V(keep)),
      whether the upper is compacted, C(view_before) and C(view_after) (what is mounted at the target), C(link_path)
      and C(link_before) (what stands there now, null for nothing), and C(link_from) for a moved home (the old
      link's C(path) and C(home), and its C(fate) and C(why) as in RV(links)); C(unchanged) how many views need
      nothing (left out, and not walked again); C(unmount) targets that left the block, with C(why); C(purge) per
      removed user what happens to its data; C(unserved) who is skipped and why.
  returned: success
  type: dict
  sample:
    create: [/mnt/scratch/alice]
    prepare: [alice]
    fstab: {path: /etc/fstab, write: true, add: ["overlay /var/lib/pkgcache-views/alice/pip overlay ..."], remove: []}
    mounts:
      - {user: alice, ecosystem: pip, target: /var/lib/pkgcache-views/alice/pip, action: mount,
         why: nothing is mounted at /var/lib/pkgcache-views/alice/pip, link: create, compact: false,
         view_before: not mounted, view_after: overlay of /var/lib/pkgcache/trees/2/pip,
         link_path: /home/alice/.cache/pip, link_before: null, link_from: null}
    unchanged: 0
    unmount: []
    purge: {}
    unserved: {}
backup_file:
  description: The fstab backup, when one was made.
  returned: changed and backup
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _mounts as mt


def main():
    mt.run_module(AnsibleModule(argument_spec=mt.argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
