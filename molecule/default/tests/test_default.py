"""The pip path end to end, checked from the repl users' side.

Every check that a repl user could make runs as that user (docker exec -u).
"""

import hashlib
import re

import pytest

from conftest import INDEX, REPL_HOSTS, USERS, as_root, as_user, docker_restart, mounted_at, view_of

PIP = 'pip'
NOT_IN_SNAPSHOT = 'iniconfig'


def cache_key_paths(url):
    """pip's HTTP cache paths of a URL: http/ (pip < 23.3, Debian 12's 23.0.1) and http-v2/ (Debian 13's pip)."""
    key = hashlib.sha224(url.encode()).hexdigest()
    return ['%s/%s/%s' % (layout, '/'.join(key[:5]), key) for layout in ('http', 'http-v2')]


def cached_at(host, base, rels):
    """The one of ``rels`` under ``base`` that exists on ``host``, or None."""
    found = [rel for rel in rels if host.file(base + rel).exists]
    return found[0] if found else None


def wheel_url(host, name):
    page = host.check_output('python3 -c "import urllib.request;print(urllib.request.urlopen(\'%s/simple/%s/\').read().decode())"'
                             % (INDEX, name))
    href = re.search(r'href="([^"#]+\.whl)', page).group(1)
    return INDEX + href if href.startswith('/') else href


def used_cache(out, name):
    """Did pip say it took ``name`` from its cache (an HTTP entry or a built wheel)?"""
    return re.search(r'Using cached (\S*/)?%s-' % re.escape(name), out) is not None


def fresh_venv(user_host, name):
    """A new venv owned by the user, in /tmp; returns its path."""
    path = '/tmp/venv-%s-%s' % (user_host.check_output('id -un'), name)
    user_host.check_output('rm -rf %s && python3 -m venv %s' % (path, path))
    return path


@pytest.mark.parametrize('container', REPL_HOSTS)
@pytest.mark.parametrize('user', USERS)
def test_overlay_is_mounted_and_every_snapshot_file_is_readable(container, user, manifest):
    h = as_user(user, container)
    assert mounted_at(h, '~/.cache/pip') == view_of(user, 'pip')
    files = [e['path'] for e in manifest['entries'] if e['type'] == 'file']
    assert len(files) > 10
    # Read every snapshot file through the user's own view, as the user.
    listed = h.check_output('cd ~/.cache && find -H pip -path pip/selfcheck -prune -o -type f -print0 | xargs -0 cat | wc -c')
    assert int(listed) >= sum(e['size'] for e in manifest['entries'] if e['type'] == 'file')
    for path in files:
        assert h.file('/home/%s/.cache/%s' % (user, path)).exists, path


@pytest.mark.parametrize('container', REPL_HOSTS)
def test_snapshot_metadata_records_versions_index_and_misses(container, manifest):
    meta = manifest['pip']
    assert meta['index_url'] == INDEX + '/simple/'
    assert re.match(r'^\d+\.\d+', meta['pip_version']) and meta['python_version'].startswith('3.')
    assert [m['package'] for m in meta['misses']] == ['no-such-package-pkgcache']
    names = {p['name'] for p in meta['packages']}
    assert {'requests', 'six', 'docopt', 'urllib3'} <= names
    # docopt is sdist-only: the snapshot carries the wheel pip built from it.
    assert any('/wheels/' in e['path'] and e['path'].endswith('.whl') and 'docopt' in e['path']
               for e in manifest['entries'])
    active = as_root(container).check_output('readlink /var/lib/pkgcache/current')
    assert active.endswith(manifest['id'])


@pytest.mark.parametrize('container', REPL_HOSTS)
def test_installing_snapshot_packages_downloads_nothing(container):
    h = as_user('carol', container)
    venv = fresh_venv(h, 'snap')
    out = h.check_output('%s/bin/pip install requests six docopt 2>&1' % venv)
    assert used_cache(out, 'requests') and used_cache(out, 'six') and used_cache(out, 'docopt'), out
    assert 'Downloading' not in out, out
    # docopt comes from the built-wheel cache: no sdist build on the user's side.
    assert 'Building wheel for docopt' not in out, out
    h.check_output('%s/bin/python -c "import requests, six, docopt"' % venv)


