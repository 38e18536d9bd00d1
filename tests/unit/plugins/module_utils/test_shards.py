"""Sharding a build across builders and joining the shards (stand-in pip from test_builder, real stores)."""

import hashlib
import json
import os
import urllib.request

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
from ansible_collections.pkgcache.overlay.plugins.module_utils import _module
from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _shards as sh
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils._fill import BuildError

from helpers import FakePip, disk, params, run_module

INDEX = dict(('pkg%02d' % n, ('1.%d' % n, 'body of pkg%02d' % n)) for n in range(12))


def opener(url):
    return urllib.request.urlopen(url)


def shard_build(tmp_path, name, index, count, packages=None, pip=None):
    p = params(tmp_path / name, sorted(INDEX) + ['nope'] if packages is None else packages)
    p['shard'] = {'index': index, 'count': count}
    return bd.build(p, pip or FakePip(INDEX), now='t-%s' % name)


def merge_params(tmp_path, parts):
    return {'store': str(tmp_path / 'a' / 'store'), 'work_dir': str(tmp_path / 'a' / 'work'), 'parts': parts,
            'publish': True, 'deadline': 60, 'workers': 2}


def manifest(store, snap_id):
    return json.load(open(st.manifest_path(store, snap_id)))


def test_every_package_is_in_exactly_one_shard_and_adding_one_moves_no_other():
    names = ['pkg%03d' % n for n in range(300)]
    shards = [sh.mine(names, {'index': i, 'count': 3}, pc.requirement_name) for i in range(3)]
    assert sorted(sum(shards, [])) == names and all(len(s) > 60 for s in shards)
    more = [sh.mine(names + ['extra'], {'index': i, 'count': 3}, pc.requirement_name) for i in range(3)]
    assert [[n for n in s if n != 'extra'] for s in more] == shards


@pytest.mark.parametrize('shard', [{'index': 2, 'count': 2}, {'index': -1, 'count': 2}, {'index': 0, 'count': 0},
                                   {'index': '0', 'count': 2}])
def test_a_bad_shard_is_refused_naming_it(shard):
    with pytest.raises(BuildError, match='shard .*count must be 1 or more'):
        sh.check_shard(shard)


def test_two_shards_join_into_the_snapshot_one_builder_would_build(tmp_path):
    whole = bd.build(params(tmp_path / 'whole', sorted(INDEX) + ['nope']), FakePip(INDEX), now='t')
    a = shard_build(tmp_path, 'a', 0, 2)
    b = shard_build(tmp_path, 'b', 1, 2)
    store_a, store_b = str(tmp_path / 'a' / 'store'), str(tmp_path / 'b' / 'store')
    # Each shard built a real share, stored unpublished.
    assert a['packages'] and b['packages'] and len(a['packages']) + len(b['packages']) == len(INDEX)
    assert not os.path.exists(os.path.join(store_a, 'refs', 'latest'))
    assert manifest(store_b, b['id'])['shard'] == {'index': 1, 'count': 2}
    parts = [{'name': 'a', 'id': a['id']},
             {'name': 'b', 'id': b['id'], 'url': 'file://' + store_b, 'sha256': b['manifest_sha256']}]
    # Check mode reports the joined snapshot and stores nothing.
    before = sorted(os.listdir(os.path.join(store_a, 'objects')))
    checked = bd.merge(merge_params(tmp_path, parts), opener, check_mode=True, now='m')
    assert sorted(os.listdir(os.path.join(store_a, 'objects'))) == before
    assert checked['new_objects'] == len(b['packages'])
    merged = bd.merge(merge_params(tmp_path, parts), opener, now='m')
    assert merged['id'] == checked['id'] == whole['id'] and merged['changed']
    assert open(os.path.join(store_a, 'refs', 'latest')).read().strip() == merged['id']
    m = manifest(store_a, merged['id'])
    assert sorted(m['pip']['resolutions']) == sorted(INDEX) and [x['package'] for x in m['pip']['misses']] == ['nope']
    assert [s['name'] for s in m['shards']] == ['a', 'b'] and sum(s['packages'] for s in m['shards']) == len(INDEX)
    assert st.missing_objects(store_a, m['entries']) == {}
    again = bd.merge(merge_params(tmp_path, parts), opener, now='later')
    assert again['id'] == merged['id'] and not again['changed'] and again['created'] == 'm'


