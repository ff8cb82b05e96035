"""Benchmark: the cost of the collection's playbooks on 1, 5, 10 (and 20) hosts. Run by
`bash bench/run.sh fleet`; never a timed test.

Hosts are podman containers that boot systemd, with the REAL pg_tde (PostgreSQL 17 with Percona's
server patches, pg_tde 2.2.0, pgBackRest 2.59.1 from ../shared/real-pg_tde, unpacked once into a
bench image), cluster 17/main created per host as a package would, and a lab PyKMIP KMS
(tdeops.pg_tde.lab_kms). For each size N, on N fresh hosts, in one run:

  site.yml      first converge (certificates, configure with a KMIP provider, server, default and
                database keys and WAL encryption: a restart per host) and a no-op re-run
  rotate_keys   rotation of the three keys of every host (no restart)
  report.yml    the compliance report of every host

with the settings of inventories/example/ansible.cfg (forks, pipelining). The ratios N hosts / 1
host are the result; the 1-host run of the same invocation is the baseline. Where the time goes:
the slowest tasks and the number of tasks per play (JSON callback), an empty play and a one-task
play (connection cost), and variants: the old site.yml no-op (every host one at a time) on the
middle N, Ansible's default forks (5) and a rotation with nothing to rotate on the largest N.
`python bench/fleet_scale.py --from-json bench/results/fleet-<date>.json` renders the tables again.

The machine's load average is recorded before and after each step: on a shared 2-core machine
the figures are only comparable within one run.

Environment: BENCH_FLEET_SIZES (default 1,5,10), BENCH_FLEET_VARIANTS (default 1: the variants on
the largest N), BENCH_FLEET_KEEP (1: leave the containers), BENCH_OUT (default bench/results).
"""
from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.environ.get('TDEOPS_REAL_PG_TDE_BUNDLE', os.path.join(ROOT, '..', 'shared', 'real-pg_tde'))
SIZES = [int(s) for s in os.environ.get('BENCH_FLEET_SIZES', '1,5,10').split(',') if s.strip()]
VARIANTS = os.environ.get('BENCH_FLEET_VARIANTS', '1') == '1'
KEEP = os.environ.get('BENCH_FLEET_KEEP') == '1'
OUT = os.environ.get('BENCH_OUT', os.path.join(ROOT, 'bench', 'results'))
NET = 'tdeops-bench-fleet'
PREFIX = 'tdeops-bench-fleet'
KMS = PREFIX + '-kms'
BASE_IMAGE = 'localhost/tdeops-pg17'
IMAGE = 'localhost/tdeops-bench-pg17-tde'
KMS_IMAGE = 'localhost/tdeops-kms'
ANSIBLE_PLAYBOOK = os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook')
EXAMPLE_CFG = os.path.join(ROOT, 'inventories', 'example', 'ansible.cfg')


def log(msg: str) -> None:
    print('== fleet bench: %s' % msg, flush=True)


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError('%s failed (%d): %s %s' % (' '.join(cmd[:4]), proc.returncode, proc.stdout[-2000:],
                                                     proc.stderr[-2000:]))
    return proc


def loadavg() -> float:
    with open('/proc/loadavg') as fh:
        return float(fh.read().split()[0])


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(['podman'] + list(args), check=check)


# ---------------------------------------------------------------------------------------------
# hosts
# ---------------------------------------------------------------------------------------------

def bundle_hash() -> str:
    with open(os.path.join(BUNDLE, 'SHA256SUMS'), 'rb') as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def ensure_image() -> None:
    """localhost/tdeops-pg17 with the bundle unpacked (no cluster): every host starts with
    PostgreSQL 17 + pg_tde installed, as after a package installation."""
    want = bundle_hash()
    have = podman('image', 'inspect', '--format', '{{index .Labels "org.tdeops.bench-bundle"}}', IMAGE,
                  check=False).stdout.strip()
    if have == want:
        return
    for image in (BASE_IMAGE, KMS_IMAGE):
        if podman('image', 'exists', image, check=False).returncode != 0:
            log('building the base images (scripts/images.sh)')
            run(['bash', os.path.join(ROOT, 'scripts', 'images.sh'), 'pg17', 'kms'])
    log('bench image %s with the real pg_tde bundle' % IMAGE)
    name = PREFIX + '-imagebuild'
    podman('rm', '-f', name, check=False)
    podman('run', '-d', '--name', name, BASE_IMAGE, 'sleep', 'infinity')
    try:
        podman('cp', os.path.abspath(BUNDLE) + '/.', '%s:/usr/local/src/real-pg_tde' % name)
        podman('exec', name, 'bash', '/usr/local/src/real-pg_tde/install.sh')
        podman('commit', '--change', 'CMD ["/sbin/init"]', '--change', 'LABEL org.tdeops.bench-bundle=%s' % want,
               name, IMAGE)
    finally:
        podman('rm', '-f', name, check=False)


