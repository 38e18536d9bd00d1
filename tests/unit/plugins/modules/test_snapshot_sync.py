"""The snapshot_sync module end to end: check mode returns the plan, the real run executes the same plan.

mount(8) and umount(8) are recorded instead of run, and /proc/self/mountinfo is replaced by a test's text.
"""

import json
import os

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.pkgcache.overlay.plugins.module_utils import _hostsync
from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.modules import snapshot_sync

from helpers import publish, tree_is_complete

FSTAB = '# operator line\nUUID=1 / ext4 defaults 0 1\n'
PLAN_KEYS = ('id', 'previous', 'path', 'missing_objects', 'missing_bytes', 'reused_objects', 'files', 'bytes',
             'ecosystems', 'created', 'revision', 'mount', 'changed')


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A builder store with v1 and v2, a host store path, an fstab; mount calls recorded, mountinfo settable."""
    served = str(tmp_path / 'served')
    v1 = publish(served, dict(('f%02d' % i, b'v1 %d' % i) for i in range(20)))
    v2 = publish(served, dict(('f%02d' % i, b'v2 %d' % i) for i in range(20)))
    (tmp_path / 'fstab').write_text(FSTAB)
    state = {'mountinfo': '', 'calls': [], 'busy': False}

    def run_command(self, argv, **kw):
        state['calls'].append(list(argv))
        if state['busy'] and argv[0] == 'umount' and '--lazy' not in argv:
            return 32, '', 'umount: target is busy.'
        return 0, '', ''

    monkeypatch.setattr(AnsibleModule, 'run_command', run_command)
    monkeypatch.setattr(_hostsync, 'mountinfo_text', lambda: state['mountinfo'])
    args = {'url': 'file://' + served, 'store': str(tmp_path / 'store'), 'fstab': str(tmp_path / 'fstab'),
            'mount_point': str(tmp_path / 'mnt'), '_ansible_diff': True}
    return args, v1, v2, state


def run(capsys, args, **kw):
    with patch_module_args(dict(args, **kw)):
        with pytest.raises(SystemExit) as exc:
            snapshot_sync.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def mounted(args, snap_id):
    return '40 30 0:40 %s/trees/%s %s ro,nosuid,nodev - ext4 /dev/x rw\n' % (args['store'], snap_id, args['mount_point'])


def test_check_mode_returns_the_plan_that_the_real_run_executes(tmp_path, capsys, host):
    args, v1, v2, state = host
    rc, plan = run(capsys, args, snapshot=v1, _ansible_check_mode=True)
    assert rc == 0, plan
    assert plan['changed'] and plan['id'] == v1 and plan['mount'] == 'mounted' and plan['missing_objects'] == 20
    assert plan['fetched_objects'] == 0 and not os.path.exists(args['store']) and state['calls'] == []
    assert (tmp_path / 'fstab').read_text() == FSTAB
    line = '%s/current %s none bind,ro,nosuid,nodev 0 0' % (args['store'], args['mount_point'])
    assert line in plan['diff']['after'] and line not in plan['diff']['before']

    rc, done = run(capsys, args, snapshot=v1)
    assert rc == 0, done
    assert dict((k, done[k]) for k in PLAN_KEYS) == dict((k, plan[k]) for k in PLAN_KEYS)
    assert done['fetched_objects'] == plan['missing_objects'] and done['fetched_bytes'] > 0
    assert hs.active_id(args['store']) == v1 and tree_is_complete(args['store'], v1)
    assert (tmp_path / 'fstab').read_text().startswith(FSTAB) and line in (tmp_path / 'fstab').read_text()
    assert state['calls'] == [['mount', '--fstab', args['fstab'], '--target', args['mount_point']]]
    assert os.path.isdir(args['mount_point'])

    # Mounted on v1 now: a run changes nothing and runs nothing, in check mode and for real.
    state['mountinfo'], state['calls'] = mounted(args, v1), []
    for check in (True, False):
        rc, again = run(capsys, args, snapshot=v1, _ansible_check_mode=check)
        assert rc == 0 and not again['changed'] and again['mount'] == 'unchanged' and again['missing_objects'] == 0
    assert state['calls'] == []


def test_a_new_snapshot_is_switched_and_remounted_lazily_when_busy(capsys, host):
    args, v1, v2, state = host
    assert run(capsys, args, snapshot=v1)[0] == 0
    state['mountinfo'], state['calls'], state['busy'] = mounted(args, v1), [], True
    rc, plan = run(capsys, args, snapshot=v2, _ansible_check_mode=True)
    assert rc == 0 and plan['mount'] == 'remounted' and plan['previous'] == v1 and state['calls'] == []
    assert hs.active_id(args['store']) == v1
    rc, done = run(capsys, args, snapshot=v2)
    assert rc == 0 and done['mount'] == 'remounted' and done['id'] == v2 and hs.active_id(args['store']) == v2
    expected = [['umount', args['mount_point']], ['umount', '--lazy'], ['mount', '--fstab']]
    assert [c[:2] for c in state['calls']] == expected
    assert hs.history(args['store']) == [v1, v2]


def test_a_failed_fetch_keeps_the_active_snapshot_and_records_the_error(tmp_path, capsys, host):
    args, v1, v2, state = host
    assert run(capsys, args, snapshot=v1)[0] == 0
    os.unlink(os.path.join(str(tmp_path / 'served'), 'snapshots', v2 + '.json'))
    rc, res = run(capsys, args, snapshot=v2)
    assert rc == 1 and 'manifest of snapshot %s' % v2 in res['msg']
    assert hs.active_id(args['store']) == v1
    assert hs.read_last_sync(args['store'])['ok'] is False


@pytest.mark.parametrize('bad, message', [
    ({'deadline': 0}, 'deadline must be 1 or more, got 0'),
    ({'snapshot': 'not-an-id'}, 'snapshot'),
])
def test_bad_input_fails_with_a_message_that_names_it(tmp_path, capsys, host, bad, message):
    args, v1, v2, state = host
    rc, res = run(capsys, args, **bad)
    assert rc == 1 and message in res['msg']
    assert (tmp_path / 'fstab').read_text() == FSTAB and state['calls'] == []


def test_push_source_that_a_user_could_swap_is_refused(tmp_path, capsys, host):
    args, v1, v2, state = host
    staging = tmp_path / 'staging'
    staging.mkdir(mode=0o777)
    os.chmod(str(staging), 0o777)
    a = dict(args, source=str(staging))
    del a['url']
    rc, res = run(capsys, a)
    assert rc == 1 and str(staging) in res['msg'] and not os.path.exists(args['store'])
