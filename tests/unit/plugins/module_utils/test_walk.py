"""The bounded walker of users' trees: fd chains with O_NOFOLLOW, no recursion, caps that stop it, bounded reads."""

import io
import os
import stat
import struct
import zipfile
import zlib

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _walk

from helpers import deep_chain, write


def fd_count():
    return len(os.listdir('/proc/self/fd'))


def files(walk, top):
    fd = _walk.open_dir(top)
    try:
        return sorted(rel for dummy, dummy2, rel, dummy3, dummy4 in walk.tree(fd))
    finally:
        os.close(fd)


# ------------------------------------------------------------------ open_dir

def test_open_dir_refuses_a_symlink_or_a_file_in_any_component(tmp_path):
    write(str(tmp_path / 'real' / 'upper' / 'f'), b'x')
    os.symlink('real', str(tmp_path / 'link'))
    os.symlink('/etc', str(tmp_path / 'real' / 'etc'))
    for path, message in [
            (tmp_path / 'link' / 'upper', '%s/link is a symlink' % tmp_path),
            (tmp_path / 'real' / 'etc', '%s/real/etc is a symlink' % tmp_path),
            (tmp_path / 'real' / 'upper' / 'f', '%s/real/upper/f is not a directory' % tmp_path),
            (str(tmp_path / 'real') + '/../real', '".." component is refused')]:
        with pytest.raises(_walk.UnsafePathError, match=message):
            _walk.open_dir(str(path))
    with pytest.raises(FileNotFoundError):
        _walk.open_dir(str(tmp_path / 'missing' / 'upper'))
    fd = _walk.open_dir(str(tmp_path / 'real' / 'upper'))
    os.close(fd)
    parent = _walk.open_dir(str(tmp_path))
    try:
        with pytest.raises(_walk.UnsafePathError, match='^link is a symlink; refusing to follow it$'):
            _walk.open_dir('link/upper', parent)
        fd = _walk.open_dir('real/upper', parent)
        assert os.listdir(fd) == ['f']
        os.close(fd)
    finally:
        os.close(parent)


# ---------------------------------------------------------------------- tree

