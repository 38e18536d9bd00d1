"""pkgcache-host: where its fstab lines go beside overlay_mounts', the login hook never failing a login, its
counters, the lock timeout a login waits at most, root only, and its zip running with no Ansible."""

import json
import os
import subprocess
import sys
import threading

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _hostcmd as hc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _hostpolicy as hp
from ansible_collections.pkgcache.overlay.plugins.module_utils import _mounts as mt
from ansible_collections.pkgcache.overlay.plugins.module_utils._fstab import replace_block
from ansible_collections.pkgcache.overlay.plugins.module_utils._fstabfile import update_blocks
from ansible_collections.pkgcache.overlay.plugins.module_utils._lock import VIEWS_LOCK, LockError, StoreLock

from conftest import ROOT
from helpers import hold_lock

V = '/var/lib/pkgcache-views'


def line(user, eco='pip', tree='old'):
    return ('overlay %s/%s/%s overlay lowerdir=/var/lib/pkgcache/trees/%s/%s,upperdir=/mnt/scratch/%s/cacache_%s/upper,'
            'workdir=/mnt/scratch/%s/cacache_%s/work,index=off,xino=off,metacopy=off,nosuid,nodev 0 0'
            % (V, user, eco, tree, eco, user, eco, user, eco))


class Module(object):
    check_mode = False

    @staticmethod
    def atomic_move(src, dest, unsafe_writes=False):
        os.rename(src, dest)


def fstab(tmp_path, mounts, host):
    text = 'UUID=1 / ext4 defaults 0 1\n'
    text = replace_block(text, mt.BLOCK, mounts)
    text = replace_block(text, mt.HOST_BLOCK, host)
    path = tmp_path / 'fstab'
    path.write_text(text)
    return str(path)


def blocks(path):
    text = open(path).read()
    return mt.block_lines(text, mt.BLOCK), mt.block_lines(text, mt.HOST_BLOCK)


def test_a_switch_rewrites_an_inventory_users_line_in_place_and_a_new_users_goes_to_the_host_block(tmp_path):
    path = fstab(tmp_path, [line('alice'), line('bob'), line('carol')], [line('dave')])
    # One run plans bob (the inventory's) and erin (new at login): only their lines change.
    targets = set(['%s/bob/pip' % V, '%s/erin/pip' % V])
    new = [line('bob', tree='new'), line('erin', tree='new')]
    update_blocks(Module(), path, hc.placed_lines(open(path).read(), new, targets))
    assert blocks(path) == ([line('alice'), line('bob', tree='new'), line('carol')], [line('dave'), line('erin', tree='new')])
    assert open(path).read().startswith('UUID=1 / ext4 defaults 0 1\n')
    # dave's switch: in the host block, in place.
    update_blocks(Module(), path, hc.placed_lines(open(path).read(), [line('dave', tree='new')], set(['%s/dave/pip' % V])))
    assert blocks(path)[1] == [line('dave', tree='new'), line('erin', tree='new')]


def test_a_failed_mount_with_no_line_to_keep_leaves_its_block_and_nothing_else(tmp_path):
    path = fstab(tmp_path, [line('alice'), line('bob')], [line('dave')])
    update_blocks(Module(), path, hc.placed_lines(open(path).read(), [], set(['%s/bob/pip' % V, '%s/dave/pip' % V])))
    assert blocks(path) == ([line('alice')], [])


def test_an_ansible_run_takes_over_a_user_the_host_served_so_no_target_is_in_two_blocks(tmp_path):
    path = fstab(tmp_path, [line('alice')], [line('dave'), line('erin')])
    targets = set(['%s/alice/pip' % V, '%s/dave/pip' % V])
    mt.update_fstab(Module(), path, [line('alice', tree='new'), line('dave', tree='new')], targets, False)
    assert blocks(path) == ([line('alice', tree='new'), line('dave', tree='new')], [line('erin')])
    assert mt.host_users(open(path).read(), V) == set(['erin'])
    # A host block left empty goes away; an fstab without one is not given an empty block.
    mt.update_fstab(Module(), path, [line('alice'), line('dave'), line('erin')],
                    set('%s/%s/pip' % (V, u) for u in ('alice', 'dave', 'erin')), False)
    assert 'host-users' not in open(path).read()


def policy(tmp_path, **kw):
    (tmp_path / 'store').mkdir(exist_ok=True)
    (tmp_path / 'prom').mkdir(exist_ok=True)
    return hp.validate(dict({'store': str(tmp_path / 'store'), 'textfile_dir': str(tmp_path / 'prom')}, **kw))


