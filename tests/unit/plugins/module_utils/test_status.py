import os

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _fstab as fs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _module
from ansible_collections.pkgcache.overlay.plugins.module_utils import _mountinfo as mi
from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov
from ansible_collections.pkgcache.overlay.plugins.module_utils import _status

from helpers import deep_chain, publish, run_module, run_sync, write


def alloc(path):
    """What the status counts for a file: its allocated blocks."""
    return os.lstat(path).st_blocks * 512


def test_collect_and_prometheus(tmp_path):
    served = str(tmp_path / 'served')
    snap = publish(served, {'a': b'alpha', 'b': b'beta'})
    host = str(tmp_path / 'host')
    assert run_sync('file://' + served, snap, host).returncode == 0
    scratch = str(tmp_path / 'scratch')
    repls = [{'name': n, 'uid': 1, 'gid': 1} for n in ('alice', 'bob', 'carol', 'dave')]
    mounts = ov.plan_mounts(repls, ['pip'], host + '/trees/' + snap, scratch)
    os.makedirs(mounts[0]['upperdir'])
    with open(os.path.join(mounts[0]['upperdir'], 'x'), 'wb') as f:
        f.write(b'12345')
    os.symlink('/etc/passwd', os.path.join(mounts[0]['upperdir'], 'link'))  # not followed, not counted
    fstab = fs.replace_block('', 'mounts', [ov.default_line(m) for m in mounts])
    old = host + '/trees/' + 'e' * 64 + '/pip'
    info = mi.parse_mountinfo(''.join(
        '%d 1 0:%d / %s rw - overlay overlay rw,lowerdir=%s,upperdir=%s,workdir=%s\n'
        % (10 + i, 50 + i, m['target'], lower, m['upperdir'], m['workdir'])
        for i, (m, lower) in enumerate([(mounts[0], mounts[0]['lowerdir']), (mounts[1], old), (mounts[2], old)])))
    status = _status.collect(host, fstab, info, {mounts[2]['target']: [42]}, 'now')
    states = dict((u['user'], u['state']) for u in status['users'])
    assert states == {'alice': 'mounted', 'bob': 'older', 'carol': 'busy', 'dave': 'missing'}
    x = alloc(os.path.join(mounts[0]['upperdir'], 'x'))
    assert status['upper_bytes_total'] == x > 0 and status['snapshot']['id'] == snap
    assert status['store'] == {'objects': 2, 'bytes': 9}
    text = _status.prometheus(status, 'h1')
    assert 'pkgcache_repl_mounts{host="h1",state="mounted"} 1' in text
    assert 'pkgcache_repl_mounts{host="h1",state="missing"} 1' in text
    assert 'pkgcache_store_bytes{host="h1"} 9' in text
    assert 'pkgcache_snapshot_info{ecosystem="pip",host="h1",snapshot_id="%s"} 1' % snap in text
    assert 'alice' not in text
    assert 'pkgcache_upper_bytes{ecosystem="pip",host="h1",user="alice"} %d' % x in _status.prometheus(status, 'h1', True)


def _hosts_uppers(tmp_path, names):
    mounts = ov.plan_mounts([{'name': n, 'uid': 1, 'gid': 1} for n in names], ['pip'], str(tmp_path / 'lower'),
                            str(tmp_path / 'scratch'))
    fstab = fs.replace_block('', 'mounts', [ov.default_line(m) for m in mounts])
    return dict((m['user'], m['upperdir']) for m in mounts), fstab


def _status_of(tmp_path, fstab):
    status = _status.collect(str(tmp_path / 'store'), fstab, mi.parse_mountinfo(''), {}, 'now')
    return status, dict((u['user'], u) for u in status['users'])


@pytest.mark.parametrize('link', ['cacache_pip', 'cacache_pip/upper'])
def test_upper_sizes_never_follow_a_symlink_in_a_users_part(tmp_path, link):
    uppers, fstab = _hosts_uppers(tmp_path, ['alice', 'mallory'])
    write(uppers['alice'] + '/x', b'12345')
    mallory = os.path.dirname(os.path.dirname(uppers['mallory']))
    os.makedirs(mallory)
    if link == 'cacache_pip':       # mallory's cache is alice's
        os.symlink('../alice/cacache_pip', mallory + '/cacache_pip')
    else:                           # mallory's upper is root's dir (/root, say)
        write(str(tmp_path / 'root' / 'sentinel'), b's' * 1000)
        os.mkdir(mallory + '/cacache_pip')
        os.symlink(str(tmp_path / 'root'), uppers['mallory'])
    assert _status.tree_bytes(uppers['mallory']) == 0
    status, users = _status_of(tmp_path, fstab)
    x = alloc(uppers['alice'] + '/x')
    assert users['alice']['upper_bytes'] == x and users['mallory']['upper_bytes'] == 0
    assert status['upper_bytes_total'] == x and users['alice']['upper_truncated'] is None
    assert users['mallory']['upper_truncated'] == 'refused: %s/%s is a symlink; refusing to follow it' % (mallory, link)
    text = _status.prometheus(status, 'h1')
    assert 'pkgcache_uppers_truncated{host="h1"} 1' in text and 'mallory' not in text


