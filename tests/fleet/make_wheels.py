"""Write the small wheels of the hit-rate test into a wheelhouse (the local test index serves it).

Usage: make_wheels.py WHEELHOUSE. Deterministic (fixed zip dates), so a
re-run leaves the files byte for byte as they were.

hitrate-core has two releases. hitrate-web needs any hitrate-core, and
hitrate-legacy needs hitrate-core<2. Installed alone, hitrate-web takes core
2.0; resolved together with hitrate-legacy, core 1.0 (the shape of boto3 and
aiobotocore on PyPI). A snapshot built from one joint resolution holds core
1.0 only, and a user who installs hitrate-web alone downloads core 2.0.
"""

import base64
import hashlib
import os
import sys
import zipfile

WHEELS = [
    ('hitrate-core', '1.0', []),
    ('hitrate-core', '2.0', []),
    ('hitrate-web', '1.0', ['hitrate-core']),
    ('hitrate-legacy', '1.0', ['hitrate-core<2']),
]


def record_hash(data):
    return 'sha256=' + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()


def write_wheel(directory, name, version, requires, extras=()):
    module = name.replace('-', '_')
    dist = '%s-%s.dist-info' % (module, version)
    files = [
        ('%s/__init__.py' % module, ('VERSION = %r\n' % version).encode()),
        ('%s/METADATA' % dist, ('Metadata-Version: 2.1\nName: %s\nVersion: %s\n%s%s' % (
            name, version, ''.join('Provides-Extra: %s\n' % e for e in extras),
            ''.join('Requires-Dist: %s\n' % r for r in requires))).encode()),
        ('%s/WHEEL' % dist, b'Wheel-Version: 1.0\nGenerator: pkgcache-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n'),
    ]
    record = ''.join('%s,%s,%d\n' % (path, record_hash(data), len(data)) for path, data in files) + '%s/RECORD,,\n' % dist
    files.append(('%s/RECORD' % dist, record.encode()))
    path = os.path.join(directory, '%s-%s-py3-none-any.whl' % (module, version))
    tmp = path + '.tmp'
    with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files:
            info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    os.replace(tmp, path)


def main():
    directory = sys.argv[1]
    os.makedirs(directory, exist_ok=True)
    for name, version, requires in WHEELS:
        write_wheel(directory, name, version, requires)


if __name__ == '__main__':
    main()
