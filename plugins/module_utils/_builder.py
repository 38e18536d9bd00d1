# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Building a snapshot: each ecosystem's cache filled by its own tool, then ingest and publish.

Private to the collection; the API may change without notice. Commands run
through the ``run(argv, env) -> (rc, stdout, stderr)`` callable that the
module passes in; only ``run_module()`` and ``run_merge_module()``
(snapshot_build's and snapshot_merge's main()) touch the Ansible module.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import json
import os
import tempfile

from . import _manifest as mf
from . import _module
from . import _publish as publish
from . import _shards as shards
from . import _solo as solo
from . import _store as st
from . import _sync
from ._ecosystems import ECOSYSTEMS, FILLERS
from ._fill import BuildError, fingerprint
from ._lock import LockError, StoreLock
from ._signing import SignatureError

# snapshot_merge's arguments.
MERGE_ARGUMENT_SPEC = dict(
    parts=dict(type='list', elements='dict', required=True, options=dict(
        name=dict(type='str', required=True),
        id=dict(type='str', default=''),
        url=dict(type='str'),
        sha256=dict(type='str'),
        shard=dict(type='dict'),
    )),
    store=dict(type='path', required=True),
    work_dir=dict(type='path', default='/var/lib/pkgcache-build'),
    publish=dict(type='bool', default=True),
    signing_key=dict(type='path', no_log=False),
    lock_timeout=dict(type='int', default=0),
    force=dict(type='bool', default=False),
    revision_ttl=dict(type='int', default=publish.DEFAULT_TTL),
    **_module.store_http_options()
)


def argument_spec():
    """snapshot_build's options: pip's at the top level, every other ecosystem's in a dict option of its name (each
    filler's OPTIONS), and the build's own."""
    spec = dict(
        ecosystems=dict(type='list', elements='str', default=['pip'], aliases=['ecosystem'], choices=list(ECOSYSTEMS)),
        work_dir=dict(type='path', default='/var/lib/pkgcache-build'),
        store=dict(type='path', required=True),
        publish=dict(type='bool', default=True),
        provenance=dict(type='dict'),
        signing_key=dict(type='path', no_log=False),
        lock_timeout=dict(type='int', default=0),
        workers=dict(type='int', default=4),
        reuse=dict(type='bool', default=True),
        max_age=dict(type='int', default=0),
        force=dict(type='bool', default=False),
        revision_ttl=dict(type='int', default=publish.DEFAULT_TTL),
        shard=dict(type='dict', options=dict(index=dict(type='int', required=True),
                                             count=dict(type='int', required=True))),
    )
    spec.update(copy.deepcopy(FILLERS['pip'].OPTIONS))
    for eco in ECOSYSTEMS:
        if eco != 'pip':
            spec[eco] = dict(type='dict', options=copy.deepcopy(FILLERS[eco].OPTIONS))
    return spec


def merge_argument_spec():
    return copy.deepcopy(MERGE_ARGUMENT_SPEC)


def ecosystems(p):
    """The ecosystems to build, in a stable order; refuse unknown names and duplicates."""
    ecos = p.get('ecosystems') or ['pip']
    for eco in ecos:
        if eco not in ECOSYSTEMS:
            raise BuildError('ecosystem %r is not supported (choose from %s)' % (eco, ', '.join(ECOSYSTEMS)))
    if len(set(ecos)) != len(ecos):
        raise BuildError('ecosystems lists an ecosystem twice: %s' % ', '.join(ecos))
    return [e for e in ECOSYSTEMS if e in ecos]


def ecosystem_options(p, eco, shard=None):
    """The options of ecosystem ``eco`` (its filler's ``options``), with this builder's share of its list, the
    store and ``reuse`` (an incremental build: the fresh cache is seeded from the published snapshot)."""
    filler = FILLERS[eco]
    o = dict(filler.options(p), workers=p.get('workers') or solo.DEFAULT_WORKERS, store=p['store'],
             reuse=p.get('reuse', True) is not False)
    if shard:
        o[filler.ITEMS] = shards.mine(o[filler.ITEMS], shard, filler.item_name)
        if o.get('max_bytes'):
            o['max_bytes'] //= shard['count']  # each builder holds its share of the budget
    return o


