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
  - pkgcache.overlay.store_lock
  - pkgcache.overlay.host_store
attributes:
  check_mode:
    support: full
    details: Verifies and reports; never repairs.
  diff_mode:
    support: none
options:
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

from ansible_collections.pkgcache.overlay.plugins.module_utils import _verify as vf


def main():
    vf.run_module(AnsibleModule(argument_spec=vf.argument_spec(), required_if=vf.REQUIRED_IF, supports_check_mode=True))


if __name__ == '__main__':
    main()
