#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_receive
short_description: Unpack pushed snapshot archives on a repl host and name the objects it still lacks
version_added: 0.4.0
description:
  - Push mode, on the repl host. O(staging) is a root-owned directory (a symlink, or one owned by anybody else, is
    refused) into which C(ansible.builtin.copy) put the head archive of M(pkgcache.overlay.snapshot_pack) as
    C(head.tar.gz) and object archives under C(incoming/).
  - Reads the head with the size limits of a pull and, with O(allowed_signers), checks the manifest's signature; writes
    it to C(staging/head) (the archive stays, so that the next copy sends nothing). Unpacks and removes each object
    archive into C(staging/objects), and returns RV(wanted), the snapshot's objects that are neither in the host's
    O(store) nor staged. An archive holding anything else than objects the host lacks, of their manifest size and
    sha256 (links, other paths, sparse files, other objects), is refused and removed.
  - Holds the host's store lock, so that it never unpacks under a running sync.
  - With O(check_staged), a staged object counts only when its size and sha256 match the manifest (one that does not
    is removed and wanted again), so an interrupted push resumes without sending again what arrived.
  - Nothing here is trusted yet; M(pkgcache.overlay.snapshot_sync) with
    O(pkgcache.overlay.snapshot_sync#module:source) verifies the signature, the revision and every object.
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - Linux, run as root
  - C(ssh-keygen) (OpenSSH 8.1 or later) when O(allowed_signers) is set
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.store_lock
  - pkgcache.overlay.host_store
attributes:
  check_mode:
    support: full
    details: Reads the head from its archive and names the wanted objects, unpacking nothing.
  diff_mode:
    support: none
options:
  staging:
    description: The root-owned staging directory.
    type: path
    default: /var/lib/pkgcache-push
  check_staged:
    description: Hash staged objects before counting them as arrived.
    type: bool
    default: true
  max_object_size:
    description: Largest object accepted, in bytes (V(0) for no limit).
    type: int
    default: 0
  max_snapshot_size:
    description: Largest snapshot accepted, in bytes (V(0) for no limit).
    type: int
    default: 0
  max_manifest_size:
    description: Largest manifest accepted, in bytes.
    type: int
    default: 268435456
  allowed_signers:
    description:
      - OpenSSH allowed_signers file; when set, the pushed manifest's signature is checked before anything of the
        push is trusted (M(pkgcache.overlay.snapshot_sync) checks it again, with the revision).
    type: path
  signer_identity:
    description: The principal that must have signed the manifest.
    type: str
    default: pkgcache
seealso:
  - module: pkgcache.overlay.snapshot_pack
  - module: pkgcache.overlay.snapshot_sync
"""

EXAMPLES = r"""
- name: Name the objects this host lacks
  pkgcache.overlay.snapshot_receive:
    staging: /var/lib/pkgcache-push
  register: want
"""

RETURN = r"""
id:
  description: The pushed snapshot.
  returned: success
  type: str
wanted:
  description: Sorted sha256s of the objects this host still lacks.
  returned: success
  type: list
  elements: str
wanted_key:
  description: The sha256 of RV(wanted), which names the set in M(pkgcache.overlay.snapshot_pack)'s result.
  returned: success
  type: str
wanted_bytes:
  description: Bytes of RV(wanted).
  returned: success
  type: int
missing_objects:
  description: Objects of the snapshot absent from the store, staged or not.
  returned: success
  type: int
received_archives:
  description: The object archives unpacked by this run.
  returned: success
  type: list
  elements: str
received_bytes:
  description: Bytes of RV(received_archives).
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _push as push


def main():
    push.run_receive_module(AnsibleModule(argument_spec=push.receive_argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