def build(p, run, check_mode=False, now=None, opener=None):
    """Build (or find) the snapshot described by module params ``p``; return the result dict.

    With ``shard`` ({index, count}), only this builder's share of every list
    is built (_shards.mine), nothing is published, and an ecosystem whose
    share is empty is left out; snapshot_merge joins the shards.
    """
    ecos = ecosystems(p)
    shard = shards.check_shard(p.get('shard'))
    if shard:
        p = dict(p, publish=False)
    opts = dict((eco, ecosystem_options(p, eco, shard)) for eco in ecos)
    store, work = p['store'], p['work_dir']
    inputs = inputs_key(p, opts['pip']['packages'] if 'pip' in opts else None)
    if p.get('max_age') and not p.get('force') and os.path.isdir(store):
        with locked(p, check_mode):
            fresh = fresh_build(store, inputs, p['max_age'], now)
            if fresh:
                # Built from these inputs less than max_age ago: nothing is asked of the index.
                result, manifest = known_result(p, store, fresh, check_mode, run, now)
                result.update(result_from_manifest(manifest), not_rebuilt=True)
                return result
    if check_mode:
        return would_build(p, opts, shard)
    st.makedirs(work, 0o700)
    scratch = tempfile.mkdtemp(dir=work, prefix='.build-')
    try:
        parts = {}
        for eco, o in opts.items():
            filler = FILLERS[eco]
            if shard and not o[filler.ITEMS]:
                continue
            cache = os.path.join(scratch, 'cache', eco)
            os.makedirs(cache)
            if 'pip' in parts:  # what pip's budget left out (uv leaves the same specs out)
                o = dict(o, left_out=(parts['pip']['meta'].get('budget') or {}).get('left_out') or [])
            packages, misses, meta, key = filler.fill(o, cache, scratch, run, opener=opener)
            parts[eco] = {'packages': packages, 'misses': misses, 'meta': meta, 'key': key,
                          'exclude': filler.exclude(cache)}
        if not parts:
            return shards.empty_result(shard)
        if shard:
            key = fingerprint({'shard': shard, 'parts': dict((e, parts[e]['key']) for e in parts)})
        elif ecos == ['pip']:
            # A pip-only build keeps the key it had before there were other ecosystems.
            key = parts['pip']['key']
        else:
            key = fingerprint(dict((e, parts[e]['key']) for e in ecos))
        with locked(p, False):
            result = _store_snapshot(p, store, os.path.join(scratch, 'cache'), parts, key, now, run)
            record_inputs(store, inputs, result['id'], now)
            for eco, part in parts.items():
                stored = getattr(FILLERS[eco], 'stored', None)
                if stored:
                    stored(store, result['id'], part['meta'])
            result['not_rebuilt'] = False
            return result
    finally:
        st.remove_tree(scratch)


def locked(p, check_mode):
    """The store lock (as snapshot_gc and snapshot_sync take it) around what a build writes to the store.

    A GC deletes every object that no manifest lists; a build stores its
    objects before its manifest, so without the lock a GC in between would
    delete them. Filling the caches runs before, unlocked. Check mode writes
    nothing and takes no lock. The store is made 0755 if it is new: a web
    server serves it.
    """
    if check_mode:
        return contextlib.nullcontext()
    st.makedirs(p['store'], 0o755)
    return StoreLock(p['store'], p.get('lock_timeout') or 0)


def _read_ref(store, name):
    try:
        with open(os.path.join(store, 'refs', name)) as f:
            return mf.check_snapshot_id(f.read().strip())
    except (OSError, mf.ManifestError):
        return None


def budget_left_out(metas):
    """What the budget left out, from every ecosystem's metadata ({eco: meta}), each entry with its ecosystem."""
    return [dict(x, ecosystem=eco) for eco, meta in metas.items() for x in (meta.get('budget') or {}).get('left_out') or []]


def _result(parts):
    result = {'misses': [], 'packages': [], 'ecosystems': {}}
    for eco, part in parts.items():
        result['misses'] += part['misses']
        result['packages'] += [{'name': x['name'], 'version': x['version'], 'ecosystem': eco} for x in part['packages']]
        result['ecosystems'][eco] = dict(part['meta'], misses=part['misses'])
    left_out = budget_left_out(dict((eco, part['meta']) for eco, part in parts.items()))
    if left_out:
        result['left_out'] = left_out
    if 'pip' in parts:
        result['pip_version'] = parts['pip']['meta']['pip_version']
        result['python_version'] = parts['pip']['meta']['python_version']
    return result


