# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash points for the crash-safety tests.

Private to the collection; the API may change without notice.

When the environment variable ``PKGCACHE_KILL_AT`` names a point, the
process sends itself SIGKILL there: a real, uncatchable kill at a known
place in the work, so the tests can check what a crash leaves behind.
"""

from __future__ import annotations

import os
import signal

ENV = 'PKGCACHE_KILL_AT'


def point(name):
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
