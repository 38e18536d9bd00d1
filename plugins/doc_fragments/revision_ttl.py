# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """The option of the modules that publish a revision record: how long the record stays valid."""

    DOCUMENTATION = r"""
options:
  revision_ttl:
    description:
      - Seconds a revision record stays valid after it is signed (its C(expires); V(3600) at least). Hosts refuse an
        expired record and keep their snapshot, so a mirror frozen on an old record is noticed (as CernVM-FS's
        C(.cvmfspublished) expiry and TUF's timestamp role do).
      - Publishing the snapshot that is already published signs its record again (the same revision, a higher
        C(serial), a fresh expiry) once less than half of this is left; the build role's C(pkgcache-resign.timer)
        does so on a schedule.
    type: int
    default: 604800
    version_added: 0.4.0
"""
