# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pkgcache-host: the host command that runs the modules' plan code without Ansible (root only).

Private to the collection; the API may change without notice.

    pkgcache-host serve-user NAME   create or switch one repl user's views (the unit pkgcache-view@NAME runs it)
    pkgcache-host login             the PAM session hook: serve-user for PAM_USER, bounded, never failing a login
    pkgcache-host sync              take the newest valid revision, verify, activate, switch idle users, collect garbage
    pkgcache-host status            the host's status as JSON

Everything it may do comes from the policy (_hostpolicy, /etc/pkgcache/host.json), which the roles write. The work
is the modules' own: _hostsync.converge (snapshot_sync), _mounts.prepare/converge (overlay_mounts), _gc (snapshot_gc),
_status (snapshot_status), run through HostModule, a stand-in for the few AnsibleModule methods they use.

fstab: overlay_mounts owns the block ``mounts`` (the inventory's users); the host command owns the block
``host-users`` (users served at login that the inventory does not name). Both write fstab only under the lock of the
views root, so their writes never interleave; a user's lines stay in the block that holds them (a switch by the host
command rewrites her lines in ``mounts`` in place, and leaves the others as they are), a new user's go to
``host-users``, and an Ansible run that plans her takes her lines over into ``mounts`` in the same write.
"""

from __future__ import annotations

import fcntl
import grp
import json
import os
import pwd
import sys
import syslog
import time

from . import _hostpolicy as hp
from . import _mountinfo as mi
from . import _overlay as ov
from ._fstab import parse_line
from ._fstabfile import read_text, update_blocks
from ._lock import VIEWS_LOCK, LockError, StoreLock
from ._mountinfo import mountinfo_text

ENV = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C'}
VIEW_UNIT = 'pkgcache-view@.service'
STATS = 'host-stats.json'
OUTCOMES = ('served', 'refused', 'lock_timeout', 'failed')


class HostError(RuntimeError):
    """The command cannot do what it was asked; the message says why."""


class HostModule(object):
    """The part of AnsibleModule that the shared code calls: check_mode, warn, run_command, backup_local and
    atomic_move. Commands run with a fixed environment (ENV), never the caller's."""

    check_mode = False

    def __init__(self, log=None):
        self.warnings = []
        self.log = log or (lambda msg: None)

    def warn(self, msg):
        self.warnings.append(msg)
        self.log('warning: %s' % msg)

    def run_command(self, argv, data=None, binary_data=False):
        import subprocess  # pylint: disable=import-outside-toplevel
        res = subprocess.run(argv, input=data if data is None or isinstance(data, bytes) else data.encode(),
                             capture_output=True, env=ENV, check=False)
        return (res.returncode, res.stdout.decode('utf-8', 'surrogateescape'),
                res.stderr.decode('utf-8', 'surrogateescape'))

    @staticmethod
    def backup_local(path):
        import shutil  # pylint: disable=import-outside-toplevel
        dest = '%s.%d.%s~' % (path, os.getpid(), time.strftime('%Y-%m-%d@%H:%M:%S'))
        shutil.copy2(path, dest)
        return dest

    @staticmethod
    def atomic_move(src, dest, unsafe_writes=False):
        try:
            cur = os.stat(dest)
            os.chown(src, cur.st_uid, cur.st_gid)
            os.chmod(src, cur.st_mode & 0o7777)
        except FileNotFoundError:
            pass
        os.rename(src, dest)


def opener(timeout=30, validate_certs=True):
    """``open(url)`` with urllib (no Ansible on the host): certificates checked unless told otherwise."""
    import ssl  # pylint: disable=import-outside-toplevel
    import urllib.request  # pylint: disable=import-outside-toplevel
    context = ssl.create_default_context()
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url_opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def open_(url):
        return url_opener.open(url, timeout=timeout)
    return open_


def sync_params(policy):
    """snapshot_sync's parameters from the policy (the defaults of its argument spec for the rest)."""
    from . import _hostsync  # pylint: disable=import-outside-toplevel  # (the login hook does not need it)
    spec = _hostsync.module_args()['argument_spec']
    p = dict((k, v.get('default')) for k, v in spec.items())
    keys = ('store', 'mount_point', 'fstab', 'backup', 'workers', 'timeout', 'validate_certs', 'deadline',
            'max_manifest_size', 'max_object_size', 'max_snapshot_size', 'allowed_signers', 'signer_identity',
            'lock_timeout')
    p.update(dict((k, policy[k]) for k in keys))
    if not policy['mirrors']:
        raise HostError('the policy names no mirrors: sync needs distribute_url (pull mode)')
    import socket  # pylint: disable=import-outside-toplevel
    p.update(mirrors=list(policy['mirrors']), source=None, url=None, snapshot='latest', allow_downgrade=False,
             mirror_key=socket.getfqdn(), max_object_size=policy['max_object_size'] or None,
             max_snapshot_size=policy['max_snapshot_size'] or None)
    return p


