"""`site.yml --check --diff` on the live fleet changes nothing (molecule's 'check' step ran it on the new fleet)."""

from conftest import BUILDER, REPL_HOSTS, as_root, playbook

LISTING = "find %s -xdev \\( -name .lock -prune \\) -o -printf '%%p %%y %%s %%m %%u\\n' 2>/dev/null | sort | sha256sum"


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
