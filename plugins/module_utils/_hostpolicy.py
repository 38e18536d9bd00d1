# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pkgcache-host's policy: the root-only file the roles write (/etc/pkgcache/host.json), its checks, and who is a
repl user. Pure, apart from reading the file through an O_NOFOLLOW fd.

Private to the collection; the API may change without notice.

The policy names everything the host command may do: the mirrors and signers of the sync, the ecosystems, the
roots (store, views, scratch), the fstab line (the role's template rendered once with placeholders), and which
users are repl users: the inventory's (``repls``), the members of a group, or a uid range. A user who logs in is
served only if the policy says she is a repl user; a name is never trusted beyond that.
"""

from __future__ import annotations

import json
import os
import stat

from . import _overlay as ov
from ._fstab import escape, parse_line

POLICY = '/etc/pkgcache/host.json'
MAX_POLICY_BYTES = 1 << 20
# The placeholders of the fstab line pattern: the role renders the mount template once with these as the mount's
# fields, and the host puts each mount's values in (and checks the line as overlay_mounts does).
PLACEHOLDERS = ('@TARGET@', '@OPTIONS@', '@USER@', '@ECOSYSTEM@')

# key: (type check, default, what). None as a default means the key is required.
_PATHS = ('store', 'mount_point', 'views_root', 'scratch_root', 'fstab')
DEFAULTS = {
    'store': '/var/lib/pkgcache', 'mount_point': '/mnt/cacache', 'views_root': ov.VIEWS_ROOT,
    'scratch_root': '/mnt/scratch', 'fstab': '/etc/fstab', 'mirrors': [], 'allowed_signers': None,
    'signer_identity': 'pkgcache', 'ecosystems': ['pip'], 'line': 'overlay @TARGET@ overlay @OPTIONS@ 0 0',
    'repls': [], 'repl_group': None, 'repl_uids': None, 'lazy': False, 'compact': False, 'backup': False,
    'login_lock_timeout': 2.0, 'lock_timeout': 300, 'workers': 8, 'timeout': 30, 'deadline': 900,
    'validate_certs': True, 'max_manifest_size': 268435456, 'max_object_size': 0, 'max_snapshot_size': 0,
    'gc_keep': 3, 'textfile_dir': None,
}


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the file and the key."""


def check_file_stat(st, path):
    """Refuse a policy file that is not a regular file owned by root and writable by root only."""
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise PolicyError('policy %s is not a regular file owned by root and writable by root only (mode %o, uid %d); '
                          'refused' % (path, stat.S_IMODE(st.st_mode), st.st_uid))


def check_dir_stat(st, path):
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise PolicyError('the directory %s of the policy is not a directory owned by root and writable by root only; '
                          'refused' % path)


def read_policy(path=POLICY):
    """Read and validate the policy file: no symlink followed, root's file in root's directory, at most 1 MiB."""
    parent = os.path.dirname(path) or '.'
    try:
        check_dir_stat(os.lstat(parent), parent)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise PolicyError('cannot read the policy %s: %s' % (path, exc.strerror))
    try:
        check_file_stat(os.fstat(fd), path)
        data = os.read(fd, MAX_POLICY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError('policy %s is larger than %d bytes; refused' % (path, MAX_POLICY_BYTES))
    try:
        raw = json.loads(data.decode('utf-8'))
    except ValueError as exc:
        raise PolicyError('policy %s is not JSON: %s' % (path, exc))
    return validate(raw, path)


def _int(value, key, path, minimum=0):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise PolicyError('policy %s: %s must be an integer >= %d, got %r' % (path, key, minimum, value))
    return value


def _bool(value, key, path):
    if not isinstance(value, bool):
        raise PolicyError('policy %s: %s must be true or false, got %r' % (path, key, value))
    return value


def _str(value, key, path):
    if not isinstance(value, str) or not value:
        raise PolicyError('policy %s: %s must be a non-empty string, got %r' % (path, key, value))
    return value


def validate(raw, path=POLICY):
    """Return the policy with defaults filled in; PolicyError names the first bad key."""
    if not isinstance(raw, dict):
        raise PolicyError('policy %s must be a JSON object' % path)
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise PolicyError('policy %s: unknown keys %s' % (path, ', '.join(unknown)))
    p = dict(DEFAULTS, **raw)
    try:
        for key in _PATHS:
            ov.validate_path(p[key], 'policy %s: %s' % (path, key))
        for key in ('allowed_signers', 'textfile_dir'):
            if p[key] is not None:
                ov.validate_path(p[key], 'policy %s: %s' % (path, key))
    except ov.OverlayInputError as exc:
        raise PolicyError(str(exc))
    if not isinstance(p['mirrors'], list) or not all(isinstance(u, str) and u.startswith(('http://', 'https://'))
                                                     for u in p['mirrors']):
        raise PolicyError('policy %s: mirrors must be a list of http:// or https:// URLs, got %r' % (path, p['mirrors']))
    if not isinstance(p['ecosystems'], list) or not p['ecosystems'] or \
            not all(e in ov.ECOSYSTEMS for e in p['ecosystems']) or len(set(p['ecosystems'])) != len(p['ecosystems']):
        raise PolicyError('policy %s: ecosystems must be a non-empty list of %s, got %r'
                          % (path, ', '.join(sorted(ov.ECOSYSTEMS)), p['ecosystems']))
    _str(p['signer_identity'], 'signer_identity', path)
    for key in ('lazy', 'compact', 'backup', 'validate_certs'):
        _bool(p[key], key, path)
    for key in ('lock_timeout', 'timeout', 'deadline', 'workers'):
        _int(p[key], key, path, 1)
    for key in ('max_manifest_size', 'max_object_size', 'max_snapshot_size', 'gc_keep'):
        _int(p[key], key, path, 0)
    t = p['login_lock_timeout']
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 30:
        raise PolicyError('policy %s: login_lock_timeout must be a number of seconds from 0 to 30, got %r' % (path, t))
    if p['repl_group'] is not None:
        try:
            ov.validate_name(p['repl_group'], 'policy %s: repl_group' % path)
        except ov.OverlayInputError as exc:
            raise PolicyError(str(exc))
    if p['repl_uids'] is not None:
        r = p['repl_uids']
        if not isinstance(r, list) or len(r) != 2 or _int(r[0], 'repl_uids[0]', path, 1) > _int(r[1], 'repl_uids[1]', path, 1):
            raise PolicyError('policy %s: repl_uids must be [first, last] with 1 <= first <= last, got %r' % (path, r))
    if not isinstance(p['repls'], list) or not all(isinstance(r, dict) for r in p['repls']):
        raise PolicyError('policy %s: repls must be a list of objects' % path)
    allowed = set(['name', 'uid', 'gid', 'home', 'scratch'])
    for r in p['repls']:
        if set(r) - allowed:
            raise PolicyError('policy %s: repl %r has unknown keys %s' % (path, r.get('name'), ', '.join(sorted(set(r) - allowed))))
        try:
            ov.validate_name(r.get('name'), 'policy %s: repl name' % path)
        except ov.OverlayInputError as exc:
            raise PolicyError(str(exc))
    check_pattern(p['line'], path)
    return p


def render(pattern, mount):
    """The fstab line of ``mount`` from the policy's line pattern (checked by the caller, as overlay_mounts does)."""
    return (pattern.replace('@USER@', mount['user']).replace('@ECOSYSTEM@', mount['ecosystem'])
            .replace('@TARGET@', escape(mount['target'])).replace('@OPTIONS@', mount['options']))


def check_pattern(pattern, path=POLICY):
    """The pattern must be one fstab entry that names the target and the options through their placeholders."""
    if not isinstance(pattern, str) or '\n' in pattern or '\r' in pattern:
        raise PolicyError('policy %s: line must be one fstab line, got %r' % (path, pattern))
    fields = parse_line(pattern)
    if not fields or fields[1] != '@TARGET@' or len(fields) < 4 or '@OPTIONS@' not in fields[3].split(','):
        raise PolicyError('policy %s: line %r must be an fstab entry with @TARGET@ as its mount point and @OPTIONS@ '
                          'among its options' % (path, pattern))
    sample = ov.plan_mounts([{'name': 'u', 'uid': 1, 'gid': 1, 'home': '/home/u'}], ['pip'], '/l', '/s', '/v')[0]
    try:
        ov.check_line(render(pattern, sample), sample)
    except ov.OverlayInputError as exc:
        raise PolicyError('policy %s: line: %s' % (path, exc))


def repl_user(name, policy, getpwnam, getgrnam):
    """The passwd entry of ``name`` if the policy makes her a repl user; PolicyError saying why not otherwise.

    ``name`` is checked with overlay_mounts' rules first. Root (uid 0) and users the host does not know are never
    served. A user is a repl user when the inventory names her (``repls``), when she is in ``repl_group`` (as her
    primary group or a member), or when her uid is in ``repl_uids``.
    """
    try:
        ov.validate_name(name, 'user name')
    except ov.OverlayInputError as exc:
        raise PolicyError(str(exc))
    try:
        pw = getpwnam(name)
    except KeyError:
        raise PolicyError('user %s does not exist on this host' % name)
    if pw.pw_uid < 1:
        raise PolicyError('user %s has uid %d; root is never a repl user' % (name, pw.pw_uid))
    if any(r['name'] == name for r in policy['repls']):
        return pw
    if policy['repl_uids'] and policy['repl_uids'][0] <= pw.pw_uid <= policy['repl_uids'][1]:
        return pw
    if policy['repl_group']:
        try:
            gr = getgrnam(policy['repl_group'])
        except KeyError:
            gr = None
        if gr is not None and (pw.pw_gid == gr.gr_gid or name in gr.gr_mem):
            return pw
    raise PolicyError('user %s is not a repl user of this host (not in the inventory%s%s); not served'
                      % (name, ', not in group %s' % policy['repl_group'] if policy['repl_group'] else '',
                         ', uid %d not in %d-%d' % ((pw.pw_uid,) + tuple(policy['repl_uids'])) if policy['repl_uids'] else ''))
