# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writing the managed fstab block atomically, with backup and diff.

Private to the collection; the API may change without notice.
"""

from __future__ import annotations

import os

from ._fstab import block_lines, replace_block


def read_text(path):
    """Read a file as text, keeping undecodable bytes (surrogateescape); '' if it does not exist."""
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'surrogateescape')
    except FileNotFoundError:
        return ''


def update_block(module, path, name, lines, backup=False):
    """Replace the managed block ``name`` of fstab ``path`` with ``lines``.

    Returns a dict: changed, backup_file, diff. Writes nothing in check mode.
    The file is written through a temp file in its own directory and
    module.atomic_move(), which keeps its owner, mode and SELinux context.
    """
    return update_blocks(module, path, [(name, lines)], backup)


def apply_blocks(text, blocks):
    """``text`` with the blocks replaced as update_blocks() does (pure)."""
    for name, lines in blocks:
        if callable(lines):
            lines = lines(block_lines(text, name))
        text = replace_block(text, name, lines)
    return text


def update_blocks(module, path, blocks, backup=False):
    """Replace several managed blocks (``[(name, lines or a function of the text's lines in that block)]``, in
    that order) in one atomic write; see update_block. A function gets the block's current lines and returns its
    new ones, so that one block can be edited from the text read here, under the caller's lock."""
    before = read_text(path)
    after = apply_blocks(before, blocks)
    result = {'changed': before != after, 'backup_file': None,
              'diff': {'before': before, 'after': after, 'before_header': path, 'after_header': path}}
    if not result['changed'] or module.check_mode:
        return result
    if backup and os.path.exists(path):
        result['backup_file'] = module.backup_local(path)
    import tempfile  # pylint: disable=import-outside-toplevel  # (not at import: the login hook reads fstab only)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.', prefix='.fstab-')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(after.encode('utf-8', 'surrogateescape'))
            f.flush()
            os.fsync(f.fileno())
        if not os.path.exists(path):
            os.chmod(tmp, 0o644)
        module.atomic_move(tmp, path, unsafe_writes=False)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return result
