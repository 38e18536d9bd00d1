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
    that a process still holds (recorded by M(pkgcache.overlay.overlay_mounts) in C(<store>/detached/), asked of
    the kernel), and every tree that holds a directory that a process has as its working directory, its root or
    an open fd.
  - The process scan is bounded per uid (2 s and 100000 cwd, root and fd links each, fewest fds first; 30 s in
    all) and looks only at directories on the store's filesystem, from the kernel's cached attributes. A uid over
    its budget, or whose process root may not read, protects only the trees found in what was scanned. A tree
    only its other fds could hold is one it opened through C(/mnt/cacache) before a lazy switch, and removing it
    reaches that uid's processes alone. Each such uid is named in a warning with the cause, and in RV(busy_scan).
  - Only when root lacks C(CAP_SYS_PTRACE) (or cannot list C(/proc)) is every snapshot kept, with a warning.
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
  - pkgcache.overlay.store_lock
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
busy_scan:
  description: The process scan's outcome.
  returned: success
  type: dict
  version_added: 0.4.0
  contains:
    unknown:
      description: The uids whose processes were not all inspected, with the cause (time or count budget reached,
        EACCES on a pid).
      type: dict
      returned: success
      sample: {"2003": "more than 100000 links for uid 2003 (pid 4242 alone has 20000 fds)"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _gc as gc


def main():
    gc.run_module(AnsibleModule(argument_spec=gc.argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