def known_result(p, store, snap_id, check_mode, run, now):
    """The result for snapshot ``snap_id`` already in the store: signed if it is not, published if asked."""
    data, manifest = st.read_manifest(store, snap_id)
    signed = ensure_signature(p, store, snap_id, run, check_mode)
    result = mf.totals(manifest['entries'])
    result.update({'id': snap_id, 'changed': signed, 'new_objects': 0, 'new_bytes': 0,
                   'created': manifest.get('created'), 'signed': bool(p.get('signing_key')),
                   'manifest_sha256': hashlib.sha256(data).hexdigest()})
    return _published(p, store, snap_id, now, run, check_mode, result), manifest


def reuse_known(p, store, key, check_mode, run, now=None):
    """The result of a build whose key was built before (its manifest is in the store), or None."""
    known = _read_ref(store, 'builds/' + key)
    if not (known and os.path.exists(st.manifest_path(store, known))):
        return None
    return known_result(p, store, known, check_mode, run, now)[0]


def _published(p, store, snap_id, now, run, check_mode, result):
    """Publish ``snap_id`` as a new revision if asked (see _publish); fold that into ``result``."""
    if p.get('publish', True):
        pub = publish.publish(p, store, snap_id, now, run, check_mode)
        result.update({'changed': result['changed'] or pub['changed'], 'revision': pub['revision'], 'held': pub['held']})
    return result


def write_snapshot(p, store, entries, metadata, key, check_mode, run):
    """Write the manifest of ``entries`` (objects already stored), its build ref and signature.

    Returns (id, sha256 of the manifest file). A manifest already stored for
    the same entries is kept (it may be published and signed), except a shard
    build's (never published) when this one is not a shard: a join whose other
    shards were empty has the entries of its first shard.
    """
    manifest = mf.build_manifest(entries, metadata)
    snap_id = manifest['id']
    data = json.dumps(manifest, sort_keys=True, indent=1).encode('utf-8')
    mpath = st.manifest_path(store, snap_id)
    try:
        with open(mpath, 'rb') as f:
            existing = f.read()
        if json.loads(existing).get('shard') and not metadata.get('shard'):
            existing = None
    except (OSError, ValueError):
        existing = None
    if existing is not None:
        data = existing
    if not check_mode:
        if existing is None:
            st.write_bytes_atomic(mpath, data)
            if os.path.exists(mpath + '.sig'):
                os.unlink(mpath + '.sig')
        st.write_bytes_atomic(os.path.join(store, 'refs', 'builds', key), (snap_id + '\n').encode())
        ensure_signature(p, store, snap_id, run, check_mode)
    return snap_id, hashlib.sha256(data).hexdigest()


def would_build(p, opts, shard):
    """Check mode when a build is due: what would be resolved, without running a tool or asking an index anything."""
    requested = {}
    for eco, o in opts.items():
        items = o[FILLERS[eco].ITEMS]
        if items:
            requested[eco] = {'requested': list(items)}
    result = {'id': '', 'changed': True, 'would_build': True, 'not_rebuilt': False, 'files': 0, 'bytes': 0,
              'objects': 0, 'new_objects': 0, 'new_bytes': 0, 'packages': [], 'misses': [], 'ecosystems': requested,
              'created': None, 'signed': bool(p.get('signing_key'))}
    if shard:
        result['shard'] = shard
    return result


def inputs_key(p, specs):
    """Fingerprint of what a build is asked to build (lists, indexes, tools), not of what the index holds."""
    keys = ('ecosystems', 'index_url', 'trusted_host', 'python', 'pip_version', 'shard', 'reuse') + \
        tuple(e for e in ECOSYSTEMS if e != 'pip')
    # Only when a budget is set (the scores only matter then): the keys of builds without one stay as they were.
    budget = [(k, p[k]) for k in ('max_bytes', 'max_project_bytes', 'scores')
              if p.get(k) and (p.get('max_bytes') or p.get('max_project_bytes'))]
    return fingerprint(dict([(k, p.get(k)) for k in keys] + [('pip', specs)] + budget))


def _age(then, now):
    try:
        return (datetime.datetime.fromisoformat(now) - datetime.datetime.fromisoformat(then)).total_seconds()
    except (TypeError, ValueError):
        return None


def fresh_build(store, inputs, max_age, now):
    """The id of the build of these inputs if it ran less than ``max_age`` seconds ago (and is still stored)."""
    try:
        with open(os.path.join(store, 'refs', 'inputs', inputs)) as f:
            ref = json.load(f)
        snap_id = mf.check_snapshot_id(ref.get('id'))
    except (OSError, ValueError, AttributeError, mf.ManifestError):
        return None
    age = _age(ref.get('built'), now)
    if age is None or not 0 <= age < max_age or not os.path.exists(st.manifest_path(store, snap_id)):
        return None
    return snap_id


