# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fstab parsing, escaping and the managed block.

Private to the collection; the API may change without notice.

The collection owns only the lines between its BEGIN and END markers. Every
other byte of the file is kept as it was: comments, blank lines, odd lines,
line endings and a missing final newline.
"""

from __future__ import annotations

import re

_ESCAPES = {' ': '\\040', '\t': '\\011', '\n': '\\012', '\\': '\\134'}
_OCTAL = re.compile(r'\\([0-7]{3})')


class FstabError(ValueError):
    """An fstab that cannot be changed safely; the message names the line."""


def escape(value):
    """Escape a value for an fstab field (as mount(8) unescapes it)."""
    return ''.join(_ESCAPES.get(c, c) for c in value)


def unescape(value):
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), value)


def parse_line(line):
    """Return the unescaped fields of an fstab entry, or None for comments, blanks and malformed lines."""
    body = line.strip()
    if not body or body.startswith('#'):
        return None
    fields = body.split()
    if len(fields) < 4 or len(fields) > 6:
        return None
    return [unescape(f) for f in fields]


def markers(name):
    return ('# BEGIN pkgcache.overlay %s (managed by Ansible, do not edit)' % name,
            '# END pkgcache.overlay %s' % name)


def split_lines(text):
    return text.splitlines(True)


def find_block(lines, name):
    """Return (start, end) indexes of the managed block's marker lines, or None."""
    begin, end = markers(name)
    starts = [i for i, l in enumerate(lines) if l.rstrip('\r\n') == begin]
    ends = [i for i, l in enumerate(lines) if l.rstrip('\r\n') == end]
    if not starts and not ends:
        return None
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise FstabError('the managed block "%s" is damaged (%d BEGIN and %d END markers); '
                         'fix it by hand, nothing was changed' % (name, len(starts), len(ends)))
    return starts[0], ends[0]


def block_lines(text, name):
    """Return the lines inside the managed block, without their line ends (empty if there is none)."""
    lines = split_lines(text)
    span = find_block(lines, name)
    return [] if span is None else [l.rstrip('\r\n') for l in lines[span[0] + 1:span[1]]]


def block_entries(text, name):
    """Return the parsed entries inside the managed block (empty if there is none)."""
    return [f for f in (parse_line(l) for l in block_lines(text, name)) if f]


def replace_block(text, name, new_lines):
    """Return ``text`` with the managed block ``name`` holding ``new_lines``.

    An empty ``new_lines`` removes the block. A mount point that an entry
    outside the block already uses is an error: the operator's line is never
    overridden or dropped.
    """
    lines = split_lines(text)
    span = find_block(lines, name)
    outside = lines if span is None else lines[:span[0]] + lines[span[1] + 1:]
    ours = {}
    for line in new_lines:
        if '\n' in line or '\r' in line:
            raise FstabError('fstab line %r holds a line break' % line)
        fields = parse_line(line)
        if fields:
            ours[fields[1]] = line
    for line in outside:
        fields = parse_line(line)
        if fields and fields[1] in ours:
            raise FstabError('mount point %s is already in fstab outside the managed block: %r; '
                             'remove or change that line first, nothing was changed' % (fields[1], line.rstrip('\r\n')))
    ended = [l for l in lines if l.endswith('\n')]
    newline = '\r\n' if ended and all(l.endswith('\r\n') for l in ended) else '\n'
    begin, end = markers(name)
    block = [begin + newline] + [l + newline for l in new_lines] + [end + newline] if new_lines else []
    if span is None:
        if not block:
            return text
        prefix = text
        if prefix and not prefix.endswith('\n'):
            prefix += newline
        return prefix + ''.join(block)
    return ''.join(lines[:span[0]] + block + lines[span[1] + 1:])
