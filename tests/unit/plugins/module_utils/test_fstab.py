import pytest
from hypothesis import given, settings
from hypothesis import strategies as s

from ansible_collections.pkgcache.overlay.plugins.module_utils import _fstab as fs

ODD = ('# operator comment   with spacing\r\n'
       'UUID=1234 / ext4 defaults 0 1\n'
       '\n'
       'this is not an fstab line\n'
       '\t# tab comment\n'
       'tmpfs /mnt/t tmpfs defaults 0 0')  # no final newline
LINE = 'overlay /home/a/.cache/pip overlay lowerdir=/l,upperdir=/u,workdir=/w 0 0'


def test_escape_roundtrip():
    value = 'a b\tc\\d\ne'
    assert fs.escape(value) == 'a\\040b\\011c\\134d\\012e'
    assert fs.unescape(fs.escape(value)) == value


def test_parse_line():
    assert fs.parse_line('# x') is None
    assert fs.parse_line('   ') is None
    assert fs.parse_line('not an entry') is None
    assert fs.parse_line('/a /m\\040n none bind 0 0') == ['/a', '/m n', 'none', 'bind', '0', '0']


def test_block_is_added_and_everything_else_kept_byte_for_byte():
    new = fs.replace_block(ODD, 'mounts', [LINE])
    assert new.startswith(ODD + '\n')
    begin, end = fs.markers('mounts')
    assert new[len(ODD) + 1:] == begin + '\n' + LINE + '\n' + end + '\n'
    assert fs.block_entries(new, 'mounts')[0][1] == '/home/a/.cache/pip'
    # Idempotent, and a replacement touches only the block.
    assert fs.replace_block(new, 'mounts', [LINE]) == new
    other = LINE.replace('/l,', '/l2,')
    assert fs.replace_block(new, 'mounts', [other]) == new.replace(LINE, other)
    # Removing the block gives back the original bytes (plus the newline we added).
    assert fs.replace_block(new, 'mounts', []) == ODD + '\n'


def test_two_blocks_coexist():
    text = fs.replace_block(ODD, 'snapshot', ['/s /mnt/cacache none bind,ro 0 0'])
    text = fs.replace_block(text, 'mounts', [LINE])
    assert len(fs.block_entries(text, 'snapshot')) == 1 and len(fs.block_entries(text, 'mounts')) == 1


def test_crlf_file_keeps_its_line_endings():
    text = 'a /x ext4 defaults 0 0\r\n'
    new = fs.replace_block(text, 'mounts', [LINE])
    assert new.startswith(text) and new.endswith('\r\n') and '\n' not in new.replace('\r\n', '')


def test_damaged_block_is_refused():
    begin, end = fs.markers('mounts')
    for text in (begin + '\n', end + '\n', begin + '\n' + begin + '\n' + end + '\n', end + '\n' + begin + '\n'):
        with pytest.raises(fs.FstabError, match='damaged'):
            fs.replace_block(text, 'mounts', [LINE])


def test_operator_line_for_the_same_mount_point_is_never_overridden():
    text = 'tmpfs /home/a/.cache/pip tmpfs defaults 0 0\n'
    with pytest.raises(fs.FstabError, match='already in fstab outside the managed block'):
        fs.replace_block(text, 'mounts', [LINE])


def test_line_break_in_a_line_is_refused():
    with pytest.raises(fs.FstabError, match='line break'):
        fs.replace_block('', 'mounts', [LINE + '\n/evil /etc none bind 0 0'])


@settings(max_examples=300, deadline=None)
@given(s.lists(s.text(alphabet=s.characters(blacklist_categories=('Cs',)), max_size=40), max_size=8),
       s.booleans())
def test_property_operator_text_survives(lines, final_newline):
    begin, end = fs.markers('mounts')
    lines = [l.replace('\r', '').replace('\n', '') for l in lines]
    lines = [l for l in lines if l not in (begin, end) and (fs.parse_line(l) or [None, None])[1] != '/home/a/.cache/pip']
    text = '\n'.join(lines) + ('\n' if final_newline and lines else '')
    new = fs.replace_block(text, 'mounts', [LINE])
    assert new.startswith(text)
    expected = text if (not text or text.endswith('\n')) else text + '\n'
    assert fs.replace_block(new, 'mounts', []) == expected
