# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filling and reading a Maven local repository with mvn itself.

Private to the collection; the API may change without notice.

Each artifact is fetched with ``mvn dependency:get`` (transitively) into a
fresh ``maven.repo.local``. Maven records in ``_remote.repositories`` the id of
the repository each file came from, and Maven 3's enhanced local repository
manager hides a file from a build whose repositories do not include that id:
users' settings must use the same repository (or mirror) ids as the build.

An incremental build (``reuse``) starts from a copy of the published
snapshot's repository with every file's access time set to 0: Maven finds the
unchanged artifacts there and reads their POM and ``_remote.repositories``. A
directory none of whose files Maven read (or wrote) is no longer resolved and
goes, so the repository holds what a build into an empty one would. Where
access times are not kept (a noatime mount), the build starts empty.
"""

from __future__ import annotations

import hashlib
import os
import re
from xml.sax.saxutils import escape

from ._fill import BuildError, empty, fingerprint, seeded, tail as _tail, with_defaults

# The suboptions of snapshot_build's maven option.
OPTIONS = dict(
    artifacts=dict(type='list', elements='str', default=[]),
    repositories=dict(type='list', elements='dict', default=[], options=dict(
        id=dict(type='str', required=True),
        url=dict(type='str', required=True),
        mirror_of=dict(type='str'),
    )),
    settings=dict(type='path'),
    mvn=dict(type='str', default='mvn'),
    plugin=dict(type='str', default='org.apache.maven.plugins:maven-dependency-plugin:3.6.1'),
)
ITEMS = 'artifacts'

COORD_RE = re.compile(r'^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.+-]+(:[A-Za-z0-9_.-]+){0,2}$')
ID_RE = re.compile(r'^[A-Za-z0-9_.-]+$')
URL_RE = re.compile(r'^(https?|file)://[^\s<>"]+$')
MIRROR_RE = re.compile(r'^[A-Za-z0-9_.*!,-]+$')
ANSI = re.compile(r'\x1b\[[0-9;]*m')


def tail(text, lines=15):
    return _tail(ANSI.sub('', text or ''), lines)


def exclude(cache):
    """Nothing of a local repository stays out of a snapshot (failure markers are removed by fill)."""
    return ()


def check_artifacts(artifacts):
    out = []
    for a in artifacts:
        s = a.strip() if isinstance(a, str) else a
        if not isinstance(s, str) or not COORD_RE.match(s):
            raise BuildError('maven artifact %r is not groupId:artifactId:version[:packaging[:classifier]]' % (a,))
        out.append(s)
    return out


def artifact_name(coords):
    """groupId:artifactId of an artifact's coordinates."""
    return ':'.join(str(coords).strip().split(':')[:2])


item_name = artifact_name


def options(p):
    """Maven's options from snapshot_build's params, defaults applied."""
    return with_defaults(OPTIONS, p.get('maven'))


def check_repositories(repos):
    if not repos:
        raise BuildError('maven: repositories is empty; give at least one {id, url} (or settings)')
    seen = set()
    for r in repos:
        if not isinstance(r, dict) or not ID_RE.match(str(r.get('id') or '')):
            raise BuildError('maven repository %r: id must be letters, digits, "_", "." or "-"' % (r,))
        if not URL_RE.match(str(r.get('url') or '')):
            raise BuildError('maven repository %s: url %r is not an http(s) or file URL' % (r['id'], r.get('url')))
        if r.get('mirror_of') and not MIRROR_RE.match(r['mirror_of']):
            raise BuildError('maven repository %s: mirror_of %r is not a Maven mirrorOf pattern' % (r['id'], r['mirror_of']))
        if r['id'] in seen:
            raise BuildError('maven repository id %s appears twice' % r['id'])
        seen.add(r['id'])
    return repos


def settings_xml(repos):
    """A settings.xml with the repositories: ``mirror_of`` ones as mirrors, the others in an active profile."""
    mirrors = ''.join('<mirror><id>%s</id><mirrorOf>%s</mirrorOf><url>%s</url></mirror>'
                      % (escape(r['id']), escape(r['mirror_of']), escape(r['url'])) for r in repos if r.get('mirror_of'))
    plain = ''.join('<repository><id>%s</id><url>%s</url></repository>' % (escape(r['id']), escape(r['url']))
                    for r in repos if not r.get('mirror_of'))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<settings><mirrors>%s</mirrors><profiles><profile><id>pkgcache</id>'
            '<repositories>%s</repositories><pluginRepositories>%s</pluginRepositories></profile></profiles>'
            '<activeProfiles><activeProfile>pkgcache</activeProfile></activeProfiles></settings>\n'
            % (mirrors, plain, plain.replace('repository>', 'pluginRepository>')))


def versions(o, run, env):
    rc, out, err = run([o['mvn'], '-B', '-v'], env)
    text = ANSI.sub('', out or '')
    m = re.search(r'Apache Maven (\S+)', text)
    if rc != 0 or not m:
        raise BuildError('cannot run mvn (%s): %s' % (o['mvn'], tail(err or out)))
    j = re.search(r'Java version: ([^,\s]+)', text)
    return {'maven': m.group(1), 'java': j.group(1) if j else ''}