def test_a_shard_that_got_nothing_builds_nothing_and_the_merge_skips_it(tmp_path):
    empty = shard_build(tmp_path, 'b', 1, 2, packages=sh.mine(sorted(INDEX), {'index': 0, 'count': 2}, pc.requirement_name))
    assert empty['id'] == '' and not empty['changed']
    a = shard_build(tmp_path, 'a', 0, 2)
    merged = bd.merge(merge_params(tmp_path, [{'name': 'a', 'id': a['id']}, {'name': 'b', 'id': ''}]), opener, now='m')
    assert [s['name'] for s in merged['shards']] == ['a']
    with pytest.raises(BuildError, match='none of the 2 shards built anything'):
        bd.merge(merge_params(tmp_path, [{'name': 'a', 'id': ''}, {'name': 'b', 'id': ''}]), opener)


def test_builders_that_disagree_on_the_split_or_the_tools_are_refused_by_name(tmp_path):
    a = shard_build(tmp_path, 'a', 0, 2)
    b = shard_build(tmp_path, 'b', 1, 2)
    url = 'file://' + str(tmp_path / 'b' / 'store')
    with pytest.raises(BuildError, match='shard b is shard 1 of 2, but it is shard 0 of 2'):
        bd.merge(merge_params(tmp_path, [{'name': 'b', 'id': b['id'], 'url': url, 'sha256': b['manifest_sha256']},
                                         {'name': 'a', 'id': a['id']}]), opener)

    class OtherPip(FakePip):
        def __call__(self, argv, env):
            if argv[1] == '-c':
                return 0, json.dumps({'pip': '26.0', 'python': '3.11.2'}) + '\n', ''
            return FakePip.__call__(self, argv, env)

    c = shard_build(tmp_path, 'c', 1, 2, pip=OtherPip(INDEX))
    url = 'file://' + str(tmp_path / 'c' / 'store')
    with pytest.raises(BuildError, match="shards a and c were built with a different pip pip_version: '23.0.1' and '26.0'"):
        bd.merge(merge_params(tmp_path, [{'name': 'a', 'id': a['id']},
                                         {'name': 'c', 'id': c['id'], 'url': url, 'sha256': c['manifest_sha256']}]), opener)
    with pytest.raises(BuildError, match='id of shard x'):
        bd.merge(merge_params(tmp_path, [{'name': 'x', 'id': 'latest'}]), opener)


def test_a_shard_whose_store_serves_another_manifest_is_refused(tmp_path):
    a = shard_build(tmp_path, 'a', 0, 2)
    b = shard_build(tmp_path, 'b', 1, 2)
    store_b = str(tmp_path / 'b' / 'store')
    path = st.manifest_path(store_b, b['id'])
    original = open(path).read()
    part_b = {'name': 'b', 'id': b['id'], 'url': 'file://' + store_b, 'sha256': b['manifest_sha256']}
    # Same entries (so the same id), other metadata: a forged resolution would be signed into the snapshot.
    m = json.loads(original)
    m['pip']['resolutions'] = {}
    open(path, 'w').write(json.dumps(m))
    with pytest.raises(BuildError, match='manifest of shard b from .* does not match the sha256 its build reported'):
        bd.merge(merge_params(tmp_path, [{'name': 'a', 'id': a['id']}, part_b]), opener)
    with pytest.raises(BuildError, match='needs the sha256 of its manifest'):
        bd.merge(merge_params(tmp_path, [{'name': 'a', 'id': a['id']}, dict(part_b, sha256=None)]), opener)
    assert not os.path.exists(os.path.join(str(tmp_path / 'a' / 'store'), 'refs', 'latest'))
    open(path, 'w').write(original)
    assert bd.merge(merge_params(tmp_path, [{'name': 'a', 'id': a['id']}, part_b]), opener)['changed']


