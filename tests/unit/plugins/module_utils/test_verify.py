import os
import urllib.request

import pytest

from ansible_collections.pkgcache.overlay.plugins.module_utils import _gc
from ansible_collections.pkgcache.overlay.plugins.module_utils import _module
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st
from ansible_collections.pkgcache.overlay.plugins.module_utils import _verify

from helpers import DripServer, disk, http_opener, publish, run_module, run_sync


def setup(tmp_path):
    served = str(tmp_path / 'served')
    snap = publish(served, {'a': b'alpha', 'b': b'beta', 'c': b'gamma'})
    host = str(tmp_path / 'host')
    assert run_sync('file://' + served, snap, host).returncode == 0
    return 'file://' + served, snap, host


def test_clean_store_verifies(tmp_path):
    url, snap, host = setup(tmp_path)
    report = _verify.verify(host)
    assert report['ok'] and report['objects_checked'] == 3


def test_corrupt_object_is_reported_and_repaired_without_touching_the_live_tree(tmp_path):
    url, snap, host = setup(tmp_path)
    tree = st.tree_path(host, snap)
    bad = [d for d in os.listdir(os.path.join(host, 'objects')) if len(d) == 2]
    digest = bad[0] + os.listdir(os.path.join(host, 'objects', bad[0]))[0]
    with open(st.object_path(host, digest), 'r+b') as f:  # bit rot: the tree's hardlink shares it
        f.write(b'X')
    live = os.open(tree, os.O_RDONLY)  # stands for a live overlay holding the old tree
    os.makedirs(os.path.join(tree, 'pip', 'planted'))
    report = _verify.verify(host)
    assert not report['ok'] and report['bad_objects'] == [digest]
    assert report['trees'][snap]['extra'] == ['pip/planted'] and len(report['trees'][snap]['mismatch']) == 1
    done = _verify.repair(host, report, url, urllib.request.urlopen, in_use_ids={snap})
    assert done['fetched_objects'] == 1 and done['rebuilt_trees'] == [snap] and done['remount_needed'] == [snap]
    assert _verify.verify(host)['ok']
    # The old tree was moved aside, not rewritten: the live holder still sees it, extra dir included.
    assert os.path.isdir('/proc/self/fd/%d/pip/planted' % live)
    os.close(live)
    quarantined = [n for n in os.listdir(os.path.join(host, 'trees')) if n.startswith('.quarantine-%s' % snap)]
    assert len(quarantined) == 1
    # GC drops the quarantined tree once no mount names the snapshot.
    busy = 'x - overlay overlay lowerdir=%s/trees/%s/pip' % (host, snap)
    assert 'quarantine' not in _gc.plan(host, 3, busy, '', True)
    plan = _gc.plan(host, 3, '', '', True)
    _gc.apply(host, plan)
    assert not [n for n in os.listdir(os.path.join(host, 'trees')) if n.startswith('.quarantine')]
    assert _verify.verify(host)['ok']


def test_missing_object_is_fetched_and_an_unused_tree_rebuilt_at_once(tmp_path):
    url, snap, host = setup(tmp_path)
    tree = st.tree_path(host, snap)
    os.unlink(os.path.join(tree, 'pip', 'a'))
    report = _verify.verify(host)
    assert report['trees'][snap]['missing'] == ['pip/a']
    done = _verify.repair(host, report, url, urllib.request.urlopen, in_use_ids=set())
    assert done['rebuilt_trees'] == [snap] and done['remount_needed'] == []
    assert not [n for n in os.listdir(os.path.join(host, 'trees')) if n.startswith('.')]
    assert _verify.verify(host)['ok']


def test_repair_downloads_end_within_the_deadline(tmp_path):
    url, snap, host = setup(tmp_path)
    server = DripServer(str(tmp_path / 'served'))  # serves what setup published, objects one byte every 0.3 s
    try:
        for dirpath, dummy, names in os.walk(os.path.join(host, 'objects')):
            for name in names:
                os.unlink(os.path.join(dirpath, name))
        report = _verify.verify(host)
        assert len(report['missing_objects']) == 3
        for digest in report['missing_objects']:
            server.slow['/' + st.object_rel(digest)] = 'body'
        # Each body takes 3 s to drip: without a deadline the repair would succeed. The socket timeout is cut to
        # what is left of the deadline, so whichever fires first, it is reported as the deadline.
        with pytest.raises(st.StoreError, match='did not arrive within the 1 s deadline'):
            _verify.repair(host, report, server.url, http_opener, in_use_ids=set(), workers=1, deadline=1)
        # Once one download missed its deadline, the others were not requested.
        assert len([r for r in server.requests if r.startswith('/objects/')]) == 1
    finally:
        server.close()


def test_module_check_mode_reports_and_a_real_run_repairs_what_that_report_names(tmp_path, capsys, monkeypatch):
    url, snap, host = setup(tmp_path)
    os.unlink(os.path.join(st.tree_path(host, snap), 'pip', 'a'))
    shard = [d for d in os.listdir(os.path.join(host, 'objects')) if len(d) == 2][0]
    digest = shard + os.listdir(os.path.join(host, 'objects', shard))[0]
    with open(st.object_path(host, digest), 'r+b') as f:
        f.write(b'X')
    opened = []
    monkeypatch.setattr(_module, 'opener', lambda timeout, validate_certs: lambda u: opened.append(u) or urllib.request.urlopen(u))
    args = {'store': host, 'repair': True, 'url': url + '/', 'fail_on_problems': False}
    before = disk(host)
    rc, check = run_module(capsys, _verify.run_module, _verify.argument_spec(), args, check_mode=True)
    assert rc == 0 and not check['changed'] and not check['ok'] and check['bad_objects'] == [digest]
    assert list(check['trees']) == [snap] and check['remount_needed'] == [] and 'repaired' not in check
    assert disk(host) == before and opened == []
    rc, real = run_module(capsys, _verify.run_module, _verify.argument_spec(), args)
    assert rc == 0 and real['changed'] and real['ok'] and real['repaired']['fetched_objects'] == 1
    assert dict((k, real[k]) for k in check if k not in ('ok', 'changed', 'invocation')) == \
        dict((k, check[k]) for k in check if k not in ('ok', 'changed', 'invocation'))
    assert opened and all(u.startswith(url + '/') for u in opened) and _verify.verify(host)['ok']
    rc, again = run_module(capsys, _verify.run_module, _verify.argument_spec(), dict(args, fail_on_problems=True))
    assert rc == 0 and again['ok'] and not again['changed']


def test_module_fails_on_problems_with_the_report(tmp_path, capsys):
    url, snap, host = setup(tmp_path)
    os.unlink(os.path.join(st.tree_path(host, snap), 'pip', 'a'))
    rc, res = run_module(capsys, _verify.run_module, _verify.argument_spec(), {'store': host})
    assert rc == 1 and not res['ok'] and list(res['trees']) == [snap]
    assert res['msg'] == 'the store %s has problems: 0 bad objects, 0 missing objects, 1 damaged trees' % host
    rc, res = run_module(capsys, _verify.run_module, _verify.argument_spec(), {'store': host, 'deadline': 0})
    assert rc == 1 and res['msg'] == 'deadline must be 1 or more, got 0'
