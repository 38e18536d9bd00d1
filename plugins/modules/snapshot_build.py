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
  - Builds one snapshot that holds the caches of one or more ecosystems (O(ecosystems)), each in its own directory
    of the snapshot, with identical files stored once. Each cache is filled by its own package manager, never by
    writing cache files by hand.
  - Every requested package is resolved and installed B(on its own), the way a user installs it into a fresh venv
    or project, O(workers) at a time, into one shared cache; the snapshot holds the union. Resolved together,
    popular packages would pin shared dependencies to versions that nobody installing one of them alone gets. A
    package that fails on its own is a miss with its reason and never fails the build. The manifest records what
    each package resolved to (C(resolutions)).
  - B(pip) fills a fresh pip cache directory by running pip itself, in a virtual environment that the module manages,
    against the given index, picking releases as a user's pip does; a package that only has an sdist is built into
    a wheel once, so that pip's C(wheels/) cache holds it too.
  - Checks, from pip's C(--report), that every file pip fetched really is in the cache. Packages that the index
    lacks, or whose files were not cached, are returned as RV(misses). The first package that resolves is
    resolved and fetched alone, before the others. If pip cached none of its files, the module fails at once,
    naming the index and the cache header its response lacked (read with a C(HEAD) request). It also fails when
    nothing was cached at the end.
  - B(npm) resolves each package the way C(npm install) does (C(npm install --package-lock-only) in a throwaway
    project of its own) and puts every package of the resulting trees into C(_cacache) with C(npm cache add).
  - B(maven) fetches each artifact with its dependencies by C(mvn dependency:get) into a fresh local repository.
  - B(uv) installs each package with C(uv pip install) into a throwaway venv of its own with C(UV_CACHE_DIR) set.
  - Ingests the caches into a content-addressed object store (one file per sha256, shared by all snapshots) and
    writes a manifest. The snapshot id is the sha256 of the canonical manifest entries.
  - A run whose inputs and resolution match an earlier build reports C(changed=false) and returns that snapshot.
  - Publishing (O(publish)) adds a signed, numbered revision record (C(refs/revisions/<N>.json)) that hosts check
    against the revisions they applied, unless a rollback holds the store (see O(force)).
author:
  - pkgcache.overlay contributors (@pkgcache)
requirements:
  - Python 3 with the venv module on the builder (pip builds; Debian package C(python3-venv))
  - C(npm) for O(ecosystems=npm), C(mvn) and a JRE for O(ecosystems=maven), C(uv) for O(ecosystems=uv)
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
    details: Runs pip in a temporary directory and reports what would be stored, without changing the store.
  diff_mode:
    support: none
