# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choosing what goes into a snapshot within a size budget.

Private to the collection; the API may change without notice.

Every requested package was resolved on its own, so its closure (the files a
user's install of it into a fresh project fetches) is known with the size of
each file. A package is worth what it saves: how often it is installed times
the bytes of its closure (a user who installs it downloads all of them). It
costs what it adds to the snapshot: the bytes of the files of its closure that
no package chosen before brings (shared dependencies already in cost nothing).

``choose`` takes, again and again, the package that saves the most per byte
it adds among those that still fit, until none fits. Costs only fall as
packages are chosen, so a package that did not fit may fit later. A package
whose closure alone is over the per-project cap is never taken. Pure: no I/O.
"""

from __future__ import annotations

BY_BUDGET = 'budget'
BY_CAP = 'cap'
BY_SIZE_UNKNOWN = 'size unknown'


def rank_scores(specs, scores=None):
    """How often each spec is installed: ``scores`` ({spec: number}, e.g. package_popularity's) where it names the
    spec, else by rank as downloads fall with it (Zipf: the r-th of the list scores 1/r of the first). With
    ``scores``, a spec it does not name scores below every named one, in list order."""
    scores = dict(scores or {})
    out = {}
    if not scores:
        for rank, spec in enumerate(specs, 1):
            out[spec] = 1.0 / rank
        return out
    named = [float(v) for v in scores.values() if v is not None and float(v) > 0]
    floor = min(named) if named else 1.0
    for rank, spec in enumerate(specs, 1):
        value = scores.get(spec)
        out[spec] = float(value) if value is not None and float(value) > 0 else floor / (len(specs) + rank)
    return out


def human(size):
    """``size`` bytes as people read it, to three digits: 4.18 GB, 348 kB, 81.8 kB, 12 B (powers of 1000)."""
    size = float(size)
    for unit in ('B', 'kB', 'MB', 'GB'):
        if size < 999.5 or unit == 'GB':
            break
        size /= 1000.0
    if size >= 99.95 or unit == 'B':
        text = '%d' % round(size)
    else:
        text = ('%.1f' % size if size >= 9.995 else '%.2f' % size).rstrip('0').rstrip('.')
    return '%s %s' % (text, unit)


def choose(candidates, max_bytes=0, max_project_bytes=0):
    """Choose the candidates that go into the snapshot.

    ``candidates``: a list of dicts {spec, score, files: {key: size or None}} in list order (a size of None: the
    size of that file could not be found). ``max_bytes`` (0: no budget) bounds the bytes of the union of the
    chosen closures, ``max_project_bytes`` (0: no cap) the closure of one package.

    Returns (chosen specs in list order, left_out [{package, closure_bytes, added_bytes, reason, why}], total bytes).
    """
    order = dict((c['spec'], n) for n, c in enumerate(candidates))
    closure = dict((c['spec'], sum(s or 0 for s in c['files'].values())) for c in candidates)
    left_out, live = [], []
    for c in candidates:
        unknown = sorted(k for k, s in c['files'].items() if s is None)
        if unknown:
            left_out.append(_left(c['spec'], closure[c['spec']], None, BY_SIZE_UNKNOWN,
                                  'the size of %s is unknown' % unknown[0]))
        elif max_project_bytes and closure[c['spec']] > max_project_bytes:
            left_out.append(_left(c['spec'], closure[c['spec']], None, BY_CAP,
                                  'over the per-project cap of %s' % human(max_project_bytes)))
        else:
            live.append(c)
    # What each live candidate still adds, kept up to date as files are taken (an index from file to candidates).
    cost = dict((c['spec'], closure[c['spec']]) for c in live)
    users = {}
    for c in live:
        for key in c['files']:
            users.setdefault(key, []).append(c['spec'])
    sizes = dict((k, s) for c in live for k, s in c['files'].items())
    files = dict((c['spec'], c['files']) for c in live)
    score = dict((c['spec'], float(c['score'] or 0)) for c in live)
    taken, total, chosen = set(), 0, []
    remaining = set(cost)
    while remaining:
        room = (max_bytes - total) if max_bytes else None
        best, best_key = None, None
        for spec in remaining:
            if room is not None and cost[spec] > room:
                continue
            value = score[spec] * closure[spec]
            ratio = float('inf') if cost[spec] == 0 else value / cost[spec]
            key = (ratio, value, -order[spec])
            if best_key is None or key > best_key:
                best, best_key = spec, key
        if best is None:
            break
        remaining.discard(best)
        chosen.append(best)
        total += cost[best]
        for key in files[best]:
            if key not in taken:
                taken.add(key)
                for other in users[key]:
                    cost[other] -= sizes[key]
    for spec in sorted(remaining, key=order.get):
        left_out.append(_left(spec, closure[spec], cost[spec], BY_BUDGET, 'left out by the budget of %s' % human(max_bytes)))
    return sorted(chosen, key=order.get), sorted(left_out, key=lambda x: order[x['package']]), total


def _left(spec, closure, added, reason, why):
    return {'package': spec, 'closure_bytes': closure, 'added_bytes': added, 'reason': reason,
            'why': '%s: %s closure, %s' % (spec, human(closure), why)}
