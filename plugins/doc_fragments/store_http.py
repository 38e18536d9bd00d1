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
    description:
      - Timeout in seconds of each network operation of an HTTP request (connecting, each read of the response).
      - Each download as a whole must also end within a deadline, however slowly the server sends it.
    type: int
    default: 30
  validate_certs:
    description: Verify TLS certificates of an C(https) store.
    type: bool
    default: true
"""