options:
  ecosystems:
    description:
      - The package managers whose caches go into the snapshot. The options of O(packages) to O(venv_dir) are
        pip's; O(npm), O(maven) and O(uv) hold the others'.
    type: list
    elements: str
    choices: [pip, npm, maven, uv]
    default: [pip]
    aliases: [ecosystem]
    version_added: 0.2.0
  packages:
    description:
      - pip requirement specifiers, for example V(requests), V(six==1.17.0), V(uvicorn[standard]) or
        V(celery[redis]==5.4.0). Each is a PEP 508 project name with optional extras and version clauses;
        markers, direct references (C(name @ URL)) and pip options are refused, naming the specifier.
    type: list
    elements: str
    default: []
  requirements:
    description: A requirements file with one specifier a line. pip options are refused.
    type: path
  index_url:
    description:
      - The package index to fill pip's cache from (and uv's, unless O(uv.index_url) is set). Users must use the same
        URL, since pip keys its cache by URL. Required when O(ecosystems) has V(pip).
    type: str
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
  max_bytes:
    description:
      - A size budget for pip's part of the snapshot, in bytes (the files of the chosen packages' closures). V(0)
        takes every package.
      - With a budget (or O(max_project_bytes)), every package is first only resolved (C(pip install --dry-run),
        which reads the index pages and PEP 658 metadata), the size of each file of its closure is taken from the
        cache or from a C(HEAD) request (C(Content-Length)), and the packages are chosen by the bytes they save per
        byte they add - O(scores) (how often a package is installed) times the size of its closure, divided by the
        bytes it adds to what is already chosen (shared dependencies already in count zero) - for as long as one
        fits. Only the chosen ones are fetched; an index without PEP 658 metadata makes pip fetch the files while
        resolving.
      - What is left out and why is in RV(left_out) and in the manifest's C(provenance). A shard build takes its
        share (O(max_bytes) divided by O(shard.count)).
      - The budget counts pip's part only. The specs of O(uv.packages) that it left out from O(packages) stay out of
        uv's part too, but uv's part (unpacked, about 2.5 times the wheels' bytes) is not counted.
    type: int
    default: 0
    version_added: 0.4.0
  max_project_bytes:
    description: The largest closure one pip package may bring (bytes); a package over it is left out. V(0) for no cap.
    type: int
    default: 0
    version_added: 0.4.0
  scores:
    description:
      - How often each requirement of O(packages) is installed (any scale), for the budget, for example the
        C(score) of each of M(pkgcache.overlay.package_popularity)'s RV(pkgcache.overlay.package_popularity#module:packages).
      - Empty scores the list by rank (the r-th scores 1/r of the first); a requirement that a non-empty O(scores)
        does not name scores below every named one.
    type: dict
    version_added: 0.4.0
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
  npm:
    description: The npm cache. Users must use the same registry URL, since npm keys its cache by URL.
    type: dict
    suboptions:
      packages:
        description: Package specs from the registry, V(name) or V(name@range), for example V(lodash@^4).
        type: list
        elements: str
        default: []
      registry:
        description: The registry URL.
        type: str
        default: https://registry.npmjs.org/
      npm:
        description: The npm command.
        type: str
        default: npm
      cafile:
        description: A CA bundle for the registry's TLS certificate.
        type: path
      platforms:
        description:
          - The platforms of the repl hosts, each V(os-cpu) as node names them (C(process.platform) and
            C(process.arch)), for example V(linux-x64) or V(darwin-arm64).
          - A package that npm installs on none of them (a prebuilt binary for another platform, by the C(os) and
            C(cpu) of its lock entry) keeps its packument in the snapshot, which npm reads to resolve, but not its
            tarball, which npm never fetches there. A package's C(libc) is not looked at, so both the glibc and the
            musl binaries of a platform stay. This keeps other platforms' binaries (esbuild's,
            typescript's, ...) out of every host's download.
          - Empty takes every package, for hosts of any platform.
        type: list
        elements: str
        default: []
        version_added: 0.4.0
    version_added: 0.2.0
  maven:
    description:
      - The Maven local repository. Maven records the id of the repository each file came from, and hides a cached
        file from a build whose repositories (or mirrors) do not have that id, so users must use the same ids.
    type: dict
    suboptions:
      artifacts:
        description: Artifacts as V(groupId:artifactId:version[:packaging[:classifier]]), fetched with their dependencies.
        type: list
        elements: str
        default: []
      repositories:
        description:
          - The repositories to fetch from. An entry with O(maven.repositories[].mirror_of) becomes a mirror; the
            others are added to Central.
        type: list
        elements: dict
        default: []
        suboptions:
          id:
            description:
              - The repository id (letters, digits, V(_), V(.), V(-)). Maven records it beside every file it
                fetched, so users' settings must use the same id.
            type: str
            required: true
          url:
            description: The repository's C(http), C(https) or C(file) URL.
            type: str
            required: true
          mirror_of:
            description:
              - Make this repository a mirror of the repositories this Maven C(mirrorOf) pattern names (for example
                V(*) for a company repository that proxies everything).
            type: str
      settings:
        description: A settings.xml to use instead of O(maven.repositories).
        type: path
      mvn:
        description: The mvn command.
        type: str
        default: mvn
      plugin:
        description: The maven-dependency-plugin to run, as C(groupId:artifactId:version).
        type: str
        default: org.apache.maven.plugins:maven-dependency-plugin:3.6.1
    version_added: 0.2.0
  uv:
    description: The uv cache. Users must use the same index URL.
    type: dict
    suboptions:
      packages:
        description: Requirement specifiers.
        type: list
        elements: str
        default: []
      index_url:
        description: The index. Defaults to O(index_url).
        type: str
      uv:
        description: The uv command.
        type: str
        default: uv
      python:
        description: The Python that uv builds the throwaway venv with.
        type: str
        default: python3
    version_added: 0.2.0
  provenance:
    description:
      - Where the package list came from (for example the result of M(pkgcache.overlay.package_popularity)),
        recorded in the manifest as C(provenance). It does not change the snapshot id or the build's idempotence.
    type: dict
    version_added: 0.2.0
  signing_key:
    description:
      - An OpenSSH private key (with its C(.pub) beside it) that signs the manifest with C(ssh-keygen -Y sign) in
        the namespace C(pkgcache-snapshot). The signature is stored as C(snapshots/<id>.json.sig). A manifest that
        already carries a valid signature by this key is not signed again.
    type: path
    version_added: 0.2.0
  lock_timeout:
    version_added: 0.3.0
  workers:
    description: How many packages are resolved and installed at once (each on its own), per ecosystem.
    type: int
    default: 4
    version_added: 0.3.0
  max_age:
    description:
      - Seconds for which a build of the same inputs (ecosystems, package lists, indexes, tool versions asked for,
        O(shard)) stays good. Within that time the module contacts no index and returns the snapshot those inputs
        built, with C(not_rebuilt=true). Adding a user or a host then changes nothing on the builder.
      - V(0) builds every time. O(force) builds anyway.
    type: int
    default: 0
    version_added: 0.4.0
  force:
    description:
      - Build even when O(max_age) would skip, and publish even while a rollback's hold is on (lifting the hold,
        see M(pkgcache.overlay.snapshot_publish)). Without it, a build during a hold stores its snapshot but leaves
        C(refs/latest) at the rolled-back one (RV(held)).
    type: bool
    default: false
    version_added: 0.4.0
  reuse:
    description:
      - Reuse the previous build's pip resolutions when the index has nothing newer. Each build records the sha256
        of every cached project's index page; the next build with the same pip, Python and index fetches those
        pages again (one GET per project, O(workers) at a time), and a package whose resolution only names
        projects with unchanged pages is not run through pip again; its cache entries come from the previous
        snapshot's objects. The check that every file is cached runs as usual.
      - npm, uv and Maven start from the published snapshot's cache (C(refs/latest), when it was built with the same
        tool version and registry, index or repositories). npm's content is hardlinked out of the store objects and
        the rest copied; the package manager reuses the unchanged files, and what the new build does not use is
        dropped. npm keeps the index entries of the packages its lock files name and the content they point to.
        uv fetches the index pages again, and the packages that the snapshot holds at a version no resolution
        takes go with C(uv cache clean) and C(uv cache prune). Maven drops the directories whose files it did not
        read (by access time; on a noatime filesystem the build starts empty). The snapshot holds what a build
        from an empty cache would hold. C(reused) in RV(ecosystems) counts the files seeded.
      - V(false) resolves every package again, and every ecosystem starts from an empty cache.
    type: bool
    default: true
    version_added: 0.4.0
  shard:
    description:
      - Build only this builder's share of every package list, for M(pkgcache.overlay.snapshot_merge) to join. A
        package belongs to shard C(sha256(name) mod count), so adding a package moves no other one.
      - A shard build is stored unpublished (O(publish) is ignored) and records the shard in its manifest. An
        ecosystem whose share is empty is left out; a shard with no package at all returns an empty RV(id).
    type: dict
    suboptions:
      index:
        description: This builder's shard, V(0) to O(shard.count) minus one.
        type: int
        required: true
      count:
        description: How many builders share the build.
        type: int
        required: true
    version_added: 0.4.0