def active_tree(store):
    """The active snapshot's tree (what ``<store>/current`` points to)."""
    try:
        target = os.readlink(os.path.join(store, 'current'))
    except OSError:
        raise HostError('no active snapshot in %s: run the distribute role or pkgcache-host sync first' % store)
    return os.path.normpath(os.path.join(store, target))


def placed_lines(fstab_text, run_lines, targets):
    """update_blocks' edits for a host run that plans ``targets`` and renders ``run_lines`` for them.

    A planned target already in ``mounts`` (the inventory's block) gets its new line there, in place; one already in
    ``host-users`` there; a new one is added to ``host-users``. A target whose mount failed and has no line to keep
    (run_lines has none for it) leaves its block. Every other line of both blocks stays as it is.
    """
    from . import _mounts as mt  # pylint: disable=import-outside-toplevel
    new = dict((parse_line(l)[1], l) for l in run_lines if parse_line(l))
    in_mounts = set(f[1] for f in (parse_line(l) for l in mt.block_lines(fstab_text, mt.BLOCK)) if f)

    def edit(cur, add):
        out, seen = [], set()
        for line in cur:
            fields = parse_line(line)
            if fields and fields[1] in targets:
                seen.add(fields[1])
                if fields[1] in new:
                    out.append(new[fields[1]])
            else:
                out.append(line)
        if add:
            out += [new[t] for t in sorted(new) if t not in seen and t not in in_mounts]
        return out
    return [(mt.BLOCK, lambda cur: edit(cur, False)), (mt.HOST_BLOCK, lambda cur: edit(cur, True))]


class UserLock(object):
    """serve-user's lock: the views' lock shared (so that serve-user runs for different users go side by side, and
    overlay_mounts or the sync, which hold it exclusively, exclude them all), then the user's own lock exclusively.
    The fstab write takes a third, short one (``fstab_lock``)."""

    def __init__(self, views_root, name, timeout, poll):
        # Names with '#', which no repl name holds: a user called '.lock-user-x' gets her views dir like anyone.
        self.locks = [StoreLock(views_root, timeout, poll, shared=True, name=VIEWS_LOCK),
                      StoreLock(views_root, timeout, poll, name='%s-user-%s' % (VIEWS_LOCK, name))]
        self.held = []

    def __enter__(self):
        try:
            for lock in self.locks:
                lock.__enter__()
                self.held.append(lock)
        except BaseException:
            self.__exit__(None, None, None)  # what was taken is given back: a timed-out login holds nothing
            raise
        return self

    def __exit__(self, *exc):
        while self.held:
            self.held.pop().__exit__(*exc)
        return False


def fstab_lock(views_root):
    """The lock around one read-modify-write of fstab by serve-user runs side by side (each holds the views' lock
    shared; a holder of it exclusive writes alone anyway)."""
    return StoreLock(views_root, 30, 0.005, name=VIEWS_LOCK + '-fstab')


def view_run(policy, repls, lower_root, module, lock_timeout, lock_poll=0.2, compact=None, user=None):
    """overlay_mounts' run for ``repls`` on this host, its lines from the policy's pattern; returns its result.
    ``user``: the run serves that one user (serve-user), under UserLock rather than the views' exclusive lock."""
    # Imported here, as the sync's code is: the login of a served user needs none of it.
    from . import _mounts as mt  # pylint: disable=import-outside-toplevel
    run = mt.prepare(repls, policy['ecosystems'], lower_root, policy['scratch_root'], policy['views_root'],
                     policy['store'], policy['fstab'], None, 'mounted', policy['lazy'],
                     policy['compact'] if compact is None else compact, False, False, module.warn)
    run.paired = mt.render_lines(run.mounts, [hp.render(policy['line'], m) for m in run.mounts])
    run.unmount_left = False  # the inventory's users that this run does not plan are Ansible's business
    targets = set(m['target'] for m in run.mounts)
    run.blocks = lambda text, lines: placed_lines(text, lines, targets)

    def update(lines):
        with fstab_lock(policy['views_root']):
            return update_blocks(module, policy['fstab'], run.blocks(read_text(policy['fstab']), lines), policy['backup'])
    lock = UserLock(policy['views_root'], user, lock_timeout, lock_poll) if user else None
    return mt.converge(run, False, update, module.warn, False, lock_timeout, lock_poll, lock)