def test_tree_yields_regular_files_only_and_follows_no_symlink(tmp_path):
    top, outside = tmp_path / 'upper', tmp_path / 'outside'
    write(str(outside / 'secret'), b'secret')
    write(str(top / 'a' / 'file'), b'1')
    os.symlink(str(outside), str(top / 'a' / 'dirlink'))
    os.symlink(str(outside / 'secret'), str(top / 'filelink'))
    os.mkfifo(str(top / 'fifo'))
    os.mknod(str(top / 'a' / 'whiteout'), 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    walk = _walk.Walk()
    assert files(walk, str(top)) == ['a/file']
    assert walk.skipped == {'symlink': 2, 'special': 2} and walk.truncated is None
    assert walk.dirs == 1 and walk.entries == 6 and walk.bytes_read == 0


def test_open_file_takes_regular_non_sparse_files_and_does_not_block_on_a_fifo(tmp_path):
    write(str(tmp_path / 'regular'), b'data')
    os.mkfifo(str(tmp_path / 'fifo'))           # a blocking open would hang the test
    os.symlink('regular', str(tmp_path / 'link'))
    with open(str(tmp_path / 'sparse'), 'wb') as f:
        f.truncate(256 << 20)
    walk = _walk.Walk()
    fd = _walk.open_dir(str(tmp_path))
    try:
        for name in ('fifo', 'link', 'sparse'):
            assert walk.open_file(fd, name) == (None, None), name
        ffd, st = walk.open_file(fd, 'regular')
        assert st.st_size == 4 and walk.pread(ffd, 100, 0) == b'data'
        os.close(ffd)
    finally:
        os.close(fd)
    assert walk.skipped == {'special': 1, 'unopenable': 1, 'sparse': 1} and walk.files_opened == 1
    assert walk.bytes_read == 4


def test_a_1500_deep_chain_stops_at_the_depth_cap_without_recursion(tmp_path):
    write(str(tmp_path / 'top' / 'f'), b'x')
    before = fd_count()
    with deep_chain(str(tmp_path / 'top')):
        walk = _walk.Walk()
        found = files(walk, str(tmp_path / 'top'))
    assert walk.truncated == 'max_depth' and walk.depth == 64 and walk.dirs == 64
    assert found in ([], ['f'])
    assert fd_count() == before


def test_an_abandoned_walk_closes_its_fds(tmp_path):
    before = fd_count()
    with deep_chain(str(tmp_path / 'top'), depth=30):
        write(str(tmp_path / 'top' / 'd' / 'd' / 'd' / 'f'), b'x')
        fd = _walk.open_dir(str(tmp_path / 'top'))
        gen = _walk.Walk().tree(fd)
        assert next(gen)[2] == 'd/d/d/f'
        assert fd_count() > before + 3
        gen.close()
        os.close(fd)
        assert fd_count() == before
        os.unlink(str(tmp_path / 'top' / 'd' / 'd' / 'd' / 'f'))


class FakeClock(object):
    """One second passes each time the walk looks at the clock."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1
        return self.now


@pytest.mark.parametrize('limits, reason, seen', [
    (dict(max_files=7), 'max_files', 7),
    (dict(max_dir_entries=5), 'max_dir_entries', 5),
    (dict(max_seconds=4), 'max_seconds', 3),        # the clock reads 1 at the start, 5 at the fourth entry
])
def test_each_cap_stops_the_walk_and_says_so(tmp_path, limits, reason, seen):
    for i in range(20):
        write(str(tmp_path / 'top' / ('%02d' % i)), b'x')
    walk = _walk.Walk(_walk.Limits(**limits), clock=FakeClock())
    assert len(files(walk, str(tmp_path / 'top'))) == seen
    assert walk.truncated == reason


def test_the_byte_budget_stops_reads(tmp_path):
    write(str(tmp_path / 'f'), b'x' * 100)
    walk = _walk.Walk(_walk.Limits(max_bytes=150))
    fd = os.open(str(tmp_path / 'f'), os.O_RDONLY)
    try:
        assert len(walk.pread(fd, 1 << 20, 0)) == 100 and walk.truncated is None     # a short file is no cut
        assert walk.pread(fd, 80, 0) == b'x' * 50 and walk.truncated == 'max_bytes'
        assert walk.pread(fd, 1, 0) is None and walk.read(fd, 1) is None
    finally:
        os.close(fd)
    assert walk.bytes_read == 150


def test_limits_are_checked():
    with pytest.raises(ValueError, match='max_depth 0 is not a positive integer'):
        _walk.Limits(max_depth=0)
    with pytest.raises(ValueError, match='max_seconds True'):
        _walk.Limits(max_seconds=True)
    assert _walk.Limits().replace(max_files=3).as_dict()['max_files'] == 3


# --------------------------------------------------------------------- lines

def _lines(tmp_path, data, max_total, max_line, chunk=7):
    write(str(tmp_path / 'f'), data)
    walk = _walk.Walk()
    fd = os.open(str(tmp_path / 'f'), os.O_RDONLY)
    try:
        return list(walk.lines(fd, len(data), max_total, max_line, chunk)), walk
    finally:
        os.close(fd)


def test_lines_drop_long_lines_and_stop_at_the_cap(tmp_path):
    lines, walk = _lines(tmp_path, b'\nab\n' + b'x' * 40 + b'\ncd\nlast', 1000, 10)
    assert lines == [b'', b'ab', b'cd', b'last'] and walk.skipped == {'long_line': 1}
    lines, walk = _lines(tmp_path, b'ab\ncd\nef\ngh', 8, 10)
    assert lines == [b'ab', b'cd'] and walk.skipped == {'capped_file': 1} and walk.bytes_read == 8


# ---------------------------------------------------------------------- zips

def _zip(members, comment=b''):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        for name, data, method in members:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
        zf.comment = comment
    return buf.getvalue()


def _reader(data):
    reads = []

    def pread(offset, n):
        reads.append(n)
        return data[offset:offset + n]
    return pread, reads


def _metadata(name):
    return name.endswith(b'.dist-info/METADATA')


def test_zip_member_reads_the_end_the_central_directory_and_the_member_only():
    meta = b'Name: big\nVersion: 1\n\n' + b'm' * (1 << 20)
    data = _zip([('big/data.bin', os.urandom(8 << 20), zipfile.ZIP_STORED),
                 ('big-1.dist-info/METADATA', meta, zipfile.ZIP_DEFLATED)], comment=b'c' * 20000)
    pread, reads = _reader(data)
    head = _walk.zip_member(pread, len(data), _metadata, b'METADATA')
    assert head.startswith(b'Name: big\nVersion: 1\n') and len(head) == 64 << 10
    assert sum(reads) < 128 << 10
    wrapped = b'prefix' * 100 + data + b'suffix' * 300        # pip's older entries wrap the body
    pread, reads = _reader(wrapped)
    assert _walk.zip_member(pread, len(wrapped), _metadata).startswith(b'Name: big')
    pread, reads = _reader(data)
    assert _walk.zip_member(pread, len(data), _metadata, b'no such name') is None


def _as_zip64(data):
    """The same archive with a ZIP64 end record (and 0xFFFF... in the classic one)."""
    sig, d1, d2, n1, n2, cd_size, cd_offset, clen = struct.unpack('<4s4H2LH', data[-22:])
    body = data[:-22]
    record = struct.pack('<4sQ2H2L4Q', b'PK\x06\x06', 44, 45, 45, 0, 0, n1, n2, cd_size, cd_offset)
    locator = struct.pack('<4sLQL', b'PK\x06\x07', 0, len(body), 1)
    end = struct.pack('<4s4H2LH', b'PK\x05\x06', 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + record + locator + end


def test_zip_member_understands_zip64_end_records():
    data = _as_zip64(_zip([('x-1.dist-info/METADATA', b'Name: x\nVersion: 1\n', zipfile.ZIP_DEFLATED)]))
    pread, dummy = _reader(data)
    assert _walk.zip_member(pread, len(data), _metadata) == b'Name: x\nVersion: 1\n'


def test_zip_member_bounds_hostile_archives():
    bomb = _zip([('x-1.dist-info/METADATA', b'\0' * (64 << 20), zipfile.ZIP_DEFLATED)])
    pread, reads = _reader(bomb)
    assert len(_walk.zip_member(pread, len(bomb), _metadata)) == 64 << 10 and sum(reads) < 64 << 10
    # An end record that claims a 4 GiB central directory: nothing past the end is read.
    liar = b'PK\x03\x04' + b'\0' * 100 + struct.pack('<4s4H2LH', b'PK\x05\x06', 0, 0, 1, 1, 0xFFFFFFF0, 0, 0)
    pread, reads = _reader(liar)
    assert _walk.zip_member(pread, len(liar), _metadata) is None and sum(reads) == len(liar)
    big_cd = b'\0' * 200 + struct.pack('<4s4H2LH', b'PK\x05\x06', 0, 0, 1, 1, 150, 50, 0)
    pread, reads = _reader(big_cd)
    assert _walk.zip_member(pread, len(big_cd), _metadata, max_cd=100) is None and sum(reads) == len(big_cd)
    short64 = struct.pack('<4s4H2LH', b'PK\x05\x06', 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)   # no room for ZIP64
    pread, reads = _reader(short64)
    assert _walk.zip_member(pread, len(short64), _metadata) is None and sum(reads) == len(short64)
    good = _zip([('x-1.dist-info/METADATA', b'Name: x\n', zipfile.ZIP_DEFLATED)])
    for cut in (len(good) // 2, len(good) - 10):
        pread, dummy = _reader(good[:cut])
        assert _walk.zip_member(pread, cut, _metadata) is None
    corrupt = good.replace(zlib.compress(b'Name: x\n')[2:-4], b'\xff' * len(zlib.compress(b'Name: x\n')[2:-4]))
    pread, dummy = _reader(corrupt)
    assert _walk.zip_member(pread, len(corrupt), _metadata) in (None, b'')