notes:
  - The build holds the store lock (the one M(pkgcache.overlay.snapshot_gc) takes) while it writes objects, the
    manifest and refs, so that a GC never removes the objects of a build whose manifest is not written yet. Filling
    the caches runs before, without the lock.
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

- name: One snapshot with pip, npm and Maven caches
  pkgcache.overlay.snapshot_build:
    ecosystems: [pip, npm, maven]
    packages: [requests]
    index_url: https://pypi.example.org/simple/
    npm:
      packages: [lodash, express@4]
    maven:
      artifacts: [com.google.guava:guava:33.3.1-jre]
      repositories:
        - {id: company, url: "https://repo.example.org/maven/", mirror_of: "*"}
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
  description: Packages that are not in the snapshot, with the ecosystem and the reason.
  returned: success
  type: list
  elements: dict
  sample: [{package: no-such-package, version: '', ecosystem: pip, reason: cannot be resolved from http://127.0.0.1:8371/simple/}]
packages:
  description: The packages in the snapshot with their resolved versions and ecosystem.
  returned: success
  type: list
  elements: dict
  sample: [{name: six, version: 1.17.0, ecosystem: pip}]
ecosystems:
  description:
    - Per ecosystem, what the manifest records of it (tool versions, index or registry, requested, packages, misses).
    - For pip also C(resolutions), C(pages) (sha256 of each cached project's index page) and C(reused) (how many
      packages kept the previous build's resolution, see O(reuse)).
    - For npm, uv and Maven also C(reused), the number of files seeded from the published snapshot (see O(reuse)).
  returned: success
  type: dict
pip_version:
  description: The pip version the snapshot was built with.
  returned: success and pip is built
  type: str
python_version:
  description: The Python version the snapshot was built with.
  returned: success and pip is built
  type: str
signed:
  description: Whether the manifest is signed.
  returned: success
  type: bool
revision:
  description: The published revision (see M(pkgcache.overlay.snapshot_publish)) when O(publish) is true.
  returned: success and O(publish) is true
  type: int
held:
  description: The snapshot a rollback holds the store at, if the build did not publish because of it.
  returned: success and O(publish) is true
  type: str
manifest_sha256:
  description: The sha256 of the snapshot's manifest file (what M(pkgcache.overlay.snapshot_merge) checks a shard against).
  returned: success and the snapshot is not empty
  type: str
left_out:
  description:
    - The packages that O(max_bytes) or O(max_project_bytes) left out, each with C(package), C(ecosystem),
      C(closure_bytes), C(added_bytes) (what it would have added, for the budget), C(reason) (V(budget), V(cap) or
      V(size unknown)) and C(why), a sentence.
  returned: success and a package was left out
  type: list
  elements: dict
  sample: [{package: sglang, ecosystem: pip, closure_bytes: 4180000000, added_bytes: 4100000000, reason: budget,
            why: "sglang: 4.18 GB closure, left out by the budget of 1 GB"}]
  version_added: 0.4.0
not_rebuilt:
  description: True when the build was skipped (O(max_age)) and the snapshot of the same inputs is returned.
  returned: success
  type: bool
shard:
  description: The shard this run built, as given.
  returned: success and O(shard) is set and the shard got no package
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as builder


def main():
    builder.run_module(AnsibleModule(argument_spec=builder.argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
