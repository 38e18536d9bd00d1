# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every ecosystem's filler shares: the build's error, tool output, fingerprints and option defaults.

Private to the collection; the API may change without notice.

An ecosystem is one module (``_pipcache``, ``_npmcache``, ...) listed in
``_ecosystems.FILLERS``. Each has:

- ``OPTIONS``: the argument spec of its options (pip's are the top-level options
  of snapshot_build, the others' the suboptions of the option named after the
  ecosystem);
- ``ITEMS`` and ``item_name(item)``: the option that lists what to cache, and the
  name an item is sharded by;
- ``options(p)``: its options from the module's params, defaults applied;
- ``fill(o, cache, scratch, run, opener=None)``: fill ``cache`` with the
  ecosystem's own tool; returns (packages, misses, metadata, key);
- ``exclude(cache)``: the top-level names of ``cache`` that stay out of a snapshot.
"""

from __future__ import annotations

import copy
import hashlib
import json


class BuildError(RuntimeError):
    """The build cannot go on; the message says why."""


def tail(text, lines=15, drop=None):
    """The last ``lines`` lines of a tool's output, leaving out lines that contain ``drop``."""
    kept = [l for l in (text or '').strip().splitlines() if not (drop and drop in l)]
    return '\n'.join(kept[-lines:])


def fingerprint(data):
    """sha256 of a JSON value with sorted keys: the build key of an ecosystem (or of a whole build)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode('utf-8')).hexdigest()


def with_defaults(spec, values):
    """``values`` (a dict of options, or None) with the defaults of the argument spec ``spec`` where an option is
    unset or None, as AnsibleModule fills them (for callers that build the params by hand, and for a dict option
    that was not given at all); other None values are left out."""
    out = dict((k, v) for k, v in (values or {}).items() if v is not None)
    for name, option in spec.items():
        if out.get(name) is None:
            out[name] = copy.deepcopy(option.get('default'))
    return out
