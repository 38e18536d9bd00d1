"""The replay benchmark's arithmetic, apart from anything that needs root (tests/unit/test_bench_replay.py).

Pure functions: reading the corpus (requirement lines, package.json), which
sets pin their versions, the seeded split into last week's and this week's
users, the cause of each miss, and the hit rates by files and by bytes.
"""

import json
import random
import re

# The causes a miss can have, in the order they are looked for.
CAUSES = ('sdist', 'platform', 'other version', 'extra', 'not listed')


def norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


_REQ = re.compile(r'^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$')


def requirements(text):
    """[(normalised name, extras tuple, specifier)] of a requirements.txt (comments, blank and option lines skipped)."""
    out = []
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        if not line or line.startswith('-'):
            continue
        m = _REQ.match(line)
        if not m:
            raise ValueError('not a requirement line: %r' % line)
        extras = tuple(sorted(norm(e) for e in (m.group(2) or '[]')[1:-1].split(',') if e.strip()))
        out.append((norm(m.group(1)), extras, m.group(3).split(';', 1)[0].strip()))
    return out


def npm_dependencies(text):
    """{name: range} of a package.json's dependencies and devDependencies (what `npm install` installs)."""
    doc = json.loads(text)
    out = {}
    for key in ('dependencies', 'devDependencies'):
        out.update(doc.get(key) or {})
    return out


_EXACT_NPM = re.compile(r'^=?v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$')


def pinned(specs, ecosystem):
    """Whether a set pins its versions: more than half of its direct requirements name one exact version."""
    if ecosystem == 'npm':
        exact = [s for s in specs.values() if _EXACT_NPM.match(s.strip())]
        total = len(specs)
    else:
        exact = [s for dummy, dummy2, s in specs if re.match(r'^===?\s*[^,*]+$', s) and '*' not in s]
        total = len(specs)
    return total > 0 and 2 * len(exact) > total


def split(names, seed):
    """(last week's, this week's): the sorted names shuffled by Random(seed), the first half and the rest."""
    order = sorted(names)
    random.Random(seed).shuffle(order)
    half = len(order) // 2
    return sorted(order[:half]), sorted(order[half:])


_WHEEL = re.compile(r'^(?P<name>[A-Za-z0-9_.]+?)-(?P<version>\d[^-]*)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$')
_SDIST = re.compile(r'^(?P<name>[A-Za-z0-9_.-]+?)-(?P<version>\d[A-Za-z0-9_.!+]*)\.(tar\.gz|zip|tar\.bz2)$')
_TARBALL = re.compile(r'^(?P<name>.+)-(?P<version>\d+\.\d+\.\d+[0-9A-Za-z.+-]*)\.tgz$')


def file_package(filename, ecosystem='pip'):
    """(project, version, kind) of a wheel, sdist or npm tarball file name; kind is 'wheel', 'sdist' or 'tarball'.

    An npm tarball name has no scope; the caller passes '@scope/name-1.0.0.tgz' for a scoped one."""
    if ecosystem == 'npm':
        m = _TARBALL.match(filename)
        return (m.group('name'), m.group('version'), 'tarball') if m else (filename, '', 'tarball')
    m = _WHEEL.match(filename)
    if m:
        return norm(m.group('name')), m.group('version'), 'wheel'
    m = _SDIST.match(filename)
    if m:
        return norm(m.group('name')), m.group('version'), 'sdist'
    return norm(filename), '', 'other'


def classify(filename, held_files, held_versions, extra_names, ecosystem='pip'):
    """The cause of one miss: a file the install fetched although the view was mounted.

    held_files: the file names the snapshot holds; held_versions: {project: {versions}} it holds;
    extra_names: projects the set reaches only through an extra it asks for (``name[extra]``).
      sdist: a source archive (the snapshot holds built wheels, pip fetches the source to find them);
      platform: the snapshot holds this project and version, in another file (another platform or tag);
      other version: the snapshot holds this project in other versions only;
      extra: the snapshot lacks the project, which an extra of the set pulled in;
      not listed: the snapshot lacks the project altogether.
    """
    project, version, kind = file_package(filename, ecosystem)
    if kind == 'sdist':
        return 'sdist'
    versions = held_versions.get(project, set())
    if version in versions and filename not in held_files:
        return 'platform'
    if versions:
        return 'other version'
    if project in extra_names:
        return 'extra'
    return 'not listed'


def classify_npm(name, version, held_versions):
    """The cause of an npm miss: platform (the snapshot holds this version, whose tarball it left out as another
    platform's), other version (it holds the package in other versions only) or not listed."""
    versions = held_versions.get(name, set())
    if version in versions:
        return 'platform'
    return 'other version' if versions else 'not listed'


def set_rates(needed, fetched):
    """A set's figures: ``needed`` = [(file, bytes)] a cold install fetches, ``fetched`` = what the view's fetched.

    A file counts as served when the cold install fetched it and the view's did not. Files the view fetched that
    the cold install did not (another resolution) count as misses too, and in the total."""
    need = dict(needed)
    got = dict(fetched)
    total_files = len(set(need) | set(got))
    total_bytes = sum(need.values()) + sum(v for k, v in got.items() if k not in need)
    missed_bytes = sum(got.values())
    return {'files': total_files, 'bytes': total_bytes, 'missed_files': len(got), 'missed_bytes': missed_bytes,
            'files_pct': pct(total_files - len(got), total_files), 'bytes_pct': pct(total_bytes - missed_bytes, total_bytes)}


def pct(part, whole):
    return round(100.0 * part / whole, 2) if whole else 100.0


def overall(rows):
    """Sum of set_rates rows: files_pct and bytes_pct over all their files (not a mean of the sets' percentages)."""
    files = sum(r['files'] for r in rows)
    size = sum(r['bytes'] for r in rows)
    mf = sum(r['missed_files'] for r in rows)
    mb = sum(r['missed_bytes'] for r in rows)
    return {'sets': len(rows), 'files': files, 'bytes': size, 'missed_files': mf, 'missed_bytes': mb,
            'files_pct': pct(files - mf, files), 'bytes_pct': pct(size - mb, size)}


def fleet_counts(per_user):
    """{project: users} from each user's set of projects (telemetry counts users, never names them)."""
    counts = {}
    for projects in per_user:
        for p in set(projects):
            counts[p] = counts.get(p, 0) + 1
    return counts
