import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as s

from ansible_collections.pkgcache.overlay.plugins.module_utils import _fstab as fs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov

REPLS = [{'name': 'alice', 'uid': 2001, 'gid': 2001, 'home': '/home/alice'}, {'name': 'bob', 'uid': 2002, 'gid': 2002, 'home': '/srv/bob'}]
LOWER = '/var/lib/pkgcache/trees/' + 'a' * 64


# Debian's useradd takes these (directory-service setups use dots and capitals; Samba machine accounts end in '$').
@pytest.mark.parametrize('name', ['alice', '_svc', 'a-b_1', 'x' * 32, 'john.doe', 'J.Smith', 'host$', 'x' * 40, '-x', 'a..b'])
def test_valid_names(name):
    assert ov.validate_name(name) == name


@pytest.mark.parametrize('name, why', [
    ('', 'directory name'), ('..', 'directory name'), ('.', 'directory name'), (None, 'directory name'), (7, 'directory name'),
    ('a/b', "'/'"), ('a,b', "','"), ('a:b', "':'"), ('a b', "' '"), ('a\nb', repr('\n')), ('a\\b', repr('\\')),
    ('a#b', "'#'"), ('a\tb', repr('\t'))])
def test_invalid_names(name, why):
    with pytest.raises(ov.OverlayInputError, match='repl name') as exc:
        ov.validate_name(name)
    assert why in str(exc.value)


@pytest.mark.parametrize('path', ['relative', '/a,b', '/a:b', '/a b', '/a\tb', '/a\nb', '/a\\b', '/a#b', '/a/../b', '/a//b', '/a/./b', '/a/'])
def test_invalid_paths(path):
    with pytest.raises(ov.OverlayInputError, match='scratch_root'):
        ov.validate_path(path, 'scratch_root')


def test_plan_mounts():
    mounts = ov.plan_mounts(REPLS, ['pip'], LOWER, '/mnt/scratch')
    assert [m['link'] for m in mounts] == ['/home/alice/.cache/pip', '/srv/bob/.cache/pip']
    assert [m['target'] for m in mounts] == ['/var/lib/pkgcache-views/alice/pip', '/var/lib/pkgcache-views/bob/pip']
    a = mounts[0]
    assert a['lowerdir'] == LOWER + '/pip'
    assert a['upperdir'] == '/mnt/scratch/alice/cacache_pip/upper'
    assert a['workdir'] == '/mnt/scratch/alice/cacache_pip/work'
    assert a['options'] == ('lowerdir=%s/pip,upperdir=/mnt/scratch/alice/cacache_pip/upper,'
                            'workdir=/mnt/scratch/alice/cacache_pip/work,index=off,xino=off,metacopy=off,nosuid,nodev' % LOWER)
    assert ov.default_line(a) == 'overlay /var/lib/pkgcache-views/alice/pip overlay %s 0 0' % a['options']


