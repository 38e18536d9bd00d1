#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_pack
short_description: Pack a snapshot, or the objects hosts lack, into archives to push over Ansible's connection
version_added: 0.4.0
description:
  - Push mode, on the host that holds a store (the builder, or a copy of its store on the controller). Writes into
    O(dest) the B(head) archive, with what a sync reads before any object (the published revision record, C(refs/latest),
    the manifest, and their signatures), and for each set in O(sets) the objects of that set, in parts of at most
    O(part_size) bytes.
  - Archives are gzip'd tars with fixed metadata, so the same content always gives the same bytes; one that is already
    in O(dest) is kept, and C(ansible.builtin.copy) sends a host nothing it already holds. Archives of other snapshots
    in O(dest) are removed.
  - Nothing is trusted on the way, the host verifies all of it as in a pull (M(pkgcache.overlay.snapshot_sync) with
    O(pkgcache.overlay.snapshot_sync#module:source)).
author:
  - pkgcache.overlay contributors (@pkgcache)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details: Names the archives it would write, writing nothing.
  diff_mode:
    support: none
options:
  store:
    description: The store, laid out as it is served (C(refs/), C(snapshots/), C(objects/)).
    type: path
    required: true
  snapshot:
    description: The snapshot to pack, an id or V(latest) (the published revision, else C(refs/latest)).
    type: str
    default: latest
  dest:
    description: Directory for the archives (created root-only).
    type: path
    required: true
  sets:
    description:
      - Lists of object sha256s (each what one or more hosts lack, as RV(pkgcache.overlay.snapshot_receive#module:wanted)
        reports); each must be a file of the snapshot.
      - Omit to pack the head only.
    type: list
    elements: list
    default: []
  part_size:
    description: Largest archive, in bytes of objects (an object larger than this gets an archive of its own).
    type: int
    default: 268435456
  lock_timeout:
    description:
      - Seconds to wait for a build or publish on this host to release the store lock (V(0) fails at once); the head
        is read under it, so that it is never half of one publish.
    type: int
    default: 300
seealso:
  - module: pkgcache.overlay.snapshot_receive
  - module: pkgcache.overlay.snapshot_sync
"""

EXAMPLES = r"""
- name: Pack the head of the published snapshot
  pkgcache.overlay.snapshot_pack:
    store: /srv/pkgcache
    dest: /var/cache/pkgcache-push
  register: head
"""

RETURN = r"""
id:
  description: The snapshot packed.
  returned: success
  type: str
revision:
  description: Its published revision, when O(snapshot) is V(latest) and the store publishes revisions.
  returned: success
  type: int
head:
  description: The file name of the head archive in O(dest).
  returned: success
  type: str
sets:
  description: For each set's key (the sha256 of its sorted ids), its archives with C(name), C(bytes) (of objects) and C(objects) (a count).
  returned: success
  type: dict
files:
  description: Every archive of this run, head first.
  returned: success
  type: list
  elements: str
written:
  description: The archives written by this run (the others were already there).
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _push as push


def main():
    push.run_pack_module(AnsibleModule(argument_spec=push.pack_argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
