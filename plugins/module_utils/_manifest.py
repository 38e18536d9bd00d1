# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Snapshot manifests: scanning a cache tree, canonical form, ids, validation.

Private to the collection; the API may change without notice.

A manifest lists every entry of a snapshot tree, sorted by path:

* ``{"path": "pip/http/a", "type": "dir", "mode": "0777"}``
* ``{"path": "pip/x", "type": "file", "mode": "0644", "size": 3, "sha256": "..."}``
* ``{"path": "pip/l", "type": "symlink", "target": "x"}``

The snapshot id is the sha256 of the canonical JSON of that list, so the same
tree always has the same id, whatever metadata sits beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat

# Directories are world-writable in the snapshot so that a non-root user can
# add entries to them through its own overlay (the copy-up lands in that
# user's upper). The tree itself is only reachable by root (the store is 0700)
# or through read-only and overlay mounts, so nobody can write to it directly.
DIR_MODE = 0o777
FILE_MODE = 0o644
EXEC_MODE = 0o755
FILE_MODES = (FILE_MODE, EXEC_MODE)
# Files that a package manager appends to or rewrites in place (npm's cacache
# index buckets, uv's lock files, Maven's tracking files) are 0666 in the snapshot, like the
# dirs: a user's write copies them up into that user's upper. Nowhere else.
WRITABLE_MODE = 0o666
_WRITABLE = (
    re.compile(r'^npm/_cacache/index-v5/'),
    re.compile(r'^uv/(.+/)?[^/]*\.lock$'),
    re.compile(r'^maven/(.+/)?(_remote\.repositories|resolver-status\.properties|maven-metadata-[^/]+\.xml'
               r'|[^/]+\.lastUpdated)$'),
)
FORMAT = 1
HEX64 = re.compile(r'^[0-9a-f]{64}$')
CHUNK = 1024 * 1024


class ManifestError(ValueError):
    """A manifest or a tree that cannot be accepted."""


def canonical_json(obj):
    """Return the canonical bytes of a JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode('utf-8')


def sha256_file(path):
    """Return (hex sha256, size) of a file, read without following a final symlink."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, 'rb') as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            digest.update(chunk)
    return digest.hexdigest(), size


def snapshot_id(entries):
    """Return the id of a snapshot: sha256 of its canonical entry list."""
    return hashlib.sha256(canonical_json(sorted_entries(entries))).hexdigest()


def sorted_entries(entries):
    return sorted(entries, key=lambda e: e['path'])


def writable_path(path):
    """True if the file at manifest ``path`` is one a package manager rewrites in place."""
    return any(r.match(path) for r in _WRITABLE)


def mode_str(mode):
    return '%04o' % mode


def scan_tree(root, prefix, exclude=()):
    """Walk ``root`` without following symlinks and return (entries, paths).

    ``entries`` are manifest entries with paths under ``prefix``; modes are
    normalised (dirs DIR_MODE, files FILE_MODE or EXEC_MODE). ``paths`` maps a
    file entry's path to its real path on disk. Names listed in ``exclude``
    are skipped at the top level. Anything but dirs, files and symlinks is
    refused.
    """
    entries = [{'path': prefix, 'type': 'dir', 'mode': mode_str(DIR_MODE)}]
    paths = {}

    def walk(real, rel):
        with os.scandir(real) as it:
            children = sorted(it, key=lambda d: d.name)
        for d in children:
            if rel == prefix and d.name in exclude:
                continue
            path = rel + '/' + d.name
            st = d.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                entries.append({'path': path, 'type': 'dir', 'mode': mode_str(DIR_MODE)})
                walk(d.path, path)
            elif stat.S_ISREG(st.st_mode):
                digest, size = sha256_file(d.path)
                mode = EXEC_MODE if st.st_mode & 0o111 else FILE_MODE
                if writable_path(path):
                    mode = WRITABLE_MODE
                entries.append({'path': path, 'type': 'file', 'mode': mode_str(mode),
                                'size': size, 'sha256': digest})
                paths[path] = d.path
            elif stat.S_ISLNK(st.st_mode):
                entries.append({'path': path, 'type': 'symlink', 'target': os.readlink(d.path)})
            else:
                raise ManifestError('%s: not a file, directory or symlink; refusing to snapshot it' % d.path)

    walk(root, prefix)
    return sorted_entries(entries), paths


