"""Time-to-install for uv and npm (part of `make bench`; imported by bench/run.py).

uv: the same package set as pip, cold cache against the snapshot view, with
UV_LINK_MODE=copy (recommended) and hardlink. npm: popular packages (with
their dependencies) from a static registry that nginx serves in the bench
namespace (packuments trimmed to the versions used, tarballs byte for byte
from the npm registry), cold against the snapshot view, with npm's default
revalidation and with --prefer-offline. Each round uses a fresh project or
venv and a fresh upper.
"""

import json
import os
import shutil
import subprocess
import urllib.request

import run as b

NPM_PACKAGES = ['lodash', 'chalk@4', 'express@4', 'react', 'react-dom', 'axios', 'commander', 'debug', 'uuid',
                'yargs', 'moment', 'dayjs', 'semver', 'glob', 'minimist', 'tslib', 'classnames', 'prop-types',
                'rxjs', 'ws']
NPM_PREFIX = '/npm/'
REGISTRY = 'http://127.0.0.1:%d%s' % (b.PORT, NPM_PREFIX)
NPM_ROOT = os.path.join(b.ROOT, '.cache', 'bench-npm-registry')
NPM_CACHE = os.path.join(NPM_ROOT, 'npm')


def fetch(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def ensure_npm_registry():
    """Fill .cache/bench-npm-registry with trimmed packuments and tarballs of NPM_PACKAGES' tree (once)."""
    done = os.path.join(NPM_CACHE, '.complete')
    if os.path.exists(done):
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
            info['dist']['tarball'] = REGISTRY + name + '/-/' + fname
            keep[version] = info
        latest = sorted(keep, key=lambda v: [int(x) if x.isdigit() else 0 for x in v.split('-')[0].split('.')])[-1]
        packument = {'name': name, 'dist-tags': {'latest': latest}, 'versions': keep,
                     'time': dict((v, doc.get('time', {}).get(v, '')) for v in keep)}
        with open(os.path.join(NPM_CACHE, name, 'index.json'), 'w') as f:
            json.dump(packument, f)
    shutil.rmtree(proj)
    shutil.rmtree(os.path.join(NPM_CACHE, '.npmcache'), ignore_errors=True)
    open(done, 'w').close()


def nginx_locations():
    """The nginx locations that serve the static npm registry (for bench/run.py's server block)."""
    return ('location %s { root %s; default_type application/json; try_files $uri $uri/index.json =404;'
            ' add_header Cache-Control "public, max-age=300"; }' % (NPM_PREFIX, NPM_ROOT))


def du(path):
    return int(b.sh(['du', '-sb', path]).stdout.split()[0])


def bench_uv(env, work, rounds, uv):
    uid, gid, home = b.ensure_user()
    p = {'ecosystems': ['uv'], 'uv': {'packages': b.PACKAGES, 'index_url': b.INDEX, 'uv': uv, 'python': b.USER_PYTHON},
         'work_dir': os.path.join(work, 'build'), 'store': os.path.join(work, 'store-uv'), 'publish': True}
    snap = b._builder.build(p, b.run_cmd, now='bench')
    res = b.sync('file://' + os.path.join(work, 'store-uv'), snap['id'], os.path.join(work, 'host-uv'))
    lower = os.path.join(res['path'], 'uv')
    target = os.path.join(home, '.cache', 'uv')
    scratch = os.path.join(work, 'scratch-uv')
    venv = os.path.join(home, 'uvvenv-bench')
    install = [uv, 'pip', 'install', '-q', '--python', os.path.join(venv, 'bin', 'python'), '--index-url', b.INDEX] + b.PACKAGES
    kinds = ['cold', 'view, copy', 'view, hardlink']
    rows, upper = {}, {}
    for rate in ('50mbit', None):
        env.limit(rate)
        times = dict((k, []) for k in kinds)
        for dummy in range(rounds):
            for kind in kinds:
                shutil.rmtree(venv, ignore_errors=True)
                b.sh(['runuser', '-u', b.USER, '--', uv, 'venv', '-q', '--python', b.USER_PYTHON, venv])
                mode = 'hardlink' if 'hardlink' in kind else 'copy'
                if kind == 'cold':
                    cache = os.path.join(work, 'uv-cold-cache')
                    shutil.rmtree(cache, ignore_errors=True)
                    os.makedirs(cache)
                    os.chown(cache, uid, gid)
                    took = b.as_user(install, {'UV_CACHE_DIR': cache, 'UV_LINK_MODE': mode, 'UV_NO_CONFIG': '1'})[0]
                else:
                    b.mount_view(lower, target, scratch, uid, gid)
                    took = b.as_user(install, {'UV_LINK_MODE': mode, 'UV_NO_CONFIG': '1'})[0]
                    upper[kind] = du(os.path.join(scratch, 'upper'))
                times[kind].append(took)
        rows[rate or 'no limit'] = times
    subprocess.run(['umount', target], capture_output=True, check=False)
    env.limit(None)
    title = 'uv: time to install %d packages in a fresh venv, as a non-root user' % len(b.PACKAGES)
    env_line = ('Same index and link as the pip benchmark; uv %s. %d rounds; median (min..max).'
                % (b.sh([uv, '--version']).stdout.split()[1], rounds))
    lines = b.install_table(title, env_line, rows, kinds, [('cold / view (copy)', 'cold', 'view, copy'),
                                                           ('cold / view (hardlink)', 'cold', 'view, hardlink')])
    lines += ['', 'Bytes in the user\'s upper after one install through the view: copy %d, hardlink %d '
              '(the venv is on another filesystem than the overlay, so uv falls back to copying either way).'
              % (upper.get('view, copy', 0), upper.get('view, hardlink', 0))]
    b.write('time-to-install-uv', lines, b.install_plot(rows, kinds, 'uv pip install of %d packages' % len(b.PACKAGES)))


def bench_npm(env, work, rounds):
    uid, gid, home = b.ensure_user()
    p = {'ecosystems': ['npm'], 'npm': {'packages': NPM_PACKAGES, 'registry': REGISTRY, 'npm': 'npm'},
         'work_dir': os.path.join(work, 'build'), 'store': os.path.join(work, 'store-npm'), 'publish': True}
    snap = b._builder.build(p, b.run_cmd, now='bench')
    res = b.sync('file://' + os.path.join(work, 'store-npm'), snap['id'], os.path.join(work, 'host-npm'))
    lower = os.path.join(res['path'], 'npm')
    target = os.path.join(home, '.npm')
    scratch = os.path.join(work, 'scratch-npm')
    proj = os.path.join(home, 'npm-bench')
    kinds = ['cold', 'view', 'view, --prefer-offline']
    rows = {}
    for rate in ('50mbit', None):
        env.limit(rate)
        times = dict((k, []) for k in kinds)
        for dummy in range(rounds):
            for kind in kinds:
                subprocess.run(['umount', target], capture_output=True, check=False)
                shutil.rmtree(proj, ignore_errors=True)
                os.makedirs(proj)
                with open(os.path.join(proj, 'package.json'), 'w') as f:
                    json.dump({'name': 'bench', 'version': '0.0.0', 'private': True}, f)
                os.chown(proj, uid, gid)
                os.chown(os.path.join(proj, 'package.json'), uid, gid)
                argv = ['sh', '-c', 'cd %s && npm install --no-audit --no-fund --ignore-scripts --registry %s %s%s'
                        % (proj, REGISTRY, '--prefer-offline ' if 'prefer' in kind else '', ' '.join(NPM_PACKAGES))]
                if kind == 'cold':
                    cache = os.path.join(work, 'npm-cold-cache')
                    shutil.rmtree(cache, ignore_errors=True)
                    os.makedirs(cache)
                    os.chown(cache, uid, gid)
                    times[kind].append(b.as_user(argv, {'npm_config_cache': cache})[0])
                else:
                    b.mount_view(lower, target, scratch, uid, gid)
                    times[kind].append(b.as_user(argv)[0])
        rows[rate or 'no limit'] = times
    subprocess.run(['umount', target], capture_output=True, check=False)
    env.limit(None)
    count = len(snap['packages'])
    title = ('npm: time to install %d popular packages (%d with dependencies) in a fresh project, as a non-root user'
             % (len(NPM_PACKAGES), count))
    env_line = ('Registry: nginx serving packuments (trimmed to the versions used, Cache-Control max-age=300) and '
                'tarballs from the npm registry, in the same namespace and link; npm %s. %d rounds; median (min..max).'
                % (b.sh(['npm', '--version']).stdout.strip(), rounds))
    lines = b.install_table(title, env_line, rows, kinds, [('cold / view', 'cold', 'view'),
                                                           ('cold / view --prefer-offline', 'cold', 'view, --prefer-offline')])
    b.write('time-to-install-npm', lines, b.install_plot(rows, kinds, 'npm install of %d packages' % len(NPM_PACKAGES)))
