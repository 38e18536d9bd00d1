"""The size budget's choice on real closures (no build, no network): bench/results/budget.md.

    python3 bench/budget.py [--hitrate-dir /var/tmp/pkgcache-bench/hitrate-wheelhouse] [--top 50]

Reads each project's own download (``pkg/<project>/``: the wheels of its solo
resolution, as the builder's dry run lists them) from a hit-rate wheelhouse,
scores the projects by rank (1/r, the fallback when no popularity scores are
given), and runs _budget.choose for several budgets, as snapshot_build does
with the sizes of the files. It shows what each budget keeps, what it leaves
out and why, and what share of the expected bytes saved the kept part gives
(sum over projects of score x closure, kept ÷ all).
"""

import argparse
import json
import os

import common as b
from ansible_collections.pkgcache.overlay.plugins.module_utils import _budget  # noqa: E402
import hitrate  # noqa: E402


def closures(hitrate_dir, top):
    out = []
    for name in hitrate.candidates()[0]:
        stamp = os.path.join(hitrate_dir, 'pkg', b.norm(name), '.done.json')
        if not os.path.exists(stamp):
            continue
        with open(stamp) as f:
            info = json.load(f)
        if not info['ok']:
            continue
        d = os.path.dirname(stamp)
        out.append((name, dict((fn, os.path.getsize(os.path.join(d, fn))) for fn in info['files'])))
        if len(out) >= top:
            break
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--hitrate-dir', default='/var/tmp/pkgcache-bench/hitrate-wheelhouse')
    ap.add_argument('--top', type=int, default=50)
    args = ap.parse_args()
    projects = closures(args.hitrate_dir, args.top)
    scores = _budget.rank_scores([n for n, f in projects])
    cands = [{'spec': n, 'score': scores[n], 'files': f} for n, f in projects]
    union = {}
    for n, f in projects:
        union.update(f)
    everything = sum(union.values())
    worth = dict((c['spec'], c['score'] * sum(c['files'].values())) for c in cands)
    lines = ['# The size budget on real closures', '',
             '%d projects (the time-to-install set: the first of bench/hitrate.py\'s ranking with wheels), each with the '
             'wheels of its own resolution; scored by rank (1/r). All of them: %s in %d files. Expected bytes saved: '
             'score x closure, summed.' % (len(projects), _budget.human(everything), len(union)), '',
             '| budget | kept | bytes | expected bytes saved | left out (closure) |', '| --- | --- | --- | --- | --- |']
    result = []
    for budget in (25 * 10 ** 6, 50 * 10 ** 6, 100 * 10 ** 6, 150 * 10 ** 6):
        chosen, left, total = _budget.choose(cands, max_bytes=budget)
        saved = sum(worth[s] for s in chosen) / sum(worth.values())
        lines.append('| %s | %d | %s | %.1f %% | %s |' % (
            _budget.human(budget), len(chosen), _budget.human(total), 100 * saved,
            ', '.join('%s (%s)' % (x['package'], _budget.human(x['closure_bytes'])) for x in left) or '-'))
        result.append({'budget': budget, 'kept': len(chosen), 'bytes': total, 'saved_share': round(saved, 4),
                       'left_out': [x['why'] for x in left]})
    print('\n'.join(lines))
    with open(os.path.join(b.HERE, 'results', 'budget.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(os.path.join(b.HERE, 'results', 'budget.json'), 'w') as f:
        json.dump({'projects': len(projects), 'all_bytes': everything, 'budgets': result}, f, indent=1)


if __name__ == '__main__':
    main()