def test_outcomes_are_counted_and_written_for_node_exporter(tmp_path):
    p = policy(tmp_path)
    for outcome in ('served', 'served', 'lock_timeout', 'refused'):
        stats = hc.count(p, outcome, now=1700000000)
    assert stats == {'served': 2, 'lock_timeout': 1, 'refused': 1, 'last_failure': 1700000000}
    prom = (tmp_path / 'prom' / 'pkgcache_host.prom').read_text()
    assert 'pkgcache_host_serve_total{outcome="served"} 2\n' in prom
    assert 'pkgcache_host_serve_total{outcome="failed"} 0\n' in prom
    assert 'pkgcache_host_serve_last_failure_timestamp_seconds 1700000000\n' in prom
    assert oct(os.stat(str(tmp_path / 'store' / hc.STATS)).st_mode & 0o777) == '0o600'


def test_concurrent_counts_lose_nothing(tmp_path):
    p = policy(tmp_path)
    threads = [threading.Thread(target=lambda: [hc.count(p, 'served') for dummy in range(20)]) for dummy in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads((tmp_path / 'store' / hc.STATS).read_text())['served'] == 100


def write_policy(tmp_path, data):
    d = tmp_path / 'etc'
    d.mkdir(mode=0o755, exist_ok=True)
    (d / 'host.json').write_text(json.dumps(data))
    os.chmod(str(d / 'host.json'), 0o600)
    return str(d / 'host.json')


def test_the_hook_never_fails_a_login(tmp_path, monkeypatch):
    p = policy(tmp_path)
    path = write_policy(tmp_path, dict((k, p[k]) for k in ('store', 'textfile_dir')))
    served = []
    monkeypatch.setattr(hc, 'serve_user', lambda *a, **kw: served.append(a[1]) or {'unserved': {}, 'users': {}, 'busy': {}})
    monkeypatch.setattr(hc, 'log', lambda *a: None)
    assert hc.login(path, {'PAM_TYPE': 'close_session', 'PAM_USER': 'alice'}) == 0 and served == []
    assert hc.login(path, {'PAM_TYPE': 'open_session', 'PAM_USER': 'alice'}) == 0 and served == ['alice']
    assert hc.login(str(tmp_path / 'nope.json'), {'PAM_TYPE': 'open_session', 'PAM_USER': 'alice'}) == 0

    def boom(*a, **kw):
        raise RuntimeError('anything at all')
    monkeypatch.setattr(hc, 'serve_user', boom)
    assert hc.login(path, {'PAM_TYPE': 'open_session', 'PAM_USER': 'alice'}) == 0
    assert json.loads((tmp_path / 'store' / hc.STATS).read_text())['failed'] == 1


def test_a_lock_timeout_at_login_queues_the_unit_and_is_counted(tmp_path, monkeypatch):
    p = policy(tmp_path)
    queued = []

    def held(*a, **kw):
        raise LockError('another pkgcache run (pid 1) holds the lock')
    monkeypatch.setattr(hc, 'serve_user', held)
    monkeypatch.setattr(hc, 'queue_unit', lambda name: queued.append(name) or True)
    outcome, msg = hc.serve_outcome(p, 'alice', 2, True)
    assert outcome == 'lock_timeout' and 'queued pkgcache-view@alice' in msg and queued == ['alice']
    outcome, msg = hc.serve_outcome(p, 'alice', 2, False)   # the unit itself does not queue itself again
    assert outcome == 'lock_timeout' and queued == ['alice']


def test_a_name_that_is_not_a_repl_user_is_refused_before_anything_is_touched(tmp_path, monkeypatch):
    p = policy(tmp_path, repl_uids=[60000, 60001])
    monkeypatch.setattr(hc, 'view_run', lambda *a, **kw: pytest.fail('a refused name reached the mount code'))
    for name in ('root', '../alice', 'a,b', 'no-such-user-pkgcache'):
        assert hc.serve_outcome(p, name, 2, True)[0] == 'refused'


def test_the_lock_a_login_waits_for_times_out(tmp_path):
    store = str(tmp_path)
    holder = hold_lock(store)
    try:
        with pytest.raises(LockError, match=r'holds the lock .*waited 0.3s'):
            with StoreLock(store, timeout=0.3, poll=0.01):
                pass
    finally:
        holder.kill()
        holder.wait()
    with StoreLock(store, timeout=0.3, poll=0.01):
        pass


def test_only_root_runs_it(monkeypatch):
    monkeypatch.setattr(os, 'geteuid', lambda: 2001)
    with pytest.raises(SystemExit, match='must be run as root'):
        hc.main(['status'])


def test_the_zip_runs_pkgcache_host_with_no_ansible_importable(tmp_path):
    src = str(tmp_path / 'utils.zip')
    subprocess.run([sys.executable, os.path.join(ROOT, 'plugins', 'module_utils', '_pack.py'),
                    os.path.join(ROOT, 'plugins', 'module_utils'), src], check=True)
    out = str(tmp_path / 'host.zip')
    compile_ = 'import sys; sys.path.insert(0, %r); from pkgcache_utils import _pack; _pack.compile_zip(%r, %r)' % (src, src, out)
    subprocess.run([sys.executable, '-I', '-S', '-c', compile_], check=True)
    check = 'import importlib.util, runpy, sys; assert importlib.util.find_spec("ansible") is None; '
    for zipped in (src, out):
        res = subprocess.run([sys.executable, '-I', '-S', '-c', check + 'sys.argv = [%r, "--policy", %r, "status"]; '
                              'runpy.run_path(%r, run_name="__main__")' % (zipped, str(tmp_path / 'none.json'), zipped)],
                             capture_output=True, text=True, check=False)
        # It got as far as reading the policy, with no Ansible.
        assert res.returncode == 2 and 'cannot read the policy' in res.stderr, res.stderr


def test_a_login_of_a_served_user_is_answered_from_mountinfo_and_her_link_alone(tmp_path):
    import collections  # pylint: disable=import-outside-toplevel
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _mountinfo as mi  # pylint: disable=import-outside-toplevel
    home = tmp_path / 'home'
    (home / '.cache').mkdir(parents=True)
    os.symlink(V + '/dave/pip', str(home / '.cache' / 'pip'))
    pw = collections.namedtuple('Pw', 'pw_dir')(str(home))
    p = hp.validate({})
    tree = '/var/lib/pkgcache/trees/new'

    def info(lower, upper='/mnt/scratch/dave/cacache_pip/upper', fstype='overlay'):
        return mi.parse_mountinfo('90 30 0:50 / %s/dave/pip rw,nosuid,nodev - %s overlay rw,lowerdir=%s,upperdir=%s,'
                                  'workdir=/mnt/scratch/dave/cacache_pip/work\n' % (V, fstype, lower, upper))
    assert hc.already_served(p, {'name': 'dave'}, pw, tree, info(tree + '/pip'))
    # Anything else goes to the full run: another snapshot, another upper, not an overlay, nothing mounted.
    assert not hc.already_served(p, {'name': 'dave'}, pw, tree, info('/var/lib/pkgcache/trees/old/pip'))
    assert not hc.already_served(p, {'name': 'dave'}, pw, tree, info(tree + '/pip', upper='/tmp/upper'))
    assert not hc.already_served(p, {'name': 'dave'}, pw, tree, info(tree + '/pip', fstype='tmpfs'))
    assert not hc.already_served(p, {'name': 'dave'}, pw, tree, mi.parse_mountinfo(''))
    assert not hc.already_served(dict(p, ecosystems=['pip', 'npm']), {'name': 'dave'}, pw, tree, info(tree + '/pip'))
    # Her link gone, elsewhere, or ~/.cache a symlink (not followed): the full run.
    os.unlink(str(home / '.cache' / 'pip'))
    assert not hc.already_served(p, {'name': 'dave'}, pw, tree, info(tree + '/pip'))
    os.symlink('/etc', str(home / '.cache' / 'pip'))
    assert not hc.already_served(p, {'name': 'dave'}, pw, tree, info(tree + '/pip'))
    (home / 'elsewhere').mkdir()
    os.symlink(V + '/dave/pip', str(home / 'elsewhere' / 'pip'))
    os.rename(str(home / '.cache'), str(home / 'cache.real'))
    os.symlink(str(home / 'elsewhere'), str(home / '.cache'))
    assert hc._link_in_home(str(home), '.cache/pip') is None
    assert not hc.already_served(p, {'name': 'dave'}, pw, tree, info(tree + '/pip'))


def test_serve_user_runs_for_different_users_go_side_by_side_and_ansibles_run_excludes_them(tmp_path):
    views = str(tmp_path)
    with hc.UserLock(views, 'alice', 0, 0.01), hc.UserLock(views, 'bob', 0, 0.01):
        with pytest.raises(LockError):            # the same user twice: one waits
            with hc.UserLock(views, 'alice', 0.05, 0.01):
                pass
        with pytest.raises(LockError):            # overlay_mounts / sync (exclusive) wait for both
            with StoreLock(views, 0.05, 0.01, name=VIEWS_LOCK):
                pass
    with StoreLock(views, 0, 0.01, name=VIEWS_LOCK):
        with pytest.raises(LockError, match='holds the lock'):
            with hc.UserLock(views, 'carol', 0.05, 0.01):
                pass
    with hc.UserLock(views, 'carol', 0, 0.01):   # every lock was given back
        pass
