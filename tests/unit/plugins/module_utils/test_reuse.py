"""Reusing the previous build's resolutions when the index has nothing newer (stand-in pip and index pages)."""

import io
import json
import os

from ansible_collections.pkgcache.overlay.plugins.module_utils import _builder as bd
from ansible_collections.pkgcache.overlay.plugins.module_utils import _reuse
from ansible_collections.pkgcache.overlay.plugins.module_utils import _store as st

from helpers import INDEX, ResolverPip, params


class Pages(object):
    """The index's project pages: {project: bytes}; a missing project fails like an HTTP error."""

    def __init__(self, pages):
        self.pages, self.urls = dict(pages), []

    def __call__(self, url):
        self.urls.append(url)
        name = url[len(INDEX):].strip('/')
        if name not in self.pages:
            raise IOError('HTTP Error 503: %s' % url)
        return io.BytesIO(self.pages[name])


PAGES = {'web': b'<a>web-1.0</a>', 'legacy': b'<a>legacy-1.0</a>', 'core': b'<a>core-1.0</a><a>core-2.0</a>'}


def build(tmp_path, pip, pages, now, packages=('web', 'legacy', 'broken'), **kw):
    p = dict(params(tmp_path, list(packages)), workers=2, **kw)
    return bd.build(p, pip, now=now, opener=pages)


def manifest(tmp_path, snap_id):
    return json.load(open(st.manifest_path(str(tmp_path / 'store'), snap_id)))


def test_an_unchanged_index_reuses_every_resolution_and_runs_no_pip(tmp_path):
    first = build(tmp_path, ResolverPip({}), Pages(PAGES), 't1')
    m = manifest(tmp_path, first['id'])
    assert sorted(m['pip']['pages']) == ['core', 'legacy', 'web'] and m['pip']['reused'] == 0
    assert all(x['url'].startswith('http://') for x in m['pip']['packages'])
    pip = ResolverPip({})
    again = build(tmp_path, pip, Pages(PAGES), 't2')
    # Only the spec that failed last time (no resolution to reuse) ran pip; the snapshot is the same one.
    assert getattr(pip, 'requests', []) == [['broken']]
    assert again['id'] == first['id'] and not again['changed'] and again['ecosystems']['pip']['reused'] == 2


def test_a_changed_page_resolves_again_only_the_packages_that_use_that_project(tmp_path):
    build(tmp_path, ResolverPip({}), Pages(PAGES), 't1')
    pip = ResolverPip({})
    r = build(tmp_path, pip, Pages(dict(PAGES, legacy=b'<a>legacy-1.0</a><a>legacy-1.1</a>')), 't2')
    assert sorted(pip.requests) == [['broken'], ['legacy']]
    assert r['ecosystems']['pip']['reused'] == 1
    pip = ResolverPip({})
    r = build(tmp_path, pip, Pages(dict(PAGES, core=b'<a>core-3.0</a>')), 't3')
    assert sorted(pip.requests) == [['broken'], ['legacy'], ['web']]  # both use core


def test_a_page_that_cannot_be_fetched_means_resolve_again(tmp_path):
    build(tmp_path, ResolverPip({}), Pages(PAGES), 't1')
    pip = ResolverPip({})
    build(tmp_path, pip, Pages(dict((k, v) for k, v in PAGES.items() if k != 'web')), 't2')
    assert sorted(pip.requests) == [['broken'], ['web']]


def test_a_reused_build_holds_the_same_files_as_a_fresh_one(tmp_path):
    """New packages next to reused ones: the cache seeded from the old snapshot plus pip's new entries."""
    build(tmp_path, ResolverPip({}), Pages(PAGES), 't1')

    class More(ResolverPip):
        DEPS = dict(ResolverPip.DEPS, extra=[('extra', '1.0'), ('core', '2.0')])

    pages = Pages(dict(PAGES, extra=b'<a>extra-1.0</a>'))
    reused = bd.build(dict(params(tmp_path, ['web', 'legacy', 'extra']), workers=2), More({}), now='t2', opener=pages)
    fresh = bd.build(dict(params(tmp_path / 'fresh', ['web', 'legacy', 'extra']), workers=2), More({}), now='t2',
                     opener=Pages(pages.pages))
    assert reused['id'] == fresh['id'] and reused['ecosystems']['pip']['reused'] == 2
    assert reused['misses'] == []


def test_only_a_build_with_the_same_pip_python_and_index_is_reused(tmp_path):
    build(tmp_path, ResolverPip({}), Pages(PAGES), 't1')
    store = str(tmp_path / 'store')
    assert _reuse.previous(store, {'pip': '23.0.1', 'python': '3.11.2'}, INDEX) is not None
    assert _reuse.previous(store, {'pip': '24.0', 'python': '3.11.2'}, INDEX) is None
    assert _reuse.previous(store, {'pip': '23.0.1', 'python': '3.12.0'}, INDEX) is None
    assert _reuse.previous(store, {'pip': '23.0.1', 'python': '3.11.2'}, 'https://other/simple/') is None
    assert _reuse.previous(str(tmp_path / 'empty'), {'pip': '23.0.1', 'python': '3.11.2'}, INDEX) is None
    assert os.path.isdir(store)