def _check_path(path):
    if not isinstance(path, str) or not path:
        raise ManifestError('manifest entry has an empty or non-string path: %r' % (path,))
    if path.startswith('/'):
        raise ManifestError('manifest entry %r: absolute paths are refused' % path)
    if '\x00' in path or '\n' in path:
        raise ManifestError('manifest entry %r: NUL or newline in path' % path)
    for part in path.split('/'):
        if part in ('', '.', '..'):
            raise ManifestError('manifest entry %r: empty, "." or ".." path component' % path)


def _symlink_stays_inside(path, target):
    if not isinstance(target, str) or not target or target.startswith('/') or '\x00' in target:
        return False
    top = path.split('/')[0]
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == top or resolved.startswith(top + '/')


# The kernel follows at most 40 symlinks in one lookup (MAXSYMLINKS); a chain
# nested deeper than that is refused too.
MAX_SYMLINK_HOPS = 40
# symlink(2) refuses longer targets, so a checkout could not make them anyway.
MAX_TARGET_BYTES = 4095


class _SymlinkLoop(Exception):
    pass


class _Links(object):
    """The symlinks of a manifest, resolved through each other as the kernel would resolve them in the tree.

    Every prefix of a symlink's path is a node (``(parent node, name) ->
    node``, 0 is the root of the tree); a path that is no such prefix cannot
    lead to a symlink, so it is node -1 and so is everything below it. A
    position in the tree is a persistent stack ``(node, below, top node)``
    (None at the root), so that a step, a ``..`` and a jump to where another
    symlink ends each cost O(1), and each symlink is resolved once: the work
    is linear in the size of the manifest.
    """

    def __init__(self, links):
        self.targets = {}
        self.child = {}
        self.paths = {}
        for path, target in links.items():
            cell = self.walk_path(path.split('/'), create=True)
            self.targets[cell[0]] = target
            self.paths[cell[0]] = path
        self.ends = {}

    def walk_path(self, parts, create=False):
        cell = None
        for part in parts:
            cell = self.push(cell, part, create)
        return cell

    def push(self, cell, part, create=False):
        parent = cell[0] if cell else 0
        node = -1
        if parent != -1:
            node = self.child.get((parent, part), -1)
            if node == -1 and create:
                node = self.child[(parent, part)] = len(self.child) + 1
        return (node, cell, cell[2] if cell else node)

    def end(self, node, active):
        """Where the symlink ``node`` ends, as a stack, or False above the root; raise _SymlinkLoop on a loop or a deep chain."""
        if node in self.ends:
            return self.ends[node]
        if node in active or len(active) >= MAX_SYMLINK_HOPS:
            raise _SymlinkLoop()
        active.add(node)
        cell = self.walk_path(self.paths[node].split('/')[:-1])
        result = self.follow(cell, self.targets[node], active)
        active.discard(node)
        self.ends[node] = result
        return result

    def follow(self, cell, target, active):
        """Walk ``target`` from ``cell``, jumping to where each symlink met on the way ends.

        A component the manifest lacks is taken as a directory: stricter
        than the kernel, which would stop there.
        """
        for part in target.split('/'):
            if part in ('', '.'):
                continue
            if part == '..':
                if cell is None:
                    return False
                cell = cell[1]
                continue
            cell = self.push(cell, part)
            if cell[0] in self.targets:
                cell = self.end(cell[0], active)
                if cell is False:
                    return False
        return cell


def _check_symlink_chains(links):
    """Refuse a symlink that, resolved through the manifest's own symlinks, leaves its top directory or loops.

    ``links`` maps each symlink entry's path to its target, already checked
    to be relative and to stay inside lexically.
    """
    for path, target in links.items():
        if len(target.encode('utf-8', 'surrogatepass')) > MAX_TARGET_BYTES:
            raise ManifestError('manifest entry %r: symlink target is longer than %d bytes' % (path, MAX_TARGET_BYTES))
    resolver = _Links(links)
    for path, target in links.items():
        node = resolver.walk_path(path.split('/'))
        try:
            end = resolver.end(node[0], set())
        except _SymlinkLoop:
            raise ManifestError('manifest entry %r: symlink target %r loops or passes through more than %d symlinks'
                                % (path, target, MAX_SYMLINK_HOPS))
        if not end or end[2] != node[2]:
            raise ManifestError("manifest entry %r: symlink target %r leaves the snapshot (resolved through the "
                                "manifest's other symlinks)" % (path, target))


