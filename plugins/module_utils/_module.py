# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules' ``run_module(module)`` share: the options of a download from a store, the time of a run, an
option check, a command runner and an HTTP opener.

Private to the collection; the API may change without notice.
"""

from __future__ import annotations

import copy
import datetime

# The options of a module that downloads from a store over HTTP, as the doc fragment pkgcache.overlay.store_http
# documents them.
STORE_HTTP_OPTIONS = dict(
    workers=dict(type='int', default=8),
    timeout=dict(type='int', default=30),
    validate_certs=dict(type='bool', default=True),
    deadline=dict(type='int', default=900),
)


def store_http_options():
    return copy.deepcopy(STORE_HTTP_OPTIONS)


# The options of a module that takes a snapshot into a repl host's store (snapshot_sync, snapshot_receive): the limits
# of what it accepts, the signature check and the store lock.
SNAPSHOT_INTAKE_OPTIONS = dict(
    max_manifest_size=dict(type='int', default=268435456),
    max_object_size=dict(type='int', default=0),
    max_snapshot_size=dict(type='int', default=0),
    allowed_signers=dict(type='path'),
    signer_identity=dict(type='str', default='pkgcache'),
    lock_timeout=dict(type='int', default=0),
)


def snapshot_intake_options():
    return copy.deepcopy(SNAPSHOT_INTAKE_OPTIONS)


def utc_now():
    """The time of a run, as recorded in manifests and revision records (UTC, whole seconds, ISO 8601)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def require_at_least(module, name, minimum):
    """Fail the module unless its integer option ``name`` is ``minimum`` or more."""
    if module.params[name] < minimum:
        module.fail_json(msg='%s must be %d or more, got %d' % (name, minimum, module.params[name]))


def runner(module):
    """``run(argv, env, data=None) -> (rc, out, err)`` through the module's run_command, bytes in and out."""
    def run(argv, env, data=None):
        return module.run_command(argv, data=data, binary_data=True)
    return run


def opener(timeout=30, validate_certs=True):
    """``open(url)``: open_url with the module's timeout and certificate check, following safe redirects only."""
    # Imported here: the metrics timer runs _status (which imports this file) on hosts without Ansible.
    from ansible.module_utils.urls import open_url

    def open_(url, method=None):
        return open_url(url, method=method, timeout=timeout, validate_certs=validate_certs, follow_redirects='safe')
    return open_
