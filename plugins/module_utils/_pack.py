# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack the collection's module_utils into the one zip that the hosts' commands run (pkgcache-host,
pkgcache-status): the package ``pkgcache_utils``, and a ``__main__.py`` so that ``python3 -I ZIP ARGS`` is
pkgcache-host. The same bytes for the same code (fixed dates and modes), so the role's copy stays unchanged.

Run on the controller by the distribute role: ``python3 _pack.py MODULE_UTILS_DIR OUT.zip``. Imports nothing from
the collection (it runs as a plain script).

Private to the collection; the API may change without notice.
"""

from __future__ import annotations

import os
import sys
import zipfile

MAIN = b'''import sys
from pkgcache_utils import _hostcmd
sys.exit(_hostcmd.main(sys.argv[1:]))
'''


def pack(src, out):
    """Write the zip of every ``*.py`` in ``src`` to ``out``; return the names packed."""
    names = sorted(n for n in os.listdir(src) if n.endswith('.py') and n != '__init__.py')
    members = [('__main__.py', MAIN), ('pkgcache_utils/__init__.py', b'')]
    for name in names:
        with open(os.path.join(src, name), 'rb') as f:
            members.append(('pkgcache_utils/' + name, f.read()))
    with zipfile.ZipFile(out, 'w') as z:
        for arcname, data in members:
            info = zipfile.ZipInfo(arcname, (1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return [m[0] for m in members]


def compile_zip(src, out):
    """Write ``out``: the zip ``src`` with each module's bytecode for this Python beside its source (unchecked
    hash-based .pyc, so the bytes depend on the code only). zipimport cannot cache bytecode itself, and compiling
    every module at each start costs a login hook about 100 ms; with the .pyc it starts in a few. A Python of
    another version skips the .pyc (its magic differs) and compiles the source as before."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    magic = importlib.util.MAGIC_NUMBER
    with zipfile.ZipFile(src) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist() if not i.filename.endswith('.pyc')]
    compiled = []
    for name, data in members:
        if name.endswith('.py') and name != '__main__.py':
            code = compile(data, name, 'exec', dont_inherit=True)
            import marshal  # pylint: disable=import-outside-toplevel
            source_hash = importlib.util.source_hash(data)
            compiled.append((name + 'c', magic + (1).to_bytes(4, 'little') + source_hash + marshal.dumps(code)))
    tmp = out + '.tmp'
    with zipfile.ZipFile(tmp, 'w') as z:
        for arcname, data in members + compiled:
            info = zipfile.ZipInfo(arcname, (1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            z.writestr(info, data)
    os.chmod(tmp, 0o644)
    os.rename(tmp, out)


if __name__ == '__main__':
    pack(*sys.argv[1:3])
