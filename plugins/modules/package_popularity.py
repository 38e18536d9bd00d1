#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: package_popularity
short_description: Rank the packages of one ecosystem from download lists, logs and the fleet's cache misses
version_added: 0.2.0
description:
  - Reads counts per package from any mix of sources and returns the top O(top) packages with their scores and
    the sources that named them, pinned packages first. Blocked packages never appear.
  - Each source's counts are scaled to 0..1 by its largest count and multiplied by its C(weight) before they are
    summed, so a public list of downloads and a handful of fleet misses can be mixed.
  - "Source types: C(top_pypi_json) (the top-pypi-packages JSON format, a C(rows) list of C(project) and
    C(download_count)); C(ranked_list) (one name a line, most popular first); C(access_log) (nginx, Apache or
    pypiserver access logs of an index or registry: successful downloads of package files); C(pip_log) (files pip
    downloaded or took from its cache, from C(pip --log)); C(npm_log) (tarballs fetched, from npm's debug logs);
    C(uppers) (cache-miss telemetry: what the repl users' overlay uppers on this host hold that the snapshot lacks);
    C(counts) (counts gathered elsewhere, for example the C(uppers) counts of every host)."
  - The C(uppers) source reads pip and uv package names and versions from the wheel metadata in cached bodies,
    npm packages from the C(_cacache) index keys and Maven artifacts from repository paths. It counts, per
    package, how many users fetched it; user names are never returned.
author:
  - pkgcache.overlay contributors (@pkgcache)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - pkgcache.overlay.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
options:
  ecosystem:
    description: The ecosystem whose packages are ranked. Names are normalised the way that ecosystem does.
    type: str
    choices: [pip, npm, maven, uv]
    required: true
  sources:
    description:
      - The sources, each a dict with C(type) and, by type, C(paths) (files on the managed host), C(counts) (a mapping
        of package to count, or a list of such mappings, which are summed), or for C(uppers) the optional
        C(scratch_root) (default V(/mnt/scratch)), C(lower_root) (default V(/mnt/cacache)) and C(min_users)
        (default V(1), which drops packages fetched by fewer users). Optional C(weight) (default V(1.0)) and C(name)
        (the label in RV(packages[].sources), default the type).
    type: list
    elements: dict
    default: []
  top:
    description: How many ranked packages to return besides the pinned ones. V(0) returns only the pins.
    type: int
    default: 100
  pins:
    description: Packages that are always returned, first, whatever the sources say.
    type: list
    elements: str
    default: []
  blocks:
    description: Packages that are never returned, for example known-malicious or huge ones.
    type: list
    elements: str
    default: []
seealso:
  - module: pkgcache.overlay.snapshot_build
"""

EXAMPLES = r"""
- name: Rank pip packages from the public top list, the index's log and the pins
  pkgcache.overlay.package_popularity:
    ecosystem: pip
    top: 200
    sources:
      - {type: top_pypi_json, paths: [/srv/popularity/top-pypi-packages-30-days.min.json]}
      - {type: access_log, paths: [/var/log/nginx/pypi-access.log], weight: 2}
    pins: [requests]
    blocks: [tensorflow]
  register: pip_top

- name: Count what the users of this host fetched that the snapshot lacks
  pkgcache.overlay.package_popularity:
    ecosystem: npm
    sources: [{type: uppers, scratch_root: /mnt/scratch, lower_root: /mnt/cacache}]
    top: 0
  register: npm_misses
"""

RETURN = r"""
packages:
  description: Pinned packages, then the top ranked ones, with their score and the sources that named them.
  returned: success
  type: list
  elements: dict
  sample: [{name: requests, score: 1.0, sources: [pin, top_pypi_json]}, {name: six, score: 0.7, sources: [access_log]}]
  contains:
    name:
      description: The package name (a pin as it was given, with its version if it has one).
      type: str
    score:
      description: The sum over sources of weight times count divided by the source's largest count.
      type: float
    sources:
      description: The labels of the sources that named the package, C(pin) first for pins.
      type: list
      elements: str
names:
  description: The names of RV(packages), in order.
  returned: success
  type: list
  elements: str
  sample: [requests, six]
blocked:
  description: Blocked packages that a source named.
  returned: success
  type: list
  elements: str
source_counts:
  description: The raw counts per source label (for C(uppers), users per package), as input for a C(counts) source.
  returned: success
  type: dict
  sample: {uppers: {kleur: 2}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils._popularity import PopularityError, rank


def _read(path):
    with open(path, 'rb') as f:
        return f.read().decode('utf-8', 'replace')


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ecosystem=dict(type='str', required=True, choices=['pip', 'npm', 'maven', 'uv']),
            sources=dict(type='list', elements='dict', default=[]),
            top=dict(type='int', default=100),
            pins=dict(type='list', elements='str', default=[]),
            blocks=dict(type='list', elements='str', default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p['top'] < 0:
        module.fail_json(msg='top %d is negative' % p['top'])
    try:
        result = rank(p['ecosystem'], p['sources'], _read, p['top'], p['pins'], p['blocks'])
    except PopularityError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, names=[x['name'] for x in result['packages']], **result)


if __name__ == '__main__':
    main()
