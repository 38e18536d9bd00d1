# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """The option of the modules that take a store's lock and fail at once by default when another run holds it."""

    DOCUMENTATION = r"""
options:
  lock_timeout:
    description: Seconds to wait for another run on this host to release the store lock (V(0) fails at once).
    type: int
    default: 0
"""
