# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pkgcache-host: pkgcache.overlay on the host without Ansible (root only). See `pkgcache-host --help`.

The collection's module_utils, installed by the distribute role (pkgcache_utils.zip, compiled on the host into
pkgcache_host.zip); the PAM session hook (pkgcache-host login), pkgcache-view@.service and pkgcache-sync.service
run this.
"""

import os
import stat
import sys

CODE = '/usr/local/lib/pkgcache/pkgcache_host.zip'  # pkgcache_utils.zip with bytecode for this host's Python


def check_code(path):
    """Refuse code that anybody but root could have placed: a regular file of root's, writable by root only, in a
    directory of the same kind (a directory named like the zip would be imported from as well)."""
    for p, kind in ((os.path.dirname(path), stat.S_ISDIR), (path, stat.S_ISREG)):
        st = os.lstat(p)
        if not kind(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            sys.exit('pkgcache-host: %s is not a %s owned by root and writable by root only; refused'
                     % (p, 'directory' if kind is stat.S_ISDIR else 'regular file'))


if __name__ == '__main__':
    if os.geteuid() != 0:
        sys.exit('pkgcache-host: must be run as root')
    check_code(CODE)
    sys.path.insert(0, CODE)
    from pkgcache_utils import _hostcmd  # pylint: disable=import-outside-toplevel
    sys.exit(_hostcmd.main(sys.argv[1:]))
