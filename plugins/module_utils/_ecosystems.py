# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ecosystems a snapshot can hold, each with the module that fills its cache.

Private to the collection; the API may change without notice.

This table is the one list of ecosystems: the build order, the modules'
``choices`` and the unit test that checks every module doc and role argument
spec that lists ecosystems. Adding an ecosystem means one filler module (see
``_fill``) and one entry here (the mount side adds where its package manager
looks, in ``_overlay.ECOSYSTEMS``).
"""

from __future__ import annotations

from . import _mavencache, _npmcache, _pipcache, _uvcache

# In build order: the order of a snapshot's directories and of its manifest's ``ecosystems``.
FILLERS = {'pip': _pipcache, 'npm': _npmcache, 'maven': _mavencache, 'uv': _uvcache}
ECOSYSTEMS = tuple(FILLERS)
