"""Push mode: pack on the builder, carry archives, receive on the host, verify as a pull does."""

import io
import os
import shutil
import tarfile

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _push
from ansible_collections.pkgcache.overlay.plugins.module_utils import _hoststate as hs
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils import _sync

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd

from helpers import HOST_CLOCK, disk, run_module
from test_builder import FakePip, params
from test_publish import build, key, run, store  # noqa: F401 pylint: disable=unused-import


def build_two(tmp_path, six, now, key):
    """A snapshot of six (at ``six``) and idna 3.0: a new six leaves idna's objects as they were."""
    pip = FakePip({'six': (six, 'six ' + six), 'idna': ('3.0', 'idna 3.0')})

    def tools(argv, env=None, data=None):
        return run(argv, env, data) if argv[0] == 'ssh-keygen' else pip(argv, env)
    return bd.build(dict(params(tmp_path, ['six', 'idna']), signing_key=key), tools, now=now)


def push(builder_store, host, staging, carried, snapshot='latest', allowed=None, part_size=1 << 30, sync=True):
    """One push as the distribute role runs it; ``carried`` (a dir) stands for the controller. Returns
    (the sync's result or None, the receive of the wants, bytes of archives carried to the host)."""
    plan = _push.plan_pack(builder_store, snapshot, [], part_size)
    _push.pack(builder_store, carried, plan)
    os.makedirs(os.path.join(staging, _push.INCOMING), exist_ok=True)
    sent = _carry(carried, plan['head']['name'], os.path.join(staging, _push.HEAD))
    want = _push.receive(staging, host)
    plan = _push.plan_pack(builder_store, snapshot, [want['wanted']], part_size)
    _push.pack(builder_store, carried, plan)
    for part in plan['sets'][want['wanted_key']]:
        sent += _carry(carried, part['name'], os.path.join(staging, _push.INCOMING, part['name']))
    got = _push.receive(staging, host, check_staged=False)
    assert got['wanted'] == []
    if not sync:
        return None, want, sent
    result = _sync.sync({'source': staging, 'mirrors': [_push.source_url(staging)], 'snapshot': snapshot, 'store': host,
                         'workers': 2, 'max_manifest_size': 1 << 20, 'allowed_signers': allowed, 'now_epoch': HOST_CLOCK},
                        _push.source_opener(staging), run=run)
    _push.clear_staged(staging)
    return result, want, sent


def _carry(carried, name, dest):
    """Ansible's copy: nothing moves when the destination already has the same bytes."""
    src = os.path.join(carried, name)
    if os.path.exists(dest) and open(dest, 'rb').read() == open(src, 'rb').read():
        return 0
    shutil.copyfile(src, dest + '.tmp')
    os.rename(dest + '.tmp', dest)
    return os.path.getsize(dest)


@pytest.fixture
def places(tmp_path):
    host, staging, carried = (str(tmp_path / n) for n in ('host', 'staging', 'carried'))
    os.makedirs(host)
    return host, staging, carried


def test_a_push_activates_the_signed_snapshot_then_a_second_moves_nothing(tmp_path, key, places):
    host, staging, carried = places
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    result, want, sent = push(store(tmp_path), host, staging, carried, allowed=key[1])
    assert result['id'] == v1['id'] and hs.active_id(host) == v1['id'] and result['revision'] == 1
    assert result['fetched_objects'] == want['missing_objects'] == len(want['wanted']) > 0
    assert sent > 0 and not os.path.exists(os.path.join(staging, 'objects'))
    again, want, sent = push(store(tmp_path), host, staging, carried, allowed=key[1])
    assert (sent, want['wanted'], again['fetched_objects'], again['changed']) == (0, [], 0, False)


