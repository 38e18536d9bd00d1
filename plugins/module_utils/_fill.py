# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every ecosystem's filler shares: the build's error, tool output, fingerprints and option defaults.

Private to the collection; the API may change without notice.

An ecosystem is one module (``_pipcache``, ``_npmcache``, ...) listed in
``_ecosystems.FILLERS``. Each has:

- ``OPTIONS``: the argument spec of its options (pip's are the top-level options
  of snapshot_build, the others' the suboptions of the option named after the
  ecosystem);
- ``ITEMS`` and ``item_name(item)``: the option that lists what to cache, and the
  name an item is sharded by;
- ``options(p)``: its options from the module's params, defaults applied;
- ``fill(o, cache, scratch, run, opener=None)``: fill ``cache`` with the
  ecosystem's own tool; returns (packages, misses, metadata, key);
- ``exclude(cache)``: the top-level names of ``cache`` that stay out of a snapshot.

Incremental builds: ``previous`` finds the store's published snapshot when it
holds the ecosystem built alike, and ``seed`` lays its files out in the fresh
cache (``o['reuse']`` and ``o['store']`` come from the builder); each filler
then drops what its new build does not use, so the snapshot is the one a
from-scratch build gives.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil

from . import _manifest as mf
from . import _store as st


class BuildError(RuntimeError):
    """The build cannot go on; the message says why."""


def tail(text, lines=15, drop=None):
    """The last ``lines`` lines of a tool's output, leaving out lines that contain ``drop``."""
    kept = [l for l in (text or '').strip().splitlines() if not (drop and drop in l)]
    return '\n'.join(kept[-lines:])


def fingerprint(data):
    """sha256 of a JSON value with sorted keys: the build key of an ecosystem (or of a whole build)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode('utf-8')).hexdigest()


def with_defaults(spec, values):
    """``values`` (a dict of options, or None) with the defaults of the argument spec ``spec`` where an option is
    unset or None, as AnsibleModule fills them (for callers that build the params by hand, and for a dict option
    that was not given at all); other None values are left out."""
    out = dict((k, v) for k, v in (values or {}).items() if v is not None)
    for name, option in spec.items():
        if out.get(name) is None:
            out[name] = copy.deepcopy(option.get('default'))
    return out


def previous(o, eco, same):
    """The manifest of the store's published snapshot (``refs/latest``) when ``o['reuse']`` is on and it holds
    ``eco`` with metadata that ``same(meta)`` accepts (the same tool and index); else None."""
    if not o.get('reuse') or not o.get('store'):
        return None
    snap_id = st.read_latest(o['store'])
    try:
        manifest = st.read_manifest(o['store'], snap_id)[1] if snap_id else None
    except (OSError, mf.ManifestError):
        return None
    if manifest is None:
        return None
    if eco not in (manifest.get('ecosystems') or []) or not same(manifest.get(eco) or {}):
        return None
    return manifest


def seed(store, manifest, eco, cache, skip=(), link=None):
    """Lay out in ``cache`` the files, dirs and symlinks of ``manifest`` under ``eco/``, except the top-level
    names that ``skip(name)`` accepts; return the paths of the files laid out.

    Files are copies of the store's objects, or hardlinks to them where ``link(rel)`` says the package manager
    never writes such a file in place (a copy where a link cannot be made). If an object is missing (a GC in
    between), OSError propagates and the caller builds from an empty cache (``empty``).
    """
    prefix = eco + '/'
    files = []
    for e in manifest['entries']:  # sorted: a dir comes before what it holds
        if not e['path'].startswith(prefix):
            continue
        rel = e['path'][len(prefix):]
        if skip and skip(rel.split('/', 1)[0]):
            continue
        dest = os.path.join(cache, *rel.split('/'))
        if e['type'] == 'dir':
            os.makedirs(dest, exist_ok=True)
        elif e['type'] == 'symlink':
            os.symlink(e['target'], dest)
        else:
            src = st.object_path(store, mf.check_snapshot_id(e['sha256'], 'object of %s' % e['path']))
            mode = int(e['mode'], 8)
            linked = False
            if link and link(rel) and mode == mf.FILE_MODE:
                try:
                    os.link(src, dest)
                    linked = True
                except OSError:
                    if not os.path.exists(src):
                        raise
            if not linked:
                shutil.copyfile(src, dest)
                os.chmod(dest, 0o755 if mode & 0o111 else 0o644)
            files.append(dest)
    return files


def empty(cache):
    """Remove everything in ``cache`` (a seed that could not be completed), keeping the dir."""
    for name in os.listdir(cache):
        path = os.path.join(cache, name)
        if os.path.isdir(path) and not os.path.islink(path):
            st.remove_tree(path)
        else:
            os.unlink(path)


def seeded(o, eco, cache, same, skip=(), link=None):
    """Seed ``cache`` from the previous snapshot (``previous``, ``seed``); return (its manifest or None, files)."""
    manifest = previous(o, eco, same)
    if manifest is None:
        return None, []
    try:
        return manifest, seed(o['store'], manifest, eco, cache, skip, link)
    except OSError:
        empty(cache)
        return None, []


def remove_empty_dirs(root):
    """Remove the empty directories under ``root`` (not ``root`` itself), deepest first."""
    for dirpath, dirs, files in os.walk(root, topdown=False):
        if dirpath != root and not os.listdir(dirpath):
            os.rmdir(dirpath)
