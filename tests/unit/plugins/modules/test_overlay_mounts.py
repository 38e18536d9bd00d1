"""The overlay_mounts module end to end with state=present (no mount(2) needed)."""

import json
import os
import subprocess

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.pkgcache.overlay.plugins.module_utils import _mountinfo as mi
from ansible_collections.pkgcache.overlay.plugins.module_utils import _mounts as mt
from ansible_collections.pkgcache.overlay.plugins.module_utils._mountcmd import MountError, kernel_options, mount_overlay
from ansible_collections.pkgcache.overlay.plugins.module_utils._safefs import UnsafePathError
from ansible_collections.pkgcache.overlay.plugins.modules import overlay_mounts

UID, GID = os.getuid() or 1, os.getgid() or 1
ODD = '# operator   comment\nnot an entry at all\nUUID=1 / ext4 defaults 0 1'


def run(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            overlay_mounts.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def diffs(res):
    """The result's --diff entries as a list: fstab's first (when it changes), then views, links and directories."""
    return res['diff'] if isinstance(res['diff'], list) else [res['diff']]


def args(tmp_path, **kw):
    (tmp_path / 'home' / 'alice').mkdir(parents=True, exist_ok=True)
    (tmp_path / 'tree' / 'pip').mkdir(parents=True, exist_ok=True)
    a = {'repls': [{'name': 'alice', 'uid': UID, 'gid': GID, 'home': str(tmp_path / 'home' / 'alice')}],
         'lower_root': str(tmp_path / 'tree'), 'scratch_root': str(tmp_path / 'scratch'),
         'views_root': str(tmp_path / 'views'), 'state_dir': str(tmp_path / 'state'),
         'fstab': str(tmp_path / 'fstab'), 'state': 'present', '_ansible_diff': True}
    a.update(kw)
    return a


def test_check_mode_then_apply_then_idempotent(tmp_path, capsys):
    (tmp_path / 'fstab').write_text(ODD)
    rc, res = run(capsys, args(tmp_path, _ansible_check_mode=True))
    assert rc == 0 and res['changed'] and res['users'] == {'alice': {'pip': 'present'}}, res['unserved']
    assert (tmp_path / 'fstab').read_text() == ODD and not (tmp_path / 'scratch').exists()
    fstab_diff, views_diff = diffs(res)
    target = 'overlay %s/views/alice/pip overlay' % tmp_path
    assert target in fstab_diff['after'] and target not in fstab_diff['before']
    link = 'alice/pip link %s/home/alice/.cache/pip -> %s/views/alice/pip' % (tmp_path, tmp_path)
    assert link in views_diff['after'].splitlines() and link not in views_diff['before']
    rc, res = run(capsys, args(tmp_path, backup=True))
    assert rc == 0 and res['changed'] and os.path.exists(res['backup_file'])
    text = (tmp_path / 'fstab').read_text()
    assert text.startswith(ODD + '\n') and 'upperdir=%s/alice/cacache_pip/upper' % (tmp_path / 'scratch') in text
    assert oct(os.stat(str(tmp_path / 'scratch' / 'alice' / 'cacache_pip' / 'work')).st_mode & 0o777) == oct(0o700)
    assert os.readlink(str(tmp_path / 'home' / 'alice' / '.cache' / 'pip')) == str(tmp_path / 'views' / 'alice' / 'pip')
    assert oct(os.stat(str(tmp_path / 'views' / 'alice' / 'pip')).st_mode & 0o777) == oct(0o700)
    assert os.stat(str(tmp_path / 'scratch' / 'alice')).st_uid == 0
    assert os.stat(str(tmp_path / 'scratch' / 'alice' / 'cacache_pip' / 'upper')).st_uid == UID
    rc, res = run(capsys, args(tmp_path))
    assert rc == 0 and not res['changed'] and (tmp_path / 'fstab').read_text() == text


def test_bad_name_fails_and_changes_nothing(tmp_path, capsys):
    (tmp_path / 'fstab').write_text(ODD)
    a = args(tmp_path)
    a['repls'].append({'name': 'b,c', 'uid': UID, 'gid': GID})
    rc, res = run(capsys, a)
    assert rc == 1 and res['msg'].startswith("repl name 'b,c' holds ','")
    assert (tmp_path / 'fstab').read_text() == ODD and not (tmp_path / 'scratch').exists()


def test_template_lines_are_checked(tmp_path, capsys):
    rc, res = run(capsys, args(tmp_path, fstab_lines=['overlay /elsewhere overlay lowerdir=/x 0 0']))
    assert rc == 1 and 'must mount type overlay at' in res['msg']


def test_ecosystem_missing_from_the_snapshot_is_named(tmp_path, capsys):
    rc, res = run(capsys, args(tmp_path, ecosystems=['pip', 'npm']))
    assert rc == 1 and 'ecosystem npm' in res['msg'] and 'has no npm cache' in res['msg']
    assert not (tmp_path / 'fstab').exists()


def test_a_broken_user_is_reported_and_the_others_served(tmp_path, capsys):
    a = args(tmp_path)
    (tmp_path / 'home' / 'mallory').mkdir(parents=True)
    os.symlink('/nonexistent', str(tmp_path / 'home' / 'mallory' / '.cache'))
    a['repls'].append({'name': 'mallory', 'uid': UID, 'gid': GID, 'home': str(tmp_path / 'home' / 'mallory')})
    rc, res = run(capsys, a)
    assert rc == 0 and res['users']['alice'] == {'pip': 'present'}
    assert res['users']['mallory'] == {'pip': 'failed'} and '.cache of repl mallory is a symlink' in res['unserved']['mallory']['pip']
    assert os.path.islink(str(tmp_path / 'home' / 'alice' / '.cache' / 'pip'))
    # Her broken link costs the link only: her view keeps its fstab line (and stays mounted across a reboot).
    assert ' %s ' % (tmp_path / 'views' / 'mallory' / 'pip') in (tmp_path / 'fstab').read_text()
    rc, res = run(capsys, dict(a, strict=True))
    assert rc == 1 and res['msg'] == 'repl users not served: mallory' and res['users']['alice'] == {'pip': 'present'}


class Pw(object):
    def __init__(self, uid, gid, home):
        self.pw_uid, self.pw_gid, self.pw_dir = uid, gid, home


def test_users_are_read_from_passwd_and_an_unknown_one_is_named_while_the_others_are_served(tmp_path, capsys, monkeypatch):
    (tmp_path / 'home' / 'bob').mkdir(parents=True)
    known = {'bob': Pw(UID, GID, str(tmp_path / 'home' / 'bob'))}
    monkeypatch.setattr(mt.pwd, 'getpwnam', lambda name: known[name])
    a = args(tmp_path)
    a['repls'] += [{'name': 'bob'}, {'name': 'ghost'}]
    rc, res = run(capsys, a)
    assert rc == 0 and res['users']['alice'] == {'pip': 'present'} and res['users']['bob'] == {'pip': 'present'}
    assert res['unserved'] == {'ghost': {'pip': 'repl user ghost does not exist on this host (no passwd entry), and '
                                                'uid, gid, home not given'}}
    assert os.readlink(str(tmp_path / 'home' / 'bob' / '.cache' / 'pip')) == str(tmp_path / 'views' / 'bob' / 'pip')
    text = (tmp_path / 'fstab').read_text()
    assert '/views/bob/pip' in text and 'ghost' not in text and not (tmp_path / 'scratch' / 'ghost').exists()
    rc, res = run(capsys, dict(a, strict=True))
    assert rc == 1 and res['msg'] == 'repl users not served: ghost'
    # A uid that is not the one passwd gives would hand her view to another account: only she is not served.
    (tmp_path / 'home' / 'carl').mkdir(parents=True)
    known['carl'] = Pw(UID + 1, GID, str(tmp_path / 'home' / 'carl'))
    a['repls'] = [r for r in a['repls'] if r['name'] != 'ghost'] + [{'name': 'carl', 'uid': UID, 'gid': GID}]
    rc, res = run(capsys, a)
    assert rc == 0 and res['users']['bob'] == {'pip': 'present'} and list(res['unserved']) == ['carl'], res
    assert 'uid %d is given, but this host knows carl as uid %d' % (UID, UID + 1) in res['unserved']['carl']['pip']
    assert not (tmp_path / 'scratch' / 'carl').exists() and not (tmp_path / 'home' / 'carl' / '.cache').exists()


def test_a_user_who_cannot_be_served_keeps_the_fstab_line_of_the_view_she_has(tmp_path, capsys, monkeypatch):
    known = {}
    monkeypatch.setattr(mt.pwd, 'getpwnam', lambda name: known[name])
    (tmp_path / 'home' / 'carl').mkdir(parents=True)
    (tmp_path / 'tree2' / 'pip').mkdir(parents=True)
    a = args(tmp_path)
    a['repls'].append({'name': 'carl', 'uid': UID, 'gid': GID, 'home': str(tmp_path / 'home' / 'carl')})
    rc, res = run(capsys, a)
    assert rc == 0 and res['users']['carl'] == {'pip': 'present'}
    carl_line = [l for l in (tmp_path / 'fstab').read_text().splitlines() if '/views/carl/pip ' in l]
    assert len(carl_line) == 1 and 'lowerdir=%s/pip,' % (tmp_path / 'tree') in carl_line[0]
    # The next snapshot, and now the host knows carl by another uid: he is not served, and keeps his line.
    known['carl'] = Pw(UID + 1, GID, str(tmp_path / 'home' / 'carl'))
    rc, res = run(capsys, dict(a, lower_root=str(tmp_path / 'tree2')))
    assert rc == 0 and list(res['unserved']) == ['carl'] and res['users']['alice'] == {'pip': 'present'}
    text = (tmp_path / 'fstab').read_text()
    assert carl_line[0] in text.splitlines() and 'lowerdir=%s/pip,' % (tmp_path / 'tree2') in text  # alice's
    # A line that names anything but a snapshot tree beside lower_root is not kept.
    (tmp_path / 'fstab').write_text(text.replace('lowerdir=%s/pip,' % (tmp_path / 'tree'), 'lowerdir=/etc,'))
    rc, res = run(capsys, dict(a, lower_root=str(tmp_path / 'tree2')))
    assert rc == 0 and list(res['unserved']) == ['carl'] and '/views/carl/' not in (tmp_path / 'fstab').read_text()
    # Nor a line of a user who was never served.
    a['repls'].append({'name': 'ghost'})
    rc, res = run(capsys, dict(a, lower_root=str(tmp_path / 'tree2')))
    assert sorted(res['unserved']) == ['carl', 'ghost'] and 'ghost' not in (tmp_path / 'fstab').read_text()


def test_check_mode_returns_the_plan_and_the_real_run_executes_it(tmp_path, capsys):
    """Real overlays through mount(2): the plan of check mode is the plan the real run carries out."""
    scratch = tmp_path / 'scratch'
    scratch.mkdir(mode=0o755)
    subprocess.check_call(['mount', '-t', 'tmpfs', 'tmpfs', str(scratch)])  # an upper cannot sit on an overlay root
    (tmp_path / 'tree' / 'pip').mkdir(parents=True)
    (tmp_path / 'tree' / 'pip' / 'cached').write_text('from the snapshot')
    a = args(tmp_path, state='mounted', fstab_lines=None)
    target = str(tmp_path / 'views' / 'alice' / 'pip')
    try:
        rc, check = run(capsys, dict(a, _ansible_check_mode=True))
        assert rc == 0 and check['changed'] and check['users'] == {'alice': {'pip': 'mounted'}}
        the_plan = check['plan']
        assert the_plan['prepare'] == ['alice'] and the_plan['fstab']['write'] and the_plan['unserved'] == {}
        assert [(s['user'], s['action'], s['link']) for s in the_plan['mounts']] == [('alice', 'mount', 'create')]
        assert str(scratch / 'alice') in the_plan['create'] and not (scratch / 'alice').exists()
        assert mi.mounted_at(mi.current(), target) is None
        rc, res = run(capsys, a)
        assert rc == 0 and res['changed'] and res['plan'] == the_plan and res['users'] == {'alice': {'pip': 'mounted'}}
        got = mi.mounted_at(mi.current(), target)
        assert got['fstype'] == 'overlay' and got['mount_options'].get('nosuid') and got['mount_options'].get('nodev')
        assert all(got['super_options'][k] == res['mounts'][0][k] for k in ('lowerdir', 'upperdir', 'workdir'))
        # The kernel lists these only when they differ from its defaults: never on here.
        assert all(got['super_options'].get(k, 'off') == 'off' for k in ('index', 'metacopy', 'xino'))
        assert (tmp_path / 'home' / 'alice' / '.cache' / 'pip' / 'cached').read_text() == 'from the snapshot'
        # Nothing left to do: the plan says so and the run walks no user again.
        rc, res = run(capsys, dict(a, _ansible_check_mode=True))
        assert rc == 0 and not res['changed'] and res['plan']['prepare'] == [] and not res['plan']['fstab']['write']
        assert res['plan']['mounts'] == [] and res['plan']['unchanged'] == 1
        rc, again = run(capsys, a)
        assert rc == 0 and not again['changed'] and again['plan'] == res['plan']
        assert again['users'] == {'alice': {'pip': 'already'}}
        # A detached generation recorded in the state dir, no longer held: the plan merges it, and the run does.
        layers = scratch / 'alice' / 'cacache_pip'
        (layers / 'detached-1' / 'upper').mkdir(parents=True)
        (layers / 'detached-1' / 'work').mkdir()
        (layers / 'detached-1' / 'upper' / 'older').write_text('kept from the old view')
        (tmp_path / 'state' / 'detached').mkdir(parents=True)
        (tmp_path / 'state' / 'detached' / 'alice-pip-1.json').write_text(json.dumps(
            {'user': 'alice', 'ecosystem': 'pip', 'generation': str(layers / 'detached-1')}))
        rc, check = run(capsys, dict(a, _ansible_check_mode=True))
        assert [(s['action'], s['link']) for s in check['plan']['mounts']] == [('merge', 'keep')]
        rc, res = run(capsys, a)
        assert rc == 0 and res['plan'] == check['plan'] and res['users'] == {'alice': {'pip': 'merged'}}
        assert (tmp_path / 'home' / 'alice' / '.cache' / 'pip' / 'older').read_text() == 'kept from the old view'
        assert not (layers / 'detached-1').exists()
        # A new snapshot: the plan switches her, and the run does.
        (tmp_path / 'tree2' / 'pip').mkdir(parents=True)
        rc, check = run(capsys, dict(a, lower_root=str(tmp_path / 'tree2'), _ansible_check_mode=True))
        assert [(s['action'], s['why']) for s in check['plan']['mounts']] == [
            ('switch', 'mounted with other layers (lowerdir %s/tree/pip, planned %s/tree2/pip)' % (tmp_path, tmp_path))]
        rc, res = run(capsys, dict(a, lower_root=str(tmp_path / 'tree2')))
        assert rc == 0 and res['plan'] == check['plan'] and res['users'] == {'alice': {'pip': 'switched'}}
        assert mi.mounted_at(mi.current(), target)['super_options']['lowerdir'] == str(tmp_path / 'tree2' / 'pip')
    finally:
        while mi.mounted_at(mi.current(), target) is not None:
            subprocess.check_call(['umount', target])
        subprocess.check_call(['umount', str(scratch)])


@pytest.mark.parametrize('options, flags, data', [
    ('lowerdir=/l,upperdir=/u,workdir=/w,index=off,xino=off,metacopy=off,nosuid,nodev', 2 | 4,
     'lowerdir=/l,upperdir=/u,workdir=/w,index=off,xino=off,metacopy=off'),
    ('lowerdir=/l,nosuid,nodev,noatime,noexec,ro,nofail,x-systemd.requires-mounts-for=/mnt,comment=x,_netdev,auto',
     1 | 2 | 4 | 8 | 1024, 'lowerdir=/l'),
    ('nosuid,ro,rw,sync,async,relatime,norelatime,lazytime', 2 | (1 << 25), ''),
])
def test_kernel_options_split_as_mount8_does(options, flags, data):
    assert kernel_options(options) == (flags, data)


def test_mount_overlay_refuses_a_target_or_layers_that_are_not_roots(tmp_path):
    (tmp_path / 'views' / 'alice').mkdir(parents=True)
    (tmp_path / 'layers' / 'upper').mkdir(parents=True)
    (tmp_path / 'layers' / 'work').mkdir()
    os.symlink('/etc', str(tmp_path / 'views' / 'alice' / 'pip'))
    opts = 'lowerdir=/l,upperdir=%s/layers/upper,workdir=%s/layers/work,nosuid,nodev' % (tmp_path, tmp_path)
    with pytest.raises(MountError, match='alice/pip: (Not a directory|Too many levels of symbolic links)'):
        mount_overlay(str(tmp_path / 'views' / 'alice' / 'pip'), opts, str(tmp_path / 'layers'), 1)
    os.unlink(str(tmp_path / 'views' / 'alice' / 'pip'))
    (tmp_path / 'views' / 'alice' / 'pip').mkdir()
    os.chown(str(tmp_path / 'views' / 'alice' / 'pip'), 1, 1)
    with pytest.raises(MountError, match='not a directory of root'):
        mount_overlay(str(tmp_path / 'views' / 'alice' / 'pip'), opts, str(tmp_path / 'layers'), 1)
    os.chown(str(tmp_path / 'views' / 'alice'), 1, 1)  # a parent the user owns: the chain is refused
    with pytest.raises(UnsafePathError, match='owner uid 1'):
        mount_overlay(str(tmp_path / 'views' / 'alice' / 'pip'), opts, str(tmp_path / 'layers'), 1)
    os.chown(str(tmp_path / 'layers' / 'work'), 1, 1)
    with pytest.raises(MountError, match='upper or work dir'):
        mount_overlay(str(tmp_path / 'views' / 'alice' / 'pip'), opts, str(tmp_path / 'layers'), 1)


def test_a_moved_home_shows_the_link_move_in_check_mode_and_diff_and_the_old_link_is_retired(tmp_path, capsys):
    """u3's home moves in the inventory: the view and its fstab line stay, the cache link moves.

    Check mode names the move (users, links, plan) and --diff shows the old and the new link; the real run carries
    out that very plan: the new link is placed, and root's old link in the old home is removed.
    """
    (tmp_path / 'fstab').write_text(ODD)
    a = args(tmp_path)
    rc, res = run(capsys, a)
    assert rc == 0 and res['users'] == {'alice': {'pip': 'present'}}
    view = str(tmp_path / 'views' / 'alice' / 'pip')
    old, new = tmp_path / 'home' / 'alice' / '.cache' / 'pip', tmp_path / 'alt' / 'alice' / '.cache' / 'pip'
    assert os.readlink(str(old)) == view
    fstab = (tmp_path / 'fstab').read_text()
    (tmp_path / 'alt' / 'alice').mkdir(parents=True)
    moved = dict(a, repls=[dict(a['repls'][0], home=str(tmp_path / 'alt' / 'alice'))])
    rc, check = run(capsys, dict(moved, _ansible_check_mode=True))
    assert rc == 0 and check['changed'] and check['users'] == {'alice': {'pip': 'link-moved'}}
    assert check['links'] == {'alice': {'pip': {
        'action': 'move', 'path': str(new), 'target': view, 'before': None, 'from': str(old),
        'old_link': 'remove: the link to her view is still there'}}}
    step, = check['plan']['mounts']
    assert (step['action'], step['link'], step['link_path']) == ('none', 'move', str(new))
    assert step['link_from'] == {'path': str(old), 'home': str(tmp_path / 'home' / 'alice'), 'fate': 'remove',
                                 'why': 'the link to her view is still there'}
    assert not check['plan']['fstab']['write'] and check['plan']['fstab']['add'] == []
    # fstab does not change: the one diff is the views and links one, with the link's before and after.
    assert not isinstance(check['diff'], list)
    before, after = check['diff']['before'].splitlines(), check['diff']['after'].splitlines()
    assert 'alice/pip link %s -> %s' % (old, view) in before and 'alice/pip link %s -> %s' % (old, view) not in after
    assert 'alice/pip link %s -> %s' % (new, view) in after and 'alice/pip link %s -> %s' % (new, view) not in before
    assert 'alice/pip view %s: not mounted' % view in before and 'alice/pip view %s: not mounted' % view in after
    # Check mode changed nothing.
    assert os.readlink(str(old)) == view and not (tmp_path / 'alt' / 'alice' / '.cache').exists()
    assert (tmp_path / 'fstab').read_text() == fstab
    rc, res = run(capsys, moved)
    assert rc == 0 and res['changed'] and res['plan'] == check['plan']
    assert res['users'] == {'alice': {'pip': 'link-moved'}}
    assert res['links']['alice']['pip']['old_link'] == 'removed: the link to her view was removed'
    assert res['diff'] == check['diff']
    assert os.readlink(str(new)) == view and not os.path.lexists(str(old))
    assert (tmp_path / 'home' / 'alice' / '.cache').is_dir()  # only the link went
    assert (tmp_path / 'fstab').read_text() == fstab
    rc, res = run(capsys, moved)
    assert rc == 0 and not res['changed'] and res['users'] == {'alice': {'pip': 'present'}} and 'diff' not in res
    # Back to the first home, but she put a dir of her own where root's link stood in the second: it is left, and
    # the plan, the report and the diff say so.
    os.unlink(str(new))
    new.mkdir()
    (new / 'mine').write_text('hers')
    rc, check = run(capsys, dict(a, _ansible_check_mode=True))
    assert check['links']['alice']['pip']['old_link'] == (
        "left: %s is no longer root's link to her view (directory)" % new)
    assert check['users'] == {'alice': {'pip': 'link-moved'}}
    assert 'alice/pip link place %s: left as it is' % new in check['diff']['after']
    rc, res = run(capsys, a)
    assert rc == 0 and res['plan'] == check['plan'] and os.readlink(str(old)) == view
    assert (new / 'mine').read_text() == 'hers'


@pytest.mark.parametrize('name', ['.lock', '.alice'])
def test_a_user_whose_name_begins_with_a_dot_is_served_and_cannot_take_the_lock(tmp_path, capsys, name):
    """Repl names may begin with '.' (Debian's useradd takes them): '.lock' was the name of the views root's lock."""
    home = tmp_path / 'home' / name
    home.mkdir(parents=True)
    a = args(tmp_path)
    a['repls'].append({'name': name, 'uid': UID, 'gid': GID, 'home': str(home)})
    # A host that an earlier version ran on: its lock file stands where her view dir goes.
    (tmp_path / 'views').mkdir(mode=0o711)
    (tmp_path / 'views' / '.lock').write_text('')
    for dummy in range(2):
        rc, res = run(capsys, a)
        assert rc == 0 and res['users'] == {'alice': {'pip': 'present'}, name: {'pip': 'present'}}, res
        assert res['unserved'] == {}
        assert os.readlink(str(home / '.cache' / 'pip')) == str(tmp_path / 'views' / name / 'pip')
        assert (tmp_path / 'views' / name / 'pip').is_dir()
        assert '%s/views/%s/pip ' % (tmp_path, name) in (tmp_path / 'fstab').read_text()
    assert not res['changed']
    # And the other way round: her view dir exists before any lock was taken.
    rc, res = run(capsys, dict(a, views_root=str(tmp_path / 'views2'), _ansible_check_mode=True))
    (tmp_path / 'views2' / name).mkdir(parents=True)
    rc, res = run(capsys, dict(a, views_root=str(tmp_path / 'views2'), fstab=str(tmp_path / 'fstab2')))
    assert rc == 0 and res['unserved'] == {} and res['users'][name] == {'pip': 'present'}, res