def test_a_refresh_carries_only_the_objects_the_host_lacks(tmp_path, key, places):
    host, staging, carried = places
    build_two(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    push(store(tmp_path), host, staging, carried, allowed=key[1])
    had = set(o[0] for o in st.iter_objects(host))
    v2 = build_two(tmp_path, '2.0', '2026-01-08T00:00:00+00:00', key[0])
    result, want, sent = push(store(tmp_path), host, staging, carried, allowed=key[1])
    assert result['id'] == v2['id'] and result['revision'] == 2
    new = set(o[0] for o in st.iter_objects(host)) - had
    assert set(want['wanted']) == new and result['reused_objects'] > 0
    packed = [n for n in os.listdir(carried) if n.startswith('objects-%s' % v2['id'][:12])]
    members = set()
    for name in packed:
        with tarfile.open(os.path.join(carried, name)) as tar:
            members |= set(m.name.replace('/', '')[len('objects'):] for m in tar)
    assert members == new  # exactly what the host lacked
    assert not [n for n in os.listdir(carried) if v2['id'][:12] not in n]  # v1's archives were pruned


def test_a_corrupt_object_is_refused_and_the_active_snapshot_stays(tmp_path, key, places):
    host, staging, carried = places
    v1 = build_two(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    push(store(tmp_path), host, staging, carried, allowed=key[1])
    had = set(o[0] for o in st.iter_objects(host))
    build_two(tmp_path, '2.0', '2026-01-08T00:00:00+00:00', key[0])
    new = [(d, p, s) for d, p, s in st.iter_objects(store(tmp_path)) if d not in had]
    for digest, path, s in new:
        os.chmod(path, 0o644)
        os.rename(path, path + '.good')
        open(path, 'wb').write(b'evil' + b'!' * (s.st_size - 4))
    # The builder's store went bad: refused before anything reaches a host.
    with pytest.raises(_push.PushError, match='object %s in the store .* does not match its sha256' % new[0][0]):
        push(store(tmp_path), host, staging, carried, allowed=key[1])
    assert not [n for n in os.listdir(carried) if n.startswith('objects-')]
    # An archive altered on the way (the controller's copy): the host refuses it as a pull would.
    for digest, path, s in new:
        os.rename(path + '.good', path)
    push(store(tmp_path), host, staging, carried, allowed=key[1], sync=False)
    shutil.rmtree(os.path.join(staging, 'objects'))
    [archive] = [n for n in os.listdir(carried) if n.startswith('objects-')]
    with tarfile.open(os.path.join(carried, archive)) as tar:
        sizes = [(m.name, m.size) for m in tar]
    with tarfile.open(os.path.join(staging, _push.INCOMING, archive), 'w:gz') as tar:
        for name, size in sizes:  # the same names and sizes, other bytes
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b'e' * size))
    with pytest.raises(_push.PushError, match='does not match its sha256'):
        _push.receive(staging, host, check_staged=False)
    assert not os.listdir(os.path.join(staging, _push.INCOMING))  # refused and removed: a rerun sends it again
    # Had it been staged anyway, the sync verifies as a pull does.
    for digest, _path, s in new:
        target = os.path.join(staging, st.object_rel(digest))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, 'wb').write(b'e' * s.st_size)
    with pytest.raises(st.StoreError, match='does not match its hash'):
        _sync.sync({'mirrors': [_push.source_url(staging)], 'snapshot': 'latest', 'store': host, 'workers': 2,
                    'max_manifest_size': 1 << 20, 'allowed_signers': key[1], 'now_epoch': HOST_CLOCK},
                   _push.source_opener(staging), run=run)
    assert hs.active_id(host) == v1['id']


def test_a_forged_manifest_in_the_head_is_refused_by_its_signature(tmp_path, key, places):
    host, staging, carried = places
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    sig = os.path.join(store(tmp_path), 'snapshots', v1['id'] + '.json.sig')
    os.chmod(sig, 0o644)
    open(sig, 'w').write('-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n')
    with pytest.raises(_sync.SyncError, match='signature'):
        push(store(tmp_path), host, staging, carried, allowed=key[1])
    assert hs.active_id(host) is None