def test_seeding_takes_a_built_wheel_with_everything_pip_keeps_beside_it(tmp_path):
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _manifest as mf
    src = tmp_path / 'old' / 'pip'
    whl_dir = src / 'wheels' / 'ab' / 'cd' / 'ef' / '0123'
    whl_dir.mkdir(parents=True)
    (whl_dir / 'docopt-0.6.2-py2.py3-none-any.whl').write_bytes(b'wheel')
    (whl_dir / 'origin.json').write_bytes(b'{"url": "http://x/docopt-0.6.2.tar.gz"}')
    other = src / 'wheels' / 'ff' / 'ff' / 'ff' / '9999'
    other.mkdir(parents=True)
    (other / 'other-1.0-py3-none-any.whl').write_bytes(b'other wheel')
    entries, paths = mf.scan_tree(str(src), 'pip')
    store = str(tmp_path / 'store')
    for e in entries:
        if e['type'] == 'file':
            st.ingest_file(store, paths[e['path']], e['sha256'])
    cache = tmp_path / 'new'
    assert _reuse.seed(str(cache), store, {'entries': entries}, [], {'docopt'}) == 2
    assert sorted(os.listdir(str(cache / 'wheels' / 'ab' / 'cd' / 'ef' / '0123'))) == [
        'docopt-0.6.2-py2.py3-none-any.whl', 'origin.json']
    assert not (cache / 'wheels' / 'ff').exists()


def test_a_page_change_that_keeps_the_resolution_is_learned_once(tmp_path):
    """A pre-release changes legacy's page but not what it resolves to: one build resolves it, the next reuses it."""
    build(tmp_path, ResolverPip({}), Pages(PAGES), 't1')
    pages = dict(PAGES, legacy=b'<a>legacy-1.0</a><a>legacy-2.0rc1</a>')
    pip = ResolverPip({})
    build(tmp_path, pip, Pages(pages), 't2')
    assert sorted(pip.requests) == [['broken'], ['legacy']]
    pip = ResolverPip({})
    assert build(tmp_path, pip, Pages(pages), 't3')['ecosystems']['pip']['reused'] == 2
    assert pip.requests == [['broken']]


def test_reuse_seeds_the_pep658_metadata_a_current_pip_reads(tmp_path):
    from ansible_collections.pkgcache.overlay.plugins.module_utils import _pipcache as pc

    class Pep658(ResolverPip):
        def __call__(self, argv, env):
            rc, out, err = ResolverPip.__call__(self, argv, env)
            if '--cache-dir' in argv and rc == 0:
                cache = argv[argv.index('--cache-dir') + 1]
                for item in json.load(open(argv[argv.index('--report') + 1]))['install']:
                    path = pc.http_cache_paths(cache, item['download_info']['url'] + '.metadata')[0]
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    open(path, 'w').write('Metadata-Version: 2.1')
            return rc, out, err

    first = build(tmp_path, Pep658({}), Pages(PAGES), 't1', packages=['web'])
    again = bd.build(dict(params(tmp_path, ['web', 'legacy']), workers=2), Pep658({}), now='t2', opener=Pages(PAGES))
    m = manifest(tmp_path, again['id'])
    url = [x['url'] for x in m['pip']['packages'] if x['name'] == 'web'][0] + '.metadata'
    meta_path = 'pip/' + os.path.relpath(pc.http_cache_paths('/c', url)[0], '/c')
    assert again['ecosystems']['pip']['reused'] == 1 and first['id'] != again['id']
    assert any(e['path'] == meta_path for e in m['entries'])


def test_a_budget_leaves_out_a_reused_resolution_and_its_seeded_files_leave_the_snapshot(tmp_path):
    first = build(tmp_path, ResolverPip({}), Pages(PAGES), 't1', packages=('web', 'legacy'))
    assert sorted(x['name'] + x['version'] for x in first['packages']) == ['core1.0', 'core2.0', 'legacy1.0', 'web1.0']
    # Nothing changed on the index, so both are reused; 'web 1.0' + 'core 2.0' is 15 bytes, legacy's closure 18.
    pip = ResolverPip({})
    r = build(tmp_path, pip, Pages(PAGES), 't2', packages=('web', 'legacy'), max_bytes=25)
    assert getattr(pip, 'requests', []) == []
    assert [(x['package'], x['reason'], x['closure_bytes']) for x in r['left_out']] == [('legacy', 'budget', 18)]
    assert sorted(x['name'] + x['version'] for x in r['packages']) == ['core2.0', 'web1.0']
    m = manifest(tmp_path, r['id'])
    assert sorted(m['pip']['resolutions']) == ['web'] and m['pip']['reused'] == 1
    bodies = [e for e in m['entries'] if e['type'] == 'file' and e['path'].startswith('pip/http')]
    assert len(bodies) == 2  # the files of legacy 1.0 and core 1.0 went with it