def test_three_shards_that_write_one_npm_bucket_join_it(tmp_path):
    bucket = 'npm/_cacache/index-v5/ab/cd/bucket'
    dirs = [{'path': p, 'type': 'dir', 'mode': '0777'} for p in
            ('npm', 'npm/_cacache', 'npm/_cacache/index-v5', 'npm/_cacache/index-v5/ab', 'npm/_cacache/index-v5/ab/cd')]
    lines = dict((n, b'\nh%d\t{"key":"%s"}' % (i, n.encode())) for i, n in enumerate('abc'))
    by_sha = dict((hashlib.sha256(d).hexdigest(), d) for d in lines.values())
    parts = [(n, dirs + [entry(bucket, lines[n])]) for n in 'abc']

    def read(name, e):
        return by_sha[e['sha256']]  # only the shards' own objects: a joined bucket is not in any store

    entries, new = sh.merge_entries(parts, read)
    got = [e for e in entries if e['path'] == bucket][0]
    assert new[got['sha256']] == lines['a'] + lines['b'] + lines['c']


def test_a_join_of_one_shard_publishes_a_snapshot_not_a_shard(tmp_path):
    a = shard_build(tmp_path, 'a', 0, 2)
    merged = bd.merge(merge_params(tmp_path, [{'name': 'a', 'id': a['id']}, {'name': 'b', 'id': ''}]), opener, now='m')
    assert merged['id'] == a['id']  # the same entries
    m = manifest(str(tmp_path / 'a' / 'store'), merged['id'])
    assert 'shard' not in m and [s['name'] for s in m['shards']] == ['a'] and m['created'] == 'm'


def entry(path, data):
    return {'path': path, 'type': 'file', 'mode': '0666' if 'index-v5' in path else '0644',
            'size': len(data), 'sha256': hashlib.sha256(data).hexdigest()}


def test_npm_buckets_join_line_by_line_and_other_files_keep_the_first_shard():
    bucket = 'npm/_cacache/index-v5/ab/cd/bucket'
    dirs = [{'path': p, 'type': 'dir', 'mode': '0777'} for p in
            ('npm', 'npm/_cacache', 'npm/_cacache/index-v5', 'npm/_cacache/index-v5/ab', 'npm/_cacache/index-v5/ab/cd', 'pip')]
    blobs = {'a': {bucket: b'\nh1\t{"key":"x"}\nh2\t{"key":"y"}', 'pip/entry': b'headers of a'},
             'b': {bucket: b'\nh2\t{"key":"y"}\nh3\t{"key":"z"}', 'pip/entry': b'headers of b'}}
    parts = [(n, dirs + [entry(p, d) for p, d in sorted(files.items())]) for n, files in sorted(blobs.items())]
    by_sha = dict((hashlib.sha256(d).hexdigest(), d) for files in blobs.values() for d in files.values())
    entries, new = sh.merge_entries(parts, lambda name, e: by_sha[e['sha256']])
    got = dict((e['path'], e) for e in entries)
    joined = b'\nh1\t{"key":"x"}\nh2\t{"key":"y"}\nh3\t{"key":"z"}'
    assert new == {hashlib.sha256(joined).hexdigest(): joined}
    assert got[bucket]['sha256'] == hashlib.sha256(joined).hexdigest() and got[bucket]['mode'] == '0666'
    assert got['pip/entry']['sha256'] == hashlib.sha256(b'headers of a').hexdigest()
    clash = [('a', dirs + [{'path': 'pip/entry', 'type': 'symlink', 'target': 'x'}]), parts[1]]
    with pytest.raises(BuildError, match='shards a and b disagree on pip/entry: a symlink in one, a file'):
        sh.merge_entries(clash, lambda name, e: b'')


