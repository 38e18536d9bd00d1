"""Stand-in for ansible-test's get-pip.py bootstrap script.

ansible-test downloads get-pip.py from a host that this machine cannot reach.
It uses a cached copy from ~/.ansible/test/cache/ when one exists; this file is
installed there by scripts/bootstrap.sh. It installs pip with ensurepip, then
runs pip install with the arguments ansible-test passed.
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'])
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install'] + args))
