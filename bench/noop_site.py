"""Benchmark: a no-op run of playbooks/site.yml on a converged host with the REAL pg_tde, on a
local connection. Run by `bash bench/run.sh noop_site`; never a timed test.

The host is this machine: a throw-away cluster 17/<name> created with pg_createcluster (the
layout of Percona's Debian packages, install_packages: false), a PyKMIP server with a throw-away
PKI (tests/support), the certificates role with KMIP client files, configure with a KMIP provider,
server, default and database keys and WAL encryption (the fleet benchmark's settings). The KMS
files and pg_tde's directory live in the work directory, not in /etc.

Baseline in the same run: the collection at BENCH_NOOP_BASELINE (default: the merge base of HEAD
and main), checked out into a temporary git worktree, on a cluster of its own. Both are converged
first (not timed), then their no-op runs alternate BENCH_NOOP_ROUNDS times (default 3); the
median wall time and the number of tasks are the figures. Tasks: every task the JSON callback
lists; "ran" leaves out skipped ones.

Results: bench/results/noop_site.md and noop_site.json (BENCH_OUT); `python bench/noop_site.py
--from-json bench/results/noop_site.json` renders the tables again. Figures on a shared 2-core
machine are noisy: the load average before and after is written next to them.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.fleet_scale import json_document, loadavg, task_profile  # noqa: E402
from tests.support.kms import PyKmipServer, free_port  # noqa: E402
from tests.support.pg import pg_available  # noqa: E402
from tests.support.pki import Pki  # noqa: E402

ROUNDS = int(os.environ.get('BENCH_NOOP_ROUNDS', '3'))
KEEP = os.environ.get('BENCH_NOOP_KEEP') == '1'     # leave the clusters, the KMS and the work directory
BASELINE = os.environ.get('BENCH_NOOP_BASELINE', '')
OUT = os.environ.get('BENCH_OUT', os.path.join(ROOT, 'bench', 'results'))
ISSUE = {'tasks': 78, 'seconds': 23.0}       # issue 13: main before it, local connection
GOAL = {'tasks': ISSUE['tasks'] // 2, 'seconds': 10.0}
ANSIBLE_PLAYBOOK = os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook')
# The host's Python runs the modules as postgres too (become_user): the project venv lives under
# /root, so the host gets a venv of the system Python with requirements.txt (made once).
HOST_VENV = os.environ.get('BENCH_NOOP_HOST_VENV', os.path.join(ROOT, '.cache', 'bench-host-venv'))
PYTHON = os.path.join(HOST_VENV, 'bin', 'python')
MAJOR = '17'


def log(msg: str) -> None:
    print('[noop_site %s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def git(*args: str) -> str:
    return subprocess.run(['git', '-C', ROOT] + list(args), check=True, capture_output=True, text=True).stdout.strip()


def collection_dir(workdir: str, name: str, source: str) -> str:
    """ANSIBLE_COLLECTIONS_PATH with tdeops.pg_tde pointing at `source`."""
    path = os.path.join(workdir, 'collections-' + name)
    os.makedirs(os.path.join(path, 'ansible_collections', 'tdeops'))
    os.symlink(source, os.path.join(path, 'ansible_collections', 'tdeops', 'pg_tde'))
    return path


def host_python() -> None:
    if os.path.exists(PYTHON):
        return
    log('host venv %s (system Python, requirements.txt)' % HOST_VENV)
    subprocess.run(['/usr/bin/python3', '-m', 'venv', HOST_VENV], check=True)
    subprocess.run([PYTHON, '-m', 'pip', 'install', '-q', '-r', os.path.join(ROOT, 'requirements.txt')], check=True)


def make_cluster(name: str) -> int:
    port = free_port()
    subprocess.run(['pg_createcluster', MAJOR, name, '-p', str(port), '--start'], check=True,
                   capture_output=True, text=True)
    subprocess.run(['runuser', '-u', 'postgres', '--', '/usr/lib/postgresql/%s/bin/createdb' % MAJOR, '-p', str(port),
                    '-h', '/var/run/postgresql', 'appdb'], check=True, capture_output=True, text=True)
    return port


def drop_cluster(name: str) -> None:
    subprocess.run(['pg_dropcluster', MAJOR, name, '--stop'], check=False, capture_output=True, text=True)


def host_vars(name: str, cluster: str, port: int, workdir: str, kms: PyKmipServer, client) -> dict:
    tde = os.path.join(workdir, 'tde-' + name)
    kmip = {'name': 'kms', 'type': 'kmip', 'scope': 'global', 'kmip_host': kms.host, 'kmip_port': kms.port,
            'kmip_cert': tde + '/kmip-client.crt', 'kmip_key': tde + '/kmip-client.key', 'kmip_ca': tde + '/kmip-ca.crt'}
    return {
        'ansible_connection': 'local', 'ansible_python_interpreter': PYTHON, 'ansible_become_method': 'su',
        'pg_layout_major': int(MAJOR), 'pg_layout_cluster': cluster, 'pg_layout_port': port,
        'pg_layout_tde_dir': tde, 'install_packages': False,
        'certificates_kmip_enabled': True, 'certificates_kmip_host': kms.host, 'certificates_kmip_port': kms.port,
        'certificates_kmip_ca_src': kms.ca, 'certificates_kmip_cert_src': client.cert,
        'certificates_kmip_key_src': client.key,
        'certificates_kmip_ca_path': kmip['kmip_ca'], 'certificates_kmip_cert_path': kmip['kmip_cert'],
        'certificates_kmip_key_path': kmip['kmip_key'],
        'configure_extension_databases': ['postgres', 'appdb'], 'configure_extension_template1': True,
        'configure_providers': [kmip],
        'configure_server_key': {'name': '%s-wal' % cluster, 'provider': 'kms'},
        'configure_default_key': {'name': '%s-default' % cluster, 'provider': 'kms'},
        'configure_database_keys': [{'name': '%s-appdb' % cluster, 'provider': 'kms', 'databases': ['appdb']}],
        'configure_wal_encrypt': True,
        'site_lab_kms': False,
    }


def run_site(collections: str, inventory: str, workdir: str, *extra: str) -> dict:
    env = dict(os.environ)
    env['PATH'] = os.path.join(ROOT, '.venv', 'bin') + os.pathsep + env.get('PATH', '')
    env['ANSIBLE_COLLECTIONS_PATH'] = collections
    env['ANSIBLE_CONFIG'] = os.path.join(ROOT, 'inventories', 'example', 'ansible.cfg')
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
    env['ANSIBLE_LOAD_CALLBACK_PLUGINS'] = '1'
    env['ANSIBLE_DEPRECATION_WARNINGS'] = '0'
    env['ANSIBLE_LOCAL_TEMP'] = os.path.join(workdir, 'ansible-tmp')
    playbook = os.path.join(collections, 'ansible_collections', 'tdeops', 'pg_tde', 'playbooks', 'site.yml')
    cmd = [ANSIBLE_PLAYBOOK, '-i', inventory, playbook] + list(extra)
    return timed_site(cmd, env, workdir)


def timed_site(cmd: list[str], env: dict[str, str], cwd: str, slowest: int = 6) -> dict:
    """Run a site.yml command (JSON callback) and say how long it took, its tasks and changes."""
    load0 = loadavg()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.monotonic() - t0
    try:
        doc = json_document(proc.stdout)
    except ValueError:
        raise RuntimeError('site.yml: no JSON output (rc %d): %s %s' % (proc.returncode, proc.stdout[-3000:],
                                                                        proc.stderr[-3000:]))
    if proc.returncode != 0:
        raise RuntimeError('site.yml failed (rc %d): %s' % (proc.returncode, json.dumps(doc.get('stats')) + proc.stdout[-4000:]))
    prof = task_profile(doc)
    return {'wall': round(wall, 2), 'load_before': load0, 'load_after': loadavg(),
            'tasks': len(prof), 'ran': sum(1 for p in prof if p['hosts']),
            'changed': sum(s.get('changed', 0) for s in doc.get('stats', {}).values()),
            'slowest': sorted(prof, key=lambda p: -p['seconds'])[:slowest],
            'task_list': [(p['task'], round(p['seconds'], 2), p['hosts']) for p in prof]}


def main() -> int:
    missing = pg_available()
    if missing:
        log('STOP: %s' % missing)
        return 1
    host_python()
    baseline = BASELINE or git('merge-base', 'HEAD', 'main')
    head = git('rev-parse', '--short', 'HEAD')
    dirty = bool(git('status', '--porcelain', '--untracked-files=no'))
    workdir = tempfile.mkdtemp(prefix='tdeops-noop-')
    os.chmod(workdir, 0o755)
    tree = os.path.join(workdir, 'baseline')
    git('worktree', 'add', '--detach', tree, baseline)
    tag = uuid.uuid4().hex[:6]
    variants = {'baseline': ('noop_base_' + tag, tree), 'branch': ('noop_head_' + tag, ROOT)}
    clusters: list[str] = []
    kms = None
    results: dict = {'baseline_commit': git('rev-parse', '--short', baseline), 'branch_commit': head + (' (dirty)' if dirty else ''),
                     'rounds': ROUNDS, 'runs': {}}
    try:
        pki = Pki(os.path.join(workdir, 'pki'))
        kms = PyKmipServer(os.path.join(workdir, 'kms'), pki).start()
        client = kms.client_cert('pg_tde')
        hosts = {}
        for name, (cluster, _src) in variants.items():
            port = make_cluster(cluster)
            clusters.append(cluster)
            hosts[name] = host_vars(name, cluster, port, workdir, kms, client)
        for name, (cluster, src) in variants.items():
            inv = os.path.join(workdir, 'inventory-%s.json' % name)
            with open(inv, 'w') as fh:
                json.dump({'all': {'children': {'pg_tde_servers': {'hosts': {'noop-' + name: hosts[name]}}}}}, fh)
            coll = collection_dir(workdir, name, src)
            variants[name] = (inv, coll)
            log('%s: first converge (not timed)' % name)
            first = run_site(coll, inv, workdir)
            log('%s: converged, %d changed' % (name, first['changed']))
        for r in range(ROUNDS):
            for name, (inv, coll) in variants.items():
                res = run_site(coll, inv, workdir)
                log('%s round %d: %.1f s, %d tasks (%d ran), %d changed' % (name, r + 1, res['wall'], res['tasks'],
                                                                            res['ran'], res['changed']))
                results['runs'].setdefault(name, []).append(res)
    finally:
        if KEEP and results['runs']:
            # for working on the no-op: the hosts stay until the stop file appears
            stop = os.path.join(workdir, 'stop')
            log('BENCH_NOOP_KEEP: hosts kept; inventories %s/inventory-*.json, collections %s/collections-*; '
                'touch %s to clean up' % (workdir, workdir, stop))
            write_results(results)
            while not os.path.exists(stop):
                time.sleep(2)
        for cluster in clusters:
            drop_cluster(cluster)
        if kms is not None:
            kms.stop()
        subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force', tree], check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    write_results(results)
    return 0


def figure(runs: list[dict]) -> dict:
    return {'wall': statistics.median(r['wall'] for r in runs), 'tasks': runs[-1]['tasks'], 'ran': runs[-1]['ran'],
            'changed': max(r['changed'] for r in runs)}


def write_results(results: dict) -> None:
    os.makedirs(OUT, exist_ok=True)
    base, branch = figure(results['runs']['baseline']), figure(results['runs']['branch'])
    loads = [(r['load_before'], r['load_after']) for runs in results['runs'].values() for r in runs]
    lines = [
        '# site.yml no-op on a converged host with the real pg_tde (local connection)',
        '',
        'Measured %s by `bash bench/run.sh noop_site` (bench/noop_site.py): one host, a cluster made with '
        'pg_createcluster, PyKMIP KMS, certificates + configure (KMIP provider, server/default/database keys, '
        'WAL encryption). Median of %d no-op runs each, alternating; baseline %s, branch %s.'
        % (time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), results['rounds'], results['baseline_commit'],
           results['branch_commit']),
        '',
        '| | tasks listed | tasks that ran | changed | seconds (median) |',
        '|---|---|---|---|---|',
        '| baseline %s | %d | %d | %d | %.1f |' % (results['baseline_commit'], base['tasks'], base['ran'], base['changed'], base['wall']),
        '| branch %s | %d | %d | %d | %.1f |' % (results['branch_commit'], branch['tasks'], branch['ran'], branch['changed'], branch['wall']),
        '| ratio branch / baseline | %.2f | %.2f | | %.2f |' % (branch['tasks'] / base['tasks'], branch['ran'] / base['ran'],
                                                              branch['wall'] / base['wall']),
        '',
        'Issue 13 figures (main before it): %d tasks, %.0f s local; goals: at most %d tasks and %.0f s. '
        'Tasks that ran here count the include_* and argument-validation entries too (the baseline runs %d '
        'by this count). Branch against the issue: %.2f of the tasks that ran (%d), %.2f of the time; '
        'against the baseline of this run: %.2f of the tasks that ran, %.2f of the time.'
        % (ISSUE['tasks'], ISSUE['seconds'], GOAL['tasks'], GOAL['seconds'], base['ran'], branch['ran'] / ISSUE['tasks'],
           branch['ran'], branch['wall'] / ISSUE['seconds'], branch['ran'] / base['ran'], branch['wall'] / base['wall']),
        '',
        'Load average (1 min) before/after each run: %s. On a shared 2-core machine the seconds are only '
        'comparable within one run.' % ', '.join('%s/%s' % lb for lb in loads),
        '',
    ]
    save(results, 'noop_site', lines, OUT)


def save(results: dict, stem: str, lines: list[str], out: str) -> None:
    """<stem>.md (the lines and the slowest tasks of the last branch run) and <stem>.json in `out`."""
    lines = lines + ['## Slowest tasks of the last branch run', '', '| task | seconds |', '|---|---|'] + [
        '| %s | %.2f |' % (p['task'], p['seconds']) for p in results['runs']['branch'][-1]['slowest']]
    with open(os.path.join(out, stem + '.md'), 'w') as fh:
        fh.write('\n'.join(lines) + '\n')
    with open(os.path.join(out, stem + '.json'), 'w') as fh:
        json.dump(results, fh, indent=1, default=str)
    print('\n'.join(lines))


def cli(main_: Callable[[], int], write: Callable[[dict], None]) -> int:
    """`--from-json FILE` renders the tables again from a results file; else the benchmark runs."""
    if sys.argv[1:2] == ['--from-json']:
        with open(sys.argv[2]) as fh:
            write(json.load(fh))
        return 0
    return main_()


if __name__ == '__main__':
    sys.exit(cli(main, write_results))
