#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_status
short_description: Report a repl host's snapshot state, and write it for Prometheus
version_added: 0.1.0
description:
  - Reports the active snapshot (id, creation time, ecosystems and the tool versions it was built with), each repl
    user's overlay (V(mounted), V(older) when it shows an older snapshot, V(busy) when it does and is in use, or
    V(missing)), upper usage, the last sync result and the size of the store.
  - Upper sizes come from a bounded walk of each upper that follows no symlink and reads no file (at most 1000000
    entries, 64 levels and 10 seconds per upper). An upper that is refused or whose walk reaches a cap has
    RV(users[].upper_truncated) set, and its RV(users[].upper_bytes) is a lower bound.
  - With O(textfile_dir), writes the same data atomically as C(pkgcache.prom) for node_exporter's textfile
    collector. User names appear in the metrics only with O(include_user_names=true). The gauge
    C(pkgcache_uppers_truncated) counts the uppers whose size is a lower bound.
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - Linux
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.host_store
attributes:
  check_mode:
    support: full
    details: Reports, and does not write the metrics file.
  diff_mode:
    support: none
options:
  fstab:
    description: The fstab file that holds the managed block of overlays.
    type: path
    default: /etc/fstab
  textfile_dir:
    description: Directory of node_exporter's textfile collector; empty writes no metrics file.
    type: path
  include_user_names:
    description: Add per-user upper sizes (with user names) to the metrics.
    type: bool
    default: false
  top_users:
    description: How many of the largest uppers to list in RV(largest_users).
    type: int
    default: 5
  scratch_root:
    description: Where the repl users' scratch dirs are (the mount role's C(mount_scratch_root)), for RV(orphaned).
    type: path
    default: /mnt/scratch
    version_added: 0.4.0
seealso:
  - module: pkgcache.overlay.snapshot_sync
"""

EXAMPLES = r"""
- name: Status, and metrics for node_exporter
  pkgcache.overlay.snapshot_status:
    textfile_dir: /var/lib/prometheus/node-exporter
  register: status
"""

RETURN = r"""
snapshot:
  description:
    - The active snapshot (id, created, ecosystems, files, bytes, versions).
    - C(coverage) holds per ecosystem the build's hit rate, C(listed), C(hits) and C(ratio). A listed package is a
      hit when it resolved on its own at build time and every file of its resolution is in the snapshot, so that a
      user installing it alone downloads nothing.
  returned: always
  type: dict
orphaned:
  description:
    - Scratch dirs of the collection's under O(scratch_root) that no planned overlay uses (users removed from the
      mount role's list), with C(user), C(bytes) and C(truncated) (why the count is a lower bound, or null).
      The mount role's C(mount_purge_removed) removes them.
  returned: always
  type: list
  elements: dict
users:
  description: Each repl user's overlay planned in the managed block of O(fstab).
  returned: always
  type: list
  elements: dict
  contains:
    user:
      description: The repl user.
      type: str
    ecosystem:
      description: The ecosystem of the overlay.
      type: str
    target:
      description: Where the overlay is mounted.
      type: str
    lowerdir:
      description: The overlay's lower directory, as in fstab.
      type: str
    upperdir:
      description: The overlay's upper directory, as in fstab.
      type: str
    state:
      description: V(mounted), V(older) (it shows an older snapshot), V(busy) (older and in use) or V(missing).
      type: str
    upper_bytes:
      description: Disk space allocated to the regular files in the upper (C(st_blocks) * 512, not their apparent
        size, so sparse files count what they take; 0 when it is missing); a lower bound when
        RV(users[].upper_truncated) is set.
      type: int
    upper_truncated:
      description:
        - Why RV(users[].upper_bytes) is incomplete, or V(null) for a full count (or a missing upper).
        - The cap that stopped the walk (C(max_files), C(max_depth), C(max_dir_entries) or C(max_seconds)),
          C(refused:) and why the upper could not be opened (a symlink or a non-directory on its path, say), or
          C(error:) and the error that ended the walk.
      type: str
      version_added: 0.3.0
counts:
  description: Overlays per state.
  returned: always
  type: dict
  sample: {mounted: 3, older: 0, busy: 0, missing: 0}
largest_users:
  description: The users with the largest uppers, largest first.
  returned: always
  type: list
  elements: dict
upper_bytes_total:
  description: Disk space allocated to the files in all uppers (C(st_blocks) * 512).
  returned: always
  type: int
last_sync:
  description: Outcome of the last snapshot_sync run (ok, id or error, time).
  returned: always
  type: dict
store:
  description: Objects and bytes in the store.
  returned: always
  type: dict
metrics_file:
  description: The metrics file written.
  returned: when textfile_dir is set
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _status as status


def main():
    status.run_module(AnsibleModule(argument_spec=status.argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
