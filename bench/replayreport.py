"""bench/results/replay.md and replay.json from the records of a replay run (bench/replay.py)."""

import json
import os
import statistics

import replaylib as rl

HERE = os.path.dirname(os.path.abspath(__file__))


def dedup(misses):
    """One miss per file (bytes: its largest request), as the rates count them."""
    out = {}
    for m in misses:
        if m['file'] not in out or m['bytes'] > out[m['file']]['bytes']:
            out[m['file']] = m
    return list(out.values())


def figures(rows):
    """Per ecosystem: the overall rates, those of the pinned sets, and view / cold time."""
    for r in rows:
        r['misses'] = dedup(r['misses'])
    allr = rl.overall(rows)
    pinned = rl.overall([r for r in rows if r['pinned']])
    ratios = [r['view_seconds'] / r['cold_seconds'] for r in rows if r['cold_seconds']]
    causes = {}
    for r in rows:
        for m in r['misses']:
            c = causes.setdefault(m['cause'], {'files': 0, 'bytes': 0})
            c['files'] += 1
            c['bytes'] += m['bytes']
    return {'files_pct': allr['files_pct'], 'bytes_pct': allr['bytes_pct'],
            'pinned_files_pct': pinned['files_pct'] if pinned['sets'] else None,
            'pinned_bytes_pct': pinned['bytes_pct'] if pinned['sets'] else None, 'sets': allr['sets'], 'pinned_sets': pinned['sets'],
            'files': allr['files'], 'bytes': allr['bytes'], 'missed_files': allr['missed_files'],
            'missed_bytes': allr['missed_bytes'],
            'sets_with_no_download': sum(1 for r in rows if not r['missed_files']),
            'view_seconds': round(sum(r['view_seconds'] for r in rows), 1),
            'cold_seconds': round(sum(r['cold_seconds'] for r in rows), 1),
            'view_over_cold': round(sum(r['view_seconds'] for r in rows) / max(1e-9, sum(r['cold_seconds'] for r in rows)), 3),
            'view_over_cold_median': round(statistics.median(ratios), 3) if ratios else None,
            'install_errors': sum(1 for r in rows if r['view_error'] or r['cold_error']),
            'misses_by_cause': causes}


def telemetry_words(d):
    kinds = set(t.get('source', {}).get('type') for t in d.get('telemetry', {}).values())
    if 'fleet' in kinds:
        return ('`_popularity.scan_uppers` on each host, names and versions, as a `fleet` source with one entry '
                'per host')
    return '`_popularity.fleet_misses`, names only, as a `counts` source'


def mb(n):
    return '%.1f' % (n / 1e6)


