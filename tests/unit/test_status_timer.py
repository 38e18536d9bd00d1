"""The metrics timer's code as the distribute role installs it: one zip of module_utils, run without Ansible."""

import os
import subprocess
import sys

import yaml

from conftest import ROOT

TASKS = os.path.join(ROOT, 'roles', 'distribute', 'tasks', 'metrics.yml')
COMMAND = os.path.join(ROOT, 'roles', 'distribute', 'files', 'pkgcache-status')


def pack(out):
    """Run the role's pack task (its python -c code) as the controller would."""
    with open(TASKS) as f:
        task = [t for t in yaml.safe_load(f) if t['name'].startswith('Pack the status code')][0]
    argv = task['ansible.builtin.command']['argv']
    subprocess.run([sys.executable, argv[1], argv[2], os.path.join(ROOT, 'plugins', 'module_utils'), out], check=True)
    with open(out, 'rb') as f:
        return f.read()


def test_the_zip_is_the_same_bytes_for_the_same_code(tmp_path):
    assert pack(str(tmp_path / 'a.zip')) == pack(str(tmp_path / 'b.zip'))


def test_the_status_command_runs_from_the_zip_with_no_ansible_importable(tmp_path):
    zipped = str(tmp_path / 'pkgcache_utils.zip')
    pack(zipped)
    (tmp_path / 'store').mkdir()
    (tmp_path / 'fstab').write_text('')
    # -I -S: no site-packages, so no Ansible, as on a repl host; the command's own sys.path entry is replaced by
    # the test's zip, which sits first.
    code = ('import sys, runpy; sys.path.insert(0, %r); '
            'import importlib.util; assert importlib.util.find_spec("ansible") is None; '
            'sys.argv = ["pkgcache-status"] + sys.argv[1:]; runpy.run_path(%r, run_name="__main__")' % (zipped, COMMAND))
    res = subprocess.run([sys.executable, '-I', '-S', '-c', code, '--store', str(tmp_path / 'store'),
                          '--fstab', str(tmp_path / 'fstab'), '--scratch-root', str(tmp_path / 'scratch'),
                          '--textfile-dir', str(tmp_path)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert 'pkgcache_' in (tmp_path / 'pkgcache.prom').read_text()
