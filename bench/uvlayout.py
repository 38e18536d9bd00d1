"""uv's share of the snapshot: the unpacked archives (uv's own cache) against the downloaded wheels only.

    python3 bench/uvlayout.py [--rounds 3] [--work /var/tmp/pkgcache-uvlayout] [--wheelhouse DIR]

The package set is the time-to-install set (bench/run.py's install_set: the
first 50 projects of bench/hitrate.py's ranking that install from wheels), read
from an existing hit-rate wheelhouse (``pkg/<project>/`` of each project's own
download), served by nginx in a network namespace of its own (its name, port and
bench user differ from bench/run.py's, so both can run on one machine).

Layouts, both stored through the same content-addressed store:
- archive: what snapshot_build's uv filler stores today, uv's cache after a
  solo install of each package (``archive-v0`` unpacked wheels, ``wheels-v*``
  pointers, ``simple-v*`` pages); identical files are one object.
- wheels: the wheel files of the same resolutions, flat (a find-links dir).

Size: bytes stored (distinct objects), files, the manifest's size and the host's
tree (files and bytes after a sync). Time: ``uv pip install`` of the whole set
into a fresh venv as a non-root user, 3 rounds interleaved: cold (empty cache,
the index), archive (the archive layout as the user's cache through an overlay
view, the index) and wheels (an empty cache, the index, and the wheels as
``--find-links``).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import common as b

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf  # noqa: E402
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st  # noqa: E402
import hitrate  # noqa: E402

# Its own namespace, port and user: bench/run.py may run at the same time.
b.NS, b.PORT, b.USER = 'pkguvlayout', 8394, 'pkguvlayout'
b.INDEX = 'http://127.0.0.1:%d/simple/' % b.PORT
b.REGISTRY = 'http://127.0.0.1:%d%s' % (b.PORT, b.NPM_PREFIX)


def package_set(hitrate_dir, top):
    """The first ``top`` projects of hitrate's ranking whose own download is in ``hitrate_dir/pkg`` and succeeded,
    and a flat wheelhouse (hard links) of their files."""
    names = hitrate.candidates()[0]
    chosen, files = [], {}
    for name in names:
        d = os.path.join(hitrate_dir, 'pkg', b.norm(name))
        stamp = os.path.join(d, '.done.json')
        if not os.path.exists(stamp):
            continue
        with open(stamp) as f:
            info = json.load(f)
        if not info['ok']:
            continue
        chosen.append(name)
        for fn in info['files']:
            files[fn] = os.path.join(d, fn)
        if len(chosen) >= top:
            break
    return chosen, files


def flat(files, dest, link=False):
    """A flat dir of ``files`` ({name: path}): copies (the source may be another run's), or hard links."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for fn, src in files.items():
        (os.link if link else shutil.copyfile)(src, os.path.join(dest, fn))
    return dest


def ensure_uv(work):
    """uv from the test wheelhouse in a venv of its own (as bench/run.py's), which the bench user can run."""
    uv = os.path.join(work, 'uvtool', 'bin', 'uv')
    if not os.path.exists(uv):
        b.sh([b.USER_PYTHON, '-m', 'venv', os.path.join(work, 'uvtool')])
        b.sh([os.path.join(work, 'uvtool', 'bin', 'pip'), 'install', '-q', '--no-index', '--find-links',
              os.path.join(b.ROOT, '.cache', 'wheelhouse'), 'uv'])
    return uv


def store_tree(root, prefix, store):
    """Ingest ``root`` as a snapshot of its own; return (manifest id, totals, manifest bytes)."""
    entries, paths = mf.scan_tree(root, prefix)
    entries = mf.sorted_entries(entries)
    for e in entries:
        if e['type'] == 'file':
            st.ingest_file(store, paths[e['path']], e['sha256'])
    manifest = mf.build_manifest(entries, {'created': 'bench', 'ecosystems': [prefix]})
    data = json.dumps(manifest, sort_keys=True, indent=1).encode('utf-8')
    st.makedirs(os.path.join(store, 'snapshots'))
    st.write_bytes_atomic(st.manifest_path(store, manifest['id']), data)
    st.makedirs(os.path.join(store, 'refs'))
    st.write_bytes_atomic(os.path.join(store, 'refs', 'latest'), (manifest['id'] + '\n').encode())
    return manifest['id'], mf.totals(entries), len(data)


def tree_stats(path):
    count = int(b.sh(['bash', '-c', 'find "$1" -type f | wc -l', '-', path]).stdout.strip())
    return count, b.du(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--top', type=int, default=50)
    ap.add_argument('--work', default='/var/tmp/pkgcache-uvlayout')
    ap.add_argument('--hitrate-dir', default='/var/tmp/pkgcache-bench/hitrate-wheelhouse')
    ap.add_argument('--keep-build', action='store_true', help='take the archive build of an earlier run of this work dir')
    ap.add_argument('--not-installed', default='aiobotocore,s3fs',
                    help='projects of the set left out of the timed install: without the joint download (bench/run.py) '
                         'the wheelhouse only holds solo resolutions, and aiobotocore pins botocore below boto3\'s')
    args = ap.parse_args()
    work = args.work
    os.makedirs(work, exist_ok=True)
    uv = ensure_uv(work)
    packages, files = package_set(args.hitrate_dir, args.top)
    wheelhouse = flat(files, os.path.join(work, 'wheelhouse'))
    uid, gid, home = b.ensure_user()
    with b.serving(work, wheelhouse) as env:
        # archive: the uv filler's cache, stored as snapshot_build stores it.
        p = {'ecosystems': ['uv'], 'uv': {'packages': packages, 'index_url': b.INDEX, 'uv': uv, 'python': b.USER_PYTHON},
             'work_dir': os.path.join(work, 'build'), 'store': os.path.join(work, 'store-archive'), 'publish': True,
             'reuse': False}
        saved = os.path.join(work, 'snap-archive.json')
        if args.keep_build and os.path.exists(saved):
            with open(saved) as f:
                snap, build_archive = json.load(f)
        else:
            shutil.rmtree(p['store'], ignore_errors=True)
            start = time.monotonic()
            snap = b._builder.build(p, b.run_cmd, now='bench')  # pylint: disable=protected-access
            build_archive = time.monotonic() - start
            with open(saved, 'w') as f:
                json.dump([snap, build_archive], f)
        resolved = set((x['name'], x['version']) for x in snap['ecosystems']['uv']['packages'])
        with open(st.manifest_path(p['store'], snap['id']), 'rb') as f:
            archive_manifest = len(f.read())
        archive = {'objects': snap['objects'], 'files': snap['files'], 'bytes': snap['bytes'],
                   'stored': sum(os.path.getsize(os.path.join(dp, fn)) for dp, dn, fns in
                                 os.walk(os.path.join(p['store'], 'objects')) for fn in fns),
                   'manifest': archive_manifest}
        # wheels: the wheel files of the same resolutions.
        chosen = dict((fn, os.path.join(wheelhouse, fn)) for fn in files
                      if fn.endswith('.whl') and (b.norm(fn.split('-')[0]), fn.split('-')[1]) in resolved)
        wroot = flat(chosen, os.path.join(work, 'uv-wheels', 'wheels'), link=True)
        shutil.rmtree(os.path.join(work, 'store-wheels'), ignore_errors=True)
        wid, wtot, wman = store_tree(os.path.dirname(wroot), 'uv', os.path.join(work, 'store-wheels'))
        wheels = dict(wtot, stored=sum(os.path.getsize(os.path.join(dp, fn)) for dp, dn, fns in
                                       os.walk(os.path.join(work, 'store-wheels', 'objects')) for fn in fns),
                      manifest=wman)
        hosts = {}
        for name, store, sid in (('archive', p['store'], snap['id']), ('wheels', os.path.join(work, 'store-wheels'), wid)):
            host = os.path.join(work, 'host-' + name)
            shutil.rmtree(host, ignore_errors=True)
            start = time.monotonic()
            res = b.sync('file://' + store, sid, host)
            hosts[name] = {'sync_s': time.monotonic() - start, 'path': res['path'], 'tree': tree_stats(host)}
        lower = os.path.join(hosts['archive']['path'], 'uv')
        links = os.path.join(hosts['wheels']['path'], 'uv', 'wheels')
        target = os.path.join(home, '.cache', 'uv')
        scratch = os.path.join(work, 'scratch')
        wtarget = os.path.join(home, 'uv-wheels')
        wscratch = os.path.join(work, 'scratch-wheels')
        venv = os.path.join(home, 'uvvenv-layout')
        cache = os.path.join(work, 'uv-user-cache')
        install = [uv, 'pip', 'install', '-q', '--python', os.path.join(venv, 'bin', 'python'), '--index-url', b.INDEX]
        print(json.dumps({'archive': archive, 'wheels': wheels, 'hosts': hosts}, indent=1), flush=True)
        left = set(b.norm(n) for n in args.not_installed.split(',') if n)
        installed = [n for n in packages if b.norm(n) not in left]
        kinds = ['cold', 'archive view', 'wheels find-links']
        rows, upper = {}, {}
        for rate in ('50mbit', None):
            env.limit(rate)
            times = dict((k, []) for k in kinds)
            for dummy in range(args.rounds):
                for kind in kinds:
                    shutil.rmtree(venv, ignore_errors=True)
                    b.sh(['runuser', '-u', b.USER, '--', uv, 'venv', '-q', '--python', b.USER_PYTHON, venv])
                    uv_env = {'UV_LINK_MODE': 'copy', 'UV_NO_CONFIG': '1'}
                    if kind == 'cold':
                        took = b.as_user(install + installed, dict(uv_env, UV_CACHE_DIR=fresh(cache, uid, gid)))[0]
                        upper[kind] = b.du(cache)
                    elif kind == 'archive view':
                        b.mount_view(lower, target, scratch, uid, gid)
                        took = b.as_user(install + installed, uv_env)[0]
                        upper[kind] = b.du(os.path.join(scratch, 'upper'))
                        subprocess.run(['umount', target], capture_output=True, check=False)
                    else:
                        # The wheels through a view as well (the host's store is root's alone).
                        b.mount_view(links, wtarget, wscratch, uid, gid)
                        took = b.as_user(install + ['--find-links', wtarget] + installed,
                                         dict(uv_env, UV_CACHE_DIR=fresh(cache, uid, gid)))[0]
                        upper[kind] = b.du(cache)
                        subprocess.run(['umount', wtarget], capture_output=True, check=False)
                    times[kind].append(took)
            rows[rate or 'no limit'] = times
        env.limit(None)
    uv_version = b.sh([uv, '--version']).stdout.split()[1]
    result = {'packages': len(packages), 'installed': len(installed), 'resolved': len(resolved), 'uv': uv_version, 'rounds': args.rounds,
              'archive': dict(archive, host_files=hosts['archive']['tree'][0], host_bytes=hosts['archive']['tree'][1],
                              sync_s=round(hosts['archive']['sync_s'], 2), user_cache_bytes=upper['archive view'],
                              build_s=round(build_archive, 1)),
              'wheels': dict(wheels, host_files=hosts['wheels']['tree'][0], host_bytes=hosts['wheels']['tree'][1],
                             sync_s=round(hosts['wheels']['sync_s'], 2), user_cache_bytes=upper['wheels find-links']),
              'cold_user_cache_bytes': upper['cold'],
              'times': rows}
    lines = ['# uv\'s share: unpacked archives against wheels only', '', b.machine(),
             '%d packages (bench/run.py\'s time-to-install set; each resolved alone, as the builder does), %d '
             'distributions; uv %s. The timed install takes %d of them (%s left out: they conflict when installed '
             'together). %d rounds, interleaved; median (min..max).'
             % (len(packages), len(resolved), uv_version, len(installed), ', '.join(sorted(left)), args.rounds), '',
             '| layout | bytes stored (objects) | files | objects | manifest | host tree files | host tree bytes | '
             'sync (file://) | user\'s cache after one install |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for name in ('archive', 'wheels'):
        r = result[name]
        lines.append('| %s | %.1f MB | %d | %d | %.2f MB | %d | %.1f MB | %.2fs | %.1f MB |' % (
            name, r['stored'] / 1e6, r['files'], r['objects'], r['manifest'] / 1e6, r['host_files'],
            r['host_bytes'] / 1e6, r['sync_s'], r['user_cache_bytes'] / 1e6))
    lines += ['', 'Cold install\'s own cache: %.1f MB.' % (upper['cold'] / 1e6), '']
    lines += b.install_table('Time to install (uv pip install of the set into a fresh venv)', '', rows, kinds,
                             [('archive view / cold', 'archive view', 'cold'),
                              ('wheels find-links / cold', 'wheels find-links', 'cold'),
                              ('wheels find-links / archive view', 'wheels find-links', 'archive view')])[4:]
    b.write('uv-layout', lines, b.install_plot(rows, kinds, 'uv pip install of %d packages' % len(installed)))
    with open(os.path.join(b.HERE, 'results', 'uv-layout.json'), 'w') as f:
        json.dump(result, f, indent=1, sort_keys=True)


def fresh(path, uid, gid):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    os.chown(path, uid, gid)
    return path


if __name__ == '__main__':
    main()
