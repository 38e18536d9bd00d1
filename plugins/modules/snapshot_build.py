#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_build
short_description: Build a content-addressed snapshot of a package manager cache
version_added: 0.1.0
description:
  - Fills a fresh pip cache directory by running pip itself, in a virtual environment that the module manages,
    against the given index. Binary wheels are preferred; a package that only has an sdist is built into a wheel
    once, so that pip's C(wheels/) cache holds it too.
  - Checks, from pip's C(--report), that every file pip fetched really is in the cache. Packages that the index
    lacks, or whose files were not cached, are returned as RV(misses). The module fails when nothing was cached,
    which usually means that the index sends no cache headers.
  - Ingests the cache into a content-addressed object store (one file per sha256, shared by all snapshots) and
    writes a manifest. The snapshot id is the sha256 of the canonical manifest entries.
  - A run whose inputs and resolution match an earlier build reports C(changed=false) and returns that snapshot.
author:
  - pkgcache.overlay contributors (@pkgcache)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.attributes
attributes:
  check_mode:
    support: full
    details: Runs pip in a temporary directory and reports what would be stored, without changing the store.
  diff_mode:
    support: none
options:
  ecosystem:
    description: The package manager whose cache is built.
    type: str
    choices: [pip]
    default: pip
  packages:
    description: Requirement specifiers, for example V(requests) or V(six==1.17.0).
    type: list
    elements: str
    default: []
  requirements:
    description: A requirements file with one specifier a line. pip options are refused.
    type: path
  index_url:
    description: The package index to fill the cache from. Users must use the same URL, since pip keys its cache by URL.
    type: str
    required: true
  trusted_host:
    description: Host (and port) of an C(http) index. pip caches nothing from an C(http) index that is not trusted.
    type: str
  python:
    description: The Python interpreter that creates the build venv. Users must run the same Python minor version.
    type: str
    default: python3
  pip_version:
    description:
      - The pip version to build with, installed into the venv from O(index_url). Users must run the same pip, since
        pip's cache format may change between versions. Empty keeps the pip that the venv brings.
    type: str
  venv_dir:
    description: The build venv. Defaults to C(venv-<python>) under O(work_dir).
    type: path
  work_dir:
    description: Working directory for venvs and temporary caches.
    type: path
    default: /var/lib/pkgcache-build
  store:
    description: The object store directory, served to repl hosts over HTTP.
    type: path
    required: true
  publish:
    description: Point C(refs/latest) in the store at the built snapshot.
    type: bool
    default: true
  signing_key:
    description:
      - An OpenSSH private key (with its C(.pub) beside it) that signs the manifest with C(ssh-keygen -Y sign) in
        the namespace C(pkgcache-snapshot). The signature is stored as C(snapshots/<id>.json.sig). A manifest that
        already carries a valid signature by this key is not signed again.
    type: path
notes:
  - The build's pip ignores pip configuration files and C(PIP_*) variables of the host, so a snapshot depends only
    on the options given here.
seealso:
  - module: pkgcache.overlay.snapshot_sync
"""

EXAMPLES = r"""
- name: Build a pip snapshot from a local index
  pkgcache.overlay.snapshot_build:
    packages: [requests, six, docopt]
    index_url: http://127.0.0.1:8371/simple/
    trusted_host: 127.0.0.1:8371
    store: /srv/pkgcache
  register: snap

- name: Build from a requirements file with a pinned pip
  pkgcache.overlay.snapshot_build:
    requirements: /etc/pkgcache/top-packages.txt
    index_url: https://pypi.example.org/simple/
    pip_version: 23.0.1
    store: /srv/pkgcache
"""

RETURN = r"""
id:
  description: The snapshot id (sha256 of the canonical manifest entries).
  returned: success
  type: str
  sample: 5f1c0e3a9b2d4c6e8f00112233445566778899aabbccddeeff00112233445566
created:
  description: When the snapshot was first built (UTC, ISO 8601).
  returned: success
  type: str
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
  description: Objects that this run added to the store.
  returned: success
  type: int
new_bytes:
  description: Bytes that this run added to the store.
  returned: success
  type: int
misses:
  description: Packages that are not in the snapshot, with the reason.
  returned: success
  type: list
  elements: dict
  sample: [{package: no-such-package, version: '', reason: cannot be resolved from http://127.0.0.1:8371/simple/}]
packages:
  description: The packages in the snapshot with their resolved versions.
  returned: success
  type: list
  elements: dict
  sample: [{name: six, version: 1.17.0}]
pip_version:
  description: The pip version the snapshot was built with.
  returned: success
  type: str
python_version:
  description: The Python version the snapshot was built with.
  returned: success
  type: str
signed:
  description: Whether the manifest is signed.
  returned: success
  type: bool
"""

import datetime
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder
from ansible_collections.pkgcache.overlay.plugins.module_utils._manifest import ManifestError
from ansible_collections.pkgcache.overlay.plugins.module_utils._pipcache import PipBuildError
from ansible_collections.pkgcache.overlay.plugins.module_utils._signing import SignatureError
from ansible_collections.pkgcache.overlay.plugins.module_utils._store import StoreError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ecosystem=dict(type='str', default='pip', choices=['pip']),
            packages=dict(type='list', elements='str', default=[]),
            requirements=dict(type='path'),
            index_url=dict(type='str', required=True),
            trusted_host=dict(type='str'),
            python=dict(type='str', default='python3'),
            pip_version=dict(type='str'),
            venv_dir=dict(type='path'),
            work_dir=dict(type='path', default='/var/lib/pkgcache-build'),
            store=dict(type='path', required=True),
            publish=dict(type='bool', default=True),
            signing_key=dict(type='path', no_log=False),
        ),
        supports_check_mode=True,
    )

    def run(argv, env, data=None):
        if env is not None:
            # The build's pip must not see the host's pip settings.
            for key in [k for k in os.environ if k.startswith('PIP_') and k not in env]:
                del os.environ[key]
        return module.run_command(argv, environ_update=env or {}, data=data, binary_data=True)

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    try:
        result = _builder.build(module.params, run, check_mode=module.check_mode, now=now)
    except (PipBuildError, StoreError, ManifestError, SignatureError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
