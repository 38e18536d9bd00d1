# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for overlay_mounts: validates the task against the module's spec, renders the fstab template."""

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

from ansible_collections.pkgcache.overlay.plugins.module_utils._mounts import argument_spec, given_unresolved
from ansible_collections.pkgcache.overlay.plugins.module_utils._overlay import OverlayInputError, plan_mounts


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=argument_spec())
        template = args.pop('template', None)
        if template:
            # uid, gid and home that are not given are read on the host; the template gets them when given.
            try:
                mounts = plan_mounts(args['repls'], args['ecosystems'], args['lower_root'], args['scratch_root'],
                                     args['views_root'], unresolved=given_unresolved(args['repls']))
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
        result.update(self._execute_module(module_name='pkgcache.overlay.overlay_mounts', module_args=args,
                                           task_vars=task_vars))
        return result
