"""The overlay_mounts module end to end with state=present (no mount(2) needed)."""

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.pkgcache.overlay.plugins.modules import overlay_mounts

UID, GID = os.getuid() or 1, os.getgid() or 1
ODD = '# operator   comment\nnot an entry at all\nUUID=1 / ext4 defaults 0 1'


def run(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            overlay_mounts.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


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
    target = 'overlay %s/views/alice/pip overlay' % tmp_path
    assert target in res['diff']['after'] and target not in res['diff']['before']
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
    rc, res = run(capsys, dict(a, strict=True))
    assert rc == 1 and res['msg'] == 'repl users not served: mallory' and res['users']['alice'] == {'pip': 'present'}