def test_upper_size_of_a_1500_deep_upper_is_bounded(tmp_path):
    uppers, fstab = _hosts_uppers(tmp_path, ['alice', 'mallory'])
    write(uppers['alice'] + '/x', b'12345')
    write(uppers['mallory'] + '/y', b'1234567')
    x, y = alloc(uppers['alice'] + '/x'), alloc(uppers['mallory'] + '/y')
    with deep_chain(uppers['mallory']):
        assert _status.tree_bytes(uppers['mallory']) in (0, y)      # the old os.walk: RecursionError
        status, users = _status_of(tmp_path, fstab)
        size, problem = _status.upper_usage(uppers['mallory'])
    assert problem == 'max_depth' and size in (0, y)
    assert users['alice']['upper_bytes'] == x and users['mallory']['upper_truncated'] == 'max_depth'
    assert 'pkgcache_uppers_truncated{host="h1"} 1' in _status.prometheus(status, 'h1')


def test_upper_sizes_count_allocated_blocks_so_a_sparse_file_costs_nothing(tmp_path):
    """A user's 4 GiB sparse file (one byte written) made pkgcache_upper_bytes_total read 4 GiB: the old code summed st_size."""
    uppers, fstab = _hosts_uppers(tmp_path, ['alice', 'mallory'])
    write(uppers['alice'] + '/x', b'w' * 20000)
    write(uppers['mallory'] + '/real', b'r' * 9000)
    with open(uppers['mallory'] + '/sparse.whl', 'wb') as f:
        f.truncate(4 << 30)
        f.seek(1 << 30)
        f.write(b'1')
    assert os.lstat(uppers['mallory'] + '/sparse.whl').st_size == 4 << 30
    sparse = alloc(uppers['mallory'] + '/sparse.whl')
    assert 0 < sparse < 1 << 20  # the filesystem allocated a block or so
    status, users = _status_of(tmp_path, fstab)
    assert users['mallory']['upper_bytes'] == sparse + alloc(uppers['mallory'] + '/real') < 1 << 20
    assert users['alice']['upper_bytes'] == alloc(uppers['alice'] + '/x') >= 20000
    text = _status.prometheus(status, 'h1')
    assert 'pkgcache_upper_bytes_total{host="h1"} %d' % status['upper_bytes_total'] in text
    assert status['upper_bytes_total'] < 1 << 20
    assert '# HELP pkgcache_upper_bytes_total Bytes of disk allocated' in text and 'st_blocks * 512' in text


def test_upper_size_of_a_missing_upper_is_zero_and_complete(tmp_path):
    uppers, fstab = _hosts_uppers(tmp_path, ['alice'])
    assert _status.upper_usage(uppers['alice']) == (0, None)


@pytest.mark.parametrize('meta, expected', [
    # pip: b's resolution holds a dependency that was not cached, so installing b alone downloads it.
    ({'requested': ['a', 'b', 'c', 'gone'], 'resolutions': {'a': ['a==1'], 'b': ['b==1', 'dep==2'], 'c': ['c==1']},
      'misses': [{'package': 'dep'}, {'package': 'gone'}]}, {'listed': 4, 'hits': 2, 'ratio': 0.5}),
    # npm: scoped names in name@version items.
    ({'requested': ['@s/x', 'y@^1'], 'resolutions': {'@s/x': ['@s/x@1.0.0', 'z@2.0.0'], 'y@^1': ['y@1.2.0']},
      'misses': [{'package': 'z'}]}, {'listed': 2, 'hits': 1, 'ratio': 0.5}),
    # Maven has no resolutions: a listed artifact is a hit unless it is a miss.
    ({'requested': ['g:a:1', 'g:b:1'], 'misses': [{'package': 'g:b:1'}]}, {'listed': 2, 'hits': 1, 'ratio': 0.5}),
    ({'requested': []}, {'listed': 0, 'hits': 0, 'ratio': 0.0}),
])
def test_hit_rate_counts_listed_packages_whose_whole_resolution_is_cached(meta, expected):
    assert _status.coverage(meta) == expected


