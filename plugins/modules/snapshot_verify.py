#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_verify
short_description: Re-hash a repl host's snapshot store and checkouts, and repair them safely
version_added: 0.1.0
description:
  - Re-hashes every object of the store, and compares every checked-out tree with its manifest. Reports each
    object whose content does not match its name, each object a manifest needs that is missing, and per tree every
    missing, mismatching or extra entry.
  - With O(repair=true), fetches bad and missing objects again from O(url) (each checked against its sha256) and
    rebuilds damaged trees beside the old ones, then swaps them in with C(rename(2)). Nothing is ever rewritten in
    place, so a live overlay whose lower is a damaged tree keeps a consistent view until it is remounted; new mounts
    get the repaired tree. Such trees are listed in RV(remount_needed).
  - Reads only, unless repairing, so it is safe to run from cron or a timer while users work.
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - Linux, run as root
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.store_http
attributes:
  check_mode:
    support: full
    details: Verifies and reports; never repairs.
  diff_mode:
    support: none
options:
  store:
    description: The host's store.
    type: path
    default: /var/lib/pkgcache
  repair:
    description: Fetch bad and missing objects again and rebuild damaged trees.
    type: bool
    default: false
  url:
    description: Base URL of the snapshot store to repair from. Required with O(repair=true).
    type: str
  fail_on_problems:
    description: Fail when problems remain after the run, so that cron or a timer reports them.
    type: bool
    default: true
  lock_timeout:
    description: Seconds to wait for another run on this host to release the store lock (V(0) fails at once).
    type: int
    default: 0
seealso:
  - module: pkgcache.overlay.snapshot_sync
"""

EXAMPLES = r"""
- name: Verify the store (fails if anything is wrong)
  pkgcache.overlay.snapshot_verify:

- name: Verify and repair from the builder
  pkgcache.overlay.snapshot_verify:
    repair: true
    url: http://builder.example.org:8370
"""

RETURN = r"""
ok:
  description: Whether the store and trees are intact after the run.
  returned: always
  type: bool
objects_checked:
  description: Objects re-hashed.
  returned: always
  type: int
bad_objects:
  description: Objects whose content does not match their sha256 (before any repair).
  returned: always
  type: list
  elements: str
missing_objects:
  description: Objects that a checked-out snapshot needs and the store lacks (before any repair).
  returned: always
  type: list
  elements: str
trees:
  description: Per damaged tree, its missing, mismatching and extra paths (before any repair).
  returned: always
  type: dict
repaired:
  description: What the repair did (objects fetched, trees rebuilt, trees that live mounts still use).
  returned: when repair ran
  type: dict
remount_needed:
  description: Rebuilt trees that live overlays still use; they see the repaired tree once remounted.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.pkgcache.overlay.plugins.module_utils import _verify
from ansible_collections.pkgcache.overlay.plugins.module_utils._fstabfile import mountinfo_text
from ansible_collections.pkgcache.overlay.plugins.module_utils._gc import referenced_ids
from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import LockError, StoreLock
from ansible_collections.pkgcache.overlay.plugins.module_utils._store import StoreError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            store=dict(type='path', default='/var/lib/pkgcache'),
            repair=dict(type='bool', default=False),
            url=dict(type='str'),
            fail_on_problems=dict(type='bool', default=True),
            workers=dict(type='int', default=8),
            timeout=dict(type='int', default=30),
            validate_certs=dict(type='bool', default=True),
            lock_timeout=dict(type='int', default=0),
            deadline=dict(type='int', default=900),
        ),
        required_if=[('repair', True, ('url',))],
        supports_check_mode=True,
    )
    p = module.params
    if p['deadline'] < 1:
        module.fail_json(msg='deadline must be 1 or more, got %d' % p['deadline'])

    def opener(url):
        return open_url(url, timeout=p['timeout'], validate_certs=p['validate_certs'], follow_redirects='safe')

    result = {'changed': False, 'remount_needed': []}
    try:
        report = _verify.verify(p['store'])
        result.update(report)
        if p['repair'] and not report['ok'] and not module.check_mode:
            with StoreLock(p['store'], p['lock_timeout']):
                done = _verify.repair(p['store'], report, p['url'].rstrip('/'), opener,
                                      referenced_ids(mountinfo_text()), p['workers'], p['deadline'])
            result.update({'changed': True, 'repaired': done, 'remount_needed': done['remount_needed']})
            result['ok'] = _verify.verify(p['store'])['ok']
    except (StoreError, LockError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc), **result)
    if not result['ok'] and p['fail_on_problems']:
        module.fail_json(msg='the store %s has problems: %d bad objects, %d missing objects, %d damaged trees'
                         % (p['store'], len(report['bad_objects']), len(report['missing_objects']), len(report['trees'])),
                         **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
