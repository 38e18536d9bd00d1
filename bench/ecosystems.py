"""Time-to-install for uv and npm (part of `make bench`; bench/run.py runs them).

uv: the pip benchmark's package set, cold cache against the snapshot view, with
UV_LINK_MODE=copy (recommended) and hardlink, and the floor: a warm local
cache (the one the round's cold install filled) with --offline. npm: 30
popular packages (with their dependencies) from a static registry that nginx
serves in the bench namespace (packuments trimmed to the versions used,
tarballs byte for byte from the npm registry), cold against the snapshot view
with npm's default revalidation, with --prefer-offline and with --offline,
and the floor: a warm local cache with --offline. Each round uses a fresh
project or venv and a fresh upper.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.request

import common as b

# 30 popular packages, at their real sizes (typescript, aws-sdk, webpack, eslint, jest, ...). typescript 7 and
# jest (unrs-resolver) depend on one optional package per platform with a prebuilt binary; npm installs only this
# platform's, the report counts the others.
NPM_PACKAGES = ['lodash', 'chalk@4', 'react', 'react-dom', 'axios', 'commander', 'debug', 'tslib', 'semver',
                'typescript', '@types/node', 'express@4', 'uuid', 'glob', 'yargs', 'ws', 'moment', 'dayjs', 'rxjs',
                'webpack', 'eslint', 'prettier', '@babel/core', 'jest', 'date-fns', 'core-js', 'aws-sdk', 'minimist',
                'classnames', 'prop-types']
NPM_CACHE = os.path.join(b.NPM_ROOT, 'npm')


def fetch(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def ensure_npm_registry():
    """Fill .cache/bench-npm-registry with trimmed packuments and tarballs of NPM_PACKAGES' tree (once per list)."""
    done = os.path.join(NPM_CACHE, '.complete')
    if os.path.exists(done):
        with open(done) as f:
            if f.read().split() == NPM_PACKAGES:
                return
    shutil.rmtree(NPM_CACHE, ignore_errors=True)
    proj = os.path.join(NPM_CACHE, '.resolve')
    os.makedirs(proj)
    with open(os.path.join(proj, 'package.json'), 'w') as f:
        json.dump({'name': 'bench', 'version': '0.0.0', 'private': True}, f)
    b.sh(['npm', 'install', '--package-lock-only', '--ignore-scripts', '--omit-lockfile-registry-resolved=false',
          '--cache', os.path.join(NPM_CACHE, '.npmcache')] + NPM_PACKAGES, cwd=proj)
    with open(os.path.join(proj, 'package-lock.json')) as f:
        lock = json.load(f)
    wanted = {}
    for path, meta in lock['packages'].items():
        if path and 'node_modules/' in path and meta.get('resolved'):
            name = meta.get('name') or path.rsplit('node_modules/', 1)[1]
            wanted.setdefault(name, {})[meta['version']] = meta['resolved']
    for name, versions in wanted.items():
        # npm asks for @scope%2fname; nginx decodes it to @scope/name, where the packument lies.
        doc = json.loads(fetch('https://registry.npmjs.org/' + name.replace('/', '%2f')))
        keep = {}
        for version, resolved in versions.items():
            info = doc['versions'][version]
            fname = resolved.rsplit('/', 1)[1]
            os.makedirs(os.path.join(NPM_CACHE, name, '-'), exist_ok=True)
            with open(os.path.join(NPM_CACHE, name, '-', fname), 'wb') as f:
                f.write(fetch(resolved))
            info['dist']['tarball'] = b.REGISTRY + name + '/-/' + fname
            keep[version] = info
        latest = sorted(keep, key=lambda v: [int(x) if x.isdigit() else 0 for x in v.split('-')[0].split('.')])[-1]
        packument = {'name': name, 'dist-tags': {'latest': latest}, 'versions': keep,
                     'time': dict((v, doc.get('time', {}).get(v, '')) for v in keep)}
        with open(os.path.join(NPM_CACHE, name, 'index.json'), 'w') as f:
            json.dump(packument, f)
    shutil.rmtree(proj)
    shutil.rmtree(os.path.join(NPM_CACHE, '.npmcache'), ignore_errors=True)
    with open(done, 'w') as f:
        f.write('\n'.join(NPM_PACKAGES) + '\n')


def platform_ok(info):
    """Whether npm installs a version (its packument entry) on this machine (os and cpu; libc is not checked)."""
    plat = {'os': sys.platform, 'cpu': {'x86_64': 'x64', 'aarch64': 'arm64'}.get(os.uname().machine, os.uname().machine)}
    for field, mine in plat.items():
        allowed = info.get(field) or []
        if any(a == '!' + mine for a in allowed) or ([a for a in allowed if not a.startswith('!')] and mine not in allowed):
            return False
    return True