def start_host(name: str, image: str) -> None:
    podman('rm', '-f', name, check=False)
    podman('run', '-d', '--name', name, '--hostname', name, '--network', NET, '--systemd=always',
           '--label', 'owner=tdeops-bench-fleet', image, '/sbin/init')


def wait_systemd(name: str) -> None:
    for _ in range(120):
        state = podman('exec', name, 'systemctl', 'is-system-running', check=False).stdout.strip()
        if state in ('running', 'degraded'):
            return
        time.sleep(1)
    raise RuntimeError('%s: systemd did not finish booting' % name)


def make_db_host(name: str) -> None:
    """A fresh database host: systemd up, cluster 17/main created and started (a package's postinst)."""
    start_host(name, IMAGE)
    wait_systemd(name)
    podman('exec', name, 'pg_createcluster', '17', 'main', '--', '--locale=C.UTF-8')
    podman('exec', name, 'systemctl', 'enable', '--now', 'postgresql@17-main')
    podman('exec', name, 'runuser', '-u', 'postgres', '--', 'psql', '-qc', 'CREATE DATABASE appdb')


def make_hosts(names: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(make_db_host, names))


def remove_hosts(names: list[str]) -> None:
    for name in names:
        podman('rm', '-f', '-t', '2', name, check=False)


# ---------------------------------------------------------------------------------------------
# ansible
# ---------------------------------------------------------------------------------------------

GROUP_VARS = {
    'pg_layout_major': 17, 'install_packages': False,
    'lab_kms_client_cns': ['pg_tde'], 'lab_kms_port': 5696,
    'certificates_kmip_enabled': True, 'certificates_kmip_host': KMS, 'certificates_kmip_port': 5696,
    'configure_extension_databases': ['postgres', 'appdb'], 'configure_extension_template1': True,
    'configure_providers': [{'name': 'kms', 'type': 'kmip', 'scope': 'global', 'kmip_host': KMS, 'kmip_port': 5696,
                             'kmip_cert': '/etc/pg_tde/kmip-client.crt', 'kmip_key': '/etc/pg_tde/kmip-client.key',
                             'kmip_ca': '/etc/pg_tde/kmip-ca.crt'}],
    'configure_server_key': {'name': '{{ inventory_hostname }}-wal', 'provider': 'kms'},
    'configure_default_key': {'name': '{{ inventory_hostname }}-default', 'provider': 'kms'},
    'configure_database_keys': [{'name': '{{ inventory_hostname }}-appdb', 'provider': 'kms', 'databases': ['appdb']}],
    'configure_wal_encrypt': True,
    'report_policy': {'backup': 'reported'},
}


def write_inventory(workdir: str, dbs: list[str]) -> str:
    pki = os.path.join(workdir, 'pki')
    gv = dict(GROUP_VARS, lab_kms_pki_dir=pki, certificates_kmip_ca_src=pki + '/ca.crt',
              certificates_kmip_cert_src=pki + '/pg_tde.crt', certificates_kmip_key_src=pki + '/pg_tde.key')
    inv = {'all': {'vars': dict(gv, ansible_connection='containers.podman.podman',
                                ansible_python_interpreter='/usr/bin/python3'),
                   'children': {'kms': {'hosts': {KMS: {}}},
                                'pg_tde_servers': {'hosts': {d: {} for d in dbs}}}}}
    path = os.path.join(workdir, 'inventory-%d.json' % len(dbs))
    with open(path, 'w') as fh:
        json.dump(inv, fh)
    return path