def record_inputs(store, inputs, snap_id, now):
    if now:
        path = os.path.join(store, 'refs', 'inputs', inputs)
        st.makedirs(os.path.dirname(path))
        st.write_bytes_atomic(path, json.dumps({'id': snap_id, 'built': now}).encode())


def result_from_manifest(manifest):
    """What a build reports (misses, packages, per-ecosystem metadata) read back from a stored manifest."""
    result = {'misses': [], 'packages': [], 'ecosystems': {}}
    for eco in manifest.get('ecosystems') or []:
        meta = manifest.get(eco) or {}
        result['ecosystems'][eco] = meta
        result['misses'] += meta.get('misses') or []
        result['packages'] += [{'name': x['name'], 'version': x['version'], 'ecosystem': eco}
                               for x in meta.get('packages') or []]
    left_out = budget_left_out(result['ecosystems'])
    if left_out:
        result['left_out'] = left_out
    return result


def _store_snapshot(p, store, cache_root, parts, key, now, run):
    result = _result(parts)
    known = reuse_known(p, store, key, False, run, now)
    if known:
        result.update(known)
        return result
    entries, paths = [], {}
    for eco, part in parts.items():
        e, pth = mf.scan_tree(os.path.join(cache_root, eco), eco, exclude=part['exclude'])
        entries += e
        paths.update(pth)
    entries = mf.sorted_entries(entries)
    new_objects = new_bytes = 0
    seen = set()
    for e in entries:
        if e['type'] != 'file' or e['sha256'] in seen:
            continue
        seen.add(e['sha256'])
        if st.ingest_file(store, paths[e['path']], e['sha256']):
            new_objects += 1
            new_bytes += e['size']
    metadata = {'created': now, 'ecosystems': list(parts), 'build_key': key}
    for eco, meta in result['ecosystems'].items():
        metadata[eco] = meta
    if p.get('provenance'):
        metadata['provenance'] = p['provenance']
    if result.get('left_out'):
        # What the budget left out and why: names of the requested (public) list and sizes, nothing per user.
        metadata['provenance'] = dict(metadata.get('provenance') or {}, left_out=[
            {'ecosystem': x['ecosystem'], 'package': x['package'], 'reason': x['reason'], 'why': x['why']}
            for x in result['left_out']])
    if p.get('shard'):
        metadata['shard'] = shards.check_shard(p['shard'])
    snap_id, digest = write_snapshot(p, store, entries, metadata, key, False, run)
    result.update(mf.totals(entries))
    result.update({'id': snap_id, 'changed': True, 'new_objects': new_objects, 'new_bytes': new_bytes, 'created': now,
                   'signed': bool(p.get('signing_key')), 'manifest_sha256': digest})
    return _published(p, store, snap_id, now, run, False, result)


def ensure_signature(p, store, snap_id, run, check_mode):
    """Sign the manifest with ``signing_key`` unless a valid signature by that key is there; return True if it signed."""
    if not p.get('signing_key'):
        return False
    return publish.ensure_signed(p, st.manifest_path(store, snap_id), run, check_mode, 'manifest %s' % snap_id)