def tarball_bytes():
    """(count, bytes, foreign count, foreign bytes) of the registry's tarballs; foreign: for other platforms."""
    count = size = fcount = fsize = 0
    for d, dummy, files in os.walk(NPM_CACHE):
        if 'index.json' not in files:
            continue
        with open(os.path.join(d, 'index.json')) as f:
            versions = json.load(f)['versions']
        for info in versions.values():
            path = os.path.join(NPM_CACHE, info['name'], '-', info['dist']['tarball'].rsplit('/', 1)[1])
            n = os.path.getsize(path)
            count, size = count + 1, size + n
            if not platform_ok(info):
                fcount, fsize = fcount + 1, fsize + n
    return count, size, fcount, fsize


def fresh_cache(path, uid, gid):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    os.chown(path, uid, gid)
    return path


def ratio_columns(view_kinds, cold='cold', floor='floor'):
    """[(header, num, den)]: each view ÷ cold and ÷ floor."""
    cols = [('%s / %s' % (k, cold), k, cold) for k in view_kinds]
    return cols + [('%s / %s' % (k, floor), k, floor) for k in view_kinds]


def bench_uv(env, work, rounds, uv, packages, pip_rows=None):
    """uv cold / view / floor for ``packages``; ``pip_rows`` (bench_install's, same run) add uv view ÷ pip cold."""
    uid, gid, home = b.ensure_user()
    p = {'ecosystems': ['uv'], 'uv': {'packages': packages, 'index_url': b.INDEX, 'uv': uv, 'python': b.USER_PYTHON},
         'work_dir': os.path.join(work, 'build'), 'store': os.path.join(work, 'store-uv'), 'publish': True}
    snap = b._builder.build(p, b.run_cmd, now='bench')  # pylint: disable=protected-access
    res = b.sync('file://' + os.path.join(work, 'store-uv'), snap['id'], os.path.join(work, 'host-uv'))
    lower = os.path.join(res['path'], 'uv')
    target = os.path.join(home, '.cache', 'uv')
    scratch = os.path.join(work, 'scratch-uv')
    venv = os.path.join(home, 'uvvenv-bench')
    install = [uv, 'pip', 'install', '-q', '--python', os.path.join(venv, 'bin', 'python'), '--index-url', b.INDEX] + packages
    kinds = ['cold', 'view, copy', 'view, hardlink', 'floor']
    rows, upper = {}, {}
    cache = os.path.join(work, 'uv-cold-cache')
    for rate in ('50mbit', None):
        env.limit(rate)
        times = dict((k, []) for k in kinds)
        for dummy in range(rounds):
            for kind in kinds:  # cold first: the floor is the cache it filled
                shutil.rmtree(venv, ignore_errors=True)
                b.sh(['runuser', '-u', b.USER, '--', uv, 'venv', '-q', '--python', b.USER_PYTHON, venv])
                mode = 'hardlink' if 'hardlink' in kind else 'copy'
                uv_env = {'UV_LINK_MODE': mode, 'UV_NO_CONFIG': '1'}
                if kind == 'cold':
                    took = b.as_user(install, dict(uv_env, UV_CACHE_DIR=fresh_cache(cache, uid, gid)))[0]
                elif kind == 'floor':
                    took = b.as_user(install + ['--offline'], dict(uv_env, UV_CACHE_DIR=cache))[0]
                else:
                    b.mount_view(lower, target, scratch, uid, gid)
                    took = b.as_user(install, uv_env)[0]
                    upper[kind] = b.du(os.path.join(scratch, 'upper'))
                times[kind].append(took)
        rows[rate or 'no limit'] = times
    subprocess.run(['umount', target], capture_output=True, check=False)
    env.limit(None)
    title = 'uv: time to install %d packages in a fresh venv, as a non-root user' % len(packages)
    env_line = ('Same packages, index and link as the pip benchmark; uv %s. Floor: a warm local cache (the one the '
                'round\'s cold install filled) with --offline. %d rounds; median (min..max).'
                % (b.sh([uv, '--version']).stdout.split()[1], rounds))
    cols = ratio_columns(['view, copy', 'view, hardlink'])
    if pip_rows:
        for rate, t in rows.items():
            t['pip cold'] = pip_rows[rate]['cold'][:len(t['cold'])]
        cols.append(('uv view, copy / pip cold', 'view, copy', 'pip cold'))
    lines = b.install_table(title, env_line, rows, kinds, cols)
    if pip_rows:
        lines += ['', 'pip cold: the pip benchmark\'s cold installs of the same packages in this run, round by round '
                  '(Debian\'s pip into a fresh venv with an empty cache): what switching the users to uv with the view buys.']
    lines += ['', 'Bytes in the user\'s upper after one install through the view: copy %d, hardlink %d '
              '(the venv is on another filesystem than the overlay, so uv falls back to copying either way).'
              % (upper.get('view, copy', 0), upper.get('view, hardlink', 0))]
    b.write('time-to-install-uv', lines, b.install_plot(rows, kinds, 'uv pip install of %d packages' % len(packages)))
    return rows


