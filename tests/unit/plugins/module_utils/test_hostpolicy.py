"""pkgcache-host's policy: the file's checks, every key's validation, the fstab line pattern, who is a repl user."""

import collections
import json
import os

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _hostpolicy as hp
from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov

Pw = collections.namedtuple('Pw', 'pw_name pw_uid pw_gid pw_dir')
Gr = collections.namedtuple('Gr', 'gr_name gr_gid gr_mem')
USERS = {'alice': Pw('alice', 2001, 2001, '/home/alice'), 'dave': Pw('dave', 3005, 3005, '/home/dave'),
         'erin': Pw('erin', 900, 4000, '/home/erin'), 'frank': Pw('frank', 901, 901, '/home/frank'),
         'root': Pw('root', 0, 0, '/root'), 'oper': Pw('oper', 1000, 1000, '/home/oper')}
GROUPS = {'repls': Gr('repls', 4000, ['frank'])}


def getpwnam(name):
    return USERS[name]


def getgrnam(name):
    return GROUPS[name]


def policy(**kw):
    return hp.validate(dict({'mirrors': ['http://127.0.0.1:8370']}, **kw))


def test_defaults_are_filled_in_and_valid():
    p = policy()
    assert p['store'] == '/var/lib/pkgcache' and p['ecosystems'] == ['pip'] and p['login_lock_timeout'] == 2.0
    assert p['repl_group'] is None and p['repl_uids'] is None and p['repls'] == []


@pytest.mark.parametrize('raw, match', [
    ([], 'must be a JSON object'),
    ({'mirrors': [], 'sneaky': 1}, 'unknown keys sneaky'),
    ({'store': 'relative/store'}, 'store .* is not an absolute path'),
    ({'views_root': '/var/lib/a,b'}, "views_root .* holds ','"),
    ({'scratch_root': '/mnt/../etc'}, 'not normalised'),
    ({'allowed_signers': 'signers'}, 'allowed_signers'),
    ({'mirrors': ['file:///etc']}, 'mirrors must be a list of http'),
    ({'mirrors': 'http://a'}, 'mirrors must be a list'),
    ({'ecosystems': []}, 'ecosystems must be a non-empty list'),
    ({'ecosystems': ['pip', 'cargo']}, 'ecosystems must be'),
    ({'ecosystems': ['pip', 'pip']}, 'ecosystems must be'),
    ({'lazy': 'yes'}, 'lazy must be true or false'),
    ({'lock_timeout': 0}, 'lock_timeout must be an integer >= 1'),
    ({'gc_keep': -1}, 'gc_keep must be an integer >= 0'),
    ({'login_lock_timeout': 120}, 'login_lock_timeout must be a number of seconds from 0 to 30'),
    ({'login_lock_timeout': True}, 'login_lock_timeout'),
    ({'repl_group': 'a/b'}, 'repl_group'),
    ({'repl_uids': [2000]}, 'repl_uids must be'),
    ({'repl_uids': [3000, 2000]}, 'repl_uids must be'),
    ({'repl_uids': [0, 2000]}, r'repl_uids\[0\] must be an integer >= 1'),
    ({'repls': [{'name': 'a:b'}]}, 'repl name'),
    ({'repls': [{'name': 'a', 'shell': '/bin/sh'}]}, 'unknown keys shell'),
    ({'line': 'overlay /x overlay @OPTIONS@ 0 0'}, '@TARGET@ as its mount point'),
    ({'line': 'overlay @TARGET@ overlay defaults 0 0'}, '@OPTIONS@'),
    ({'line': 'overlay @TARGET@ overlay @OPTIONS@ 0 0\noverlay /etc overlay x 0 0'}, 'one fstab line'),
    ({'line': 'overlay @TARGET@ overlay @OPTIONS@,lowerdir=/etc 0 0'}, 'lowerdir must be'),
    ({'line': 'overlay @TARGET@ overlay @OPTIONS@,metacopy=on 0 0'}, "option 'metacopy=on' is not allowed"),
    ({'line': 'overlay @TARGET@ tmpfs @OPTIONS@ 0 0'}, 'must mount type overlay'),
])
def test_a_bad_policy_is_refused_naming_the_key(raw, match):
    with pytest.raises(hp.PolicyError, match=match):
        hp.validate(raw, '/etc/pkgcache/host.json')