@pytest.mark.parametrize('repls, ecosystems, message', [
    ([{'name': 'alice', 'uid': 0, 'gid': 1}], ['pip'], 'uid 0'),
    ([{'name': 'alice', 'uid': 1, 'gid': 1}] * 2, ['pip'], 'appears twice'),
    ([{'name': 'alice', 'uid': 1, 'gid': 1, 'home': '/h,x'}], ['pip'], 'home'),
    ([{'name': 'alice', 'uid': 1, 'gid': 1, 'scratch': '/s:x'}], ['pip'], 'scratch'),
    ([{'name': 'a', 'uid': 1, 'gid': 1, 'home': '/h'}, {'name': 'b', 'uid': 2, 'gid': 2, 'home': '/h'}], ['pip'], 'home of repl b .* inside home of repl a'),
    ([{'name': 'a', 'uid': 1, 'gid': 1, 'scratch': '/s'}, {'name': 'b', 'uid': 2, 'gid': 2, 'scratch': '/s/b'}], ['pip'],
     'scratch of repl b .* inside scratch of repl a'),
    ([{'name': 'a', 'uid': 1, 'gid': 1}, {'name': 'b', 'uid': 2, 'gid': 2, 'home': '/home/a/b'}], ['pip'], 'home of repl b .* inside home of repl a'),
    ([{'name': 'a', 'uid': 1, 'gid': 1, 'scratch': '/home/a/s'}], ['pip'], 'scratch of repl a .* inside home of repl a'),
    ([{'name': 'a', 'uid': 1, 'gid': 1, 'home': '/mnt/scratch'}], ['pip'], 'inside home of repl a'),
    ([{'name': 'a', 'uid': 1, 'gid': 1, 'home': '/'}], ['pip'], 'cannot be /'),
    ([{'name': 'a', 'uid': 1, 'gid': 1, 'home': '/var/lib/pkgcache-views/b'}], ['pip'], 'home of repl a .* inside views_root'),
    ([{'name': 'a', 'uid': 1, 'gid': 1, 'scratch': LOWER + '/s'}], ['pip'], 'inside lower_root'),
    (REPLS, ['cargo'], 'not supported'),
    (REPLS, [], 'empty'),
])
def test_plan_refuses(repls, ecosystems, message):
    with pytest.raises(ov.OverlayInputError, match=message):
        ov.plan_mounts(repls, ecosystems, LOWER, '/mnt/scratch')


def test_check_line_allows_extra_options_only():
    m = ov.plan_mounts(REPLS, ['pip'], LOWER, '/mnt/scratch')[0]
    line = ov.default_line(m)
    ov.check_line(line.replace(' 0 0', ',x-systemd.requires-mounts-for=/mnt/scratch,noatime,nofail 0 0'), m)
    for bad, why in ((line.replace('upperdir=/mnt/scratch/alice', 'upperdir=/mnt/scratch/bob'), 'upperdir must be'),
                     (line.replace('views/alice/', 'views/bob/'), 'must mount type overlay at'),
                     (line.replace(' overlay lowerdir', ' tmpfs lowerdir'), 'must mount type overlay at'),
                     (line.replace(',nosuid', ''), 'drops nosuid'),
                     (line.replace(',nodev', ''), 'drops nodev'),
                     (line.replace('metacopy=off', 'metacopy=on'), 'drops metacopy=off'),
                     (line.replace(' 0 0', ',lowerdir+=/root 0 0'), "option 'lowerdir\\+=/root' is not allowed"),
                     (line.replace(' 0 0', ',suid 0 0'), "option 'suid' is not allowed"),
                     (line.replace(' 0 0', ',user 0 0'), "option 'user' is not allowed"),
                     (line.replace(' 0 0', ',defaults 0 0'), "option 'defaults' is not allowed"),
                     (line.replace(' 0 0', ',upperdir=/root 0 0'), 'upperdir must be .* given once'),
                     ('# just a comment', 'not an fstab entry')):
        with pytest.raises(ov.OverlayInputError, match=why):
            ov.check_line(bad, m)


class Pw(object):
    def __init__(self, uid, gid, home):
        self.pw_uid, self.pw_gid, self.pw_dir = uid, gid, home


def getpwnam(name):
    return {'alice': Pw(2001, 2001, '/home/alice'), 'carol': Pw(2003, 2003, '/srv/carol')}[name]