def bench_npm(env, work, rounds):
    uid, gid, home = b.ensure_user()
    p = {'ecosystems': ['npm'], 'npm': {'packages': NPM_PACKAGES, 'registry': b.REGISTRY, 'npm': 'npm'},
         'work_dir': os.path.join(work, 'build'), 'store': os.path.join(work, 'store-npm'), 'publish': True}
    snap = b._builder.build(p, b.run_cmd, now='bench')  # pylint: disable=protected-access
    res = b.sync('file://' + os.path.join(work, 'store-npm'), snap['id'], os.path.join(work, 'host-npm'))
    lower = os.path.join(res['path'], 'npm')
    target = os.path.join(home, '.npm')
    scratch = os.path.join(work, 'scratch-npm')
    proj = os.path.join(home, 'npm-bench')
    cache = os.path.join(work, 'npm-cold-cache')
    kinds = ['cold', 'view', 'view, --prefer-offline', 'view, --offline', 'floor']
    flags = {'view, --prefer-offline': '--prefer-offline ', 'view, --offline': '--offline ', 'floor': '--offline '}
    rows, installed = {}, 0
    for rate in ('50mbit', None):
        env.limit(rate)
        times = dict((k, []) for k in kinds)
        for dummy in range(rounds):
            for kind in kinds:  # cold first: the floor is the cache it filled
                subprocess.run(['umount', target], capture_output=True, check=False)
                shutil.rmtree(proj, ignore_errors=True)
                os.makedirs(proj)
                with open(os.path.join(proj, 'package.json'), 'w') as f:
                    json.dump({'name': 'bench', 'version': '0.0.0', 'private': True}, f)
                os.chown(proj, uid, gid)
                os.chown(os.path.join(proj, 'package.json'), uid, gid)
                argv = ['sh', '-c', 'cd %s && npm install --no-audit --no-fund --ignore-scripts --registry %s %s%s'
                        % (proj, b.REGISTRY, flags.get(kind, ''), ' '.join(NPM_PACKAGES))]
                if kind == 'cold':
                    times[kind].append(b.as_user(argv, {'npm_config_cache': fresh_cache(cache, uid, gid)})[0])
                    installed = b.du(os.path.join(proj, 'node_modules'))
                elif kind == 'floor':
                    times[kind].append(b.as_user(argv, {'npm_config_cache': cache})[0])
                else:
                    b.mount_view(lower, target, scratch, uid, gid)
                    times[kind].append(b.as_user(argv)[0])
        rows[rate or 'no limit'] = times
    subprocess.run(['umount', target], capture_output=True, check=False)
    env.limit(None)
    count = len(snap['packages'])
    tarballs, tar_bytes, foreign, foreign_bytes = tarball_bytes()
    title = ('npm: time to install %d popular packages (%d with dependencies) in a fresh project, as a non-root user'
             % (len(NPM_PACKAGES), count))
    env_line = ('Registry: nginx serving packuments (trimmed to the versions used, Cache-Control max-age=300) and '
                'tarballs from the npm registry (%d tarballs, %.1f MB; node_modules %.0f MB), in the same namespace '
                'and link; npm %s. Floor: a warm local cache (the one the round\'s cold install filled) with --offline. '
                '%d rounds; median (min..max).'
                % (tarballs, tar_bytes / 1e6, installed / 1e6, b.sh(['npm', '--version']).stdout.strip(), rounds))
    lines = b.install_table(title, env_line, rows, kinds, ratio_columns(['view', 'view, --prefer-offline', 'view, --offline']))
    lines += ['', 'Snapshot: %d packages, %.1f MB. %d of the tarballs (%.1f MB) are optional packages for other platforms '
              '(prebuilt binaries that typescript and jest\'s resolver list one per platform): npm skips them on install, '
              'the builder caches every package of the lock file.' % (count, snap['bytes'] / 1e6, foreign, foreign_bytes / 1e6)]
    b.write('time-to-install-npm', lines, b.install_plot(rows, kinds, 'npm install of %d packages' % len(NPM_PACKAGES)))
    return rows
