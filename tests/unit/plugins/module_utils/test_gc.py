"""GC of a host: what it keeps (active, newest, referenced, busy, held by a detached overlay) and what it removes."""

import json
import os
import subprocess


from ansible_collections.pkgcache.overlay.plugins.module_utils import _busy
from ansible_collections.pkgcache.overlay.plugins.module_utils import _gc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils import _views

from helpers import disk, publish, run_module, run_sync, tree_is_complete


def test_gc_keeps_active_newest_and_referenced(two_snapshots, tmp_path):
    url, v1, v2, host = two_snapshots
    v3 = publish(url[len('file://'):], {'only': b'three'})
    for snap in (v2, v3):
        assert run_sync(url, snap, host).returncode == 0
    # keep larger than the number of snapshots keeps them all.
    assert _gc.plan(host, 5, '', '', host=True)['remove'] == []
    assert sorted(_gc.plan(host, 2, '', '', host=True)['keep']) == sorted([v2, v3])
    # v1 is still referenced by a live mount, v2 by nothing, v3 is active.
    mountinfo = '40 1 0:50 / /home/c/.cache/pip rw - overlay overlay rw,lowerdir=%s/trees/%s/pip,upperdir=/u,workdir=/w\n' % (host, v1)
    plan = _gc.plan(host, 1, mountinfo, '', host=True)
    assert plan['keep'] == {v3: 'active', v1: 'referenced by a mount or fstab'}
    assert plan['remove'] == [v2]
    v2_bytes = sum(len((b'v2 %d' % i) * 1000) for i in range(200))
    assert plan['bytes'] == v2_bytes and len(plan['objects']) == 200
    _gc.apply(host, plan)
    assert not os.path.exists(st.tree_path(host, v2)) and tree_is_complete(host, v1) and tree_is_complete(host, v3)
    # Once nothing references v1, it goes too; an fstab reference alone keeps it.
    assert _gc.plan(host, 1, '', 'overlay /x overlay lowerdir=/var/lib/pkgcache/trees/%s/pip 0 0' % v1, True)['remove'] == []
    plan = _gc.plan(host, 1, '', '', host=True)
    assert plan['remove'] == [v1] and len(plan['objects']) == 200
    _gc.apply(host, plan)
    assert hs.active_id(host) == v3 and tree_is_complete(host, v3)
    expected = {'keep': {v3: 'active'}, 'remove': [], 'objects': [], 'bytes': 0, 'incomplete': None}
    assert _gc.plan(host, 1, '', '', host=True) == expected


def test_gc_keeps_a_tree_a_process_is_inside_and_a_detached_overlays_lower(two_snapshots, tmp_path):
    """A reader left inside an old tree (a busy /mnt/cacache, a detached view) keeps it; once it leaves, it goes."""
    url, v1, v2, host = two_snapshots
    assert run_sync(url, v2, host).returncode == 0
    assert _gc.plan(host, 1, '', '', host=True, held=_busy.held_files())['remove'] == [v1]
    reader = subprocess.Popen(['sleep', '60'], cwd=st.tree_path(host, v1))
    try:
        plan = _gc.plan(host, 1, '', '', host=True, held=_busy.held_files())
        assert plan['keep'] == {v2: 'active', v1: 'a process is inside it'} and plan['remove'] == []
    finally:
        reader.kill()
        reader.wait()
    assert _gc.plan(host, 1, '', '', host=True, held=_busy.held_files())['remove'] == [v1]
    # A detached overlay that still holds its layers (here: still mounted somewhere) keeps its lower.
    os.makedirs(os.path.join(host, 'detached'))
    gen = tmp_path / 'layers' / 'detached-1'
    for d in ('upper', 'work', 'mnt'):
        (gen / d).mkdir(parents=True)
    record = {'user': 'carol', 'ecosystem': 'pip', 'dev': 0, 'lowerdir': '%s/pip' % st.tree_path(host, v1),
              'generation': str(gen)}
    with open(os.path.join(host, 'detached', 'carol-pip-1.json'), 'w') as f:
        json.dump(record, f)
    subprocess.check_call(['mount', '-t', 'overlay', 'overlay', '-o', 'lowerdir=%s/pip,upperdir=%s/upper,workdir=%s/work'
                           % (st.tree_path(host, v1), gen, gen), str(gen / 'mnt')])
    try:
        lowers = _views.live_lowerdirs(host)
        assert lowers == {'%s/pip' % st.tree_path(host, v1)}
        plan = _gc.plan(host, 1, '', '', host=True, detached_lowers=lowers)
        assert plan['keep'][v1] == 'used by a lazily detached overlay'
    finally:
        subprocess.check_call(['umount', str(gen / 'mnt')])
    assert _views.live_lowerdirs(host) == set()  # the kernel says nobody holds the layers any more


def test_gc_keeps_every_tree_when_some_process_cannot_be_inspected(two_snapshots):
    """Without CAP_SYS_PTRACE root cannot read other users' /proc/<pid>/cwd: nothing can be proven unused."""
    url, v1, v2, host = two_snapshots
    assert run_sync(url, v2, host).returncode == 0
    held = _busy.Held()
    held.denied = [4242]
    plan = _gc.plan(host, 1, '', '', host=True, held=held)
    assert plan['remove'] == [] and 'CAP_SYS_PTRACE' in plan['keep'][v1]


def test_module_check_mode_returns_the_plan_and_a_real_run_applies_that_plan(two_snapshots, tmp_path, capsys):
    url, v1, v2, host = two_snapshots
    assert run_sync(url, v2, host).returncode == 0
    args = {'store': host, 'keep': 1, 'fstab': str(tmp_path / 'fstab')}
    before = disk(host)
    rc, check = run_module(capsys, _gc.run_module, _gc.argument_spec(), args, check_mode=True)
    assert rc == 0 and check['changed'] and check['removed'] == [v1] and check['kept'] == {v2: 'active'}
    assert check['removed_objects'] == 200 and check['freed_bytes'] > 0
    assert disk(host) == before
    rc, real = run_module(capsys, _gc.run_module, _gc.argument_spec(), args)
    assert rc == 0 and real == check
    assert not os.path.exists(st.tree_path(host, v1)) and not os.path.exists(st.manifest_path(host, v1))
    assert tree_is_complete(host, v2)
    rc, again = run_module(capsys, _gc.run_module, _gc.argument_spec(), args, check_mode=True)
    assert rc == 0 and not again['changed'] and again['removed'] == [] and again['removed_objects'] == 0
    rc, bad = run_module(capsys, _gc.run_module, _gc.argument_spec(), dict(args, keep=-1))
    assert rc == 1 and bad['msg'] == 'keep must be 0 or more, got -1'
