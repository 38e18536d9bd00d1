# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for overlay_mounts: renders the fstab template on the controller."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19 trusts every template
    def trust_as_template(value):
        return value

from ansible_collections.pkgcache.overlay.plugins.module_utils._overlay import VIEWS_ROOT, OverlayInputError, plan_mounts

DEFAULTS = {'ecosystems': ['pip'], 'scratch_root': '/mnt/scratch', 'views_root': VIEWS_ROOT}


def _plan_input(args):
    repls = []
    for repl in args.get('repls') or []:
        repl = dict(repl)
        for key in ('uid', 'gid'):
            if isinstance(repl.get(key), str) and repl[key].isdigit():
                repl[key] = int(repl[key])
        repls.append(repl)
    return (repls, args.get('ecosystems') or DEFAULTS['ecosystems'], args.get('lower_root'),
            args.get('scratch_root') or DEFAULTS['scratch_root'], args.get('views_root') or DEFAULTS['views_root'])


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        template = args.get('template')
        if template:
            try:
                mounts = plan_mounts(*_plan_input(args))
            except OverlayInputError as exc:
                raise AnsibleActionFail(to_text(exc))
            try:
                source = self._find_needle('templates', template)
            except AnsibleError as exc:
                raise AnsibleActionFail(to_text(exc))
            data = trust_as_template(self._loader.get_text_file_contents(source))
            variables = dict(task_vars)
            variables['pkgcache_mounts'] = mounts
            templar = self._templar.copy_with_new_env(searchpath=[os.path.dirname(source)], available_variables=variables)
            rendered = templar.template(data, escape_backslashes=False) or ''
            args['fstab_lines'] = [line for line in to_text(rendered).splitlines() if line.strip()]
            args.pop('template')
        result.update(self._execute_module(module_name='pkgcache.overlay.overlay_mounts', module_args=args,
                                           task_vars=task_vars))
        return result