def test_an_interrupted_push_resumes_without_sending_what_arrived(tmp_path, key, places):
    host, staging, carried = places
    build_two(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    # Parts of one object each; the run stops after the objects arrived and were unpacked, before the sync.
    first, sent = push(store(tmp_path), host, staging, carried, part_size=1, sync=False)[1:]
    assert len(first['wanted']) > 1 and sent > 0
    # One staged object was damaged meanwhile: it alone is wanted again.
    damaged = first['wanted'][0]
    open(os.path.join(staging, st.object_rel(damaged)), 'ab').write(b'x')
    want = _push.receive(staging, host)
    assert want['wanted'] == [damaged]
    result, _want, sent_again = push(store(tmp_path), host, staging, carried, allowed=key[1], part_size=1)
    assert result['fetched_objects'] == len(first['wanted'])
    assert 0 < sent_again < sent


def test_pack_refuses_what_is_not_an_object_of_the_snapshot(tmp_path, places):
    build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')
    with pytest.raises(_push.PushError, match="object '%s' is not a file of snapshot" % ('ab' * 32)):
        _push.plan_pack(store(tmp_path), 'latest', [['ab' * 32]], 1 << 20)
    with pytest.raises(_push.PushError, match='cannot resolve snapshot'):
        _push.plan_pack(str(tmp_path / 'nowhere'), 'latest', [], 1 << 20)


def _archive(staging, members, name=None):
    """An object archive in staging/incoming with ``members`` [(TarInfo, bytes)]."""
    path = os.path.join(staging, _push.INCOMING, name or 'objects-%s-%s-1of1.tar.gz' % ('a' * 12, 'b' * 16))
    with tarfile.open(path, 'w:gz') as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() and not info.size else info.size
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


@pytest.mark.parametrize('what', ['escape', 'symlink', 'not in the snapshot', 'wrong size', 'newline', 'twice'])
def test_receive_refuses_an_archive_with_anything_but_the_objects_the_host_lacks(tmp_path, places, what):
    host, staging, carried = places
    build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')
    want = push(store(tmp_path), host, staging, carried, sync=False)[1]
    shutil.rmtree(os.path.join(staging, 'objects'))
    digest = want['wanted'][0]
    size = os.path.getsize(st.object_path(store(tmp_path), digest))
    good = open(st.object_path(store(tmp_path), digest), 'rb').read()
    info = tarfile.TarInfo(st.object_rel(digest))
    members = {
        'escape': [(tarfile.TarInfo('../../etc/passwd'), b'x')],
        'symlink': [(info, b'')],
        'not in the snapshot': [(tarfile.TarInfo('objects/ab/' + 'c' * 62), b'x' * size)],
        'wrong size': [(info, good + b'more')],
        'newline': [(tarfile.TarInfo(st.object_rel(digest) + '\n'), good)],
        'twice': [(info, good), (tarfile.TarInfo(st.object_rel(digest)), good)],
    }[what]
    if what == 'symlink':
        info.type, info.linkname = tarfile.SYMTYPE, '/etc/shadow'
    path = _archive(staging, members)
    with pytest.raises(_push.PushError, match='is not a file of a store|not an object this host lacks'):
        _push.receive(staging, host)
    assert not os.path.exists(path)  # removed: a rerun sends a good one
    assert not os.path.exists(os.path.join(staging, st.object_rel(digest))) or what == 'twice'
    assert not os.path.exists('/etc/passwd.pkgcache-test')


def test_receive_reads_the_head_within_a_pulls_limits_and_checks_its_signature(tmp_path, key, places):
    host, staging, carried = places
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    push(store(tmp_path), host, staging, carried, sync=False)
    head = os.path.join(staging, _push.HEAD)
    # The signature is checked for the principal asked for: the key is trusted as pkgcache only.
    assert _push.receive(staging, host, allowed_signers=key[1], run=run, check_mode=True)['id'] == v1['id']
    with pytest.raises(_push.PushError, match='pushed snapshot'):
        _push.receive(staging, host, allowed_signers=key[1], run=run, check_mode=True, signer_identity='someone-else')
    with tarfile.open(head, 'w:gz') as tar:  # a ref of 1 GiB that costs a few bytes on the wire
        info = tarfile.TarInfo('refs/latest')
        info.size = 1 << 30
        tar.addfile(info, _Zeros(1 << 30))
    with pytest.raises(_push.PushError, match='refs/latest is larger than 4096 bytes'):
        _push.receive(staging, host, check_mode=True)
    manifest = open(os.path.join(store(tmp_path), 'snapshots', v1['id'] + '.json'), 'rb').read()
    with tarfile.open(head, 'w:gz') as tar:  # the manifest without its signature
        info = tarfile.TarInfo('snapshots/%s.json' % v1['id'])
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    with pytest.raises(_push.PushError, match='is not signed'):
        _push.receive(staging, host, allowed_signers=key[1], run=run)
    assert _push.receive(staging, host)['id'] == v1['id']  # without signatures required, limits only


class _Zeros(object):
    def __init__(self, size):
        self.left = size

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        return b'\0' * n


def test_check_mode_names_the_wants_and_writes_nothing(tmp_path, places):
    host, staging, carried = places
    build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')
    plan = _push.plan_pack(store(tmp_path), 'latest', [], 1 << 20)
    _push.pack(store(tmp_path), carried, plan)
    os.makedirs(staging, 0o700)
    _carry(carried, plan['head']['name'], os.path.join(staging, _push.HEAD))
    want = _push.receive(staging, host, check_mode=True)
    assert want['wanted'] and os.listdir(staging) == [_push.HEAD]


def test_a_staging_dir_anybody_else_could_swap_is_refused(tmp_path, places):
    host, staging, carried = places
    os.makedirs(os.path.join(str(tmp_path), 'elsewhere'))
    os.symlink(os.path.join(str(tmp_path), 'elsewhere'), staging)
    with pytest.raises(_push.PushError, match='is not a directory owned by root'):
        _push.check_staging(staging, create=True)
    os.unlink(staging)
    os.makedirs(staging)
    open_dir = os.path.join(str(tmp_path), 'open')
    os.makedirs(open_dir)
    os.chmod(open_dir, 0o777)  # a parent others may write, not sticky: they could rename the staging dir away
    with pytest.raises(_push.PushError, match='is writable by others'):
        _push.check_staging(os.path.join(open_dir, 'staging'), create=True)
    os.chmod(staging, 0o755)
    with pytest.raises(_push.PushError, match='is not mode 0700'):
        _push.check_staging(staging)
    assert _push.check_staging(staging, create=True) == staging and os.stat(staging).st_mode & 0o777 == 0o700


def test_pack_takes_only_lists_of_sha256s(tmp_path):
    build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')
    with pytest.raises(_push.PushError, match='must be a list of sha256s'):
        _push.plan_pack(store(tmp_path), 'latest', [[['nested']]], 1 << 20)


def test_pack_module_check_mode_returns_the_plan_and_a_real_run_writes_those_archives(tmp_path, places, capsys):
    host, staging, carried = places
    built = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')
    args = {'store': store(tmp_path), 'dest': carried, 'part_size': 1 << 20}
    rc, check = run_module(capsys, _push.run_pack_module, _push.pack_argument_spec(), args, check_mode=True)
    assert rc == 0 and check['changed'] and check['id'] == built['id'] and check['written'] == [check['head']]
    assert not os.path.exists(carried)
    rc, real = run_module(capsys, _push.run_pack_module, _push.pack_argument_spec(), args)
    assert rc == 0 and real == check and sorted(os.listdir(carried)) == check['written']
    rc, again = run_module(capsys, _push.run_pack_module, _push.pack_argument_spec(), args)
    assert rc == 0 and not again['changed'] and again['written'] == [] and again['files'] == check['files']
    rc, bad = run_module(capsys, _push.run_pack_module, _push.pack_argument_spec(), dict(args, part_size=0))
    assert rc == 1 and bad['msg'] == 'part_size must be 1 or more, got 0'


def test_receive_module_check_mode_names_what_a_real_run_receives(tmp_path, places, capsys):
    host, staging, carried = places
    build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00')
    plan = _push.plan_pack(store(tmp_path), 'latest', [], 1 << 20)
    _push.pack(store(tmp_path), carried, plan)
    os.makedirs(os.path.join(staging, _push.INCOMING), 0o700)
    os.chmod(staging, 0o700)
    _carry(carried, plan['head']['name'], os.path.join(staging, _push.HEAD))
    args = {'staging': staging, 'store': host}
    before = disk(tmp_path)
    rc, check = run_module(capsys, _push.run_receive_module, _push.receive_argument_spec(), args, check_mode=True)
    assert rc == 0 and not check['changed'] and check['wanted'] and check['received_archives'] == []
    assert disk(tmp_path) == before
    rc, real = run_module(capsys, _push.run_receive_module, _push.receive_argument_spec(), args)
    assert rc == 0 and real == check and os.path.isdir(os.path.join(staging, 'head'))
    # The objects arrive: check mode names the archive and unpacks nothing; the real run unpacks that archive.
    plan = _push.plan_pack(store(tmp_path), 'latest', [real['wanted']], 1 << 20)
    _push.pack(store(tmp_path), carried, plan)
    (part,) = plan['sets'][real['wanted_key']]
    _carry(carried, part['name'], os.path.join(staging, _push.INCOMING, part['name']))
    before = disk(tmp_path)
    rc, check = run_module(capsys, _push.run_receive_module, _push.receive_argument_spec(), args, check_mode=True)
    assert rc == 0 and check['changed'] and check['received_archives'] == [part['name']] and check['wanted'] == real['wanted']
    assert disk(tmp_path) == before
    rc, got = run_module(capsys, _push.run_receive_module, _push.receive_argument_spec(), args)
    assert rc == 0 and got['wanted'] == [] and got['wanted_bytes'] == 0
    assert dict(got, wanted=None, wanted_key=None, wanted_bytes=None) == dict(check, wanted=None, wanted_key=None, wanted_bytes=None)
    assert os.listdir(os.path.join(staging, _push.INCOMING)) == []


HUGE = 1 << 27  # what the hostile headers below announce, and send (zeros: 128 KB on the wire)


@pytest.mark.parametrize('what', ['pax header', 'GNU long name', 'object of 1 TiB', 'sum past the limit'])
def test_a_member_that_claims_a_huge_size_is_refused_before_it_is_read(tmp_path, key, places, what):
    """A member whose header claims an enormous size, or an archive whose members add up past the limits: refused,
    naming it, with nothing read into memory or written beyond the limits; the host keeps its snapshot and its
    incoming dir is left empty (a rerun sends good archives again)."""
    import tracemalloc
    host, staging, carried = places
    v1 = build_two(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    push(store(tmp_path), host, staging, carried, allowed=key[1])
    had = set(o[0] for o in st.iter_objects(host))
    build_two(tmp_path, '2.0', '2026-01-08T00:00:00+00:00', key[0])
    want = push(store(tmp_path), host, staging, carried, sync=False)[1]
    shutil.rmtree(os.path.join(staging, 'objects'))
    digest = want['wanted'][0]
    assert digest not in had
    good = open(st.object_path(store(tmp_path), digest), 'rb').read()
    path = os.path.join(staging, _push.INCOMING, 'objects-%s-%s-1of1.tar.gz' % ('a' * 12, 'b' * 16))
    limits = None
    with tarfile.open(path, 'w:gz', format=tarfile.GNU_FORMAT) as tar:
        if what in ('pax header', 'GNU long name'):
            # tarfile reads such a header's data whole, into memory, before it yields the member it describes.
            info = tarfile.TarInfo('././@LongLink' if what == 'GNU long name' else 'PaxHeader/object')
            info.type = tarfile.GNUTYPE_LONGNAME if what == 'GNU long name' else tarfile.XHDTYPE
            info.size = HUGE
            tar.addfile(info, _Zeros(HUGE))
        elif what == 'object of 1 TiB':
            info = tarfile.TarInfo(st.object_rel(digest))
            info.size = 1 << 40  # the header claims it; the archive holds a few bytes
            tar.fileobj.write(info.tobuf(tarfile.GNU_FORMAT))
            tar.fileobj.write(good.ljust(512, b'\0'))
        else:
            limits = {'max_snapshot_size': len(good)}
        info = tarfile.TarInfo(st.object_rel(digest))
        info.size = len(good)
        if what != 'object of 1 TiB':
            tar.addfile(info, io.BytesIO(good))
    messages = {'pax header': r"%s: member .*PaxHeader/object.* is not a file of a store \(a header of type 'x' that "
                              r"announces %d bytes\); refused" % (path, HUGE),
                'GNU long name': r"%s: member .*@LongLink.* is not a file of a store \(a header of type 'L' that "
                                 r"announces %d bytes\)" % (path, HUGE),
                'object of 1 TiB': r'%s: %s is not an object this host lacks, or not of its size \(%d bytes\); refused'
                                   % (path, st.object_rel(digest), len(good)),
                'sum past the limit': r'pushed snapshot %s: snapshot size \d+ exceeds the per-snapshot limit %d'
                                      % (want['id'], len(good))}
    tracemalloc.start()
    try:
        with pytest.raises(_push.PushError, match=messages[what]):
            _push.receive(staging, host, limits=limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # what the headers announce is 128 MB
    assert os.listdir(os.path.join(staging, _push.INCOMING)) == []
    assert not os.path.exists(os.path.join(staging, 'objects'))
    assert hs.active_id(host) == v1['id'] and set(o[0] for o in st.iter_objects(host)) == had