def repository_artifacts(repo):
    """The sorted list of groupId:artifactId:version that have a POM in a local repository."""
    found = set()
    for dirpath, dummy, files in os.walk(repo):
        rel = os.path.relpath(dirpath, repo).split(os.sep)
        if len(rel) < 3:
            continue
        version, artifact = rel[-1], rel[-2]
        if artifact + '-' + version + '.pom' in files:
            found.add('%s:%s:%s' % ('.'.join(rel[:-2]), artifact, version))
    return sorted(found)


def artifact_dir(repo, coords):
    g, a, v = coords.split(':')[:3]
    return os.path.join(repo, *(g.split('.') + [a, v]))


def _unread(files):
    """Set the access time of the seeded ``files`` to 0 (keeping mtime); False if this filesystem does not record
    a read in it (noatime), so what Maven used cannot be told."""
    for path in files:
        os.utime(path, (0, os.stat(path).st_mtime))
    if not files:
        return True
    with open(files[0], 'rb') as f:
        f.read(1)
    recorded = os.stat(files[0]).st_atime > 1
    os.utime(files[0], (0, os.stat(files[0]).st_mtime))
    return recorded


def drop_unread(cache, files):
    """Remove the seeded ``files`` of every directory in which Maven read or wrote no file, and the directories
    that leaves empty; return how many files went."""
    used = set()
    for path in files:
        if os.path.exists(path) and os.stat(path).st_atime > 1:
            used.add(os.path.dirname(path))
    seeded_paths = set(files)
    for path in set(os.path.dirname(f) for f in files):
        if os.path.isdir(path) and any(os.path.join(path, n) not in seeded_paths for n in os.listdir(path)
                                       if os.path.isfile(os.path.join(path, n))):
            used.add(path)
    dropped = 0
    for path in files:
        if os.path.dirname(path) not in used and os.path.exists(path):
            os.unlink(path)
            dropped += 1
            parent = os.path.dirname(path)
            while parent != cache and parent.startswith(cache + os.sep) and not os.listdir(parent):
                os.rmdir(parent)
                parent = os.path.dirname(parent)
    return dropped


def _settings_digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def fill(o, cache, scratch, run, opener=None):
    """Fill ``cache`` (a maven.repo.local); return (packages, misses, metadata, key)."""
    artifacts = check_artifacts(o.get('artifacts') or [])
    if not artifacts:
        raise BuildError('maven: no artifacts given')
    if o.get('settings'):
        settings = o['settings']
        if not os.path.isfile(settings):
            raise BuildError('maven settings %s does not exist' % settings)
        repos = []
    else:
        repos = check_repositories(o.get('repositories') or [])
        settings = os.path.join(scratch, 'maven-settings.xml')
        with open(settings, 'w') as f:
            f.write(settings_xml(repos))
    # The host's global settings (mirrors, proxies, offline) must not change the build.
    global_settings = os.path.join(scratch, 'maven-global-settings.xml')
    with open(global_settings, 'w') as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<settings/>\n')
    env = {'MAVEN_OPTS': '-Djava.awt.headless=true', 'MAVEN_ARGS': '', 'MAVEN_CONFIG': ''}
    vers = versions(o, run, env)
    settings_sha256 = _settings_digest(o['settings']) if o.get('settings') else None
    repos_meta = [{'id': r['id'], 'url': r['url'], 'mirror_of': r.get('mirror_of')} for r in repos]

    def same(m):
        return (m.get('maven_version'), m.get('plugin'), m.get('repositories'), m.get('settings_sha256')) == \
            (vers['maven'], o['plugin'], repos_meta, settings_sha256)

    prev, reused = seeded(o, 'maven', cache, same)
    if prev is not None and not _unread(reused):
        empty(cache)
        prev, reused = None, []
    misses = []
    requested = []
    for coords in artifacts:
        cmd = [o['mvn'], '-B', '-s', settings, '-gs', global_settings, '-Dmaven.repo.local=' + cache, o['plugin'] + ':get',
               '-Dartifact=' + coords, '-Dtransitive=true']
        rc, out, err = run(cmd, env)
        if rc != 0:
            errors = [l for l in ANSI.sub('', out or '').splitlines() if l.startswith('[ERROR]')]
            misses.append({'package': coords, 'version': '', 'ecosystem': 'maven',
                           'reason': 'mvn could not get it: %s' % (errors[0] if errors else tail(err or out, 2))})
        else:
            requested.append(coords)
    if not requested:
        raise BuildError('maven: none of the %d artifacts could be fetched; first error: %s'
                         % (len(artifacts), misses[0]['reason']))
    for dirpath, dummy, files in os.walk(cache):
        for f in files:
            if f.endswith('.lastUpdated'):
                os.unlink(os.path.join(dirpath, f))
    if prev is not None:
        drop_unread(cache, reused)
    packages = repository_artifacts(cache)
    key = fingerprint({
        'maven': vers['maven'], 'plugin': o['plugin'], 'repositories': [(r['id'], r['url']) for r in repos],
        'settings': o.get('settings'), 'requested': sorted(artifacts), 'packages': packages,
        'misses': sorted(m['package'] for m in misses)})
    meta = {'maven_version': vers['maven'], 'java_version': vers['java'], 'plugin': o['plugin'],
            'repositories': repos_meta, 'requested': artifacts, 'reused': len(reused)}
    if settings_sha256:
        meta['settings_sha256'] = settings_sha256
    meta['packages'] = cached = [{'name': p.rsplit(':', 1)[0], 'version': p.rsplit(':', 1)[1]} for p in packages]
    return cached, misses, meta, key