def test_the_line_pattern_takes_each_mounts_values_and_passes_overlay_mounts_checks():
    p = policy(line='overlay @TARGET@ overlay @OPTIONS@,noatime,x-systemd.requires-mounts-for=/mnt/cacache 0 0')
    m = ov.plan_mounts([{'name': 'dave', 'uid': 3005, 'gid': 3005, 'home': '/home/dave'}], ['pip', 'npm'],
                       '/var/lib/pkgcache/trees/abc', '/mnt/scratch', '/var/lib/pkgcache-views')
    for mount in m:
        line = hp.render(p['line'], mount)
        assert ov.check_line(line, mount)[1] == '/var/lib/pkgcache-views/dave/' + mount['ecosystem']
        assert 'noatime' in line and 'upperdir=/mnt/scratch/dave/cacache_%s/upper' % mount['ecosystem'] in line


def write_policy(tmp_path, data, mode=0o600):
    d = tmp_path / 'pkgcache'
    d.mkdir(mode=0o755, exist_ok=True)
    path = d / 'host.json'
    path.write_text(json.dumps(data))
    os.chmod(str(path), mode)
    return str(path)


def test_read_policy_reads_roots_file(tmp_path):
    assert hp.read_policy(write_policy(tmp_path, {'ecosystems': ['pip', 'uv']}))['ecosystems'] == ['pip', 'uv']


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to make files of other owners')
def test_read_policy_refuses_a_file_another_user_could_have_written(tmp_path):
    path = write_policy(tmp_path, {})
    for mode in (0o620, 0o602):
        os.chmod(path, mode)
        with pytest.raises(hp.PolicyError, match='writable by root only'):
            hp.read_policy(path)
    os.chmod(path, 0o600)
    os.chown(path, 2001, 0)
    with pytest.raises(hp.PolicyError, match=r'owned by root .*uid 2001'):
        hp.read_policy(path)
    os.chown(path, 0, 0)
    os.chmod(os.path.dirname(path), 0o777)
    with pytest.raises(hp.PolicyError, match='the directory .* of the policy'):
        hp.read_policy(path)
    os.chmod(os.path.dirname(path), 0o755)
    assert hp.read_policy(path)


def test_read_policy_follows_no_symlink_and_refuses_junk(tmp_path):
    real = write_policy(tmp_path, {})
    link = os.path.join(os.path.dirname(real), 'link.json')
    os.symlink(real, link)
    with pytest.raises(hp.PolicyError, match='cannot read the policy'):
        hp.read_policy(link)
    with open(real, 'w') as f:
        f.write('{not json')
    with pytest.raises(hp.PolicyError, match='is not JSON'):
        hp.read_policy(real)
    with pytest.raises(hp.PolicyError, match='cannot read the policy'):
        hp.read_policy(str(tmp_path / 'pkgcache' / 'missing.json'))


@pytest.mark.parametrize('name', ['', '.', '..', 'a/b', '../alice', 'a,b', 'a:b', 'a b', 'a\nb', 'a#b', 'a\\b',
                                  'x' * 256, None])
def test_a_name_that_overlay_mounts_would_refuse_is_refused(name):
    with pytest.raises(hp.PolicyError):
        hp.repl_user(name, policy(repl_uids=[1, 60000]), getpwnam, getgrnam)


@pytest.mark.parametrize('kw, served, refused', [
    ({}, [], ['alice', 'dave', 'erin', 'frank', 'oper']),
    ({'repls': [{'name': 'alice'}]}, ['alice'], ['dave', 'erin', 'frank']),
    ({'repl_uids': [2000, 3999]}, ['alice', 'dave'], ['erin', 'frank', 'oper']),
    ({'repl_group': 'repls'}, ['erin', 'frank'], ['alice', 'dave', 'oper']),   # primary group, listed member
    ({'repl_group': 'nosuchgroup'}, [], ['alice', 'erin']),
])
def test_who_is_a_repl_user(kw, served, refused):
    p = policy(**kw)
    for name in served:
        assert hp.repl_user(name, p, getpwnam, getgrnam).pw_name == name
    for name in refused:
        with pytest.raises(hp.PolicyError, match='is not a repl user of this host'):
            hp.repl_user(name, p, getpwnam, getgrnam)


def test_root_and_unknown_users_are_never_served():
    p = policy(repls=[{'name': 'root'}], repl_uids=[1, 60000])
    with pytest.raises(hp.PolicyError, match='root is never a repl user'):
        hp.repl_user('root', p, getpwnam, getgrnam)
    with pytest.raises(hp.PolicyError, match='does not exist on this host'):
        hp.repl_user('ghost', p, getpwnam, getgrnam)