def validate_entries(entries, max_object_size=None, max_total_size=None):
    """Check a manifest's entries; raise ManifestError naming the first bad one.

    Refuses absolute paths, ``..``, duplicate paths, unknown types, device
    files and FIFOs, setuid/setgid/sticky bits and modes the design does not
    use, symlinks leaving the snapshot (also through other symlinks of the
    manifest) or looping, bad hashes or sizes, and entries whose parent is not
    a directory of the manifest.
    """
    if not isinstance(entries, list) or not entries:
        raise ManifestError('manifest has no entries')
    seen = {}
    links = {}
    total = 0
    for e in entries:
        if not isinstance(e, dict):
            raise ManifestError('manifest entry is not an object: %r' % (e,))
        path = e.get('path')
        _check_path(path)
        if path in seen:
            raise ManifestError('manifest entry %r appears twice' % path)
        kind = e.get('type')
        if kind == 'dir':
            if e.get('mode') != mode_str(DIR_MODE):
                raise ManifestError('manifest entry %r: directory mode %r is not %s' % (path, e.get('mode'), mode_str(DIR_MODE)))
        elif kind == 'file':
            allowed = FILE_MODES + ((WRITABLE_MODE,) if writable_path(path) else ())
            if e.get('mode') not in [mode_str(m) for m in allowed]:
                raise ManifestError('manifest entry %r: file mode %r is refused (setuid, setgid, '
                                    'world-writable and unusual modes are not part of a snapshot)' % (path, e.get('mode')))
            if not isinstance(e.get('sha256'), str) or not HEX64.match(e['sha256']):
                raise ManifestError('manifest entry %r: sha256 is not 64 lowercase hex digits' % path)
            size = e.get('size')
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ManifestError('manifest entry %r: size is not a non-negative integer' % path)
            if max_object_size is not None and size > max_object_size:
                raise ManifestError('manifest entry %r: size %d exceeds the per-object limit %d' % (path, size, max_object_size))
            total += size
        elif kind == 'symlink':
            if not _symlink_stays_inside(path, e.get('target')):
                raise ManifestError('manifest entry %r: symlink target %r leaves the snapshot' % (path, e.get('target')))
            links[path] = e['target']
        else:
            raise ManifestError('manifest entry %r: type %r is refused (only dir, file and symlink)' % (path, kind))
        seen[path] = kind
    if max_total_size is not None and total > max_total_size:
        raise ManifestError('snapshot size %d exceeds the per-snapshot limit %d' % (total, max_total_size))
    for path in seen:
        if '/' in path:
            parent = path.rsplit('/', 1)[0]
            if seen.get(parent) != 'dir':
                raise ManifestError('manifest entry %r: parent %r is not a directory of the manifest' % (path, parent))
    _check_symlink_chains(links)
    return total


def check_snapshot_id(value, what='snapshot id'):
    if not isinstance(value, str) or not HEX64.match(value):
        raise ManifestError('%s %r is not 64 lowercase hex digits' % (what, value))
    return value


def load_manifest(data, expected_id=None, max_object_size=None, max_total_size=None):
    """Parse manifest bytes, validate entries, check the id; return the dict."""
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise ManifestError('manifest is not valid JSON: %s' % exc)
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise ManifestError('manifest format is not %d' % FORMAT)
    entries = manifest.get('entries')
    validate_entries(entries, max_object_size, max_total_size)
    real_id = snapshot_id(entries)
    if manifest.get('id') != real_id:
        raise ManifestError('manifest id %r does not match its entries (sha256 %s)' % (manifest.get('id'), real_id))
    if expected_id is not None and real_id != expected_id:
        raise ManifestError('manifest is snapshot %s, expected %s' % (real_id, expected_id))
    return manifest


def build_manifest(entries, metadata):
    """Return the manifest dict for entries plus metadata (not part of the id)."""
    entries = sorted_entries(entries)
    manifest = {'format': FORMAT, 'id': snapshot_id(entries), 'entries': entries}
    manifest.update(metadata)
    return manifest


def totals(entries):
    files = [e for e in entries if e['type'] == 'file']
    return {'files': len(files), 'bytes': sum(e['size'] for e in files),
            'objects': len(set(e['sha256'] for e in files))}
