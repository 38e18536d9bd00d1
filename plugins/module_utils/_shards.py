# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sharding a build across builders, and joining the shards into one snapshot.

Private to the collection; the API may change without notice.

Each builder builds the packages whose name hashes to its shard (so adding a
package to the list moves no other package to another builder), into its
own store, unpublished. The first builder then fetches the other shards'
manifests by the ids that Ansible reported (so a manifest is trusted
through Ansible's connection, not through the network it came over) and
their objects by hash, and joins the trees: the same path with the same
content once; npm's index buckets (append-only lines) line by line; for
any other file that two shards wrote for the same cache key (a response
that two installs fetched, with other headers), the first shard's.
"""

from __future__ import annotations

import hashlib
import re

from . import _manifest as mf
from . import _store as st
from . import _sync
from ._fill import BuildError

MAX_MANIFEST_BYTES = 1 << 30
BUCKET = re.compile(r'^npm/_cacache/index-v5/')
# Per-ecosystem metadata that differs between shards by design: joined, not compared.
JOINED = ('requested', 'packages', 'resolutions', 'pages', 'misses', 'reused')


def check_shard(shard):
    """Return the shard as {index, count}, or None; refuse anything else naming it."""
    if not shard:
        return None
    index, count = shard.get('index'), shard.get('count')
    if not isinstance(index, int) or not isinstance(count, int) or count < 1 or not 0 <= index < count:
        raise BuildError('shard %r: count must be 1 or more and index 0 to count - 1' % (shard,))
    return {'index': index, 'count': count}


def owner(name, count):
    """The shard (0 to count - 1) that builds the package ``name``."""
    return int(hashlib.sha256(name.encode('utf-8')).hexdigest()[:12], 16) % count


def mine(items, shard, name):
    """The items of a list that this shard builds (``name(item)`` is the package name it is sharded by)."""
    return [i for i in items if owner(name(i) or i, shard['count']) == shard['index']]


def empty_result(shard):
    """The result of a shard that got no package at all: no snapshot."""
    return {'id': '', 'changed': False, 'files': 0, 'bytes': 0, 'objects': 0, 'new_objects': 0, 'new_bytes': 0,
            'packages': [], 'misses': [], 'ecosystems': {}, 'created': None, 'signed': False, 'shard': shard}


def load_part(store, part, opener, deadline):
    """The manifest of one shard: from this store (no url) or the shard's store, checked against its id."""
    name = part['name']
    try:
        snap_id = mf.check_snapshot_id(part['id'], 'the id of shard %s' % name)
    except mf.ManifestError as exc:
        raise BuildError(str(exc))
    if part.get('url'):
        url = '%s/snapshots/%s.json' % (part['url'].rstrip('/'), snap_id)
        try:
            data = _sync.read_url(opener, url, MAX_MANIFEST_BYTES, 'the manifest of shard %s' % name, deadline)
        except _sync.SyncError as exc:
            raise BuildError(str(exc))
    else:
        try:
            with open(st.manifest_path(store, snap_id), 'rb') as f:  # checked below against the reported sha256
                data = f.read()
        except OSError as exc:
            raise BuildError('the manifest of shard %s (%s) is not in the store %s: %s' % (name, snap_id, store, exc))
    if part.get('sha256') and hashlib.sha256(data).hexdigest() != part['sha256']:
        raise BuildError('the manifest of shard %s from %s does not match the sha256 its build reported (%s); refused'
                         % (name, part.get('url') or 'this store', part['sha256']))
    if part.get('url') and not part.get('sha256'):
        raise BuildError('shard %s: a shard fetched from %s needs the sha256 of its manifest (its build returns '
                         'manifest_sha256)' % (name, part['url']))
    try:
        return mf.load_manifest(data, snap_id)
    except mf.ManifestError as exc:
        raise BuildError('shard %s refused: %s' % (name, exc))


def check_part(manifest, index, count, name, reported=None):
    """A shard must be shard ``index`` of ``count``: the builders agree on the split.

    ``reported`` is the shard its builder was given (from Ansible); without
    it, the manifest's (a shard whose entries equal an earlier whole build's
    keeps that manifest, which names no shard).
    """
    shard = reported or manifest.get('shard') or {}
    try:
        agree = int(shard.get('index')) == index and int(shard.get('count')) == count
    except (TypeError, ValueError):
        agree = False
    if not agree:
        raise BuildError('shard %s is %s, but it is shard %d of %d in parts: every builder must be given the '
                         'same list of builders' % (name, 'shard %s of %s' % (shard.get('index'), shard.get('count'))
                                                    if shard else 'not a shard build', index, count))


def merge_bucket(first, second):
    """Join two cacache index buckets: the first's lines, then the second's that the first lacks."""
    lines = [l for l in first.split(b'\n') if l]
    seen = set(lines)
    lines += [l for l in second.split(b'\n') if l and l not in seen]
    return b''.join(b'\n' + l for l in lines)


def merge_entries(named_entries, read, blobs=None):
    """Join the shards' entries ([(name, entries)], in shard order).

    ``read(name, entry)`` returns a file entry's bytes (only npm buckets are
    read). Returns (entries, blobs): blobs {sha256: bytes} are the joined
    buckets, new objects for the store (``read`` may look there for a bucket
    joined from two earlier shards). Two shards with a different kind of
    entry at one path are refused, naming both.
    """
    kept, origin = {}, {}
    blobs = {} if blobs is None else blobs
    for name, entries in named_entries:
        for e in entries:
            path = e['path']
            have = kept.get(path)
            if have is None:
                kept[path], origin[path] = e, name
            elif have['type'] != e['type']:
                raise BuildError('shards %s and %s disagree on %s: a %s in one, a %s in the other'
                                 % (origin[path], name, path, have['type'], e['type']))
            elif e['type'] == 'file' and have['sha256'] != e['sha256'] and BUCKET.match(path):
                first = blobs.get(have['sha256'])
                data = merge_bucket(first if first is not None else read(origin[path], have), read(name, e))
                digest = hashlib.sha256(data).hexdigest()
                blobs[digest] = data
                kept[path] = dict(have, sha256=digest, size=len(data))
                origin[path] = name
    entries = mf.sorted_entries(kept.values())
    try:
        mf.validate_entries(entries)
    except mf.ManifestError as exc:
        raise BuildError('the joined shards are not a valid snapshot: %s' % exc)
    return entries, blobs


def _union_packages(a, b):
    seen = dict(((p['name'], p['version']), p) for p in a)
    # (Each package is keyed by name and version: two shards that cached one release from two URLs keep the first.)
    for p in b:
        seen.setdefault((p['name'], p['version']), p)
    return [seen[k] for k in sorted(seen)]


def merge_metadata(named, order):
    """Join each ecosystem's metadata of the shards ([(name, manifest)]); return (ecosystems, {eco: meta}).

    Lists of packages, resolutions and misses are joined; anything else (tool
    versions, index, registry) must be the same in every shard that has the
    ecosystem, or the build is refused naming the two shards.
    """
    try:
        return _merge_metadata(named, order)
    except (TypeError, AttributeError, ValueError) as exc:
        raise BuildError('the shards %s carry metadata that cannot be joined: %s' % (', '.join(n for n, m in named), exc))


def _merge_metadata(named, order):
    ecos = [e for e in order if any(e in (m.get('ecosystems') or []) for n, m in named)]
    out = {}
    for eco in ecos:
        merged, first = None, None
        for name, manifest in named:
            meta = manifest.get(eco)
            if meta is None:
                continue
            if merged is None:
                merged, first = dict(meta), name
                continue
            for k, v in meta.items():
                if k == 'packages':
                    merged[k] = _union_packages(merged.get(k) or [], v)
                elif k in ('resolutions', 'pages'):
                    merged[k] = dict(merged.get(k) or {}, **v)
                elif k == 'reused':
                    merged[k] = (merged.get(k) or 0) + v
                elif k in JOINED:
                    merged[k] = (merged.get(k) or []) + v
                elif merged.get(k) != v:
                    raise BuildError('shards %s and %s were built with a different %s %s: %r and %r; every builder '
                                     'must run the same tools against the same index' % (first, name, eco, k,
                                                                                         merged.get(k), v))
        out[eco] = merged
    return ecos, out
