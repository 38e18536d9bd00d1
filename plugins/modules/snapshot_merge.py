#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_merge
short_description: Join the shards that several builders built into one signed snapshot
version_added: 0.4.0
description:
  - With several builders, each runs M(pkgcache.overlay.snapshot_build) with O(pkgcache.overlay.snapshot_build#module:shard)
    on its share of the package lists. This module, on the builder whose store the hosts read, joins those shard
    builds into one snapshot, signs its manifest and publishes it.
  - A shard is named by the snapshot id its builder reported (through Ansible, so the manifest it fetches from that
    builder's store over plain HTTP is checked against an id it did not get over that network). The objects the
    store lacks are fetched by hash, under the store lock.
  - The trees are joined path by path; the same content once; npm's index buckets line by line; for any other
    file that two shards wrote at one path (the same cache key), the first shard's. Shards built with other tool
    versions or another index are refused, naming both.
  - The same shard ids give the same build key, so a run over unchanged shards reports C(changed=false).
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - C(ssh-keygen) (OpenSSH 8.1 or later) when O(signing_key) is set
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.store_http
  - pkgcache.overlay.store_lock
  - pkgcache.overlay.revision_ttl
attributes:
  check_mode:
    support: full
    details: Reads the shards' manifests (and the npm index buckets it would join) and reports the snapshot, storing nothing.
  diff_mode:
    support: none
options:
  parts:
    description: The shards, in shard order (shard V(0) first).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The shard's name in messages and in the manifest, for example its builder's inventory name.
        type: str
        required: true
      id:
        description: The snapshot id the shard's build returned; empty for a shard that got no package.
        type: str
        default: ""
      url:
        description: Base URL of the shard builder's store; omit for a shard built into O(store).
        type: str
      sha256:
        description:
          - The sha256 of the shard's manifest file, as its build returned it (C(manifest_sha256)). Required with
            O(parts[].url), so that the manifest's metadata (resolutions, index pages) is checked too, not only its
            entries.
        type: str
      shard:
        description: The shard its builder was given (C(index), C(count)), checked against the shard's place in O(parts).
        type: dict
  store:
    description: The object store the joined snapshot goes into (the one the hosts read).
    type: path
    required: true
  work_dir:
    description: Working directory (a signature check's scratch files).
    type: path
    default: /var/lib/pkgcache-build
  publish:
    description: Point C(refs/latest) in the store at the joined snapshot.
    type: bool
    default: true
  signing_key:
    description: OpenSSH private key that signs the manifest (its C(.pub) beside it); omit to leave it unsigned.
    type: path
  force:
    description: Publish even while a rollback's hold is on, lifting it (as O(pkgcache.overlay.snapshot_build#module:force)).
    type: bool
    default: false
seealso:
  - module: pkgcache.overlay.snapshot_build
"""

EXAMPLES = r"""
- name: Join the shards of builder-a (this host) and builder-b
  pkgcache.overlay.snapshot_merge:
    store: /srv/pkgcache
    parts:
      - {name: builder-a, id: "{{ hostvars['builder-a'].shard_id }}"}
      - {name: builder-b, id: "{{ hostvars['builder-b'].shard_id }}", url: "http://builder-b.example.org:8370"}
    signing_key: /etc/pkgcache/signing/snapshot_ed25519
"""

RETURN = r"""
id:
  description: The joined snapshot's id.
  returned: success
  type: str
  sample: 5f1c0e3a9b2d4c6e8f00112233445566778899aabbccddeeff00112233445566
created:
  description: When the joined snapshot was first built (UTC, ISO 8601).
  returned: success
  type: str
shards:
  description: The shards that built something, with their ids, index and number of packages.
  returned: success
  type: list
  elements: dict
  sample: [{name: builder-a, id: 0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9, index: 0, packages: 12}]
files:
  description: Number of files in the snapshot.
  returned: success
  type: int
bytes:
  description: Total size of the files in the snapshot.
  returned: success
  type: int
objects:
  description: Number of distinct objects in the snapshot.
  returned: success
  type: int
new_objects:
  description: Objects that this run added to the store (fetched from other shards, or joined npm buckets).
  returned: success
  type: int
new_bytes:
  description: Bytes that this run added to the store.
  returned: success
  type: int
misses:
  description: Every shard's misses, with the ecosystem and the reason.
  returned: success
  type: list
  elements: dict
packages:
  description: The packages in the snapshot with their resolved versions and ecosystem.
  returned: success
  type: list
  elements: dict
ecosystems:
  description: Per ecosystem, the joined metadata of the shards.
  returned: success
  type: dict
signed:
  description: Whether the manifest is signed.
  returned: success
  type: bool
revision:
  description: The published revision when O(publish) is true.
  returned: success and O(publish) is true
  type: int
held:
  description: The snapshot a rollback holds the store at, if this run did not publish because of it.
  returned: success and O(publish) is true
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as builder


def main():
    builder.run_merge_module(AnsibleModule(argument_spec=builder.merge_argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
