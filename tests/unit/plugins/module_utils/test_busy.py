"""Busy detection: the processes whose cwd, root or open files lie in a mount, scanned with a budget per uid."""

import errno
import os
import subprocess

from ansible_collections.pkgcache.overlay.plugins.module_utils import _busy


def test_find_busy_reads_cwd_root_and_fds(tmp_path):
    proc = tmp_path / 'proc'
    for pid, links in {'1': {'cwd': '/', 'root': '/'},
                       '42': {'cwd': '/home/carol/.cache/pip/http', 'root': '/'},
                       '43': {'cwd': '/tmp', 'root': '/', 'fd/3': '/home/bob/.cache/pip/x (deleted)'},
                       '44': {'cwd': '/home/alice/.cache/pipx', 'root': '/'}}.items():
        (proc / pid / 'fd').mkdir(parents=True)
        (proc / pid / 'status').write_text('Name:\tx\nUid:\t100%s\t100%s\t100%s\t100%s\n' % (pid, pid, pid, pid))
        for name, dest in links.items():
            os.symlink(dest, str(proc / pid / name))
    (proc / 'self').mkdir()
    targets = ['/home/alice/.cache/pip', '/home/bob/.cache/pip', '/home/carol/.cache/pip']
    assert _busy.find_busy(targets, str(proc)) == {'/home/carol/.cache/pip': [42], '/home/bob/.cache/pip': [43]}


def test_find_busy_sees_a_real_process(tmp_path):
    target = str(tmp_path / 'mnt')
    os.mkdir(target)
    child = subprocess.Popen(['sleep', '30'], cwd=target)
    try:
        assert child.pid in _busy.find_busy([target]).get(target, [])
    finally:
        child.kill()
        child.wait()
    assert _busy.find_busy([target]) == {}


class FakeProcs(object):
    """A check() over made-up processes: {pid: (uid, cwd, root, [fd targets])}; a target 'EACCES' raises."""

    def __init__(self, procs, cost=0.0):
        self.procs = procs
        self.calls = []
        self.now = 0.0
        self.cost = cost

    def clock(self):
        return self.now

    def by_uid(self):
        out = {}
        for pid, (uid, cwd, root, fds) in self.procs.items():
            out.setdefault(uid, []).append((len(fds), pid))
        return out

    def check(self, uid, pid, link):
        self.now += self.cost
        self.calls.append((pid, link))
        uid, cwd, root, fds = self.procs[pid]
        name = link.rsplit('/', 1)[1]
        target = cwd if name == 'cwd' else root if name == 'root' else fds[int(name)]
        if target == 'EACCES':
            raise PermissionError(errno.EACCES, 'denied', link)
        return _busy.HOLDS if target == 'tree' else _busy.OTHER


def fake_fd_dirs(tmp_path, procs):
    """A /proc with fd dirs to list (the links themselves are never read: the fake check answers)."""
    for pid, (uid, cwd, root, fds) in procs.items():
        d = tmp_path / 'proc' / pid / 'fd'
        d.mkdir(parents=True)
        for n in range(len(fds)):
            os.close(os.open(str(d / str(n)), os.O_CREAT | os.O_WRONLY))
    return str(tmp_path / 'proc')


def test_a_uid_over_its_count_budget_is_unknown_without_a_single_fd_listed(tmp_path):
    procs = {'10': (1000, '/', '/', ['/dev/null'] * 3),
             '20': (2003, '/home/m', '/', ['/dev/null'] * 500),
             '21': (2003, 'tree', '/', ['/dev/null'] * 500),
             '30': (1001, '/', '/', ['/dev/null', 'tree'])}
    fake = FakeProcs(procs)
    scan = _busy.scan(fake.check, fake_fd_dirs(tmp_path, procs), uid_links=600, clock=fake.clock, by_uid=fake.by_uid())
    assert scan.unknown == {2003: 'more than 600 links for uid 2003 (pid 21 alone has 500 fds)'}
    # Her cwds and roots were looked at (pid 21's cwd is in a tree), and her fewest-fds process's fds; not the other's.
    assert ('21', str(tmp_path / 'proc' / '21' / 'cwd')) in fake.calls
    assert len([c for c in fake.calls if c[0] == '21']) == 2 and len([c for c in fake.calls if c[0] == '20']) == 502
    # The others were scanned whole, the cheapest uid first.
    assert [c[0] for c in fake.calls[:5]] == ['30', '30', '30', '30', '10']
    assert len([c for c in fake.calls if c[0] in ('10', '30')]) == 2 + 3 + 2 + 2


def test_a_slow_uid_runs_out_of_its_own_time_and_the_others_are_still_scanned(tmp_path):
    procs = dict(('%d' % (100 + i), (2003, '/', '/', ['/dev/null'] * 30)) for i in range(10))
    procs.update({'7': (1000, '/', '/', ['tree'] * 60), '8': (1001, '/', '/', ['/dev/null'] * 300)})
    fake = FakeProcs(procs, cost=0.002)     # 2 ms a link: her 320 links would take 0.64 s
    proc = fake_fd_dirs(tmp_path, procs)
    scan = _busy.scan(fake.check, proc, uid_seconds=0.5, seconds=30, clock=fake.clock, by_uid=fake.by_uid())
    # 1001 has the most fds, so it came last, and had its own 0.5 s: its 302 links take 0.6 s, so it is cut too.
    assert sorted(scan.unknown) == [1001, 2003] and scan.unknown[2003].startswith('timeout after '), scan.unknown
    assert 'uid 2003' in scan.unknown[2003] and len([c for c in fake.calls if c[0] == '7']) == 62
    fake2 = FakeProcs(procs, cost=0.0002)
    scan2 = _busy.scan(fake2.check, proc, uid_seconds=0.5, clock=fake2.clock, by_uid=fake2.by_uid())
    assert scan2.unknown == {}
    assert len(fake2.calls) == 10 * 32 + 62 + 302


