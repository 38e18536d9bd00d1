#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_publish
short_description: List a builder's published revisions, or publish an earlier snapshot again as a new revision
version_added: 0.4.0
description:
  - Every publish of a snapshot (by M(pkgcache.overlay.snapshot_build) or M(pkgcache.overlay.snapshot_merge)) is a
    numbered revision, a record C(refs/revisions/<N>.json) signed with the manifest key. Hosts never apply a revision
    lower than one they applied, so a replayed older record is refused.
  - Every record expires (O(revision_ttl)); hosts refuse an expired record. The build role's C(pkgcache-resign.timer)
    signs the current record again before that (the same revision and snapshot, a higher C(serial)).
  - With O(snapshot), publishes that snapshot (an id, or V(previous), the one published before the current one) as a
    B(new, higher) revision, the way C(cvmfs_server rollback) does, so that hosts take it as an update; and puts a
    B(hold) on the store, so that later builds store their snapshots but do not publish them until one is forced
    (O(pkgcache.overlay.snapshot_build#module:force)). Without O(snapshot), it only lists.
  - Always returns the revisions, newest first, with each snapshot's date, size and packages per ecosystem.
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - C(ssh-keygen) (OpenSSH 8.1 or later) when O(signing_key) is set
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.store_lock
  - pkgcache.overlay.revision_ttl
attributes:
  check_mode:
    support: full
    details: Reports the revision it would publish, writing nothing.
  diff_mode:
    support: none
options:
  store:
    description: The builder's object store.
    type: path
    required: true
  snapshot:
    description:
      - The snapshot to publish as a new revision, an id or V(previous). It must still be in the store.
      - Omit to list only.
    type: str
  hold:
    description: Hold later builds from publishing (the rollback sticks until a build is forced).
    type: bool
    default: true
  signing_key:
    description: OpenSSH private key that signs the record (its C(.pub) beside it); omit to leave it unsigned.
    type: path
seealso:
  - module: pkgcache.overlay.snapshot_build
"""

EXAMPLES = r"""
- name: Roll back to the snapshot published before the current one
  pkgcache.overlay.snapshot_publish:
    store: /srv/pkgcache
    snapshot: previous
    signing_key: /etc/pkgcache/signing/snapshot_ed25519

- name: List the revisions
  pkgcache.overlay.snapshot_publish:
    store: /srv/pkgcache
  register: revisions
"""

RETURN = r"""
id:
  description: The published snapshot.
  returned: something is published
  type: str
revision:
  description: Its revision.
  returned: something is published
  type: int
held:
  description: The snapshot that later builds are held at, if a hold is on.
  returned: always
  type: str
revisions:
  description:
    - Every revision, newest first, with C(revision), C(id), C(published), C(reason) (V(build) or V(rollback)),
      C(current), C(serial), C(issued) and C(expires) (the record's last signing; absent from records of earlier
      releases), and from the manifest C(created), C(files), C(bytes), C(objects) and C(packages) per ecosystem
      (or C(collected) when the manifest is gone).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _publish as publish


def main():
    publish.run_module(AnsibleModule(argument_spec=publish.argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