def repl_entry(policy, name):
    """The inventory's entry for ``name`` (with its home or scratch, if given), else just the name."""
    for r in policy['repls']:
        if r['name'] == name:
            return dict(r)
    return {'name': name}


def _link_in_home(home, rel):
    """The value of the symlink at ``home/rel``, read through O_NOFOLLOW fds from the home (None if it is not one).
    Reads a link's value only: any doubt sends the login to the full run, which checks everything itself."""
    parts = rel.split('/')
    fd = os.open(home, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.readlink(parts[-1], dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def already_served(policy, repl, pw, lower_root, info):
    """Is every view of the user mounted on ``lower_root`` with her planned upper, and linked from her home? Then a
    login needs nothing (no lock, no walk): the common login, kept to a mountinfo read and a few readlinks."""
    name = repl['name']
    home = repl.get('home') or pw.pw_dir
    scratch = repl.get('scratch') or os.path.join(policy['scratch_root'], name)
    for eco in policy['ecosystems']:
        target = os.path.join(policy['views_root'], name, eco)
        cur = mi.mounted_at(info, target)
        if cur is None or cur['fstype'] != 'overlay':
            return False
        opts = cur.get('super_options') or {}
        if opts.get('lowerdir') != os.path.join(lower_root, ov.ECOSYSTEMS[eco]['subdir']) \
                or opts.get('upperdir') != os.path.join(scratch, 'cacache_' + eco, 'upper'):
            return False
        if not home or _link_in_home(home, ov.ECOSYSTEMS[eco]['target']) != target:
            return False
    return True


def serve_user(policy, name, module, lock_timeout, lock_poll=0.01):
    """Create or switch ``name``'s views (she must be a repl user by the policy); return overlay_mounts' result."""
    pw = hp.repl_user(name, policy, pwd.getpwnam, grp.getgrnam)
    repl, lower_root = repl_entry(policy, name), active_tree(policy['store'])
    if already_served(policy, repl, pw, lower_root, mi.current()):
        return {'users': {name: dict((e, 'already') for e in policy['ecosystems'])}, 'busy': {}, 'unserved': {}}
    # Compaction walks the whole upper: left to sync, so that a login stays short.
    return view_run(policy, [repl], lower_root, module, lock_timeout, lock_poll, compact=False, user=name)


def served_users(policy):
    """Everyone the host serves: the inventory's users, then those in the host command's block."""
    names = [r['name'] for r in policy['repls']]
    from . import _mounts as mt  # pylint: disable=import-outside-toplevel
    text = read_text(policy['fstab'])
    extra = sorted(mt.host_users(text, policy['views_root']) - set(names))
    return [repl_entry(policy, n) for n in names + extra]


def sync(policy, module):
    """Fetch and activate the newest valid revision, switch the idle users, collect garbage; return a summary."""
    # Imported here: a login (serve-user) needs none of this, and every import costs the hook time.
    from . import _gc, _hostsync, _store as st, _views  # pylint: disable=import-outside-toplevel
    from ._busy import held_files  # pylint: disable=import-outside-toplevel
    p = sync_params(policy)
    try:
        result, dummy = _hostsync.converge(module, p, opener(p['timeout'], p['validate_certs']))
    except _hostsync.ERRORS as exc:
        _hostsync.record_last_sync(module, p['store'], {'ok': False, 'error': str(exc)})
        raise
    _hostsync.record_last_sync(module, p['store'], {'ok': True, 'id': result['id']})
    out = {'id': result['id'], 'previous': result['previous'], 'revision': result['revision'],
           'mirror': result['mirror'], 'fetched_objects': result['fetched_objects'],
           'fetched_bytes': result['fetched_bytes']}
    repls = served_users(policy)
    if repls:
        views = view_run(policy, repls, result['path'], module, policy['lock_timeout'])
        out.update(users=views['users'], busy=views['busy'], unserved=views['unserved'])
    with StoreLock(policy['store'], policy['lock_timeout']):
        st.cleanup_leftovers(policy['store'])
        gc_plan = _gc.plan(policy['store'], policy['gc_keep'], mountinfo_text(), read_text(policy['fstab']), True,
                           held=held_files(), detached_lowers=_views.live_lowerdirs(policy['store']))
        _gc.apply(policy['store'], gc_plan)
    out.update(removed=gc_plan['remove'], freed_bytes=gc_plan['bytes'])
    return out


def status(policy):
    from . import _module, _status  # pylint: disable=import-outside-toplevel
    return _status.gather(policy['store'], policy['fstab'], policy['scratch_root'], _module.utc_now())


# The hook's outcomes, counted for the metrics (node_exporter's textfile collector reads pkgcache_host.prom).
def count(policy, outcome, now=None):
    """Add one ``outcome`` to the host command's counters (under a lock of their own) and rewrite its metrics file."""
    path = os.path.join(policy['store'], STATS)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            stats = json.loads(os.pread(fd, 65536, 0).decode('utf-8') or '{}')
        except ValueError:
            stats = {}
        stats[outcome] = int(stats.get(outcome, 0)) + 1
        if outcome != 'served':
            stats['last_failure'] = int(now or time.time())
        data = json.dumps(stats, sort_keys=True).encode()
        size = os.fstat(fd).st_size
        # Padded to the old size rather than truncated (JSON allows trailing blanks): one write, no truncate.
        os.pwrite(fd, data.ljust(size), 0)
        if policy['textfile_dir'] and os.path.isdir(policy['textfile_dir']):
            write_metrics(policy['textfile_dir'], stats)
    finally:
        os.close(fd)
    return stats


def metrics_text(stats):
    lines = ['# HELP pkgcache_host_serve_total Views served by pkgcache-host (login hook, pkgcache-view@ unit), by outcome.',
             '# TYPE pkgcache_host_serve_total counter']
    lines += ['pkgcache_host_serve_total{outcome="%s"} %d' % (o, int(stats.get(o, 0))) for o in OUTCOMES]
    lines += ['# HELP pkgcache_host_serve_last_failure_timestamp_seconds When a serve last did not serve its user.',
              '# TYPE pkgcache_host_serve_last_failure_timestamp_seconds gauge',
              'pkgcache_host_serve_last_failure_timestamp_seconds %d' % int(stats.get('last_failure', 0))]
    return '\n'.join(lines) + '\n'


def write_metrics(textfile_dir, stats):
    """Write ``pkgcache_host.prom`` atomically; called under the counters' lock, so one temp name is enough (and no
    random one: importing tempfile seeds a generator, which a login does not need to pay for)."""
    tmp = os.path.join(textfile_dir, '.pkgcache_host.prom.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(metrics_text(stats))
        os.chmod(tmp, 0o644)
        os.rename(tmp, os.path.join(textfile_dir, 'pkgcache_host.prom'))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def queue_unit(name):
    """Start pkgcache-view@NAME without waiting (the unit waits for the lock as long as a sync would)."""
    import subprocess  # pylint: disable=import-outside-toplevel
    res = subprocess.run(['systemd-escape', '--template=' + VIEW_UNIT, '--', name], capture_output=True, text=True,
                         env=ENV, check=False)
    if res.returncode != 0:
        return False
    return subprocess.run(['systemctl', 'start', '--no-block', res.stdout.strip()], capture_output=True, env=ENV,
                          check=False).returncode == 0


def log(msg, priority=syslog.LOG_INFO):
    syslog.openlog('pkgcache-host', 0, syslog.LOG_AUTHPRIV)
    syslog.syslog(priority, msg)


def serve_outcome(policy, name, lock_timeout, login):
    """serve-user with its outcome counted; return (outcome, message)."""
    module = HostModule()
    try:
        res = serve_user(policy, name, module, lock_timeout)
    except hp.PolicyError as exc:
        outcome, msg = 'refused', str(exc)
    except LockError as exc:
        outcome, msg = 'lock_timeout', str(exc)
        if login:  # her view comes as soon as the other run ends, without holding up her login
            msg += '; %s' % ('queued pkgcache-view@%s' % name if queue_unit(name) else 'could not queue pkgcache-view@')
    except Exception as exc:  # pylint: disable=broad-except  # counted and logged, whatever it is
        outcome, msg = 'failed', '%s: %s' % (name, exc)
    else:
        unserved = res['unserved'].get(name)
        outcome = 'failed' if unserved else 'served'
        msg = '%s: %s%s%s' % (name, json.dumps(res['users'].get(name, {}), sort_keys=True),
                              ' busy %s' % json.dumps(res['busy'][name]) if name in res['busy'] else '',
                              ' NOT SERVED %s' % json.dumps(unserved) if unserved else '')
    try:
        count(policy, outcome)
    except OSError as exc:
        msg += '; the counters could not be written: %s' % exc
    return outcome, msg


def become_root():
    """Refuse to run unless root; drop whatever the caller left us (a real uid of the user under pam_exec without
    seteuid, which would let her signal us; her environment)."""
    if os.geteuid() != 0:
        raise SystemExit('pkgcache-host: must be run as root')
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    os.umask(0o022)
    os.environ.clear()
    os.environ.update(ENV)


def main(argv=None, policy_path=hp.POLICY):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ['login']:  # the PAM hook, at every login: no argument parser to build
        pam = dict((k, os.environ.get(k, '')) for k in ('PAM_USER', 'PAM_TYPE'))
        become_root()
        return login(policy_path, pam)
    import argparse  # pylint: disable=import-outside-toplevel
    ap = argparse.ArgumentParser(prog='pkgcache-host', description='pkgcache.overlay on the host, without Ansible')
    ap.add_argument('--policy', default=policy_path, help='the policy file (default: %(default)s)')
    sub = ap.add_subparsers(dest='command', required=True)
    s = sub.add_parser('serve-user', help="create or switch one repl user's views")
    s.add_argument('name')
    s.add_argument('--lock-timeout', type=float, help='seconds to wait for another run (default: the policy\'s lock_timeout)')
    sub.add_parser('login', help='the PAM session hook: serve PAM_USER; never fails')
    sub.add_parser('sync', help='fetch, verify and activate the newest revision, switch idle users, collect garbage')
    sub.add_parser('status', help="the host's status as JSON")
    args = ap.parse_args(argv)
    pam = {} if args.command != 'login' else dict((k, os.environ.get(k, '')) for k in ('PAM_USER', 'PAM_TYPE'))
    become_root()
    if args.command == 'login':
        return login(args.policy, pam)
    try:
        policy = hp.read_policy(args.policy)
    except hp.PolicyError as exc:
        sys.stderr.write('pkgcache-host: %s\n' % exc)
        return 2
    if args.command == 'serve-user':
        timeout = policy['lock_timeout'] if args.lock_timeout is None else args.lock_timeout
        outcome, msg = serve_outcome(policy, args.name, timeout, False)
        log('serve-user %s' % msg, syslog.LOG_INFO if outcome == 'served' else syslog.LOG_WARNING)
        (sys.stdout if outcome == 'served' else sys.stderr).write(msg + '\n')
        return 0 if outcome == 'served' else 1
    try:
        out = sync(policy, HostModule(log)) if args.command == 'sync' else status(policy)
    except Exception as exc:  # pylint: disable=broad-except  # one line to the journal, not a traceback
        log('%s failed: %s' % (args.command, exc), syslog.LOG_ERR)
        sys.stderr.write('pkgcache-host %s: %s\n' % (args.command, exc))
        return 1
    if args.command == 'sync':
        log('sync: snapshot %s (was %s), busy %s' % (out['id'], out['previous'], sorted(out.get('busy', {}))))
    sys.stdout.write(json.dumps(out, indent=1, sort_keys=True, default=str) + '\n')
    return 0


def login(policy_path, pam):
    """The PAM session hook (pam_exec): serve PAM_USER at session open. PAM has authenticated that name; nothing
    else from the login (her environment) is read. Always 0: a failure is logged and counted, never a refused login."""
    if pam.get('PAM_TYPE') != 'open_session':
        return 0
    name = pam.get('PAM_USER', '')
    try:
        policy = hp.read_policy(policy_path)
    except hp.PolicyError as exc:
        log('login %r: %s' % (name, exc), syslog.LOG_ERR)
        return 0
    try:
        outcome, msg = serve_outcome(policy, name, policy['login_lock_timeout'], True)
    except Exception as exc:  # pylint: disable=broad-except  # the login goes on whatever happens here
        outcome, msg = 'failed', '%s: %s' % (name, exc)
    # A login of someone who is not a repl user (an operator) is no failure: counted as refused, logged as info.
    log('login %s' % msg, syslog.LOG_INFO if outcome in ('served', 'refused') else syslog.LOG_WARNING)
    return 0