@pytest.mark.parametrize('container', REPL_HOSTS)
def test_new_package_lands_in_that_users_upper_only(container):
    alice, bob = as_user('alice', container), as_user('bob', container)
    root = as_root(container)
    rels = cache_key_paths(wheel_url(alice, NOT_IN_SNAPSHOT))
    # Start from a cache without it, so the test also holds on a re-run.
    alice.check_output('rm -f ' + ' '.join('/home/alice/.cache/pip/%s*' % rel for rel in rels))
    venv = fresh_venv(alice, 'new')
    out = alice.check_output('%s/bin/pip install %s 2>&1' % (venv, NOT_IN_SNAPSHOT))
    assert 'Downloading ' in out and NOT_IN_SNAPSHOT in out and not used_cache(out, NOT_IN_SNAPSHOT), out
    # pip really cached it (it skips cache writes silently on permission errors) ...
    rel = cached_at(alice, '/home/alice/.cache/pip/', rels)
    assert rel
    # ... into alice's upper, owned by alice ...
    upper = root.file('/mnt/scratch/alice/cacache_pip/upper/' + rel)
    assert upper.exists and upper.user == 'alice'
    # ... which she cannot reach but through her view.
    assert alice.run('ls /mnt/scratch/alice/cacache_pip/upper').rc != 0
    # ... and a second install is served from her cache.
    venv2 = fresh_venv(alice, 'new2')
    out = alice.check_output('%s/bin/pip install %s 2>&1' % (venv2, NOT_IN_SNAPSHOT))
    assert used_cache(out, NOT_IN_SNAPSHOT) and 'Downloading' not in out, out
    # Nobody else sees it: not bob's view, not the shared snapshot.
    assert not bob.file('/home/bob/.cache/pip/' + rel).exists
    assert not root.file('/mnt/cacache/pip/' + rel).exists
    assert not root.file('/mnt/scratch/bob/cacache_pip/upper/' + rel).exists


@pytest.mark.parametrize('container', REPL_HOSTS)
def test_user_cannot_reach_another_users_cache(container):
    bob = as_user('bob', container)
    for path in ['/mnt/scratch/alice', '/mnt/scratch/alice/cacache_pip/upper', '/home/alice/.cache/pip',
                 '/var/lib/pkgcache-views/alice/pip']:
        res = bob.run('ls %s' % path)
        assert res.rc != 0 and 'Permission denied' in res.stderr, (path, res.stdout)


@pytest.mark.parametrize('container', REPL_HOSTS)
def test_user_cannot_even_look_up_another_users_view(container):
    """An O_PATH fd on alice's mount point would keep it busy (and alice on an old snapshot) for as long as bob likes."""
    bob = as_user('bob', container)
    res = bob.run("python3 -c \"import os; os.open('/var/lib/pkgcache-views/alice/pip', os.O_PATH)\"")
    assert res.rc != 0 and 'PermissionError' in res.stderr, res.stderr
    assert as_user('alice', container).run("python3 -c \"import os; os.open('/var/lib/pkgcache-views/alice/pip', os.O_PATH)\"").rc == 0


