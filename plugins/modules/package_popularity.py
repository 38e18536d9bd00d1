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
    the sources that named them, pinned packages first, each followed by the versions of it that the fleet
    installed most (O(versions)). Blocked packages never appear.
  - With O(normalize=share) (the default) each source's counts become shares of its own total (the fraction of that
    source's installs that went to the package), and a package's score is the mean of the sources' shares weighted
    by their C(weight). With weights that sum to 1 the score is the share of all installs expected, so a public
    list of a billion downloads and a fleet of a few hundred users can be mixed and the weights mean what they
    say. O(normalize=max) scales each source by its largest count instead (the behaviour before 0.4.0).
  - "Source types: C(top_pypi_json) (the top-pypi-packages JSON format, a C(rows) list of C(project) and
    C(download_count)); C(ranked_list) (one name a line, most popular first); C(access_log) (nginx, Apache or
    pypiserver access logs of an index or registry: successful downloads of package files); C(pip_log) (files pip
    downloaded or took from its cache, from C(pip --log)); C(npm_log) (tarballs fetched, from npm's debug logs);
    C(uppers) (cache-miss telemetry: what the repl users' overlay uppers on this host hold that the snapshot lacks);
    C(counts) (counts gathered elsewhere, taken as they are); C(fleet) (the C(uppers) telemetry of every host,
    one entry per host, which counts a package or a version only when O(min_hosts) hosts sent it)."
  - The C(uppers) source reads pip and uv package names and versions from the wheel metadata in cached bodies,
    npm packages from the C(_cacache) index keys and Maven artifacts from repository paths. It counts, per
    package and per version of it, how many users fetched it; the counts never name a user. Each user's upper is
    opened without
    following symlinks and walked within caps (see O(sources)); a user whose upper is refused, fails or reaches a
    cap is named in RV(upper_scans), and the other users are counted all the same.
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - Python 3.8 or later on the target (no other tool)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgcache.overlay.attributes
  - ansible.builtin.action_common_attributes.actiongroups
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
        of package to count, or a list of such mappings, which are summed), or the C(uppers) keys below. Optional
        C(weight) (default V(1.0)) and C(name) (the label in RV(packages[].sources), RV(source_counts) and
        RV(upper_scans), default the type; a label used twice gets the source's position appended).
      - "A C(fleet) source has C(hosts): a list with one entry per host, the C(mount_telemetry) of that ecosystem
        (C(packages), a mapping of package to users, and C(versions), package to version to users). Host names
        are not needed and not kept."
      - An C(uppers) source is one host's telemetry. Its counts are returned in RV(source_counts) and
        RV(version_counts), but its packages enter the ranking only with O(min_hosts=1).
      - "An C(uppers) source reads every C(<scratch_root>/<user>/cacache_<ecosystem>/upper) and may set:
        C(scratch_root) (default V(/mnt/scratch)); C(lower_root) (default V(/mnt/cacache)), whose
        C(<ecosystem>) directory is the snapshot the uppers are compared with; C(min_users) (default V(1), which
        drops packages fetched by fewer users); C(max_names) (default V(2000)), the most packages taken from one
        user's upper, after which that user's walk stops (truncated by C(max_names)); C(max_packages) (default
        V(20000)), the most packages the source returns, those fetched by most users first (the rest are counted
        in C(packages_dropped) of RV(upper_scans)); and C(limits), a dict of caps on the walk of each user's upper:
        C(max_files) (entries of any type seen, default V(200000)), C(max_bytes) (bytes read from files, default
        V(134217728)), C(max_depth) (directory levels, default V(64)), C(max_dir_entries) (entries of one
        directory, default V(100000)) and C(max_seconds) (time, default V(10.0)). A walk that reaches a cap stops
        and that user is named in C(truncated) of RV(upper_scans)."
      - C(min_users), C(max_names), C(max_packages) and the C(limits) must be positive (C(max_seconds) a number, the
        others integers); an unknown key in C(limits) fails.
    type: list
    elements: dict
    default: []
  top:
    description:
      - How many ranked packages to return besides the pinned ones. V(0) returns only the pins.
      - It bounds the packages that a source other than C(fleet) and C(uppers) counted. Packages that only those
        telemetry sources counted (past their C(min_hosts)) come beyond it, up to another O(top), each with its
        score, so that a few users' misses never push popular public packages out of the list.
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
  min_hosts:
    description:
      - A package, or a version of it, from a C(fleet) source enters the ranking only when at least this many hosts
        sent it (each host after its own C(min_users)). One user's planted guesses count on her own host only, so
        with V(2) or more they cannot decide what the build takes, and with the default they need accounts on 3
        hosts. Packages and counts left out change no score and no total.
    type: int
    default: 3
    version_added: 0.4.0
  versions:
    description:
      - Per project in the result, how many of the versions that sources counted (the fleet's, seen on O(min_hosts)
        hosts) follow it as C(name==version) (npm C(name@version)), most installed first, beside the bare name
        that resolves its newest. V(0) adds none. Maven coordinates carry their version already.
    type: int
    default: 3
    version_added: 0.4.0
  extras:
    description:
      - "Per project (pip and uv), the extras it is resolved with whenever it is in the result, for example
        C({uvicorn: [standard], celery: [redis]}), which makes the entries C(uvicorn[standard]) and
        C(uvicorn[standard]==0.30.0). Project and extra names must be PEP 508 names."
    type: dict
    default: {}
    version_added: 0.4.0
  normalize:
    description: How each source's counts are made comparable before they are weighted (see the description).
    type: str
    choices: [share, max]
    default: share
    version_added: 0.4.0
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
    sources:
      - type: uppers
        scratch_root: /mnt/scratch
        lower_root: /mnt/cacache
        max_names: 500
        limits: {max_seconds: 5, max_files: 50000}
    top: 0
  register: npm_misses

- name: Rank the fleet's telemetry (one entry per host) with the public list; keep the fleet's pinned versions
  pkgcache.overlay.package_popularity:
    ecosystem: pip
    top: 500
    min_hosts: 3
    versions: 3
    extras: {uvicorn: [standard], celery: [redis]}
    sources:
      - {type: top_pypi_json, paths: [/srv/popularity/top-pypi-packages-30-days.min.json], weight: 1}
      - type: fleet
        weight: 3
        hosts:
          - {packages: {django: 4, tabulate: 1}, versions: {django: {'4.2.7': 3}}}
          - {packages: {django: 2}, versions: {django: {'4.2.7': 1, '5.1.4': 1}}}
          - {packages: {django: 1}, versions: {django: {'4.2.7': 1}}}

- name: Show the users whose uppers could not be read in full
  ansible.builtin.debug:
    msg: "{{ npm_misses.upper_scans.uppers.skipped | combine(npm_misses.upper_scans.uppers.truncated) }}"
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
      description:
        - The requirement string for the build, C(name), C(name[extras]), C(name==version) (npm C(name@version));
          a pin as it was given.
      type: str
    project:
      description: The normalised project name the entry belongs to.
      type: str
      version_added: 0.4.0
    version:
      description: The version of an entry that names one exact version (absent for the bare name).
      type: str
      version_added: 0.4.0
    score:
      description:
        - The sources' shares of the package (or of that version) weighted by their weights, divided by the sum of
          the weights (see O(normalize)).
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
  description:
    - The counts per source label (for C(uppers), users per package on this host; for C(fleet), users over the hosts,
      of the packages seen on O(min_hosts) hosts only). They name packages, so they stay on the host that ran the
      module (a builder keeps them root-only); a manifest records RV(provenance) instead.
  returned: success
  type: dict
  sample: {uppers: {kleur: 2}}
version_counts:
  description:
    - Per source label that knows versions (C(uppers), C(fleet)), users per package and version, with the same
      thresholds as RV(source_counts). A host's telemetry sends RV(source_counts) and this.
  returned: success
  type: dict
  sample: {uppers: {django: {4.2.7: 2}}}
  version_added: 0.4.0
fleet:
  description:
    - Per label of a C(fleet) source, C(hosts) (entries given) and C(dropped) (packages left out because fewer than
      O(min_hosts) hosts sent them). For the operator only; it is not part of RV(provenance).
  returned: success
  type: dict
  sample: {fleet: {hosts: 12, dropped: 340}}
  version_added: 0.4.0
provenance:
  description:
    - What a snapshot's manifest records about the list (give it to
      O(pkgcache.overlay.snapshot_build#module:provenance)), the sources and the totals, never a package name or a
      count of one. C(sources) lists per source its C(name),
      C(type), C(weight), and the C(packages) and C(total) count it brought into the ranking (after the
      thresholds); a C(fleet) source also C(hosts) and C(min_hosts). Then C(normalize), C(top), C(packages)
      (entries in the list), C(pins), C(versions) (version entries added) and C(extras) (entries with extras).
  returned: success
  type: dict
  sample:
    sources:
      - {name: top_pypi_json, type: top_pypi_json, weight: 1.0, packages: 8000, total: 30000000000}
      - {name: fleet, type: fleet, weight: 1.0, packages: 41, total: 230, hosts: 12, min_hosts: 3}
    normalize: share
    top: 500
    packages: 560
    pins: 10
    versions: 50
    extras: 2
  version_added: 0.4.0
upper_scans:
  description:
    - Per label of an C(uppers) source, what its scan did; empty without C(uppers) sources. It names no package, but
      names the users whose upper was skipped or truncated.
    - C(users) is the number of users whose upper was scanned (a user without an upper for this ecosystem is left
      out).
    - C(skipped) maps a user to why the upper was not counted, or not fully (refused because a component of its
      path is a symlink or not a directory, cannot be opened, or C(scan failed)).
    - C(truncated) maps a user to the cap that stopped the walk of its upper (C(max_files), C(max_bytes),
      C(max_depth), C(max_dir_entries), C(max_seconds) or C(max_names)); what was found before it still counts.
    - C(walk) sums the walks' counters over the users scanned (present once one user was scanned), C(entries),
      C(bytes_read) and C(files_opened), and C(skipped), entries left out by reason (for example C(symlink),
      C(special), C(sparse), C(too_big), C(other_fs), C(unopenable), C(vanished), C(pruned), C(long_line),
      C(capped_file)).
    - C(packages_dropped) is the number of packages left out over the source's C(max_packages).
  returned: success
  type: dict
  sample:
    uppers:
      users: 3
      skipped: {mallory: mallory/cacache_pip/upper is a symlink; refusing to follow it}
      truncated: {bob: max_files}
      walk: {entries: 200412, bytes_read: 1048576, files_opened: 58, skipped: {sparse: 2, symlink: 4}}
      packages_dropped: 0
  version_added: 0.3.0
invalid_names:
  description:
    - Per source label, how many names were dropped because they are not plain package names of the ecosystem
      (PEP 503 names for pip and uv, npm package names, C(group:artifact[:version]) for Maven). Such a name, taken
      from a log or a user's upper, could otherwise reach the build as a direct reference (C(x @ http://...)). The
      names themselves are never returned.
  returned: success
  type: dict
  sample: {uppers: 1}
  version_added: 0.3.0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _popularity as pop


def main():
    pop.run_module(AnsibleModule(argument_spec=pop.argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
