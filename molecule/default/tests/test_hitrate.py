"""Hit rate: every listed package, installed alone (into an empty --target dir) as a repl user, downloads nothing.

That is what a snapshot is worth: a user who runs `pip install X` in a new
project. hitrate-web and hitrate-legacy share hitrate-core at different
versions alone and together (tests/fleet/make_wheels.py), so a snapshot built
from one joint resolution fails this test.
"""

import re

from conftest import REPL_HOSTS, as_user
from fleetlib import downloads, solo_installs

HOST = REPL_HOSTS[0]


def test_every_listed_package_installs_alone_with_no_download(manifest):
    carol = as_user('carol', HOST)
    missed = set(m['package'] for m in manifest['pip']['misses'])
    listed = [p for p in manifest['pip']['requested'] if p not in missed]
    assert {'hitrate-web', 'hitrate-legacy'} <= set(listed) and len(listed) >= 10
    fetched = dict((p, downloads(out)) for p, out in solo_installs(carol, listed).items())
    hits = [p for p, files in fetched.items() if not files]
    print('pip hit rate: %d/%d' % (len(hits), len(listed)))
    assert fetched == dict((p, []) for p in listed)


def test_a_shared_dependency_is_cached_at_the_version_each_package_takes_alone(manifest):
    assert manifest['pip']['resolutions']['hitrate-web'] == ['hitrate-core==2.0', 'hitrate-web==1.0']
    assert manifest['pip']['resolutions']['hitrate-legacy'] == ['hitrate-core==1.0', 'hitrate-legacy==1.0']
    carol = as_user('carol', HOST)
    outs = solo_installs(carol, ['hitrate-web', 'hitrate-legacy'])
    for package, core in (('hitrate-web', '2.0'), ('hitrate-legacy', '1.0')):
        out = outs[package]
        assert downloads(out) == [] and re.search(r'Using cached \S*hitrate_core-%s-' % re.escape(core), out), out
