#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_sync
short_description: Pull a snapshot onto a repl host, verify it and activate it atomically
version_added: 0.1.0
description:
  - Fetches a snapshot manifest from a static HTTP store (as written by M(pkgcache.overlay.snapshot_build)),
    downloads in parallel only the objects that the host's store lacks, and checks each object's size and sha256
    before it enters the store. The host's store is readable by root only.
  - Checks the snapshot out as a hardlink tree into a versioned directory C(trees/<id>) that never changes
    afterwards, then switches the C(current) pointer to it with a single rename.
  - Keeps a managed block in fstab with a read-only C(nosuid,nodev) bind mount of C(current) at O(mount_point),
    and remounts O(mount_point) when it shows another snapshot.
  - A failed, partial or corrupted fetch leaves the active snapshot as it was, and the error names the object and URL.
  - A run with the snapshot already active and mounted moves no bytes and reports C(changed=false).
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - Linux, run as root
  - C(mount) and C(umount) (util-linux)
  - C(ssh-keygen) (OpenSSH 8.1 or later) when O(allowed_signers) is set
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.fstab_block
  - pkgcache.overlay.store_http
attributes:
  check_mode:
    support: full
    details: Fetches the manifest (without storing it) and reports what would be fetched and switched.
  diff_mode:
    support: full
    details: Shows the change of the fstab file.
options:
  url:
    description:
      - Base URL of the snapshot store, for example V(http://builder:8370).
      - One of O(url), O(mirrors) and O(source) is required.
    type: str
  mirrors:
    description:
      - Base URLs of copies of the store (the builder's, static mirrors, a CDN). The host tries them in an order of
        its own (from O(mirror_key)), so that hosts spread over them, and moves on to the next one when a mirror
        cannot be reached, answers with an HTTP error, or serves something that fails verification (signature,
        revision, size or sha256). Objects that did arrive and verify are kept. RV(mirror) names the mirror used,
        RV(failed_mirrors) the ones that failed and why.
      - A store is plain immutable files; copy it to a mirror objects first, then C(snapshots/), then C(refs/).
    type: list
    elements: str
    version_added: 0.4.0
  mirror_key:
    description: What orders the mirrors for this host; by default its fully qualified name.
    type: str
    version_added: 0.4.0
  source:
    description:
      - Push mode. A root-owned staging directory on the host into which M(pkgcache.overlay.snapshot_receive)
        unpacked the pushed snapshot; read in place of a store URL, so the host opens no connection. Everything is
        verified as in a pull (signature, revision, size and sha256 of every object). After a successful sync the
        staged objects are removed.
      - Mutually exclusive with O(url) and O(mirrors).
    type: path
    version_added: 0.4.0
  snapshot:
    description:
      - The snapshot id to activate, V(latest) for the one C(refs/latest) names, or V(previous) for the one that
        was active before the current one on this host (a rollback).
    type: str
    default: latest
  store:
    description: The host's store directory. It is made root-only (mode 0700).
    type: path
    default: /var/lib/pkgcache
  mount_point:
    description: Where the active snapshot is mounted read-only.
    type: path
    default: /mnt/cacache
  max_manifest_size:
    description: Largest manifest accepted, in bytes.
    type: int
    default: 268435456
  max_object_size:
    description: Largest object accepted, in bytes. V(0) means no limit.
    type: int
    default: 0
  max_snapshot_size:
    description: Largest snapshot accepted (sum of file sizes), in bytes. V(0) means no limit.
    type: int
    default: 0
  allowed_signers:
    description:
      - An OpenSSH C(allowed_signers) file. When set, the manifest must carry a signature (C(<manifest>.sig)) made
        with C(ssh-keygen -Y sign) in the namespace C(pkgcache-snapshot) by a key this file trusts for
        O(signer_identity); an unsigned, badly signed or foreign-signed snapshot is refused before any object is
        fetched. When unset, signatures are not checked and the module warns.
    type: path
    version_added: 0.2.0
  signer_identity:
    description: The principal the signing key must be listed under in O(allowed_signers).
    type: str
    default: pkgcache
    version_added: 0.2.0
  allow_downgrade:
    description:
      - Allow a snapshot built before the newest one this host has applied. Only an explicit rollback sets this;
        otherwise an older snapshot (a replayed C(refs/latest), say) is refused.
    type: bool
    default: false
    version_added: 0.2.0
  lock_timeout:
    description:
      - Seconds to wait for another run on this host to release the store lock. V(0) fails at once, with an error
        that names the holder's pid.
    type: int
    default: 0
    version_added: 0.2.0
seealso:
  - module: pkgcache.overlay.snapshot_build
  - module: pkgcache.overlay.overlay_mounts
"""

EXAMPLES = r"""
- name: Activate the latest snapshot from the builder
  pkgcache.overlay.snapshot_sync:
    url: http://builder.example.org:8370
  register: sync

- name: Pin a snapshot by id, with a backup of fstab
  pkgcache.overlay.snapshot_sync:
    url: http://builder.example.org:8370
    snapshot: 5f1c0e3a9b2d4c6e8f00112233445566778899aabbccddeeff00112233445566
    backup: true
"""

RETURN = r"""
id:
  description: The active snapshot id after the run.
  returned: success
  type: str
previous:
  description: The snapshot id that was active before the run, if any.
  returned: success
  type: str
path:
  description: The versioned, immutable checkout of the snapshot; use it as the overlay lower root.
  returned: success
  type: str
  sample: /var/lib/pkgcache/trees/5f1c0e3a9b2d4c6e8f00112233445566778899aabbccddeeff00112233445566
ecosystems:
  description: The ecosystems the snapshot holds.
  returned: success
  type: list
  elements: str
created:
  description: When the snapshot was built.
  returned: success
  type: str
files:
  description: Files in the snapshot.
  returned: success
  type: int
bytes:
  description: Bytes of the files in the snapshot.
  returned: success
  type: int
missing_objects:
  description: Objects the host lacked before the run.
  returned: success
  type: int
missing_bytes:
  description: Bytes of the objects the host lacked before the run.
  returned: success
  type: int
fetched_objects:
  description: Objects downloaded by this run.
  returned: success
  type: int
mirror:
  description: The store URL the snapshot came from (in push mode, C(push://) and the staging directory).
  returned: success
  type: str
failed_mirrors:
  description: The mirrors tried before RV(mirror), each with C(url) and C(error).
  returned: success
  type: list
  elements: dict
fetched_bytes:
  description: Bytes downloaded by this run, manifest included.
  returned: success
  type: int
fetch_seconds:
  description: Seconds the object downloads took (0 when nothing was missing).
  returned: success
  type: float
bytes_per_second:
  description: Object bytes downloaded per second of RV(fetch_seconds).
  returned: success
  type: int
revision:
  description: The builder's revision of the snapshot, when O(snapshot) is V(latest) and the builder publishes revisions.
  returned: success
  type: int
reused_objects:
  description: Objects of the snapshot that the host already had.
  returned: success
  type: int
mount:
  description: What happened to O(mount_point) (V(mounted), V(remounted) or V(unchanged)).
  returned: success
  type: str
backup_file:
  description: The fstab backup, when one was made.
  returned: changed and backup
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _hostsync


def main():
    _hostsync.run_module(AnsibleModule(**_hostsync.module_args()))


if __name__ == '__main__':
    main()
