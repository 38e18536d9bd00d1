from ansible_collections.pkgcache.overlay.plugins.module_utils import _mountinfo as mi
from ansible_collections.pkgcache.overlay.plugins.module_utils import _overlay as ov

LOWER = '/var/lib/pkgcache/trees/' + 'a' * 64
REPLS = [{'name': 'alice', 'uid': 2001, 'gid': 2001, 'home': '/home/alice'},
         {'name': 'bob', 'uid': 2002, 'gid': 2002, 'home': '/srv/bob'}]
MOUNTINFO = (
    '22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/x,upperdir=/y,workdir=/z\n'
    '30 22 0:40 / /mnt/scratch rw - ext4 /dev/vda rw\n'
    '31 22 0:21 /var/lib/pkgcache/trees/abc /mnt/cacache ro,nosuid,nodev - overlay overlay rw\n'
    '32 22 0:50 / /var/lib/pkgcache-views/alice/pip rw,nosuid,nodev - overlay overlay '
    'rw,lowerdir=%s/pip,upperdir=/mnt/scratch/alice/cacache_pip/upper,workdir=/mnt/scratch/alice/cacache_pip/work\n'
    '33 22 0:51 / /home/with\\040space rw - tmpfs tmpfs rw\n'
    '34 22 0:52 / /home/alice/.cache/pip rw - overlay overlay '
    'rw,lowerdir=/old,upperdir=/mnt/scratch/alice/cacache_pip/upper,workdir=/elsewhere\n'
    '35 30 0:53 / /mnt/scratch rw - tmpfs tmpfs rw\n' % LOWER)


def test_parse_mountinfo_and_states():
    info = mi.parse_mountinfo(MOUNTINFO)
    assert mi.mounted_at(info, '/home/with space')['fstype'] == 'tmpfs'
    assert mi.mounted_at(info, '/mnt/cacache')['root'] == '/var/lib/pkgcache/trees/abc'
    assert mi.mounted_at(info, '/nowhere') is None
    # The topmost of two mounts at one point, and the longest mount point prefix.
    assert mi.mounted_at(info, '/mnt/scratch')['mount_id'] == '35'
    assert mi.mount_of(info, '/mnt/scratch/alice/x')['mount_id'] == '35'
    assert mi.mount_of(info, '/var/tmp/x')['fstype'] == 'overlay'
    assert mi.mount_of(info, 'relative') is None
    alice, bob = ov.plan_mounts(REPLS, ['pip'], LOWER, '/mnt/scratch')
    assert mi.overlay_state(info, alice) == 'mounted'
    assert mi.overlay_state(info, bob) == 'absent'
    newer = ov.plan_mounts(REPLS, ['pip'], '/var/lib/pkgcache/trees/' + 'b' * 64, '/mnt/scratch')[0]
    assert mi.overlay_state(info, newer) == 'stale'
    # Overlays that use alice's upper or work, in mountinfo's order; a plain list answers the same.
    found = [m['mount_id'] for m in mi.using_layers(info, alice['upperdir'], alice['workdir'])]
    assert found == ['32', '34']
    assert [m['mount_id'] for m in mi.using_layers(list(info), alice['upperdir'], alice['workdir'])] == found
    assert mi.mount_of(list(info), '/mnt/scratch/x')['mount_id'] == '35'


def test_the_live_mount_table_has_the_root():
    assert mi.mounted_at(mi.current(), '/') is not None
