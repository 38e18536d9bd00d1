# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""/proc/self/mountinfo: reading, parsing and searching it.

Private to the collection; the API may change without notice.

``parse_mountinfo`` returns a ``MountInfo``: the mounts in the kernel's order
(a later line is on top of an earlier one at the same mount point), with
indexes by mount point and by overlay layer built on first use, so that a run
over a thousand users looks each one up in constant time. Plain lists of
mount dicts (a filtered copy, a test's table) work with every function too.
"""

from __future__ import annotations

import posixpath

from ._fstab import unescape

MOUNTINFO = '/proc/self/mountinfo'


def mountinfo_text(path=MOUNTINFO):
    with open(path) as f:
        return f.read()


def split_options(text):
    """Split a mount option string into a dict (flags map to True)."""
    opts = {}
    for item in text.split(','):
        if not item:
            continue
        key, sep, value = item.partition('=')
        opts[key] = value if sep else True
    return opts


class MountInfo(list):
    """Parsed mountinfo lines, in order, indexed on first lookup. Not to be changed once looked up."""

    _points = None
    _layers = None

    def points(self):
        """{mount point: the topmost mount there}."""
        if self._points is None:
            self._points = dict((m['mount_point'], m) for m in self)
        return self._points

    def layers(self):
        """{upper or work dir: [indexes of the overlays that use it]}."""
        if self._layers is None:
            self._layers = {}
            for i, m in enumerate(self):
                if m['fstype'] == 'overlay':
                    for path in set(m['super_options'].get(k) for k in ('upperdir', 'workdir')) - set([None, True]):
                        self._layers.setdefault(path, []).append(i)
        return self._layers


def _indexed(info):
    return info if isinstance(info, MountInfo) else MountInfo(info)


def parse_mountinfo(text):
    """Parse mountinfo text into a MountInfo of dicts: mount_id, dev, root, mount_point, mount_options, fstype,
    source, super_options (paths unescaped as fstab's fields are)."""
    mounts = MountInfo()
    for line in text.splitlines():
        parts = line.split(' ')
        if '-' not in parts:
            continue
        sep = parts.index('-')
        if sep < 6 or len(parts) < sep + 4:
            continue
        mounts.append({
            'mount_id': parts[0],
            'dev': parts[2],
            'root': unescape(parts[3]),
            'mount_point': unescape(parts[4]),
            'mount_options': split_options(parts[5]),
            'fstype': parts[sep + 1],
            'source': unescape(parts[sep + 2]),
            'super_options': split_options(parts[sep + 3]),
        })
    return mounts


def current():
    """This host's mount table, parsed."""
    return parse_mountinfo(mountinfo_text())


def mounted_at(mountinfo, path):
    """Return the topmost mount at ``path``, or None."""
    return _indexed(mountinfo).points().get(path)


def mount_of(mountinfo, path):
    """Return the mount that holds the absolute, normalised ``path`` (its longest mount point prefix), or None."""
    points = _indexed(mountinfo).points()
    if not path.startswith('/'):
        return None
    while True:
        if path in points:
            return points[path]
        if path == '/':
            return None
        path = posixpath.dirname(path)


def using_layers(mountinfo, upperdir, workdir):
    """Overlays that use ``upperdir`` as upper or ``workdir`` as work dir (either), in mountinfo's order."""
    info = _indexed(mountinfo)
    layers = info.layers()
    return [info[i] for i in sorted(set(layers.get(upperdir, []) + layers.get(workdir, [])))]


def overlay_state(mountinfo, mount):
    """Return 'mounted', 'stale' (other layers) or 'absent' for a planned mount."""
    m = mounted_at(mountinfo, mount['target'])
    if m is None:
        return 'absent'
    so = m['super_options']
    if m['fstype'] == 'overlay' and all(so.get(k) == mount[k] for k in ('lowerdir', 'upperdir', 'workdir')):
        return 'mounted'
    return 'stale'