def ansible_env(workdir: str, forks: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env['PATH'] = os.path.join(ROOT, '.venv', 'bin') + os.pathsep + env.get('PATH', '')
    env['ANSIBLE_COLLECTIONS_PATH'] = os.path.join(ROOT, '.cache', 'collections')
    env['ANSIBLE_CONFIG'] = EXAMPLE_CFG          # the settings a user copies
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
    env['ANSIBLE_LOAD_CALLBACK_PLUGINS'] = '1'
    # the example's profile_tasks stays enabled: its lines are not part of the JSON document
    env['ANSIBLE_DEPRECATION_WARNINGS'] = '0'
    env['ANSIBLE_LOCAL_TEMP'] = os.path.join(workdir, 'ansible-tmp')
    if forks:
        env['ANSIBLE_FORKS'] = str(forks)
    return env


def playbook(workdir: str, inventory: str, name: str, *extra: str, forks: int | None = None,
             limit: str | None = None) -> dict:
    cmd = [ANSIBLE_PLAYBOOK, '-i', inventory, os.path.join(ROOT, 'playbooks', name)] + list(extra)
    if limit:
        cmd += ['--limit', limit]
    load0 = loadavg()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(workdir, forks))
    wall = time.monotonic() - t0
    try:
        doc = json_document(proc.stdout)
    except ValueError:
        raise RuntimeError('%s: no JSON output (rc %d): %s %s' % (name, proc.returncode, proc.stdout[-3000:],
                                                                  proc.stderr[-3000:]))
    if proc.returncode != 0:
        failed = {h: s for h, s in doc.get('stats', {}).items() if s.get('failures') or s.get('unreachable')}
        raise RuntimeError('%s failed (rc %d) on %s: %s' % (name, proc.returncode, failed, first_failure(doc)))
    return {'wall': wall, 'load_before': load0, 'load_after': loadavg(), 'doc': doc}


def json_document(text: str) -> dict:
    """The JSON callback's document: it starts on a line of its own; other callbacks
    (profile_tasks) may print before or after it."""
    start = text.index('\n{\n') + 1 if not text.startswith('{') else 0
    doc, _end = json.JSONDecoder().raw_decode(text[start:])
    return doc


def first_failure(doc: dict) -> str:
    for play in doc.get('plays', []):
        for task in play.get('tasks', []):
            for host, res in task.get('hosts', {}).items():
                if res.get('failed') or res.get('unreachable'):
                    return '%s / %s: %s' % (task['task']['name'], host, str(res.get('msg'))[:800])
    return ''


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace('Z', '+00:00')).timestamp()


def task_profile(doc: dict) -> list[dict]:
    """Per task (in order): wall duration, hosts that ran it, changed hosts."""
    out = []
    for play in doc.get('plays', []):
        for task in play.get('tasks', []):
            dur = task['task'].get('duration') or {}
            if not dur.get('start') or not dur.get('end'):
                continue
            hosts = task.get('hosts', {})
            ran = [h for h, r in hosts.items() if not r.get('skipped')]
            out.append({'play': play['play']['name'], 'task': task['task']['name'],
                        'seconds': _seconds(dur['end']) - _seconds(dur['start']), 'hosts': len(ran),
                        'changed': sum(1 for r in hosts.values() if r.get('changed'))})
    return out


def summarize(res: dict) -> dict:
    prof = task_profile(res['doc'])
    stats = res['doc'].get('stats', {})
    return {'wall': round(res['wall'], 1), 'load_before': res['load_before'], 'load_after': res['load_after'],
            'tasks': len(prof), 'remote_tasks': sum(1 for p in prof if p['hosts']),
            'task_seconds': round(sum(p['seconds'] for p in prof), 1),
            'changed': {h: s.get('changed', 0) for h, s in stats.items()},
            'slowest': sorted(prof, key=lambda p: -p['seconds'])[:8]}


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

