"""GC of a host: what it keeps (active, newest, referenced, busy, held by a detached overlay) and what it removes."""

import json
import os
import subprocess

import pytest

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


def _held(unknown, can_trace=True, holds=()):
    held = _busy.Held((k, {4242}) for k in holds)
    held.scan.unknown.update(unknown)
    held.scan.can_trace = can_trace
    return held


def test_gc_keeps_every_tree_only_when_the_scan_is_blind_for_a_host_wide_cause(two_snapshots):
    """Without CAP_SYS_PTRACE root cannot read other users' /proc/<pid>/cwd: nothing can be proven unused."""
    url, v1, v2, host = two_snapshots
    assert run_sync(url, v2, host).returncode == 0
    plan = _gc.plan(host, 0, '', '', host=True, held=_held({2003: 'EACCES on pid 4242'}, can_trace=False))
    assert plan['remove'] == [] and plan['keep'][v1] == 'some processes cannot be inspected (root lacks CAP_SYS_PTRACE); kept to be safe'
    assert _gc.scan_warnings(plan) == ['some processes cannot be inspected (root lacks CAP_SYS_PTRACE), so no snapshot could '
                                       'be proven unused; every snapshot was kept']
    plan = _gc.plan(host, 0, '', '', host=True, held=_held({'all': 'cannot list /proc'}))
    assert plan['remove'] == [] and plan['keep'][v1].startswith('the processes cannot be listed (cannot list /proc)')


@pytest.mark.parametrize('cause', ['more than 100000 links for uid 2003 (pid 77 alone has 20000 fds)',
                                   'timeout after 81234 links of uid 2003', 'EACCES on pid 77'])
def test_one_uid_that_cannot_be_scanned_whole_costs_only_what_it_could_hold(two_snapshots, cause):
    """The old plan kept every tree on any incomplete scan (and blamed CAP_SYS_PTRACE); now only holds count."""
    url, v1, v2, host = two_snapshots
    assert run_sync(url, v2, host).returncode == 0
    plan = _gc.plan(host, 0, '', '', host=True, held=_held({2003: cause}))
    assert plan['remove'] == [v1] and plan['keep'] == {v2: 'active'}
    assert plan['scan'] == {'unknown': {'2003': cause}}
    warning = _gc.scan_warnings(plan)
    assert warning == ['the processes of 1 uid(s) were not all inspected (uid 2003: %s); a tree that only their unscanned '
                       'fds hold is not protected, every other tree was decided as usual' % cause]
    assert 'CAP_SYS_PTRACE' not in warning[0]
    # What was found in the part scanned still holds; so do the mounts and the detached overlays.
    top = os.lstat(st.tree_path(host, v1))
    plan = _gc.plan(host, 0, '', '', host=True, held=_held({2003: cause}, holds=[(top.st_dev, top.st_ino)]))
    assert plan['remove'] == [] and plan['keep'][v1] == 'a process is inside it'
    plan = _gc.plan(host, 0, '', '', host=True, held=_held({2003: cause}), detached_lowers=[st.tree_path(host, v1) + '/pip'])
    assert plan['keep'][v1] == 'used by a lazily detached overlay'


def test_gc_of_real_processes_a_hog_over_its_budget_does_not_block_the_tree_it_cannot_hold(two_snapshots, hog_as_nobody):
    """A user with thousands of dup'd fds (more than its budget) no longer stops GC; a cwd of hers still keeps a tree."""
    url, v1, v2, host = two_snapshots
    assert run_sync(url, v2, host).returncode == 0
    dev = os.stat(os.path.join(host, 'trees')).st_dev
    info = hog_as_nobody('/', '/', 3000)
    held = _busy.held_files(dev=dev, uid_links=1000)
    assert held.unknown[65534].startswith('more than 1000 links for uid 65534 (pid %d' % info['pid'])
    assert _gc.plan(host, 0, '', '', host=True, held=held)['remove'] == [v1]
    info = hog_as_nobody(st.tree_path(host, v1), '/', 3000)
    held = _busy.held_files(dev=dev, uid_links=1000)
    assert 65534 in held.unknown
    assert _gc.plan(host, 0, '', '', host=True, held=held)['keep'][v1] == 'a process is inside it'


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


def test_a_kept_tree_without_manifest_still_reports_the_scan(two_snapshots):
    url, v1, v2, host = two_snapshots
    os.makedirs(os.path.join(host, 'trees', 'e' * 64, 'pip'))
    plan = _gc.plan(host, 5, '', '', host=True, held=_held({2003: 'EACCES on pid 77'}))
    assert plan['incomplete'] == 'e' * 64 and plan['objects'] == []
    assert plan['scan'] == {'unknown': {'2003': 'EACCES on pid 77'}}