def test_users_are_resolved_from_passwd_and_an_unknown_one_is_named():
    given = [{'name': 'alice'}, {'name': 'carol', 'home': '/srv/c2'}, {'name': 'dave'},
             {'name': 'erin', 'uid': 2005, 'gid': 2005, 'home': '/home/erin'}, {'name': 'frank', 'uid': 2006, 'gid': 2006}]
    repls, unresolved = ov.resolve_repls(given, getpwnam)
    assert repls[0] == {'name': 'alice', 'uid': 2001, 'gid': 2001, 'home': '/home/alice'}
    assert repls[1] == {'name': 'carol', 'uid': 2003, 'gid': 2003, 'home': '/srv/c2'}  # what is given wins
    assert repls[3]['home'] == '/home/erin'  # unknown to the host, but complete
    assert sorted(unresolved) == ['dave', 'frank']
    assert unresolved['dave'] == ('repl user dave does not exist on this host (no passwd entry), and uid, gid, home '
                                  'not given')
    assert 'frank' in unresolved['frank'] and 'home not given' in unresolved['frank']
    # The unresolved are still planned (their place in the fstab lines), without uid, gid, home or link.
    mounts = ov.plan_mounts(repls, ['pip'], LOWER, '/mnt/scratch', unresolved=unresolved)
    dave = [m for m in mounts if m['user'] == 'dave'][0]
    assert dave['uid'] is None and dave['link'] is None and dave['target'] == '/var/lib/pkgcache-views/dave/pip'
    with pytest.raises(ov.OverlayInputError, match='repl dave: uid None'):
        ov.plan_mounts(repls, ['pip'], LOWER, '/mnt/scratch')
    # A home in passwd that overlay or fstab would misread (or none) leaves that user unserved, not everyone.
    odd = {'bob': Pw(2002, 2002, '/home/Bob Smith'), 'gil': Pw(2007, 2007, ''), 'alice': getpwnam('alice')}
    repls, unresolved = ov.resolve_repls([{'name': n} for n in ('alice', 'bob', 'gil')], odd.__getitem__)
    assert sorted(unresolved) == ['bob', 'gil'] and "holds ' '" in unresolved['bob'] and 'absolute' in unresolved['gil']
    assert [m['user'] for m in ov.plan_mounts(repls, ['pip'], LOWER, '/mnt/scratch', unresolved=unresolved)
            if m['link']] == ['alice']
    # A uid that is not the one the host knows the user by would hand her view to another account: she is not served.
    repls, unresolved = ov.resolve_repls([{'name': 'alice', 'uid': 2003, 'gid': 2001, 'home': '/home/alice'},
                                          {'name': 'carol', 'uid': 2003}], getpwnam)
    assert sorted(unresolved) == ['alice'] and 'uid 2003 is given, but this host knows alice as uid 2001' in unresolved['alice']
    assert repls[1] == {'name': 'carol', 'uid': 2003, 'gid': 2003, 'home': '/srv/carol'}
    assert [m['user'] for m in ov.plan_mounts(repls, ['pip'], LOWER, '/mnt/scratch', unresolved=unresolved)
            if m['user'] not in unresolved] == ['carol']
    # A name that cannot be one is refused before the passwd database is asked (getpwnam raises on a NUL).
    for bad in ('a\x00b', None, '..'):
        with pytest.raises(ov.OverlayInputError, match='repl name'):
            ov.resolve_repls([{'name': bad}], getpwnam)


SAFE = string.ascii_letters + string.digits + '._-'


@settings(max_examples=400, deadline=None)
@given(s.text(alphabet=SAFE + ',:#\\ \t\n/', min_size=1, max_size=30))
def test_property_accepted_paths_roundtrip_through_fstab(component):
    """Whatever a path validator accepts round-trips through an fstab line byte for byte; the rest is refused."""
    path = '/mnt/scratch/' + component
    try:
        ov.validate_path(path, 'scratch')
    except ov.OverlayInputError:
        assert any(c in component for c in ',:#\\ \t\n') or any(p in ('', '.', '..') for p in component.split('/'))
        return
    repl = {'name': 'alice', 'uid': 1, 'gid': 1, 'scratch': path + '/s', 'home': path + '/home'}
    m = ov.plan_mounts([repl], ['pip'], LOWER, '/mnt/scratch')[0]
    line = ov.default_line(m)
    text = fs.replace_block('', 'mounts', [line])
    fields = fs.block_entries(text, 'mounts')[0]
    assert fields[1] == m['target']
    assert ov.split_options(fields[3])['upperdir'] == m['upperdir']
    ov.check_line(line, m)
