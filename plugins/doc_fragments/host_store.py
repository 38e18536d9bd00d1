# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """The option of the modules that work on a repl host's store."""

    DOCUMENTATION = r"""
options:
  store:
    description: The host's store.
    type: path
    default: /var/lib/pkgcache
"""