def test_hit_rate_metrics_per_ecosystem():
    status = {'snapshot': {'id': 'i', 'ecosystems': ['pip'], 'coverage': {'pip': {'listed': 4, 'hits': 3, 'ratio': 0.75}}},
              'users': [], 'upper_bytes_total': 0, 'store': {'objects': 0, 'bytes': 0}}
    text = _status.prometheus(status, 'h1')
    assert 'pkgcache_snapshot_packages_listed{ecosystem="pip",host="h1"} 4' in text
    assert 'pkgcache_snapshot_packages_hit{ecosystem="pip",host="h1"} 3' in text
    assert 'pkgcache_snapshot_hit_ratio{ecosystem="pip",host="h1"} 0.75' in text


def test_orphaned_scratch_lists_only_the_collections_dirs_of_users_no_overlay_serves(tmp_path):
    scratch = tmp_path / 'scratch'
    for user, owner, mode in (('alice', 0, 0o700), ('dave', 0, 0o700), ('eve', 3, 0o700)):
        (scratch / user / 'cacache_pip' / 'upper').mkdir(parents=True)
        os.chmod(str(scratch / user), mode)
        os.chown(str(scratch / user), owner, owner)
    (scratch / 'dave' / 'cacache_pip' / 'upper' / 'w.whl').write_bytes(b'x' * 700)
    (scratch / 'datasets').mkdir(mode=0o700)  # root's, but not ours: no cacache_*
    out = _status.orphaned_scratch(str(scratch), {'alice'})
    w = alloc(str(scratch / 'dave' / 'cacache_pip' / 'upper' / 'w.whl'))
    assert out == [{'user': 'dave', 'bytes': w, 'truncated': None}]
    status = {'snapshot': {}, 'users': [], 'upper_bytes_total': 0, 'store': {'objects': 0, 'bytes': 0}, 'orphaned': out}
    text = _status.prometheus(status, 'h1')
    assert 'pkgcache_orphaned_scratch_bytes{host="h1"} %d' % w in text and 'dave' not in text


def test_module_check_mode_reports_and_a_real_run_also_writes_that_report(tmp_path, capsys, monkeypatch):
    served = str(tmp_path / 'served')
    snap = publish(served, {'a': b'alpha'})
    host = str(tmp_path / 'host')
    assert run_sync('file://' + served, snap, host).returncode == 0
    uppers, fstab = _hosts_uppers(tmp_path, ['alice', 'bob', 'carol'])
    write(os.path.join(uppers['bob'], 'x'), b'1234567' * 3000)
    write(os.path.join(uppers['alice'], 'y'), b'12')
    write(str(tmp_path / 'fstab'), fstab.encode())
    monkeypatch.setattr(_module, 'utc_now', lambda: '2026-01-01T00:00:00+00:00')
    metrics = tmp_path / 'textfiles'
    args = {'store': host, 'fstab': str(tmp_path / 'fstab'), 'scratch_root': str(tmp_path / 'scratch'),
            'textfile_dir': str(metrics), 'top_users': 2}
    rc, check = run_module(capsys, _status.run_module, _status.argument_spec(), args, check_mode=True)
    assert rc == 0 and not check['changed'] and check['snapshot']['id'] == snap and 'metrics_file' not in check
    assert check['time'] == '2026-01-01T00:00:00+00:00'
    assert check['counts'] == {'mounted': 0, 'older': 0, 'busy': 0, 'missing': 3}
    assert check['largest_users'] == [{'user': 'bob', 'ecosystem': 'pip', 'upper_bytes': alloc(os.path.join(uppers['bob'], 'x'))},
                                      {'user': 'alice', 'ecosystem': 'pip', 'upper_bytes': alloc(os.path.join(uppers['alice'], 'y'))}]
    assert not metrics.exists()
    rc, real = run_module(capsys, _status.run_module, _status.argument_spec(), args)
    assert rc == 0 and real.pop('metrics_file') == str(metrics / 'pkgcache.prom') and real == check
    text = (metrics / 'pkgcache.prom').read_text()
    assert 'pkgcache_uppers_truncated' in text and 'bob' not in text
