# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """Attribute values that every module of the collection shares (use with ansible.builtin.action_common_attributes)."""

    DOCUMENTATION = r"""
attributes:
  action_group:
    support: full
    membership:
      - pkgcache.overlay.pkgcache
  platform:
    support: full
    platforms: posix
"""