def measure_size(workdir: str, n: int, variants: bool, serial_variant: bool) -> dict:
    dbs = ['%s-n%02d-db%02d' % (PREFIX, n, i + 1) for i in range(n)]
    log('N=%d: %d fresh hosts' % (n, n))
    t0 = time.monotonic()
    make_hosts(dbs)
    inv = write_inventory(workdir, dbs)
    out: dict = {'n': n, 'setup_seconds': round(time.monotonic() - t0, 1)}
    try:
        # New hosts are restarted (preload, WAL encryption): site.yml runs them site_serial at a time,
        # 1 by default. A new fleet is rolled out here all at once (site_serial=100%), the way a user
        # brings up empty servers; one host's run is the default's cost per host.
        log('N=%d: site.yml first converge (site_serial=100%%)' % n)
        out['site_first'] = summarize(playbook(workdir, inv, 'site.yml', '-e', 'site_serial=100%',
                                               limit='pg_tde_servers'))
        log('N=%d: site.yml no-op re-run (default settings)' % n)
        out['site_noop'] = summarize(playbook(workdir, inv, 'site.yml', limit='pg_tde_servers'))
        log('N=%d: rotate_keys.yml' % n)
        out['rotate'] = summarize(playbook(workdir, inv, 'rotate_keys.yml', '-e', 'rotate_keys_suffix=20261201'))
        log('N=%d: report.yml' % n)
        out['report'] = summarize(playbook(workdir, inv, 'report.yml', '-e',
                                           'report_output_dir=%s' % os.path.join(workdir, 'report-%d' % n)))
        log('N=%d: connection cost (one task, empty play)' % n)
        out['one_task'] = summarize(playbook(workdir, inv, '../bench/fleet_probe.yml', '-e', 'probe_tasks=1'))
        out['empty'] = summarize(playbook(workdir, inv, '../bench/fleet_probe.yml', '-e', 'probe_tasks=0'))
        if serial_variant:
            log('N=%d: variant: the old site.yml no-op (every host one at a time)' % n)
            out['site_noop_serial1'] = summarize(playbook(workdir, inv, 'site.yml', '-e', 'site_restart_probe=false',
                                                          limit='pg_tde_servers'))
        if variants:
            log('N=%d: variants: Ansible default forks (5), rotation again in the same period' % n)
            out['site_noop_forks5'] = summarize(playbook(workdir, inv, 'site.yml', forks=5, limit='pg_tde_servers'))
            out['report_forks5'] = summarize(playbook(workdir, inv, 'report.yml', '-e', 'report_output_dir=%s'
                                                      % os.path.join(workdir, 'report-f5'), forks=5))
            out['rotate_noop'] = summarize(playbook(workdir, inv, 'rotate_keys.yml', '-e', 'rotate_keys_suffix=20261201'))
    finally:
        if not KEEP:
            remove_hosts(dbs)
    return out


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == '--from-json':
        # render the tables again from a run's JSON (bench/results/fleet-<date>.json)
        with open(sys.argv[2]) as fh:
            saved = json.load(fh)
        write_results(saved['results'], datetime.datetime.fromisoformat(saved['started']), saved['load_start'])
        return 0
    if not os.path.exists(os.path.join(BUNDLE, 'install.sh')):
        log('no real pg_tde bundle at %s (TDEOPS_REAL_PG_TDE_BUNDLE)' % BUNDLE)
        return 1
    if shutil.which('podman') is None:
        log('podman is not installed (scripts/setup.sh)')
        return 1
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = loadavg()
    workdir = tempfile.mkdtemp(prefix='tdeops-bench-fleet-')
    ensure_image()
    if podman('network', 'exists', NET, check=False).returncode != 0:
        podman('network', 'create', NET)
    results = []
    try:
        start_host(KMS, KMS_IMAGE)
        wait_systemd(KMS)
        inv = write_inventory(workdir, [])
        log('lab KMS (site.yml on the kms group)')
        playbook(workdir, inv, 'site.yml', limit='kms')
        middle = sorted(SIZES)[len(SIZES) // 2] if len(SIZES) > 1 else None
        for n in SIZES:
            results.append(measure_size(workdir, n, VARIANTS and n == max(SIZES), VARIANTS and n == middle))
    finally:
        if not KEEP:
            remove_hosts([KMS])
            podman('network', 'rm', NET, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    write_results(results, started, load_start)
    return 0


def ratio(results: list[dict], key: str, n: int) -> str:
    base = next(r for r in results if r['n'] == min(x['n'] for x in results))
    other = next(r for r in results if r['n'] == n)
    if key not in base or key not in other:
        return '-'
    return '%.2f' % (other[key]['wall'] / base[key]['wall'])


def write_results(results: list[dict], started: datetime.datetime, load_start: float) -> None:
    os.makedirs(OUT, exist_ok=True)
    day = started.strftime('%Y-%m-%d')
    with open(os.path.join(OUT, 'fleet-%s.json' % day), 'w') as fh:
        json.dump({'started': started.isoformat(), 'load_start': load_start, 'results': results}, fh, indent=1,
                  default=str)
    base_n = min(r['n'] for r in results)
    lines = ['# Fleet scale (bench/fleet_scale.py, `bash bench/run.sh fleet`)', '',
             'Run %s UTC on %s (%d CPUs); load average %.2f at the start, %.2f at the end (other jobs share '
             'this machine). Settings: inventories/example/ansible.cfg (forks %s, pipelining). Each N on N fresh '
             'podman hosts with the real pg_tde 2.2.0 and a lab PyKMIP KMS; wall time of ansible-playbook.'
             % (started.strftime('%Y-%m-%d %H:%M'), os.uname().nodename, os.cpu_count() or 0, load_start, loadavg(),
                example_forks()), '',
             '| hosts | site.yml first converge (all at once) | site.yml no-op | rotate_keys | report | one-task play | empty play |',
             '|---|---|---|---|---|---|---|']
    for r in results:
        lines.append('| %d | %.1f s | %.1f s | %.1f s | %.1f s | %.1f s | %.1f s |' % (
            r['n'], r['site_first']['wall'], r['site_noop']['wall'], r['rotate']['wall'], r['report']['wall'],
            r['one_task']['wall'], r['empty']['wall']))
    lines += ['', '| ratio N / %d host(s) | first converge | no-op (goal < 2.5) | rotate_keys (goal < 3) | report (goal < 2) |'
              % base_n, '|---|---|---|---|---|']
    for r in results:
        if r['n'] == base_n:
            continue
        lines.append('| %d | %s | %s | %s | %s |' % (r['n'], ratio(results, 'site_first', r['n']),
                                                     ratio(results, 'site_noop', r['n']), ratio(results, 'rotate', r['n']),
                                                     ratio(results, 'report', r['n'])))
    big = max(results, key=lambda r: r['n'])
    mid = next((r for r in results if 'site_noop_serial1' in r), None)
    if 'site_noop_forks5' in big or mid:
        lines += ['', '## Variants', '', '| hosts | run | wall | compared with the default settings |', '|---|---|---|---|']
    if mid:
        lines.append('| %d | site.yml no-op, every host one at a time (site_restart_probe=false: the old serial 1) '
                     '| %.1f s | %.2fx |' % (mid['n'], mid['site_noop_serial1']['wall'],
                                            mid['site_noop_serial1']['wall'] / mid['site_noop']['wall']))
    if 'site_noop_forks5' in big:
        lines += [
            '| %d | site.yml no-op, forks 5 (Ansible\'s default) | %.1f s | %.2fx |' % (
                big['n'], big['site_noop_forks5']['wall'], big['site_noop_forks5']['wall'] / big['site_noop']['wall']),
            '| %d | report.yml, forks 5 | %.1f s | %.2fx |' % (
                big['n'], big['report_forks5']['wall'], big['report_forks5']['wall'] / big['report']['wall']),
            '| %d | rotate_keys.yml again in the same period (nothing to rotate) | %.1f s | %.2fx of the rotation |' % (
                big['n'], big['rotate_noop']['wall'], big['rotate_noop']['wall'] / big['rotate']['wall'])]
    one = next(r for r in results if r['n'] == base_n)
    lines += ['', 'First converge: new hosts are restarted, so site.yml runs them `site_serial` at a time (1 by '
              'default). The table runs them all at once (`-e site_serial=100%%`, what one does for empty new '
              'servers); with the default, N new hosts take about N x %.0f s (the %d-host run).'
              % (one['site_first']['wall'], base_n)]
    lines += ['', '## Where the time goes', '']
    for r in results:
        lines.append('- %d host(s): site.yml first %d tasks (%d on hosts), no-op %d tasks; rotate %d; report %d. '
                     'Changed on the no-op run: %s.' % (
                         r['n'], r['site_first']['tasks'], r['site_first']['remote_tasks'], r['site_noop']['tasks'],
                         r['rotate']['tasks'], r['report']['tasks'],
                         sum(v for h, v in r['site_noop']['changed'].items() if h != KMS)))
    lines += ['', 'Slowest tasks of the largest run (%d hosts), seconds of wall time per task:' % big['n'], '']
    for key in ('site_first', 'site_noop', 'rotate', 'report'):
        lines.append('- %s: %s' % (key, '; '.join('%s %.1f' % (p['task'], p['seconds']) for p in big[key]['slowest'][:6])))
    lines.append('')
    text = '\n'.join(lines) + '\n'
    for name in ('fleet-%s.md' % day, 'fleet.md'):
        with open(os.path.join(OUT, name), 'w') as fh:
            fh.write(text)
    print(text)


def example_forks() -> str:
    try:
        with open(EXAMPLE_CFG) as fh:
            for line in fh:
                if line.strip().startswith('forks'):
                    return line.split('=')[1].split('#')[0].strip()
    except OSError:
        pass
    return '?'


if __name__ == '__main__':
    sys.exit(main())
