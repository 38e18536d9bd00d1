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
  fstab:
    description: The fstab file that holds the managed block.
    type: path
    default: /etc/fstab
  backup:
    description: Keep a timestamped copy of fstab before changing it.
    type: bool
    default: false
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

import datetime
import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _push
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync
from ansible_collections.pkgcache.overlay.plugins.module_utils._fstab import FstabError, escape
from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import LockError
from ansible_collections.pkgcache.overlay.plugins.module_utils._fstabfile import mountinfo_text, update_block
from ansible_collections.pkgcache.overlay.plugins.module_utils._manifest import ManifestError
from ansible_collections.pkgcache.overlay.plugins.module_utils._mountcmd import MountError, mount_from_fstab, unmount
from ansible_collections.pkgcache.overlay.plugins.module_utils._overlay import mounted_at, parse_mountinfo
from ansible_collections.pkgcache.overlay.plugins.module_utils._store import StoreError

BLOCK = 'snapshot'


def bind_line(store, mount_point):
    return '%s %s none bind,ro,nosuid,nodev 0 0' % (escape(os.path.join(store, 'current')), escape(mount_point))


def ensure_mount(module, result):
    p = module.params
    run = module.run_command
    want = '/trees/' + result['id']
    current = mounted_at(parse_mountinfo(mountinfo_text()), p['mount_point'])
    if current is not None and current['root'].endswith(want):
        return 'unchanged'
    if module.check_mode:
        return 'remounted' if current else 'mounted'
    if not os.path.isdir(p['mount_point']):
        os.makedirs(p['mount_point'], 0o755)
    state = 'mounted'
    if current is not None:
        # Nobody's overlay uses this mount as a lower, so a lazy detach is
        # safe: open files keep the old snapshot until they are closed.
        if unmount(run, p['mount_point']) == 'busy':
            unmount(run, p['mount_point'], lazy=True)
        state = 'remounted'
    mount_from_fstab(run, p['fstab'], p['mount_point'])
    return state


def record_last_sync(module, store, outcome):
    """Remember the outcome for snapshot_status (not in check mode; never fails the run)."""
    if module.check_mode or not os.path.isdir(store):
        return
    outcome.update({'time': datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
                    'epoch': int(time.time())})
    try:
        hs.write_last_sync(store, outcome)
    except OSError as exc:
        module.warn('cannot record the sync result in %s: %s' % (store, exc))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str'),
            mirrors=dict(type='list', elements='str'),
            mirror_key=dict(type='str', no_log=False),
            source=dict(type='path'),
            snapshot=dict(type='str', default='latest'),
            store=dict(type='path', default='/var/lib/pkgcache'),
            mount_point=dict(type='path', default='/mnt/cacache'),
            fstab=dict(type='path', default='/etc/fstab'),
            backup=dict(type='bool', default=False),
            workers=dict(type='int', default=8),
            timeout=dict(type='int', default=30),
            validate_certs=dict(type='bool', default=True),
            max_manifest_size=dict(type='int', default=268435456),
            max_object_size=dict(type='int', default=0),
            max_snapshot_size=dict(type='int', default=0),
            lock_timeout=dict(type='int', default=0),
            allowed_signers=dict(type='path'),
            signer_identity=dict(type='str', default='pkgcache'),
            allow_downgrade=dict(type='bool', default=False),
            deadline=dict(type='int', default=900),
        ),
        required_one_of=[('url', 'mirrors', 'source')],
        mutually_exclusive=[('url', 'source'), ('mirrors', 'source')],
        supports_check_mode=True,
    )
    p = dict(module.params)
    p['mirror_key'] = p['mirror_key'] or socket.getfqdn()
    if p['deadline'] < 1:
        module.fail_json(msg='deadline must be 1 or more, got %d' % p['deadline'])
    p['max_object_size'] = p['max_object_size'] or None
    p['max_snapshot_size'] = p['max_snapshot_size'] or None

    def opener(url):
        return open_url(url, timeout=p['timeout'], validate_certs=p['validate_certs'], follow_redirects='safe')

    if p['source']:
        try:
            if os.path.lexists(p['source']) or not module.check_mode:  # a dry run on a new host has none yet
                _push.check_staging(p['source'])
        except (_push.PushError, OSError) as exc:
            module.fail_json(msg=str(exc))
        p['mirrors'], opener = [_push.source_url(p['source'])], _push.source_opener(p['source'])

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    if not p['allowed_signers']:
        module.warn('allowed_signers is not set: the snapshot signature is not checked')

    def run(argv, data=None):
        return module.run_command(argv, data=data, binary_data=True)

    try:
        with _sync.locked(p, module.check_mode):
            result = _sync.sync(p, opener, check_mode=module.check_mode, now=now, run=run)
            fstab = update_block(module, p['fstab'], BLOCK, [bind_line(p['store'], p['mount_point'])], p['backup'])
            result['mount'] = ensure_mount(module, result)
            if p['source'] and not module.check_mode:
                _push.clear_staged(p['source'])
    except (_sync.SyncError, StoreError, ManifestError, FstabError, MountError, LockError, OSError) as exc:
        record_last_sync(module, p['store'], {'ok': False, 'error': str(exc)})
        module.fail_json(msg=str(exc))
    record_last_sync(module, p['store'], {'ok': True, 'id': result['id']})
    result['changed'] = result['changed'] or fstab['changed'] or result['mount'] != 'unchanged'
    if fstab['backup_file']:
        result['backup_file'] = fstab['backup_file']
    if module._diff and fstab['changed']:
        result['diff'] = fstab['diff']
    module.exit_json(**result)


if __name__ == '__main__':
    main()