def test_builder_gc_keeps_the_newest_snapshots_and_the_newest_shard_builds_apart(tmp_path):
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _gc
    p = params(tmp_path, [])
    ids = {}
    for n in range(3):
        index = dict((k, (v[0] + '.%d' % n, v[1] + ' v%d' % n)) for k, v in INDEX.items())
        ids['shard%d' % n] = bd.build(dict(p, packages=sorted(INDEX), shard={'index': 0, 'count': 2}),
                                      FakePip(index), now='2026-01-0%d' % (n + 1))['id']
        ids['snap%d' % n] = bd.build(dict(p, packages=sorted(INDEX)), FakePip(index), now='2026-02-0%d' % (n + 1))['id']
    plan = _gc.plan(p['store'], 2, '', '', host=False)
    kept = sorted(k for k, v in ids.items() if v in plan['keep'])
    assert kept == ['shard1', 'shard2', 'snap1', 'snap2'] and plan['remove'] == sorted([ids['shard0'], ids['snap0']])


def test_a_shard_that_kept_an_earlier_whole_builds_manifest_joins_by_the_shard_ansible_reported(tmp_path):
    """All packages hash to shard 0: its entries equal an earlier whole build's, whose manifest names no shard."""
    names = sh.mine(sorted(INDEX), {'index': 0, 'count': 2}, pc.requirement_name)
    whole = bd.build(params(tmp_path / 'a', names), FakePip(INDEX), now='w')
    a = shard_build(tmp_path, 'a', 0, 2, packages=names)
    assert a['id'] == whole['id'] and 'shard' not in manifest(str(tmp_path / 'a' / 'store'), a['id'])
    parts = [{'name': 'a', 'id': a['id'], 'shard': {'index': 0, 'count': 2}}, {'name': 'b', 'id': ''}]
    merged = bd.merge(merge_params(tmp_path, parts), opener, now='m')
    assert merged['shards'] == [{'name': 'a', 'id': a['id'], 'index': 0, 'packages': len(names)}]


def test_merge_module_check_mode_returns_the_join_and_a_real_run_stores_that_one(tmp_path, capsys, monkeypatch):
    a = shard_build(tmp_path, 'a', 0, 2)
    b = shard_build(tmp_path, 'b', 1, 2)
    store_a, store_b = str(tmp_path / 'a' / 'store'), str(tmp_path / 'b' / 'store')
    opened = []
    monkeypatch.setattr(_module, 'opener', lambda timeout, validate_certs: lambda u: opened.append(timeout) or opener(u))
    monkeypatch.setattr(_module, 'utc_now', lambda: 'm')
    args = dict(merge_params(tmp_path, [{'name': 'a', 'id': a['id']},
                                        {'name': 'b', 'id': b['id'], 'url': 'file://' + store_b, 'sha256': b['manifest_sha256']}]),
                timeout=7)
    before = disk(store_a)
    rc, check = run_module(capsys, bd.run_merge_module, bd.merge_argument_spec(), args, check_mode=True)
    assert rc == 0 and check['changed'] and check['new_objects'] == len(b['packages']) and disk(store_a) == before
    rc, real = run_module(capsys, bd.run_merge_module, bd.merge_argument_spec(), args)
    assert rc == 0 and real['changed'] and real['id'] == check['id'] and real['new_objects'] == check['new_objects']
    assert open(os.path.join(store_a, 'refs', 'latest')).read().strip() == real['id'] and set(opened) == {7}
    rc, again = run_module(capsys, bd.run_merge_module, bd.merge_argument_spec(), args, check_mode=True)
    assert rc == 0 and not again['changed'] and again['id'] == real['id']
    rc, bad = run_module(capsys, bd.run_merge_module, bd.merge_argument_spec(), dict(args, deadline=0))
    assert rc == 1 and bad['msg'] == 'deadline must be 1 or more, got 0'
