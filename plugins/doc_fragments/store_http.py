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
      - Each download as a whole must also end within O(deadline), however slowly the server sends it.
    type: int
    default: 30
  validate_certs:
    description: Verify TLS certificates of an C(https) store.
    type: bool
    default: true
  deadline:
    description:
      - Seconds within which each download from the store (with M(pkgcache.overlay.snapshot_sync), C(refs/latest), a
        manifest, a signature or an object; with M(pkgcache.overlay.snapshot_verify), an object it repairs) must end,
        from the request to its last byte, however the server paces it. A slower download fails with an error that
        names its URL, and once an object missed its deadline no further objects are requested. Raise it for very
        large objects on slow links.
      - Must be V(1) or more.
    type: int
    default: 900
    version_added: 0.3.0
"""