@pytest.mark.parametrize('container', REPL_HOSTS)
def test_user_cannot_plant_files_for_another_user(container):
    alice = as_user('alice', container)
    for path in ['/mnt/scratch/bob/x', '/mnt/scratch/bob/cacache_pip/upper/x', '/home/bob/.cache/pip/x',
                 '/var/lib/pkgcache-views/bob/pip/x', '/var/lib/pkgcache-views/x', '/var/lib/pkgcache-views/alice/x',
                 '/mnt/scratch/alice/x', '/mnt/scratch/alice/cacache_pip/x',
                 '/var/lib/pkgcache/objects/x', '/var/lib/pkgcache/trees/x', '/mnt/cacache/pip/x',
                 '/etc/pkgcache/allowed_signers']:
        res = alice.run('touch %s' % path)
        assert res.rc != 0, path
    opts = set(alice.check_output('findmnt -n -o OPTIONS --target ~/.cache/pip').split(','))
    assert {'nosuid', 'nodev'} <= opts
    root = as_root(container)
    for path, mode, user in (('/mnt/scratch/alice', 0o700, 'root'), ('/mnt/scratch/alice/cacache_pip', 0o700, 'root'),
                             ('/mnt/scratch/alice/cacache_pip/work', 0o700, 'root'),
                             ('/mnt/scratch/alice/cacache_pip/upper', 0o700, 'alice'),
                             ('/var/lib/pkgcache-views', 0o711, 'root'), ('/var/lib/pkgcache-views/alice', 0o710, 'root')):
        assert (root.file(path).mode, root.file(path).user) == (mode, user), path
    link = alice.file('/home/alice/.cache/pip')
    assert link.is_symlink and link.linked_to == '/var/lib/pkgcache-views/alice/pip' and link.user == 'alice'


@pytest.mark.parametrize('container', REPL_HOSTS)
def test_user_cannot_learn_what_another_installed(container):
    bob = as_user('bob', container)
    venv = fresh_venv(bob, 'secret')
    bob.check_output('%s/bin/pip install %s' % (venv, NOT_IN_SNAPSHOT))
    assert as_root(container).run('grep -rl %s /mnt/scratch/bob' % NOT_IN_SNAPSHOT).stdout.strip() != ''
    alice = as_user('alice', container)
    # Nothing this collection writes that alice can read names bob's package.
    res = alice.run('grep -rl %s /etc/fstab /etc/pkgcache /mnt/cacache /var/lib/pkgcache /mnt/scratch/bob '
                    '/mnt/scratch/carol /home/bob 2>/dev/null' % NOT_IN_SNAPSHOT)
    assert res.stdout.strip() == ''
    assert alice.run('ls /mnt/scratch/bob').rc != 0 and alice.run('ls /var/lib/pkgcache').rc != 0


@pytest.mark.parametrize('container', REPL_HOSTS)
def test_writes_to_the_snapshot_fail(container):
    for h in (as_user('alice', container), as_root(container)):
        res = h.run('touch /mnt/cacache/pip/evil')
        assert res.rc != 0 and 'Read-only file system' in res.stderr, res.stderr
        res = h.run('rm -f /mnt/cacache/pip/wheels -r')
        assert res.rc != 0
    bob = as_user('bob', container)
    assert bob.run('ls /var/lib/pkgcache').rc != 0
    opts = as_root(container).check_output('findmnt -n -o OPTIONS /mnt/cacache')
    assert {'ro', 'nosuid', 'nodev'} <= set(opts.split(','))


@pytest.mark.parametrize('container', REPL_HOSTS)
def test_operator_fstab_lines_are_kept_verbatim(container):
    root = as_root(container)
    before = root.check_output('cat /root/fstab.before-pkgcache')
    after = root.check_output('cat /etc/fstab')
    assert after.startswith(before)
    assert 'this line is not a valid fstab entry' in after
    assert after.count('# BEGIN pkgcache.overlay mounts') == 1


def test_overlays_come_back_after_a_reboot():
    container = REPL_HOSTS[0]
    alice = as_user('alice', container)
    rels = cache_key_paths(wheel_url(alice, NOT_IN_SNAPSHOT))
    venv = fresh_venv(alice, 'reboot')
    alice.check_output('%s/bin/pip install %s' % (venv, NOT_IN_SNAPSHOT))
    rel = cached_at(alice, '/home/alice/.cache/pip/', rels)
    assert rel
    docker_restart(container)
    for user in USERS:
        h = as_user(user, container)
        assert mounted_at(h, '~/.cache/pip') == view_of(user, 'pip'), user
    assert as_user('alice', container).file('/home/alice/.cache/pip/' + rel).exists
    assert as_root(container).check_output('findmnt -n -o FSTYPE /mnt/cacache') != ''
