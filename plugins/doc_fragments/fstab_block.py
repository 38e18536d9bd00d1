# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """The options of the modules that keep a managed block in fstab."""

    DOCUMENTATION = r"""
options:
  fstab:
    description: The fstab file that holds the managed block.
    type: path
    default: /etc/fstab
  backup:
    description: Keep a timestamped copy of fstab before changing it.
    type: bool
    default: false
"""
