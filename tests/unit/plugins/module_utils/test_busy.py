"""Busy detection: the processes whose cwd, root or open files lie in a mount."""

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
