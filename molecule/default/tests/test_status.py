"""status.yml and the node_exporter metrics file, checked against the real state."""

import re

from conftest import REPL_HOSTS, as_root, playbook

TEXTFILE_DIR = '/var/lib/node-exporter-textfile'


def metrics(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith('#'):
            m = re.match(r'^(\w+)(\{[^}]*\})? (\S+)$', line)
            assert m, line
            out[m.group(1) + (m.group(2) or '')] = float(m.group(3))
    return out


def test_status_table_and_metrics_match_the_host(manifest):
    rc, res = playbook('status.yml', {'status_textfile_dir': TEXTFILE_DIR})
    assert rc == 0
    for host in REPL_HOSTS:
        r = as_root(host)
        status = res['Gather the status'][host]
        active = r.check_output('readlink /var/lib/pkgcache/current').split('/')[-1]
        assert status['snapshot']['id'] == active
        assert status['counts'] == {'mounted': 3, 'older': 0, 'busy': 0, 'missing': 0}
        table = '\n'.join(res['Show the status'][host]['msg'])
        assert active in table and 'mounted: 3' in table
        # The build's hit rate: every listed package but the one the index lacks installs alone with no download.
        listed = len(manifest['pip']['requested'])
        assert 'pip %d/%d' % (listed - 1, listed) in table
        m = metrics(r.check_output('cat %s/pkgcache.prom' % TEXTFILE_DIR))
        fqdn = r.check_output('python3 -c "import socket; print(socket.getfqdn())"')
        store_bytes = sum(int(x) for x in r.check_output(
            "find /var/lib/pkgcache/objects -mindepth 2 -maxdepth 2 -type f -printf '%s\\n'").split())
        upper_bytes = 512 * sum(int(x) for x in r.check_output(   # allocated blocks, not apparent sizes
            "find /mnt/scratch/*/cacache_pip/upper -type f -printf '%b\\n'").split() or ['0'])
        h = 'host="%s"' % fqdn
        assert m['pkgcache_store_bytes{%s}' % h] == store_bytes
        assert m['pkgcache_repl_mounts{%s,state="mounted"}' % h] == 3
        assert m['pkgcache_upper_bytes_total{%s}' % h] == upper_bytes
        assert m['pkgcache_last_sync_success{%s}' % h] == 1
        assert any(k.startswith('pkgcache_snapshot_info{') and 'snapshot_id="%s"' % active in k for k in m)
        assert m['pkgcache_snapshot_packages_listed{ecosystem="pip",%s}' % h] == listed
        assert m['pkgcache_snapshot_packages_hit{ecosystem="pip",%s}' % h] == listed - 1
        assert not any('alice' in k for k in m)  # user names only on opt-in


def test_the_timer_refreshes_the_metrics_file_without_ansible():
    for host in REPL_HOSTS:
        r = as_root(host)
        timer = r.service('pkgcache-status.timer')
        assert timer.is_enabled and timer.is_running
        r.check_output('rm -f /var/lib/node_exporter/pkgcache.prom && systemctl start pkgcache-status.service')
        m = metrics(r.check_output('cat /var/lib/node_exporter/pkgcache.prom'))
        active = r.check_output('readlink /var/lib/pkgcache/current').split('/')[-1]
        assert [k for k in m if k.startswith('pkgcache_snapshot_revision{') and active in k]
        assert [k for k in m if k.startswith('pkgcache_snapshot_created_timestamp_seconds{')]
        assert m['pkgcache_orphaned_scratch_dirs{host="%s"}' % r.check_output('python3 -c "import socket; print(socket.getfqdn())"')] == 0
