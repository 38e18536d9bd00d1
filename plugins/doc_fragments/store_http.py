# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """Options of the modules that download objects from a snapshot store over HTTP."""

    DOCUMENTATION = r"""
options:
  workers:
    description: Parallel downloads.
    type: int
    default: 8
  timeout:
    description: Timeout in seconds of each HTTP request.
    type: int
    default: 30
  validate_certs:
    description: Verify TLS certificates of an C(https) store.
    type: bool
    default: true
"""
