"""The builder's resign timer as the build role installs it: one zip of module_utils, pkgcache-resign run without
Ansible, signing the current record again (same revision and snapshot, next serial, fresh expiry)."""

import json
import os
import subprocess
import sys
import time

import yaml

from ansible_collections.pkgcache.overlay.plugins.module_utils import _publish as pub
from ansible_collections.pkgcache.overlay.plugins.module_utils import _signing

from conftest import ROOT
from test_publish import build, key, run, store  # noqa: F401 pylint: disable=unused-import

TASKS = os.path.join(ROOT, 'roles', 'build', 'tasks', 'resign.yml')
COMMAND = os.path.join(ROOT, 'roles', 'build', 'files', 'pkgcache-resign')


def pack(out):
    """Run the role's pack task (its argv, with role_path filled in) as the controller would."""
    with open(TASKS) as f:
        tasks = yaml.safe_load(f)
    tasks += [t for block in tasks for t in block.get('block', [])]
    task = [t for t in tasks if t['name'].startswith('Pack the resign code')][0]
    argv = [a.replace('{{ role_path }}', os.path.join(ROOT, 'roles', 'build')) for a in task['ansible.builtin.command']['argv']]
    assert argv[3] == '{{ build_resign_zip.path }}'
    subprocess.run([sys.executable, argv[1], argv[2], out], check=True)
    with open(out, 'rb') as f:
        return f.read()


def resign_command(code, served, key_path, ttl=7 * 86400):
    """Run pkgcache-resign as the service does (-I), with no site-packages (-S: no Ansible)."""
    check = 'import importlib.util, runpy, sys; assert importlib.util.find_spec("ansible") is None; '
    run_ = 'sys.argv = ["pkgcache-resign"] + sys.argv[1:]; runpy.run_path(%r, run_name="__main__")' % COMMAND
    return subprocess.run([sys.executable, '-I', '-S', '-c', check + run_, '--store', served, '--signing-key', key_path,
                           '--ttl', str(ttl), '--lock-timeout', '0', '--code', code],
                          capture_output=True, text=True, check=False)


def test_the_zip_is_the_same_bytes_for_the_same_code(tmp_path):
    assert pack(str(tmp_path / 'a.zip')) == pack(str(tmp_path / 'b.zip'))


def test_the_resign_command_signs_the_current_record_again_from_the_zip(tmp_path, key):
    v1 = build(tmp_path, '1.0', '2026-01-01T00:00:00+00:00', key[0])
    served = store(tmp_path)
    (tmp_path / 'lib').mkdir(mode=0o755)
    zipped = str(tmp_path / 'lib' / 'pkgcache_utils.zip')
    pack(zipped)
    os.chmod(zipped, 0o644)
    before = int(time.time())
    res = resign_command(zipped, served, key[0], ttl=2 * 86400)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out['revision'], out['id'], out['serial']) == (1, v1['id'], 2)
    path = pub.record_path(served, 1)
    data = open(path, 'rb').read()
    _signing.verify(run, key[1], data, open(path + '.sig', 'rb').read(), 'record')
    rec = json.loads(data)
    assert rec['serial'] == 2 and before + 2 * 86400 <= pub.expires_epoch(rec) <= int(time.time()) + 2 * 86400
    assert open(os.path.join(served, 'refs', 'published')).read() == '1\n'
    # A TTL below the minimum, a store with nothing published, a zip another user could write: refused, by name.
    res = resign_command(zipped, served, key[0], ttl=60)
    assert res.returncode == 1 and '--ttl must be 3600 or more, got 60' in res.stderr
    (tmp_path / 'empty').mkdir()
    res = resign_command(zipped, str(tmp_path / 'empty'), key[0])
    assert res.returncode == 1 and 'nothing is published with revisions in %s' % (tmp_path / 'empty') in res.stderr
    os.chmod(zipped, 0o664)
    res = resign_command(zipped, served, key[0])
    assert res.returncode == 1 and 'writable by root only; refused' in res.stderr and zipped in res.stderr
    assert json.loads(open(path, 'rb').read())['serial'] == 2
