# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-user overlay mounts: input validation and the mount plan.

Private to the collection; the API may change without notice.
"""

from __future__ import annotations

import posixpath
import re

from ._fstab import escape, parse_line
from ._mountinfo import split_options

# Where each ecosystem's package manager looks, relative to the user's home,
# and the directory of the snapshot that holds its cache.
# npm keeps its cache in ~/.npm/_cacache, Maven in ~/.m2/repository, uv in
# ~/.cache/uv (UV_CACHE_DIR).
ECOSYSTEMS = {
    'pip': {'target': '.cache/pip', 'subdir': 'pip'},
    'npm': {'target': '.npm', 'subdir': 'npm'},
    'maven': {'target': '.m2/repository', 'subdir': 'maven'},
    'uv': {'target': '.cache/uv', 'subdir': 'uv'},
}

# Any name Debian's useradd accepts (dots, capitals, a trailing '$'), except what
# cannot be one path component or breaks fstab or overlay syntax.
NAME_BAD = re.compile(r'[/,:\s\\#\x00]')
# Characters that break overlay's option syntax (',', ':'), fstab's fields
# (whitespace, '#'), or escaping ('\\').
FORBIDDEN = re.compile(r'[,:\s\\#]')
MOUNT_OPTIONS = ('index=off', 'xino=off', 'metacopy=off', 'nosuid', 'nodev')
# Where the views are mounted: root's, so no repl user can redirect a mount.
VIEWS_ROOT = '/var/lib/pkgcache-views'
# What an operator's template may add to a line: atime and timing flags,
# noexec, ro, boot ordering, x-* and comment= (systemd, mount helpers).
EXTRA_OPTIONS = frozenset(['noatime', 'relatime', 'norelatime', 'nodiratime', 'strictatime', 'lazytime', 'noexec',
                           'ro', 'rw', 'sync', 'async', 'dirsync', 'silent', 'loud', 'nofail', 'noauto', 'auto', '_netdev'])


class OverlayInputError(ValueError):
    """Input that cannot be mounted safely; the message names it."""


def validate_name(name, what='repl name'):
    if not isinstance(name, str) or not name or name in ('.', '..') or len(name) > 255:
        raise OverlayInputError('%s %r cannot be used as a directory name' % (what, name))
    bad = NAME_BAD.search(name)
    if bad:
        raise OverlayInputError('%s %r holds %r, which cannot be in a path component or breaks fstab or overlay '
                                'options; refused' % (what, name, bad.group(0)))
    return name


def validate_path(path, what):
    """Return ``path`` if it is absolute, normalised and free of separators overlay or fstab would misread."""
    if not isinstance(path, str) or not path.startswith('/'):
        raise OverlayInputError('%s %r is not an absolute path' % (what, path))
    bad = FORBIDDEN.search(path)
    if bad:
        raise OverlayInputError('%s %r holds %r, which breaks overlay options or fstab; refused' % (what, path, bad.group(0)))
    parts = path.split('/')[1:]
    if path != '/' and any(p in ('', '.', '..') for p in parts):
        raise OverlayInputError('%s %r is not normalised (empty, "." or ".." component); refused' % (what, path))
    return path


def overlay_options(lowerdir, upperdir, workdir, extra=MOUNT_OPTIONS):
    return ','.join(['lowerdir=' + lowerdir, 'upperdir=' + upperdir, 'workdir=' + workdir] + list(extra))


def _inside(path, other):
    return path == other or path.startswith(other.rstrip('/') + '/')


def check_nesting(mounts, roots):
    """Refuse homes and scratch dirs that lie inside one another, or roots that lie inside a home or scratch dir.

    A user owns their home, so anything below it is theirs to swap; one
    user's scratch or home inside another's would hand it to that user.
    """
    places = []
    for m in mounts:
        if m['home'] is not None:
            places.append((m['home'], 'home of repl %s' % m['user']))
        places.append((m['scratch'], 'scratch of repl %s' % m['user']))
    # Sorted with a trailing '/', a path inside another sorts right after it
    # (anything in between would lie inside too, and be refused first).
    ordered = sorted(set(places), key=lambda p: (p[0].rstrip('/') + '/', p[1]))
    for (a, what_a), (b, what_b) in zip(ordered, ordered[1:]):
        if _inside(b, a):
            raise OverlayInputError('%s (%s) lies inside %s (%s); every home and scratch dir must be apart' % (what_b, b, what_a, a))
    for root, what in roots:
        for place, what_p in places:
            if _inside(root, place):
                raise OverlayInputError('%s %s lies inside the %s (%s), which that user controls' % (what, root, what_p, place))
            if what in ('views_root', 'lower_root') and _inside(place, root):
                raise OverlayInputError('the %s (%s) lies inside %s %s' % (what_p, place, what, root))


def resolve_repls(repls, getpwnam):
    """Fill each repl's missing uid, gid and home from the passwd database; return (repls, {name: why not}).

    ``getpwnam`` is pwd.getpwnam (raises KeyError for an unknown user). A user
    the host does not know must be given uid, gid and home; else it is named
    in the second value and left unresolved (uid, gid, home as given), so that
    the run can plan its place, skip it and serve everyone else. So is a user
    whose given uid is not the one the host knows her by: her view and upper
    would belong to another account.
    """
    out, unresolved = [], {}
    for repl in repls:
        repl = dict(repl)
        name = validate_name(repl.get('name'))
        missing = [k for k in ('uid', 'gid', 'home') if repl.get(k) is None]
        try:
            pw = getpwnam(name)
        except KeyError:
            if missing:
                unresolved[name] = ('repl user %s does not exist on this host (no passwd entry), and %s '
                                    'not given' % (name, ', '.join(missing)))
            out.append(repl)
            continue
        if repl.get('uid') is not None and repl['uid'] != pw.pw_uid:
            unresolved[name] = ('repl user %s: uid %s is given, but this host knows %s as uid %d; refused, since her '
                                'view and upper would belong to another account (give her uid, or none to take it from '
                                'the passwd database)' % (name, repl['uid'], name, pw.pw_uid))
            out.append(repl)
            continue
        for key, value in (('uid', pw.pw_uid), ('gid', pw.pw_gid), ('home', pw.pw_dir)):
            if repl.get(key) is None:
                repl[key] = value
        if 'home' in missing:
            # One user's odd passwd entry leaves that user unserved, not the whole host.
            try:
                validate_path(pw.pw_dir or '', 'home %r from the passwd database' % pw.pw_dir)
            except OverlayInputError as exc:
                unresolved[name] = 'repl user %s: %s' % (name, exc)
                repl['home'] = None
        out.append(repl)
    return out, unresolved


def plan_mounts(repls, ecosystems, lower_root, scratch_root, views_root=VIEWS_ROOT, unresolved=None):
    """Return the list of mounts for every repl user and ecosystem.

    Each mount is a dict: user, uid, gid, ecosystem, home, scratch, layers,
    target (the root-owned view), link (where the package manager looks),
    lowerdir, upperdir, workdir, options. Raises OverlayInputError naming the
    first bad input; nothing is planned for invalid input.

    Users named in ``unresolved`` (the controller, which cannot read the
    host's passwd database, passes every name whose uid, gid or home is not
    given) may lack uid, gid and home: those stay None, and so does link.
    Anyone else without a home gets C(/home/<name>).
    """
    unresolved = unresolved or ()
    validate_path(lower_root, 'lower_root')
    validate_path(scratch_root, 'scratch_root')
    validate_path(views_root, 'views_root')
    if not ecosystems:
        raise OverlayInputError('ecosystems is empty')
    for eco in ecosystems:
        if eco not in ECOSYSTEMS:
            raise OverlayInputError('ecosystem %r is not supported (choose from %s)' % (eco, ', '.join(sorted(ECOSYSTEMS))))
    names = set()
    mounts = []
    for repl in repls:
        name = validate_name(repl.get('name'))
        if name in names:
            raise OverlayInputError('repl name %r appears twice' % name)
        names.add(name)
        for key in ('uid', 'gid'):
            value = repl.get(key)
            if value is None and name in unresolved:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise OverlayInputError('repl %s: %s %r is not a positive integer (root cannot be a repl user)' % (name, key, value))
        home = repl.get('home') or (None if name in unresolved else '/home/' + name)
        if home is not None:
            validate_path(home, 'repl %s: home' % name)
        scratch = validate_path(repl.get('scratch') or posixpath.join(scratch_root, name), 'repl %s: scratch' % name)
        if home == '/' or scratch == '/':
            raise OverlayInputError('repl %s: home and scratch cannot be /' % name)
        for eco in ecosystems:
            layers = posixpath.join(scratch, 'cacache_' + eco)
            target = posixpath.join(views_root, name, eco)
            link = None
            if home is not None:
                link = validate_path(posixpath.join(home, ECOSYSTEMS[eco]['target']), 'repl %s: cache dir' % name)
            lowerdir = posixpath.join(lower_root, ECOSYSTEMS[eco]['subdir'])
            upperdir = posixpath.join(layers, 'upper')
            workdir = posixpath.join(layers, 'work')
            mounts.append({
                'user': name, 'uid': repl.get('uid'), 'gid': repl.get('gid'), 'ecosystem': eco,
                'home': home, 'scratch': scratch, 'layers': layers, 'target': target, 'link': link,
                'lowerdir': lowerdir, 'upperdir': upperdir, 'workdir': workdir,
                'options': overlay_options(lowerdir, upperdir, workdir),
            })
    check_nesting(mounts, [(views_root, 'views_root'), (scratch_root, 'scratch_root'), (lower_root, 'lower_root')])
    return mounts


def default_line(mount):
    """The fstab line for a mount, as the role's default template writes it."""
    return 'overlay %s overlay %s 0 0' % (escape(mount['target']), mount['options'])


