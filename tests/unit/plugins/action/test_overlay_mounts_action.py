"""The overlay_mounts action plugin: the module's own spec validates the task; the template gets the users as given."""

import os
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.template import Templar

from ansible_collections.pkgcache.overlay.plugins.action.overlay_mounts import ActionModule

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
TEMPLATE = os.path.join(ROOT, 'roles', 'mount', 'templates', 'overlay-fstab.j2')
LOWER = '/var/lib/pkgcache/trees/' + 'a' * 64


def action(args):
    task = Task()
    task.args = args
    loader = DataLoader()
    plugin = ActionModule(task, mock.MagicMock(), PlayContext(), loader, Templar(loader=loader), None)
    plugin._find_needle = mock.MagicMock(return_value=TEMPLATE)
    plugin._execute_module = mock.MagicMock(return_value={'changed': False})
    return plugin


def test_the_template_is_rendered_for_users_given_by_name_and_the_module_gets_validated_args():
    plugin = action({'repls': [{'name': 'alice'}, {'name': 'bob', 'uid': '2002', 'gid': 2002, 'home': '/srv/bob'}],
                     'lower_root': LOWER, 'template': 'overlay-fstab.j2'})
    plugin.run(task_vars={'mount_extra_options': ['x-systemd.requires-mounts-for=/mnt/scratch']})
    args = plugin._execute_module.call_args.kwargs['module_args']
    assert 'template' not in args and args['scratch_root'] == '/mnt/scratch' and args['ecosystems'] == ['pip']
    assert args['repls'][1]['uid'] == 2002 and args['repls'][0]['uid'] is None  # coerced by the spec; alice's on the host
    assert args['fstab_lines'] == [
        'overlay /var/lib/pkgcache-views/%s/pip overlay lowerdir=%s/pip,upperdir=/mnt/scratch/%s/cacache_pip/upper,'
        'workdir=/mnt/scratch/%s/cacache_pip/work,index=off,xino=off,metacopy=off,nosuid,nodev,'
        'x-systemd.requires-mounts-for=/mnt/scratch 0 0' % (u, LOWER, u, u) for u in ('alice', 'bob')]


@pytest.mark.parametrize('args, message', [
    ({'repls': [{'name': 'alice'}], 'lower_root': LOWER, 'bogus': 1}, 'bogus'),
    ({'repls': [{'name': 'alice', 'uid': 'x'}], 'lower_root': LOWER}, 'uid'),
    ({'repls': [{'name': 'alice'}]}, 'lower_root'),
    ({'repls': [{'name': 'a,b'}], 'lower_root': LOWER, 'template': 'overlay-fstab.j2'}, "repl name 'a,b'"),
])
def test_the_task_is_refused_before_the_module_runs(args, message):
    plugin = action(args)
    with pytest.raises(AnsibleActionFail, match=message):
        plugin.run(task_vars={})
    plugin._execute_module.assert_not_called()
