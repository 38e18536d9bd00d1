#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_gc
short_description: Remove old snapshots and unreferenced objects from a store
version_added: 0.1.0
description:
  - Keeps the O(keep) newest snapshots, the active one (C(current) on a repl host, C(refs/latest) on a builder),
    and every snapshot whose tree a live mount (C(/proc/self/mountinfo)) or a line of O(fstab) names.
  - Never removes a tree that a process can still reach. It keeps the lower of every lazily detached overlay
    that a process still holds (recorded by M(pkgcache.overlay.overlay_mounts) in C(<store>/detached/)), and every
    tree that holds a directory that a process has as its working directory, its root or an open file.
  - Deletes the other snapshots (checkout trees and manifests), then every object that no kept manifest lists,
    and reports the bytes freed. Leftovers of a killed run (partial downloads, half checkouts) are removed too.
  - Works on a repl host's store (C(/var/lib/pkgcache)) and on a builder's store (C(/srv/pkgcache)) alike.
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - Linux, run as root
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details: Reports what would be removed and the bytes that would be freed.
  diff_mode:
    support: none
options:
  store:
    description: The store directory.
    type: path
    default: /var/lib/pkgcache
  keep:
    description: How many of the newest snapshots to keep besides the active and referenced ones.
    type: int
    default: 3
  fstab:
    description: The fstab file whose lines count as references.
    type: path
    default: /etc/fstab
  lock_timeout:
    description: Seconds to wait for another run on this host to release the store lock (V(0) fails at once).
    type: int
    default: 0
notes:
  - A process of a detached overlay is found by its working directory, root and open files; one that only has a
    file of the overlay mapped into memory is not seen.
seealso:
  - module: pkgcache.overlay.snapshot_sync
"""

EXAMPLES = r"""
- name: Keep the three newest snapshots on a repl host
  pkgcache.overlay.snapshot_gc:
    keep: 3

- name: Show what would be collected on the builder
  pkgcache.overlay.snapshot_gc:
    store: /srv/pkgcache
    keep: 4
  check_mode: true
"""

RETURN = r"""
kept:
  description: Kept snapshot ids, with the reason.
  returned: success
  type: dict
  sample: {5f1c0e3a9b2d4c6e8f00112233445566778899aabbccddeeff00112233445566: active}
removed:
  description: Snapshot ids removed (or that would be, in check mode).
  returned: success
  type: list
  elements: str
removed_objects:
  description: Number of objects removed.
  returned: success
  type: int
freed_bytes:
  description: Bytes freed (or that would be, in check mode).
  returned: success
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _gc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _views
from ansible_collections.pkgcache.overlay.plugins.module_utils._busy import held_files
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils._fstabfile import mountinfo_text, read_text
from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import LockError, StoreLock


def main():
    module = AnsibleModule(
        argument_spec=dict(
            store=dict(type='path', default='/var/lib/pkgcache'),
            keep=dict(type='int', default=3),
            fstab=dict(type='path', default='/etc/fstab'),
            lock_timeout=dict(type='int', default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p['keep'] < 0:
        module.fail_json(msg='keep must be 0 or more, got %d' % p['keep'])
    host = not os.path.isdir(os.path.join(p['store'], 'refs'))

    def make_plan():
        info = mountinfo_text()
        return _gc.plan(p['store'], p['keep'], info, read_text(p['fstab']), host, held=held_files(),
                        detached_lowers=_views.live_lowerdirs(p['store']))
    try:
        if module.check_mode:
            plan = make_plan()
            leftovers = []
        else:
            with StoreLock(p['store'], p['lock_timeout']):
                leftovers = st.cleanup_leftovers(p['store'])
                plan = make_plan()
                _gc.apply(p['store'], plan)
    except (LockError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    if any('CAP_SYS_PTRACE' in reason for reason in plan['keep'].values()):
        module.warn('some processes could not be inspected (root lacks CAP_SYS_PTRACE), so no snapshot could be '
                    'proven unused; every snapshot was kept')
    if plan['incomplete']:
        module.warn('snapshot %s has a tree but no manifest; no object was removed' % plan['incomplete'])
    module.exit_json(changed=bool(plan['remove'] or plan['objects'] or leftovers), kept=plan['keep'],
                     removed=plan['remove'], removed_objects=len(plan['objects']), freed_bytes=plan['bytes'])


if __name__ == '__main__':
    main()
