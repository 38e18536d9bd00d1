"""Login benchmark: how long a repl user waits for her view when she logs in (the PAM session hook,
`pkgcache-host login`), on one repl host of the default scenario after its converge (mount_login_hook: true, repl
uids 3000-3999).

    python3 bench/login.py [--container pkgcache-repl1] [--rounds 3] [--users 100] [--parallel 10] [--first-uid 3100]

Each round, interleaved:
- new users: USERS users that never logged in, PARALLEL logging in at a time (`su -l NAME -c findmnt ...`, which
  runs her session, so the hook has run before her command); the time of each whole login (PAM, the hook, her
  command), and the command checks that her cache dir is an overlay already: the view is ready at login;
- served users: the same users logging in again, one at a time, with the hook and (the line commented out) without
  it, in alternating batches: the hook's cost is the difference of the medians;
- the hook alone: `pkgcache-host login` with PAM's variables for a served user.
Writes bench/results/login.md.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))

INNER = r'''
import concurrent.futures, json, subprocess, sys, time
first_uid, users, parallel, batch = (int(a) for a in sys.argv[1:5])
names = ['lb%d' % (first_uid + i) for i in range(users)]
PAM = '/etc/pam.d/common-session'
HOOK = 'pam_exec.so quiet seteuid type=open_session /usr/local/sbin/pkgcache-host login'


import os
cpu = {}


def login(name, key=None):
    """(seconds, view ready at her session's start); the CPU time of the whole login (su, PAM, the hook, her
    command: wait4's rusage of su and what it waited for) is added to cpu[key]."""
    t = time.monotonic()
    proc = subprocess.Popen(['su', '-l', name, '-c', 'findmnt -n -o FSTYPE --target ~/.cache/pip'],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    dummy, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t
    if key:
        cpu.setdefault(key, []).append(ru.ru_utime + ru.ru_stime)
    return seconds, out.strip() == 'overlay' and proc.returncode == 0


def hook(on):
    text = open(PAM).read()
    lines = [l.lstrip('#') if HOOK in l else l for l in text.splitlines()]
    if not on:
        lines = ['#' + l if HOOK in l else l for l in lines]
    with open(PAM + '.tmp', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    subprocess.run(['mv', PAM + '.tmp', PAM], check=True)


for i, name in enumerate(names):
    subprocess.run(['useradd', '-m', '-u', str(first_uid + i), '-s', '/bin/bash', name], check=True)
hook(True)
out = {'new': [], 'new_ready': 0, 'served': [], 'no_hook': [], 'hook_alone': []}
with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    for seconds, ready in pool.map(lambda n: login(n, 'new'), names):
        out['new'].append(seconds)
        out['new_ready'] += ready
for start in range(0, users, batch):
    for on in (True, False):
        hook(on)
        for name in names[start:start + batch]:
            key = 'served' if on else 'no_hook'
            seconds, ready = login(name, key)
            out[key].append(seconds)
hook(True)
env = {'PAM_TYPE': 'open_session', 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'}
for name in names:
    t = time.monotonic()
    subprocess.run(['/usr/local/sbin/pkgcache-host', 'login'], env=dict(env, PAM_USER=name), check=True)
    out['hook_alone'].append(time.monotonic() - t)
out['cpu'] = cpu
print(json.dumps(out))
'''


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def ms(v):
    return '%.0f' % (v * 1000)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--container', default='pkgcache-repl1')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--users', type=int, default=100)
    ap.add_argument('--parallel', type=int, default=10)
    ap.add_argument('--first-uid', type=int, default=3100, help='uids FIRST.. for the new users (in the policy\'s range)')
    ap.add_argument('--out', default=os.path.join(HERE, 'results', 'login.md'))
    ap.add_argument('--where', help='how the container was set up (default: the default scenario after converge)')
    args = ap.parse_args()
    rounds = []
    for r in range(args.rounds):
        proc = subprocess.run(['docker', 'exec', '-i', args.container, '/usr/bin/python3', '-', str(args.first_uid + r * args.users),
                               str(args.users), str(args.parallel), '10'], input=INNER, capture_output=True, text=True,
                              check=True)
        rounds.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print('round %d: new p95 %s ms, served median %s ms, no hook median %s ms' % (
            r + 1, ms(pct(rounds[-1]['new'], 95)), ms(statistics.median(rounds[-1]['served'])),
            ms(statistics.median(rounds[-1]['no_hook']))))
    kernel = subprocess.run(['uname', '-r'], capture_output=True, text=True, check=True).stdout.strip()
    rows = []
    for i, r in enumerate(rounds):
        c = r['cpu']
        rows.append('| %d | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            i + 1, r['new_ready'], len(r['new']), ms(statistics.median(r['new'])), ms(pct(r['new'], 95)), ms(max(r['new'])),
            ms(statistics.median(c['new'])), ms(statistics.median(r['served'])), ms(statistics.median(r['no_hook'])),
            ms(statistics.median(r['served']) - statistics.median(r['no_hook'])),
            ms(statistics.median(c['served']) - statistics.median(c['no_hook'])), ms(statistics.median(r['hook_alone']))))
    allnew = [v for r in rounds for v in r['new']]
    load = subprocess.run(['cat', '/proc/loadavg'], capture_output=True, text=True, check=True).stdout.split()[:3]
    extra = [statistics.median(r['served']) - statistics.median(r['no_hook']) for r in rounds]
    text = '\n'.join([
        '# Login: a repl user\'s view at login (the PAM session hook)',
        '',
        'Machine: %s, %d cores, kernel %s (shared with other jobs while it ran). Run %s. `python3 bench/login.py` on '
        '%s.' % (platform.machine(), os.cpu_count(), kernel, time.strftime('%Y-%m-%dT%H:%M:%S%z'), args.where or
                 'the default scenario\'s %s after converge (Debian 12 container, systemd, Python 3.11.2; the views on '
                 'a Docker volume)' % args.container),
        '',
        'Per round (%d rounds, one after the other; each with its own users): %d new users (uids in the policy\'s '
        'range, never named in the inventory) log in %d at a time with `su -l NAME -c "findmnt ... --target '
        '~/.cache/pip"`: the time is the whole login (PAM, the hook, her command), and the command checks that her '
        'cache dir is already an overlay when her session starts. Then the same users log in again one at a time, in '
        'alternating batches of 10 with the hook and with its PAM line commented out: the hook\'s cost for a served '
        'user is the difference of the medians. Last, `pkgcache-host login` alone (PAM_TYPE, PAM_USER) for each.'
        % (args.rounds, args.users, args.parallel),
        '',
        '| round | views ready at login | new user: median ms | p95 ms | max ms | new user: CPU ms (median) | '
        'served user, hook: median ms | no hook: median ms | hook cost ms | hook cost, CPU ms | '
        'pkgcache-host login alone: median ms |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ] + rows + [
        '',
        'All rounds: a new user\'s whole login took p95 %s ms (target: view ready <= 1000 ms); a served user\'s login '
        'cost %s ms more with the hook (median per round: %s; target <= 50 ms).'
        % (ms(pct(allnew, 95)), ms(statistics.median(extra)), ', '.join(ms(e) for e in extra)),
        '',
        'CPU ms: user and system time of the whole login (wait4 on su: PAM, the hook, her command), which the '
        'machine\'s load does not stretch as it does wall time. Load average when the run ended: %s.' % ' '.join(load),
        '',
    ])
    with open(args.out, 'w') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