def check_line(line, mount):
    """Check that a rendered fstab line mounts ``mount`` with its planned layers.

    An operator's template may add options (x-systemd.*, noatime, ...) but
    cannot change the target, the type or the three layer directories.
    """
    fields = parse_line(line)
    if not fields:
        raise OverlayInputError('fstab line %r for %s (%s) is not an fstab entry' % (line, mount['user'], mount['ecosystem']))
    if fields[1] != mount['target'] or fields[2] != 'overlay':
        raise OverlayInputError('fstab line %r for %s must mount type overlay at %s' % (line, mount['user'], mount['target']))
    items = [o for o in fields[3].split(',') if o] if len(fields) > 3 else []
    keys = [o.partition('=')[0] for o in items]
    opts = split_options(fields[3]) if len(fields) > 3 else {}
    for key in ('lowerdir', 'upperdir', 'workdir'):
        if opts.get(key) != mount[key] or keys.count(key) != 1:
            raise OverlayInputError('fstab line %r for %s: %s must be %s, given once' % (line, mount['user'], key, mount[key]))
    missing = [o for o in MOUNT_OPTIONS if o not in items]
    if missing:
        raise OverlayInputError('fstab line %r for %s drops %s, which keep users apart; refused' % (line, mount['user'], ','.join(missing)))
    for item in items:
        key = item.partition('=')[0]
        if key in ('lowerdir', 'upperdir', 'workdir') or item in MOUNT_OPTIONS or item in EXTRA_OPTIONS:
            continue
        if item.startswith('x-') or item.startswith('comment='):
            continue
        raise OverlayInputError('fstab line %r for %s: option %r is not allowed (it could add a layer or weaken the view); '
                                'allowed extras: %s, x-*, comment=' % (line, mount['user'], item, ', '.join(sorted(EXTRA_OPTIONS))))
    return fields
