"""The Grafana dashboard and the Prometheus rules in extras/ query only metrics the collection writes."""

import json
import os
import re

import yaml

from ansible_collections.pkgcache.overlay.plugins.module_utils import _status

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FULL = {'snapshot': {'id': 'i', 'ecosystems': ['pip'], 'versions': {}, 'files': 1, 'bytes': 1, 'created_epoch': 1,
                     'revision': 3, 'coverage': {'pip': {'listed': 1, 'hits': 1, 'ratio': 1.0}}},
        'users': [{'user': 'u', 'ecosystem': 'pip', 'state': 'mounted', 'upper_bytes': 0, 'upper_truncated': None}],
        'upper_bytes_total': 0, 'store': {'objects': 0, 'bytes': 0}, 'orphaned': [],
        'last_sync': {'ok': True, 'epoch': 1}, 'record': {'revision': 3, 'serial': 1, 'expires_epoch': 1}}
WRITTEN = set(re.findall(r'^# TYPE (\w+) ', _status.prometheus(FULL, 'h', True), re.M))
NODE = {'node_textfile_mtime_seconds'}


def metrics_in(expr):
    names = set(re.findall(r'\b(pkgcache_\w+|node_\w+)', expr))
    return names


def test_every_dashboard_panel_queries_written_metrics():
    dash = json.load(open(os.path.join(ROOT, 'extras', 'grafana', 'pkgcache-overlay.json')))
    assert dash['uid'] and dash['title'] and dash['__inputs'][0]['pluginId'] == 'prometheus'
    ids = [p['id'] for p in dash['panels']]
    assert len(ids) == len(set(ids)) >= 8
    for panel in dash['panels']:
        assert panel['type'] in ('timeseries', 'stat') and set(panel['gridPos']) == {'x', 'y', 'w', 'h'}
        assert panel['targets'] and panel['datasource']['uid'] == '${DS_PROMETHEUS}'
        for target in panel['targets']:
            used = metrics_in(target['expr'])
            assert used and used <= WRITTEN, (panel['title'], used - WRITTEN)


def test_every_alert_rule_queries_written_metrics():
    rules = yaml.safe_load(open(os.path.join(ROOT, 'extras', 'prometheus', 'pkgcache.rules.yml')))
    alerts = [r for g in rules['groups'] for r in g['rules']]
    assert len(alerts) >= 6
    for rule in alerts:
        used = metrics_in(rule['expr'])
        assert used and used <= WRITTEN | NODE, (rule['alert'], used - WRITTEN - NODE)
