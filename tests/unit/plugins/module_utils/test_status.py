import os

from ansible_collections.pkgcache.overlay.plugins.module_utils import _fstab as fs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov
from ansible_collections.pkgcache.overlay.plugins.module_utils import _status

from test_lifecycle import publish, run_sync


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
    info = ov.parse_mountinfo(''.join(
        '%d 1 0:%d / %s rw - overlay overlay rw,lowerdir=%s,upperdir=%s,workdir=%s\n'
        % (10 + i, 50 + i, m['target'], lower, m['upperdir'], m['workdir'])
        for i, (m, lower) in enumerate([(mounts[0], mounts[0]['lowerdir']), (mounts[1], old), (mounts[2], old)])))
    status = _status.collect(host, fstab, info, {mounts[2]['target']: [42]}, 'now')
    states = dict((u['user'], u['state']) for u in status['users'])
    assert states == {'alice': 'mounted', 'bob': 'older', 'carol': 'busy', 'dave': 'missing'}
    assert status['upper_bytes_total'] == 5 and status['snapshot']['id'] == snap
    assert status['store'] == {'objects': 2, 'bytes': 9}
    text = _status.prometheus(status, 'h1')
    assert 'pkgcache_repl_mounts{host="h1",state="mounted"} 1' in text
    assert 'pkgcache_repl_mounts{host="h1",state="missing"} 1' in text
    assert 'pkgcache_store_bytes{host="h1"} 9' in text
    assert 'pkgcache_snapshot_info{ecosystem="pip",host="h1",snapshot_id="%s"} 1' % snap in text
    assert 'alice' not in text
    assert 'pkgcache_upper_bytes{ecosystem="pip",host="h1",user="alice"} 5' in _status.prometheus(status, 'h1', True)