def merge(p, opener, check_mode=False, now=None, run=None):
    """Join the shard builds ``p['parts']`` ([{name, id, url}] in shard order) into one snapshot; publish it.

    A part without url is in this store; one with an empty id built nothing.
    The other shards' objects are fetched by hash (under the store lock, as
    a GC takes it), and only the ones this store lacks. The same shards give
    the same build key, so a second run changes nothing.
    """
    store, parts = p['store'], p.get('parts') or []
    deadline = p.get('deadline')
    named = []
    for index, part in enumerate(parts):
        if part.get('id'):
            manifest = shards.load_part(store, part, opener, deadline)
            shards.check_part(manifest, index, len(parts), part['name'], part.get('shard'))
            named.append((dict(part, index=index), manifest))
    if not named:
        if check_mode:
            return {'id': '', 'changed': True, 'would_build': True, 'files': 0, 'bytes': 0, 'objects': 0,
                    'new_objects': 0, 'new_bytes': 0, 'packages': [], 'misses': [], 'ecosystems': {}, 'shards': []}
        raise BuildError('none of the %d shards built anything: nothing to merge' % len(parts))
    ecos, metas = shards.merge_metadata([(part['name'], m) for part, m in named], ECOSYSTEMS)
    key = fingerprint({'merge': [m['id'] for part, m in named]})
    result = result_from_manifest(dict(metas, ecosystems=ecos))
    result['shards'] = [{'name': part['name'], 'id': m['id'], 'index': part['index'],
                         'packages': sum(len((m.get(e) or {}).get('packages') or []) for e in ecos)}
                        for part, m in named]
    if not check_mode:
        st.makedirs(p['work_dir'], 0o700)
    with locked(p, check_mode):
        known = reuse_known(p, store, key, check_mode, run, now)
        if known:
            result.update(known)
            return result
        urls = dict((part['name'], part.get('url')) for part, m in named)
        new_objects = new_bytes = 0
        for part, m in named:
            missing = st.missing_objects(store, m['entries'])
            if missing and not part.get('url'):
                raise BuildError('shard %s lists %d objects that the store %s lacks' % (part['name'], len(missing), store))
            if missing and not check_mode:
                st.fetch_objects(store, part['url'], missing, opener, p.get('workers') or 8, deadline)
            new_objects += len(missing)
            new_bytes += sum(missing.values())

        def read(name, entry):
            path = st.object_path(store, entry['sha256'])
            if entry['sha256'] in joined:  # a bucket joined from two earlier shards
                return joined[entry['sha256']]
            if urls[name] and not os.path.exists(path):  # check mode fetched nothing
                return _sync.read_url(opener, urls[name].rstrip('/') + '/' + st.object_rel(entry['sha256']),
                                      entry['size'], 'object %s of shard %s' % (entry['sha256'], name), deadline)
            with open(path, 'rb') as f:
                return f.read()

        joined = {}
        entries, blobs = shards.merge_entries([(part['name'], m['entries']) for part, m in named], read, joined)
        for digest, data in sorted(blobs.items()):
            if not os.path.exists(st.object_path(store, digest)):
                new_objects += 1
                new_bytes += len(data)
                if not check_mode:
                    st.makedirs(os.path.dirname(st.object_path(store, digest)))
                    st.write_bytes_atomic(st.object_path(store, digest), data)
        metadata = dict(metas, created=now, ecosystems=ecos, build_key=key,
                        shards=[dict(s) for s in result['shards']])
        provenance = [m['provenance'] for part, m in named if m.get('provenance')]
        if provenance:
            metadata['provenance'] = provenance[0]
        snap_id, digest = write_snapshot(p, store, entries, metadata, key, check_mode, run)
        result.update(mf.totals(entries))
        result.update({'id': snap_id, 'changed': True, 'new_objects': new_objects, 'new_bytes': new_bytes,
                       'created': now, 'signed': bool(p.get('signing_key')), 'manifest_sha256': digest})
        return _published(p, store, snap_id, now, run, check_mode, result)


def build_runner(module):
    """``run(argv, env, data=None, cwd=None)`` for the build's tools: run_command with ``env`` added, and without
    the host's settings for the tools (PIP_*, UV_*, npm_config_*) that ``env`` does not set."""
    def run(argv, env, data=None, cwd=None):
        if env is not None:
            for key in [k for k in os.environ if k.upper().startswith(('PIP_', 'UV_', 'NPM_CONFIG_')) and k not in env]:
                del os.environ[key]
        return module.run_command(argv, environ_update=env or {}, data=data, binary_data=True, cwd=cwd)
    return run


def run_module(module):
    """snapshot_build's main(): build() decides once; check mode runs no tool and writes nothing."""
    p = module.params
    _module.require_at_least(module, 'revision_ttl', publish.MIN_TTL)
    try:
        result = build(p, build_runner(module), check_mode=module.check_mode, now=_module.utc_now(),
                       opener=_module.opener())
    except (BuildError, st.StoreError, mf.ManifestError, SignatureError, LockError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


def run_merge_module(module):
    """snapshot_merge's main(): merge() decides once; check mode fetches and writes nothing."""
    p = module.params
    _module.require_at_least(module, 'deadline', 1)
    _module.require_at_least(module, 'revision_ttl', publish.MIN_TTL)
    try:
        result = merge(p, _module.opener(p['timeout'], p['validate_certs']), check_mode=module.check_mode,
                       now=_module.utc_now(), run=_module.runner(module))
    except (BuildError, _sync.SyncError, st.StoreError, mf.ManifestError, SignatureError, LockError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)