def load(paths):
    """The records of one run, or of runs of different ecosystems side by side (one per ecosystem part), joined:
    their replays, telemetry and lists; the snapshot is the sum of the parts (each ecosystem's part of a snapshot
    is built on its own)."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    d = runs[0]
    d['runs'] = len(runs)
    for other in runs[1:]:
        if set(other.get('replay', {})) <= set(d['replay']):
            # A second process over the same snapshot (--tag, --reverse): its rows of the sets the first did not reach.
            for eco, rows in other['replay'].items():
                have = set(r['set'] for r in d['replay'][eco])
                d['replay'][eco] += [r for r in rows if r['set'] not in have]
            d['runs'] -= 1
            continue
        for key in ('replay', 'telemetry', 'eco_bytes'):
            d.setdefault(key, {}).update(other.get(key, {}))
        d['snapshot_bytes'] = (d.get('snapshot_bytes') or 0) + (other.get('snapshot_bytes') or 0)
        for snap in ('snapshot0', 'snapshot1'):
            if snap in other:
                mine = d.setdefault(snap, {'listed': {}, 'misses': []})
                for eco, names in other[snap].get('listed', {}).items():
                    if names and eco in other.get('replay', {}):
                        mine.setdefault('listed', {})[eco] = names
                mine['misses'] = mine.get('misses', []) + other[snap].get('misses', [])
        d['top'].update(dict((e, n) for e, n in other['top'].items() if e in other.get('replay', {})))
        d['times'] = dict([('%s (%s)' % (k, ', '.join(d.get('replay', {}))), v) for k, v in d.get('times', {}).items()
                           if ' (' not in k] + [(k, v) for k, v in d.get('times', {}).items() if ' (' in k]
                          + [('%s (%s)' % (k, ', '.join(other.get('replay', {}))), v)
                             for k, v in other.get('times', {}).items()])
    return d


def render(paths, name='replay'):
    d = load(paths)
    out = {'seed': d['seed'], 'budget_bytes': d['budget_bytes'], 'snapshot_bytes': d.get('snapshot_bytes'),
           'ecosystem_bytes': d.get('eco_bytes', {}), 'top': d['top'], 'fleet_weight': d['fleet_weight'],
           'split': d['split'], 'ecosystems': {}}
    for eco, rows in d.get('replay', {}).items():
        out['ecosystems'][eco] = figures(rows)
    with open(os.path.join(HERE, 'results', name + '.json'), 'w') as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write('\n')
    lines = ['# Replay: what this week\'s repl users install, served from the snapshot', '',
             d['machine'], '',
             'Corpus: bench/corpus/ (%d pip requirement sets, %d package.json sets; pinned: more than half of a set\'s '
             'direct requirements name one exact version: %d pip, %d npm). Split at random with seed %d '
             '(bench/replaylib.split): last week\'s half installed through the view of a snapshot built from the public '
             'download ranking alone; their uppers\' telemetry (%s) joined that ranking '
             '(`_popularity.rank`, fleet weight %s) to give this week\'s list, built by `_builder.build`; this week\'s '
             'half installed cold (empty cache) and through a fresh view, as a repl user, each in a fresh venv or project. '
             'A file counts as served when the cold install fetched it and the view\'s did not. This week\'s '
             'installs ran over a loopback link shaped to %s (tbf), as a repl\'s downloads do not come over loopback.'
             % (len(d['split']['pip']['last_week']) + len(d['split']['pip']['this_week']),
                len(d['split']['npm']['last_week']) + len(d['split']['npm']['this_week']),
                len(d['pinned']['pip']), len(d['pinned']['npm']), d['seed'], telemetry_words(d), d['fleet_weight'], d.get('rate') or 'no limit'), '',
             'Ranking options: min_hosts %s (each of last week\'s users on a host of its own: %s user(s) per host), %s '
             'versions per project.' % (d.get('min_hosts'), d.get('users_per_host'), d.get('versions')), '',
             'Budget %s GB; snapshot %s GB (%s). Lists: top %d pip projects (uv the same list), top %d npm packages.'
             % ('%.1f' % (d['budget_bytes'] / 1e9), '%.2f' % ((d.get('snapshot_bytes') or 0) / 1e9),
                ', '.join('%s %s GB' % (e, '%.2f' % (n / 1e9)) for e, n in sorted(d.get('eco_bytes', {}).items())),
                d['top']['pip'], d['top']['npm']), '',
             '| ecosystem | sets replayed (of this week\'s) | files from the snapshot | bytes from the snapshot | pinned sets: files | sets with no download '
             '| view / cold time (sum; median of sets) | install errors |',
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for eco, fg in out['ecosystems'].items():
        lines.append('| %s | %d of %d | %.1f %% (%d of %d) | %.1f %% (%s of %s MB) | %s (%d sets) | %d | %.2f (%.0f s / %.0f s); %s | %d |' % (
            eco, fg['sets'], len(d['split']['npm' if eco == 'npm' else 'pip']['this_week']), fg['files_pct'],
            fg['files'] - fg['missed_files'], fg['files'], fg['bytes_pct'],
            mb(fg['bytes'] - fg['missed_bytes']), mb(fg['bytes']),
            '-' if fg['pinned_files_pct'] is None else '%.1f %%' % fg['pinned_files_pct'], fg['pinned_sets'],
            fg['sets_with_no_download'], fg['view_over_cold'], fg['view_seconds'], fg['cold_seconds'],
            fg['view_over_cold_median'], fg['install_errors']))
    lines += ['', '## Misses by cause', '', '| ecosystem | ' + ' | '.join(rl.CAUSES) + ' |',
              '| --- |' + ' --- |' * len(rl.CAUSES)]
    for eco, fg in out['ecosystems'].items():
        c = fg['misses_by_cause']
        cells = ['%d files, %s MB' % (c[k]['files'], mb(c[k]['bytes'])) if k in c else '-' for k in rl.CAUSES]
        lines.append('| %s | %s |' % (eco, ' | '.join(cells)))
    for eco, rows in d.get('replay', {}).items():
        lines += ['', '## %s, per set' % eco, '',
                  '| set | pinned | files | bytes | view | cold | misses (cause) |', '| --- | --- | --- | --- | --- | --- | --- |']
        for r in rows:
            miss = '; '.join('%s (%s, %s MB)' % (m['file'], m['cause'], mb(m['bytes'])) for m in r['misses'])
            err = ' install failed: %s' % (r['view_error'] or r['cold_error'])[-200:].replace('\n', ' ').replace('|', '/') \
                if r['view_error'] or r['cold_error'] else ''
            lines.append('| %s | %s | %.1f %% of %d | %.1f %% of %s MB | %.1f s | %.1f s | %s%s |' % (
                r['set'], 'yes' if r['pinned'] else '', r['files_pct'], r['files'], r['bytes_pct'], mb(r['bytes']),
                r['view_seconds'], r['cold_seconds'], miss or 'none', err))
    lines += ['', '## The split (seed %d)' % d['seed'], '']
    for eco, h in d['split'].items():
        lines.append('- %s, last week (telemetry): %s' % (eco, ', '.join(h['last_week'])))
        lines.append('- %s, this week (replayed): %s' % (eco, ', '.join(h['this_week'])))
    tel = d.get('telemetry', {})
    lines += ['', '## Telemetry and lists', '']
    for eco, t in tel.items():
        top = sorted(t['counts'].items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append('- %s: last week\'s users downloaded %d packages the earlier snapshot lacked; most often: %s'
                     % (eco, t['packages'], ', '.join('%s (%d)' % kv for kv in top[:15])))
    s0, s1 = d.get('snapshot0', {}), d.get('snapshot1', {})
    for eco in ('pip', 'npm'):
        l0, l1 = s0.get('listed', {}).get(eco, []), s1.get('listed', {}).get(eco, [])
        if l1:
            lines.append('- %s list: %d names; %d new this week (from the fleet): %s' % (
                eco, len(l1), len([n for n in l1 if n not in l0]), ', '.join(n for n in l1 if n not in l0)))
    misses = ['%s: %s' % (m.get('package'), str(m.get('reason'))[:120]) for m in s1.get('misses', [])]
    lines.append('- build misses this week: %s' % ('; '.join(misses) or 'none'))
    dl = d.get('set_downloads', {})
    bad = dict((n, i) for n, i in dl.items() if not i['ok'])
    lines += ['', 'Corpus downloads from PyPI (the users\' pip): %d sets, %s MB; failed: %s.' % (
        len(dl), mb(sum(i['bytes'] for i in dl.values())), '; '.join('%s: %s' % (n, i['reason'][:150]) for n, i in bad.items()) or 'none')]
    lines += ['', 'Run time: ' + ', '.join('%s %d s' % kv for kv in d.get('times', {}).items()) + '.']
    os.makedirs(os.path.join(HERE, 'results'), exist_ok=True)
    with open(os.path.join(HERE, 'results', name + '.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines[:20]))
