# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_sync as a module: its arguments, and one run on a repl host.

Private to the collection; the API may change without notice.

A run pulls (or, in push mode, reads from the staging dir) and activates a snapshot with _sync, keeps the
managed fstab block with the read-only bind mount of ``current``, and mounts it. Each step is decided once by a
pure function (_sync.plan, the block's lines, mount_action); check mode returns those decisions, a real run
executes them.
"""

from __future__ import annotations

import os
import socket
import time

from . import _hoststate as hs
from . import _module
from . import _push
from . import _sync
from ._fstab import FstabError, escape
from ._fstabfile import update_block
from ._lock import LockError
from ._manifest import ManifestError
from ._mountcmd import MountError, mount_from_fstab, unmount
from ._mountinfo import mounted_at, mountinfo_text, parse_mountinfo
from ._store import StoreError

BLOCK = 'snapshot'
ERRORS = (_sync.SyncError, StoreError, ManifestError, FstabError, MountError, LockError, OSError)


def module_args():
    """AnsibleModule's keyword arguments for snapshot_sync."""
    return dict(
        argument_spec=dict(
            url=dict(type='str'),
            mirrors=dict(type='list', elements='str'),
            mirror_key=dict(type='str', no_log=False),
            source=dict(type='path'),
            snapshot=dict(type='str', default='latest'),
            store=dict(type='path', default='/var/lib/pkgcache'),
            mount_point=dict(type='path', default='/mnt/cacache'),
            fstab=dict(type='path', default='/etc/fstab'),
            backup=dict(type='bool', default=False),
            allow_downgrade=dict(type='bool', default=False),
            **dict(_module.store_http_options(), **_module.snapshot_intake_options())
        ),
        required_one_of=[('url', 'mirrors', 'source')],
        mutually_exclusive=[('url', 'source'), ('mirrors', 'source')],
        supports_check_mode=True,
    )


def bind_line(store, mount_point):
    """The managed block's one line: ``current`` bind-mounted read-only at the mount point."""
    return '%s %s none bind,ro,nosuid,nodev 0 0' % (escape(os.path.join(store, 'current')), escape(mount_point))


def mount_action(mountinfo, mount_point, snap_id):
    """What the mount point needs to show ``snap_id``: 'unchanged', 'mounted' or 'remounted'."""
    current = mounted_at(parse_mountinfo(mountinfo), mount_point)
    if current is not None and current['root'].endswith('/trees/' + snap_id):
        return 'unchanged'
    return 'remounted' if current is not None else 'mounted'


def apply_mount(run, action, mount_point, fstab):
    """Carry out a mount_action() with the options of the fstab line."""
    if action == 'unchanged':
        return
    if not os.path.isdir(mount_point):
        os.makedirs(mount_point, 0o755)
    if action == 'remounted':
        # Nobody's overlay uses this mount as a lower, so a lazy detach is safe: open files keep the old snapshot
        # until they are closed.
        if unmount(run, mount_point) == 'busy':
            unmount(run, mount_point, lazy=True)
    mount_from_fstab(run, fstab, mount_point)


def params(p, check_mode):
    """The run's parameters (defaults filled in, zero limits as None) and its opener; SyncError on a staging dir
    that is not safe."""
    p = dict(p)
    p['mirror_key'] = p['mirror_key'] or socket.getfqdn()
    p['max_object_size'] = p['max_object_size'] or None
    p['max_snapshot_size'] = p['max_snapshot_size'] or None
    if not p['source']:
        return p, _module.opener(p['timeout'], p['validate_certs'])
    try:
        if os.path.lexists(p['source']) or not check_mode:  # a dry run on a new host has none yet
            _push.check_staging(p['source'])
    except _push.PushError as exc:
        raise _sync.SyncError(str(exc))
    p['mirrors'] = [_push.source_url(p['source'])]
    return p, _push.source_opener(p['source'])


def record_last_sync(module, store, outcome):
    """Remember the outcome for snapshot_status (not in check mode; never fails the run)."""
    if module.check_mode or not os.path.isdir(store):
        return
    outcome.update({'time': _module.utc_now(), 'epoch': int(time.time())})
    try:
        hs.write_last_sync(store, outcome)
    except OSError as exc:
        module.warn('cannot record the sync result in %s: %s' % (store, exc))


def converge(module, p, opener):
    """One run under the store lock: sync, the fstab block, the mount; return the result and the fstab change."""
    check = module.check_mode
    with _sync.locked(p, check):
        result = _sync.sync(p, opener, check_mode=check, now=_module.utc_now(), run=_module.runner(module))
        fstab = update_block(module, p['fstab'], BLOCK, [bind_line(p['store'], p['mount_point'])], p['backup'])
        result['mount'] = mount_action(mountinfo_text(), p['mount_point'], result['id'])
        if not check:
            apply_mount(module.run_command, result['mount'], p['mount_point'], p['fstab'])
            if p['source']:
                _push.clear_staged(p['source'])
    return result, fstab


def run_module(module):
    """snapshot_sync's main()."""
    _module.require_at_least(module, 'deadline', 1)
    try:
        p, opener = params(module.params, module.check_mode)
    except (_sync.SyncError, OSError) as exc:
        module.fail_json(msg=str(exc))
    if not p['allowed_signers']:
        module.warn('allowed_signers is not set: the snapshot signature is not checked')
    try:
        result, fstab = converge(module, p, opener)
    except ERRORS as exc:
        record_last_sync(module, p['store'], {'ok': False, 'error': str(exc)})
        module.fail_json(msg=str(exc))
    record_last_sync(module, p['store'], {'ok': True, 'id': result['id']})
    result['changed'] = result['changed'] or fstab['changed'] or result['mount'] != 'unchanged'
    if fstab['backup_file']:
        result['backup_file'] = fstab['backup_file']
    if module._diff and fstab['changed']:
        result['diff'] = fstab['diff']
    module.exit_json(**result)
