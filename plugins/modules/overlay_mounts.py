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
  - One call handles all repl users of a host. For each user and ecosystem it mounts an OverlayFS at the place the
    package manager looks (for pip C(~/.cache/pip)). The lower layer is the versioned snapshot tree, the upper and
    work dirs sit in the user's scratch dir (C(<scratch>/cacache_<ecosystem>/{upper,work})), owned by the user, mode 0700.
  - Writes the fstab lines as one marked block, atomically, with optional backup, diff and check mode; every other
    line of fstab is kept byte for byte. Mounts what is missing, switches idle users whose overlay shows another
    snapshot, and leaves busy users on their current snapshot (reported as V(busy)).
  - Refuses, with an error that names the input and before changing anything, an upper dir on overlayfs, upper
    and work on different filesystems, paths holding C(,), C(:), C(#), C(\\) or whitespace, repl names that are
    not valid user names, and symlinks in the scratch or target paths.
  - With the action plugin (the normal way to call it), the fstab lines come from the Jinja2 template O(template),
    rendered on the controller with the planned mounts in C(pkgcache_mounts).
author:
  - pkgcache.overlay contributors (@pkgcache)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the change of the fstab file.
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
        description: The user name; also the name of its scratch dir.
        type: str
        required: true
      uid:
        description: The user's uid (not 0).
        type: int
        required: true
      gid:
        description: The user's primary gid (not 0).
        type: int
        required: true
      home:
        description: The user's home. Defaults to C(/home/<name>).
        type: path
      scratch:
        description: The user's scratch dir. Defaults to C(<scratch_root>/<name>).
        type: path
  ecosystems:
    description:
      - The ecosystems to mount for every user, each at its package manager's cache dir under the home
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
    description: Where the users' scratch dirs are. It must not be on overlayfs (use a volume or a tmpfs).
    type: path
    default: /mnt/scratch
  fstab:
    description: The fstab file that holds the managed block.
    type: path
    default: /etc/fstab
  backup:
    description: Keep a timestamped copy of fstab before changing it.
    type: bool
    default: false
  state:
    description: V(mounted) writes fstab and mounts; V(present) only writes fstab and creates the directories.
    type: str
    choices: [mounted, present]
    default: mounted
  lazy:
    description: Switch busy users with a lazy unmount. Processes that hold the old view keep it until they let go.
    type: bool
    default: false
  compact:
    description:
      - When a user switches to a new snapshot, remove the files of its upper that the new lower holds byte for
        byte, while the overlay is unmounted. Whiteouts, symlinks, directories and files that differ are kept;
        symlinks are never followed.
    type: bool
    default: false
  template:
    description:
      - A Jinja2 template that renders one fstab line per planned mount, looked up like the template module's C(src).
        Rendered by the action plugin on the controller; the module itself only receives O(fstab_lines).
    type: str
  fstab_lines:
    description:
      - The rendered fstab lines, in the order of the planned mounts (users in the given order, then ecosystems).
        Each line must mount type C(overlay) at the planned target with the planned C(lowerdir), C(upperdir) and
        C(workdir); other options may be added. Omitted means the built-in format.
    type: list
    elements: str
seealso:
  - module: pkgcache.overlay.snapshot_sync
"""

EXAMPLES = r"""
- name: Mount pip overlays for all repl users
  pkgcache.overlay.overlay_mounts:
    repls:
      - {name: alice, uid: 2001, gid: 2001}
      - {name: bob, uid: 2002, gid: 2002, home: /srv/repls/bob}
    ecosystems: [pip]
    lower_root: "{{ sync.path }}"
    template: overlay-fstab.j2
    backup: true
"""

RETURN = r"""
users:
  description: Per user and ecosystem, the state of the overlay (V(mounted), V(already), V(switched), V(busy) or V(present)).
  returned: success
  type: dict
  sample: {alice: {pip: mounted}, bob: {pip: busy}}
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
backup_file:
  description: The fstab backup, when one was made.
  returned: changed and backup
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _mounts as mt
from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov
from ansible_collections.pkgcache.overlay.plugins.module_utils._busy import find_busy
from ansible_collections.pkgcache.overlay.plugins.module_utils._compact import compact
from ansible_collections.pkgcache.overlay.plugins.module_utils._fstab import FstabError, block_entries
from ansible_collections.pkgcache.overlay.plugins.module_utils._fstabfile import mountinfo_text, read_text, update_block
from ansible_collections.pkgcache.overlay.plugins.module_utils._mountcmd import MountError, mount_from_fstab, unmount

BLOCK = 'mounts'


def converge(module):
    p = module.params
    mounts = ov.plan_mounts(p['repls'], p['ecosystems'], p['lower_root'], p['scratch_root'])
    lines = mt.render_lines(mounts, p['fstab_lines'])
    info = ov.parse_mountinfo(mountinfo_text())
    for m in mounts:
        mt.check_filesystems(info, m)
        if not os.path.isdir(m['lowerdir']):
            raise ov.OverlayInputError(
                'ecosystem %s: the snapshot at %s has no %s cache (%s is missing); build it with that ecosystem '
                'or remove it from ecosystems' % (m['ecosystem'], p['lower_root'], m['ecosystem'], m['lowerdir']))
    created = []
    for m in mounts:
        owned_from = len(mt._components(m['scratch'])) - 1
        mt.ensure_dirs(m['upperdir'], owned_from, m['uid'], m['gid'], 0o700, module.check_mode, created)
        mt.ensure_dirs(m['workdir'], owned_from, m['uid'], m['gid'], 0o700, module.check_mode, created)
        mt.ensure_target(m, module.check_mode, created)
    old_targets = set(f[1] for f in block_entries(read_text(p['fstab']), BLOCK))
    fstab = update_block(module, p['fstab'], BLOCK, lines, p['backup'])
    users, busy, removed, compacted = {}, {}, {}, {}
    planned = set(m['target'] for m in mounts)
    states = dict((m['target'], ov.overlay_state(info, m)) for m in mounts)
    in_use = find_busy([t for t, s in states.items() if s == 'stale']) if p['state'] == 'mounted' else {}
    for m in mounts:
        state = states[m['target']]
        if p['state'] == 'present':
            users.setdefault(m['user'], {})[m['ecosystem']] = 'already' if state == 'mounted' else 'present'
            continue
        if state == 'mounted':
            outcome = 'already'
        elif module.check_mode:
            outcome = 'mounted' if state == 'absent' else ('busy' if m['target'] in in_use and not p['lazy'] else 'switched')
        elif state == 'absent':
            mount_from_fstab(module.run_command, p['fstab'], m['target'])
            outcome = 'mounted'
        elif (m['target'] in in_use and not p['lazy']) or unmount(module.run_command, m['target'], lazy=p['lazy']) == 'busy':
            outcome = 'busy'
            busy.setdefault(m['user'], {})[m['ecosystem']] = in_use.get(m['target']) or 'EBUSY'
        else:
            if p['compact']:
                files, size = compact(m['upperdir'], m['lowerdir'])
                compacted.setdefault(m['user'], {})[m['ecosystem']] = {'files': files, 'bytes': size}
            mount_from_fstab(module.run_command, p['fstab'], m['target'])
            outcome = 'switched'
        users.setdefault(m['user'], {})[m['ecosystem']] = outcome
    for target in sorted(old_targets - planned):
        if p['state'] == 'mounted' and ov.mounted_at(info, target) is not None:
            removed[target] = 'unmounted' if module.check_mode else unmount(module.run_command, target, lazy=p['lazy'])
    changed = bool(created) or fstab['changed'] or bool(removed) or any(
        s in ('mounted', 'switched') for u in users.values() for s in u.values())
    result = {'changed': changed, 'users': users, 'busy': busy, 'removed': removed, 'compacted': compacted,
              'compacted_bytes': sum(c['bytes'] for u in compacted.values() for c in u.values()),
              'created': created, 'mounts': mounts}
    if fstab['backup_file']:
        result['backup_file'] = fstab['backup_file']
    if module._diff and fstab['changed']:
        result['diff'] = fstab['diff']
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repls=dict(type='list', elements='dict', required=True, options=dict(
                name=dict(type='str', required=True),
                uid=dict(type='int', required=True),
                gid=dict(type='int', required=True),
                home=dict(type='path'),
                scratch=dict(type='path'),
            )),
            ecosystems=dict(type='list', elements='str', default=['pip'], choices=sorted(ov.ECOSYSTEMS)),
            lower_root=dict(type='path', required=True),
            scratch_root=dict(type='path', default='/mnt/scratch'),
            fstab=dict(type='path', default='/etc/fstab'),
            backup=dict(type='bool', default=False),
            state=dict(type='str', default='mounted', choices=['mounted', 'present']),
            lazy=dict(type='bool', default=False),
            compact=dict(type='bool', default=False),
            template=dict(type='str'),
            fstab_lines=dict(type='list', elements='str'),
        ),
        supports_check_mode=True,
    )
    try:
        result = converge(module)
    except (ov.OverlayInputError, mt.UnsafePathError, FstabError, MountError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
