"""`site.yml --check --diff` on the live fleet changes nothing (molecule's 'check' step ran it on the new fleet)."""

from conftest import BUILDER, REPL_HOSTS, as_root, playbook

LISTING = ("find %s -xdev \\( -name .lock -o -name '#lock' \\) -prune -o -printf '%%p %%y %%s %%m %%u\\n' 2>/dev/null "
           "| sort | sha256sum")


def everything(container):
    """fstab, mountinfo (targets, types, sources, options), every file of the store, scratch and views dirs."""
    r = as_root(container)
    return {
        'fstab': r.check_output('cat /etc/fstab'),
        'mounts': r.check_output('findmnt -rn -o TARGET,FSTYPE,SOURCE,OPTIONS | sort'),
        'trees': r.check_output(LISTING % '/var/lib/pkgcache /mnt/scratch /var/lib/pkgcache-views /srv/pkgcache /etc/pkgcache'),
    }


def test_check_and_diff_on_the_live_fleet_change_nothing():
    hosts = [BUILDER] + REPL_HOSTS
    before = dict((h, everything(h)) for h in hosts)
    rc, res = playbook('site.yml', args=['--check', '--diff'])
    assert rc == 0
    assert dict((h, everything(h)) for h in hosts) == before
    build = res['Build the snapshot'][BUILDER]
    assert build['not_rebuilt'] and not build['changed']  # nothing asked of the index
    for h in REPL_HOSTS:
        sync = res['Sync and activate the snapshot'][h]
        assert not sync['changed'] and sync['missing_objects'] == 0
        assert not res['Mount the overlays of all repl users'][h]['changed']


def test_check_and_diff_show_a_moved_home_as_the_link_move():
    """carol's home changes in the inventory: the view and its fstab line stay, her cache link moves. Check mode
    names the move and --diff shows the old link going and the new one coming; nothing changes on the host."""
    host = REPL_HOSTS[0]
    r = as_root(host)
    r.check_output('install -d -o carol -g carol -m 0700 /srv/alt-carol')
    try:
        before = everything(host)
        repls = [{'name': 'alice'}, {'name': 'bob'}, {'name': 'carol', 'home': '/srv/alt-carol'}]
        rc, res = playbook('mount.yml', {'mount_repls': repls}, args=['--check', '--diff', '--limit', host])
        assert rc == 0 and everything(host) == before
        assert r.check_output('ls -A /srv/alt-carol') == ''
        mount = res['Mount the overlays of all repl users'][host]
        assert mount['changed'] and set(mount['users']['carol'].values()) == {'link-moved'}, mount['users']
        assert sorted(mount['links']) == ['carol']  # nobody else's link changes
        pip = mount['links']['carol']['pip']
        view = '/var/lib/pkgcache-views/carol/pip'
        assert (pip['action'], pip['from'], pip['path'], pip['target']) == (
            'move', '/home/carol/.cache/pip', '/srv/alt-carol/.cache/pip', view)
        assert pip['old_link'] == 'remove: the link to her view is still there'
        diffs = mount['diff'] if isinstance(mount['diff'], list) else [mount['diff']]
        assert len(diffs) == 1  # fstab does not change
        before_lines, after_lines = diffs[0]['before'].splitlines(), diffs[0]['after'].splitlines()
        old_line, new_line = 'carol/pip link /home/carol/.cache/pip -> %s' % view, 'carol/pip link /srv/alt-carol/.cache/pip -> %s' % view
        assert old_line in before_lines and old_line not in after_lines
        assert new_line in after_lines and new_line not in before_lines
    finally:
        r.check_output('rm -rf /srv/alt-carol')
