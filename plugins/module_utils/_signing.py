# -*- coding: utf-8 -*-
# Copyright (c) pkgcache.overlay contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manifest signatures with ``ssh-keygen -Y sign`` / ``-Y verify`` (OpenSSH >= 8.1).

Private to the collection; the API may change without notice. Commands run
through the ``run(argv, env, data=None) -> (rc, out, err)`` callable the module passes in (the collection's one
runner shape, _module.runner; ssh-keygen needs no environment, so ``env`` is None).
"""

from __future__ import annotations

import os
import tempfile

NAMESPACE = 'pkgcache-snapshot'
IDENTITY = 'pkgcache'


class SignatureError(RuntimeError):
    """A signature that is missing, malformed, or not made by an allowed key."""


def sign(run, key, path, namespace=NAMESPACE):
    """Write ``path``.sig, a signature of the file made with the private ``key``."""
    sig = path + '.sig'
    if os.path.exists(sig):
        os.unlink(sig)
    rc, out, err = run(['ssh-keygen', '-Y', 'sign', '-q', '-f', key, '-n', namespace, path], None)
    if rc != 0 or not os.path.exists(sig):
        raise SignatureError('ssh-keygen could not sign %s with %s: %s' % (path, key, (err or out).strip()))
    os.chmod(sig, 0o644)
    return sig


def verify(run, allowed_signers, data, signature, what, identity=IDENTITY, namespace=NAMESPACE):
    """Check that ``signature`` (bytes) over ``data`` (bytes) was made by a key ``allowed_signers`` trusts."""
    if not signature:
        raise SignatureError('%s is not signed; refused' % what)
    if not os.path.exists(allowed_signers):
        raise SignatureError('allowed signers file %s does not exist; cannot check %s' % (allowed_signers, what))
    fd, sig_path = tempfile.mkstemp(prefix='pkgcache-sig-')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(signature)
        rc, out, err = run(['ssh-keygen', '-Y', 'verify', '-f', allowed_signers, '-I', identity, '-n', namespace,
                            '-s', sig_path], None, data)
    finally:
        os.unlink(sig_path)
    if rc != 0:
        reason = (err or out).strip().splitlines()
        raise SignatureError('%s has a bad signature or one by a key not in %s: %s'
                             % (what, allowed_signers, reason[-1] if reason else 'ssh-keygen failed'))


def allowed_signers_line(pubkey, identity=IDENTITY, namespace=NAMESPACE):
    """An allowed_signers line that trusts ``pubkey`` (an OpenSSH public key line) for snapshots only."""
    parts = pubkey.split()
    if len(parts) < 2:
        raise SignatureError('%r is not an OpenSSH public key' % pubkey)
    return '%s namespaces="%s" %s %s' % (identity, namespace, parts[0], parts[1])


def ensure(run, key, path, scratch_dir, check_mode, what):
    """Sign ``path`` with ``key`` unless ``path``.sig is a valid signature by that key; return True if it (would) sign.

    ``scratch_dir`` holds the one-line allowed_signers file of the check.
    """
    if not os.path.exists(key) or not os.path.exists(key + '.pub'):
        raise SignatureError('signing key %s (and %s.pub) does not exist' % (key, key))
    if os.path.exists(path + '.sig'):
        with open(key + '.pub') as f:
            pub = f.read()
        scratch = tempfile.mkdtemp(dir=scratch_dir, prefix='.sigcheck-')
        try:
            allowed = os.path.join(scratch, 'allowed_signers')
            with open(allowed, 'w') as f:
                f.write(allowed_signers_line(pub) + '\n')
            with open(path, 'rb') as f, open(path + '.sig', 'rb') as g:
                verify(run, allowed, f.read(), g.read(), what)
            return False
        except SignatureError:
            pass
        finally:
            for name in os.listdir(scratch):
                os.unlink(os.path.join(scratch, name))
            os.rmdir(scratch)
    if not check_mode:
        sign(run, key, path)
    return True
