"""The metrics timer's code as the distribute role installs it: one zip of module_utils, run without Ansible."""

import os
import shutil
import subprocess
import sys

import yaml

from conftest import ROOT

TASKS = os.path.join(ROOT, 'roles', 'distribute', 'tasks', 'code.yml')
COMMAND = os.path.join(ROOT, 'roles', 'distribute', 'files', 'pkgcache-status')


def pack(out):
    """Run the role's pack task (the collection's _pack.py) as the controller would."""
    with open(TASKS) as f:
        tasks = yaml.safe_load(f)
    tasks += [t for block in tasks for t in block.get('block', [])]
    task = [t for t in tasks if t['name'].startswith('Pack the host code')][0]
    argv = task['ansible.builtin.command']['argv']
    assert argv[1].endswith('/plugins/module_utils/_pack.py')
    subprocess.run([sys.executable, os.path.join(ROOT, 'plugins', 'module_utils', '_pack.py'),
                    os.path.join(ROOT, 'plugins', 'module_utils'), out], check=True)
    with open(out, 'rb') as f:
        return f.read()


def test_the_zip_is_the_same_bytes_for_the_same_code(tmp_path):
    assert pack(str(tmp_path / 'a.zip')) == pack(str(tmp_path / 'b.zip'))


def status_command(tmp_path, code):
    """Run pkgcache-status as the timer does (-I), with no site-packages (-S: no Ansible, as on a repl host)."""
    (tmp_path / 'store').mkdir(exist_ok=True)
    (tmp_path / 'fstab').write_text('')
    check = 'import importlib.util, runpy, sys; assert importlib.util.find_spec("ansible") is None; '
    run = 'sys.argv = ["pkgcache-status"] + sys.argv[1:]; runpy.run_path(%r, run_name="__main__")' % COMMAND
    return subprocess.run([sys.executable, '-I', '-S', '-c', check + run, '--store', str(tmp_path / 'store'),
                           '--fstab', str(tmp_path / 'fstab'), '--scratch-root', str(tmp_path / 'scratch'),
                           '--textfile-dir', str(tmp_path), '--code', code], capture_output=True, text=True, check=False)


def test_the_status_command_runs_from_the_zip_with_no_ansible_importable(tmp_path):
    (tmp_path / 'lib').mkdir(mode=0o755)
    zipped = str(tmp_path / 'lib' / 'pkgcache_utils.zip')
    pack(zipped)
    os.chmod(zipped, 0o644)
    res = status_command(tmp_path, zipped)
    assert res.returncode == 0, res.stderr
    assert 'pkgcache_' in (tmp_path / 'pkgcache.prom').read_text()


def test_the_status_command_refuses_code_that_another_user_could_have_placed(tmp_path):
    lib = tmp_path / 'lib'
    lib.mkdir(mode=0o755)
    zipped = lib / 'pkgcache_utils.zip'
    # A directory named like the zip: Python would import from it as well.
    (zipped / 'pkgcache_utils').mkdir(parents=True)
    (zipped / 'pkgcache_utils' / '_status.py').write_text('raise SystemExit("hijacked")\n')
    res = status_command(tmp_path, str(zipped))
    assert res.returncode != 0 and 'not a regular file owned by root' in res.stderr and 'hijacked' not in res.stderr
    shutil.rmtree(str(zipped))
    pack(str(zipped))
    for target, mode in ((zipped, 0o664), (lib, 0o777)):
        os.chmod(str(target), mode)
        res = status_command(tmp_path, str(zipped))
        assert res.returncode != 0 and 'writable by root only; refused' in res.stderr and str(target) in res.stderr
        os.chmod(str(target), 0o644 if target == zipped else 0o755)
    assert status_command(tmp_path, str(zipped)).returncode == 0
