"""Two builders share the build: each builds its share, the first joins, signs and publishes.

The hit rate is the proof that nothing was lost in the join: every listed
package (its dependencies come from both shards: six is in one shard and
python-dateutil, which needs it, in the other) installs alone as a repl user
with zero downloads.
"""

import json

import pytest

from conftest import as_root, as_user, downloads, solo_installs

PRIMARY, SECOND, REPL = 'pkgcache-s-builder1', 'pkgcache-s-builder2', 'pkgcache-s-repl1'


def read_json(host, path):
    return json.loads(host.check_output('cat %s' % path))


@pytest.fixture(scope='module')
def published():
    b = as_root(PRIMARY)
    snap_id = b.check_output('cat /srv/pkgcache/refs/latest').strip()
    return read_json(b, '/srv/pkgcache/snapshots/%s.json' % snap_id)


def test_each_builder_built_its_own_share_and_the_first_joined_them(published):
    shards = published['shards']
    assert [s['name'] for s in shards] == [PRIMARY, SECOND] and all(s['packages'] > 0 for s in shards)
    second = as_root(SECOND)
    # The second builder stored its shard unpublished, and only its share.
    assert not second.file('/srv/pkgcache/refs/latest').exists
    part = read_json(second, '/srv/pkgcache/snapshots/%s.json' % shards[1]['id'])
    first = read_json(as_root(PRIMARY), '/srv/pkgcache/snapshots/%s.json' % shards[0]['id'])
    assert part['shard'] == {'index': 1, 'count': 2} and first['shard'] == {'index': 0, 'count': 2}
    mine, theirs = set(first['pip']['requested']), set(part['pip']['requested'])
    assert mine and theirs and not mine & theirs
    assert mine | theirs == set(published['pip']['requested'])
    assert set(published['pip']['resolutions']) == set(first['pip']['resolutions']) | set(part['pip']['resolutions'])


def test_the_repl_host_runs_the_joined_signed_snapshot(published):
    repl = as_root(REPL)
    assert repl.check_output('readlink /var/lib/pkgcache/current').endswith(published['id'])
    assert as_root(PRIMARY).file('/srv/pkgcache/snapshots/%s.json.sig' % published['id']).exists


def test_every_listed_package_installs_alone_with_no_download(published):
    carol = as_user('carol', REPL)
    missed = set(m['package'] for m in published['pip']['misses'])
    listed = [p for p in published['pip']['requested'] if p not in missed]
    assert {'six', 'python-dateutil', 'hitrate-web', 'hitrate-legacy'} <= set(listed)
    fetched = dict((p, downloads(out)) for p, out in solo_installs(carol, listed).items())
    print('pip hit rate through the joined snapshot: %d/%d' % (sum(1 for f in fetched.values() if not f), len(listed)))
    assert fetched == dict((p, []) for p in listed)