def test_the_whole_scan_bound_leaves_the_uids_not_reached_unknown(tmp_path):
    procs = {'1': (1000, '/', '/', ['/dev/null'] * 10), '2': (1001, '/', '/', ['/dev/null'] * 20),
             '3': (1002, '/', '/', ['/dev/null'] * 30)}
    fake = FakeProcs(procs, cost=0.1)
    scan = _busy.scan(fake.check, fake_fd_dirs(tmp_path, procs), seconds=3.0, uid_seconds=10, clock=fake.clock,
                      by_uid=fake.by_uid())
    assert scan.unknown[1002] == 'not scanned: the whole scan reached its 3.0 s bound'
    assert 1000 not in scan.unknown


def test_eacces_names_the_pid_and_root_lacking_cap_sys_ptrace_only_when_it_does(tmp_path, monkeypatch):
    procs = {'5': (2003, 'EACCES', '/', []), '6': (2003, '/', '/', ['tree']), '1': (0, 'EACCES', 'EACCES', [])}
    fake = FakeProcs(procs)
    proc = fake_fd_dirs(tmp_path, procs)
    scan = _busy.scan(fake.check, proc, clock=fake.clock, by_uid=fake.by_uid())
    assert scan.unknown == {2003: 'EACCES on pid 5'} and scan.root_denied == 2  # root's own in another namespace
    assert ('6', proc + '/6/fd/0') in fake.calls                                    # the rest of her was scanned
    monkeypatch.setattr(_busy, 'root_can_trace', lambda proc: False)
    scan = _busy.scan(fake.check, proc, clock=fake.clock, by_uid=fake.by_uid())
    assert scan.unknown == {2003: 'EACCES on pid 5; root lacks CAP_SYS_PTRACE'}


def test_a_fuse_fs_that_refuses_root_is_known_to_hold_no_tree_but_a_refused_process_is_unknown(monkeypatch, tmp_path):
    """statx of a FUSE fd without allow_other: EACCES for a mask, st_dev alone for mask 0. Neither waits on the daemon."""
    store_dev = os.stat(str(tmp_path)).st_dev
    fuse_dev = os.makedev(0, 999)
    calls = []

    def fake_statx(path, mask):
        calls.append((path, mask))
        if path.endswith('/5/cwd'):             # pid 5: a cwd in her FUSE fs
            if mask:
                raise PermissionError(errno.EACCES, 'fuse', path)
            return 0, fuse_dev, 0
        if path.endswith('/6/root'):            # pid 6: root may not read this process at all
            raise PermissionError(errno.EACCES, 'ptrace', path)
        return 0o40755, store_dev, 77
    monkeypatch.setattr(_busy, '_statx', fake_statx)
    by_uid = {2003: [(0, '5')], 2004: [(0, '6')]}
    for pid in ('5', '6'):
        (tmp_path / 'proc' / pid / 'fd').mkdir(parents=True)
    held = _busy.held_files(str(tmp_path / 'proc'), dev=store_dev, by_uid=by_uid)
    assert held.unknown == {2004: 'EACCES on pid 6'}
    assert held == {(store_dev, 77): {5, 6}}   # pid 5's root, pid 6's cwd
    assert (str(tmp_path / 'proc' / '5' / 'cwd'), 0) in calls


def test_a_non_dir_or_another_fs_is_passed_over(monkeypatch, tmp_path):
    answers = {'cwd': (0o40755, 1, 5), 'root': (0o40755, 2, 6), '0': (0o20666, 1, 7), '1': (0o40700, 1, 8)}
    monkeypatch.setattr(_busy, '_statx', lambda path, mask: answers[path.rsplit('/', 1)[1]])
    d = tmp_path / 'proc' / '9' / 'fd'
    d.mkdir(parents=True)
    (d / '0').touch()
    (d / '1').touch()
    held = _busy.held_files(str(tmp_path / 'proc'), dev=1, by_uid={1000: [(2, '9')]})
    assert held == {(1, 5): {9}, (1, 8): {9}} and held.unknown == {}


def test_held_files_of_real_processes_cut_one_uid_by_its_budget(tmp_path, hog_as_nobody):
    a, b, c = (tmp_path / n for n in 'abc')
    for d in (a, b, c):
        d.mkdir()
    info = hog_as_nobody(a, b, 3000)
    assert info['fds'] > 3000
    dev = os.stat(str(tmp_path)).st_dev
    whole = _busy.held_files(dev=dev)
    assert 65534 not in whole.unknown
    assert info['pid'] in whole[(dev, os.stat(str(a)).st_ino)] and info['pid'] in whole[(dev, os.stat(str(b)).st_ino)]
    assert not any(k[0] != dev for k in whole)  # only directories on that filesystem: no /dev/null, no pipe
    cut = _busy.held_files(dev=dev, uid_links=1000)
    assert cut.unknown[65534] == 'more than 1000 links for uid 65534 (pid %d alone has %d fds)' % (info['pid'], info['fds'])
    assert info['pid'] in cut[(dev, os.stat(str(a)).st_ino)]    # her cwd was still looked at
    assert (dev, os.stat(str(b)).st_ino) not in cut
    reader = subprocess.Popen(['sleep', '30'], cwd=str(c))
    try:
        cut = _busy.held_files(dev=dev, uid_links=1000)
        assert reader.pid in cut[(dev, os.stat(str(c)).st_ino)]   # root's reader, scanned whole
    finally:
        reader.kill()
        reader.wait()
