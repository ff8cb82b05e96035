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
the figures are only comparable within one run. Around every timed run the CPU time of the whole
machine is read from /proc/stat (the controller, every podman host, the KMS - and any other job), and
that of ansible-playbook with the processes it waited for (the controller's share): the section "CPU:
the floor on these machines" turns it into the lowest ratio N / 1 host that the CPUs allow, so a
reader can tell CPU work per host from waiting.

Environment: BENCH_FLEET_SIZES (default 1,5,10), BENCH_FLEET_VARIANTS (default 1: the variants on
the largest N), BENCH_FLEET_KEEP (1: leave the containers and the work directory), BENCH_OUT (default bench/results).
"""
from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json
import os
import resource
import shutil
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


def cpu_counters() -> tuple[float, float, float]:
    """CPU seconds of the whole machine so far (/proc/stat, aggregate line): busy (user, nice, system,
    irq, softirq, steal; guest time is already inside user), total (busy + idle + iowait), steal."""
    with open('/proc/stat') as fh:
        ticks = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = ticks + [0] * (8 - len(ticks))
    busy = user + nice + system + irq + softirq + steal
    hz = os.sysconf('SC_CLK_TCK')
    return busy / hz, (busy + idle + iowait) / hz, steal / hz


def children_cpu() -> float:
    """CPU seconds of the finished children this process waited for: ansible-playbook with its forks and
    the podman CLI they run (the controller's side); not the containers' processes (they run under conmon)."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def cpu_usage(wall: float, before: tuple[float, float, float], after: tuple[float, float, float],
              controller: float) -> dict:
    cpus = os.cpu_count() or 1
    busy = after[0] - before[0]
    return {'cpu_busy_seconds': round(busy, 2), 'cpu_total_seconds': round(after[1] - before[1], 2),
            'cpu_steal_seconds': round(after[2] - before[2], 2), 'cpus': cpus,
            'utilisation': round(busy / (wall * cpus), 3) if wall > 0 else None,
            'controller_cpu_seconds': round(controller, 2)}


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
    env = ansible_env(workdir, forks)
    load0 = loadavg()
    cpu0, kids0 = cpu_counters(), children_cpu()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    cpu = cpu_usage(wall, cpu0, cpu_counters(), children_cpu() - kids0)
    try:
        doc = json_document(proc.stdout)
    except ValueError:
        raise RuntimeError('%s: no JSON output (rc %d): %s %s' % (name, proc.returncode, proc.stdout[-3000:],
                                                                  proc.stderr[-3000:]))
    if proc.returncode != 0:
        failed = {h: s for h, s in doc.get('stats', {}).items() if s.get('failures') or s.get('unreachable')}
        raise RuntimeError('%s failed (rc %d) on %s: %s' % (name, proc.returncode, failed, first_failure(doc)))
    return {'wall': wall, 'load_before': load0, 'load_after': loadavg(), 'cpu': cpu, 'doc': doc}


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
            **res['cpu'], 'tasks': len(prof), 'remote_tasks': sum(1 for p in prof if p['hosts']),
            'task_seconds': round(sum(p['seconds'] for p in prof), 1),
            'changed': {h: s.get('changed', 0) for h, s in stats.items()},
            'slowest': sorted(prof, key=lambda p: -p['seconds'])[:8]}


def kms_sessions(since: float, until: float) -> dict:
    """What the lab KMS saw during a run (its log, INFO level): the KMIP sessions (one per
    connection), how long the longest lasted, the longest stretch without a new connection, and
    failures. Tells a slow KMS (long sessions) from clients that wait before connecting."""
    proc = podman('exec', KMS, 'cat', '/var/log/pykmip/server.log', check=False)
    starts: dict[str, float] = {}
    durations: list[float] = []
    connects: list[float] = []
    failures = 0
    for line in proc.stdout.splitlines():
        try:
            stamp = datetime.datetime.strptime(line[:23], '%Y-%m-%d %H:%M:%S,%f').replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            continue
        if not since - 1 <= stamp <= until + 1:
            continue
        if 'Receiving incoming connection' in line:
            connects.append(stamp)
        elif 'Starting session: ' in line:
            starts[line.rsplit(' ', 1)[1]] = stamp
        elif 'Stopping session: ' in line and line.rsplit(' ', 1)[1] in starts:
            durations.append(stamp - starts[line.rsplit(' ', 1)[1]])
        elif 'Failure' in line or 'ERROR' in line:
            failures += 1
    gaps = [b - a for a, b in zip(connects, connects[1:])]
    return {'connections': len(connects), 'sessions': len(durations),
            'longest_session': round(max(durations), 2) if durations else None,
            'median_session': round(sorted(durations)[len(durations) // 2], 2) if durations else None,
            'longest_gap_between_connections': round(max(gaps), 2) if gaps else None,
            'failures': failures}


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
        since = time.time()
        out['rotate'] = summarize(playbook(workdir, inv, 'rotate_keys.yml', '-e', 'rotate_keys_suffix=20261201'))
        out['rotate']['kms'] = kms_sessions(since, time.time())
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
        # (JSON of older runs lacks the CPU fields, the machine and the load at the end: said so, not guessed)
        with open(sys.argv[2]) as fh:
            saved = json.load(fh)
        write_results(saved.pop('results'), saved)
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
        else:
            # the inventories and the lab PKI, to run playbooks against the kept hosts again
            log('kept: the hosts and %s (inventory-<N>.json, pki/)' % workdir)
    write_results(results, {'started': started.isoformat(), 'load_start': load_start, 'load_end': loadavg(),
                            'host': os.uname().nodename, 'cpus': os.cpu_count()})
    return 0


def ratio(results: list[dict], key: str, n: int) -> str:
    base = next(r for r in results if r['n'] == min(x['n'] for x in results))
    other = next(r for r in results if r['n'] == n)
    if key not in base or key not in other:
        return '-'
    return '%.2f' % (other[key]['wall'] / base[key]['wall'])


def write_results(results: list[dict], meta: dict) -> None:
    """meta: started (ISO), load_start, load_end, host, cpus - the last three absent in older JSON."""
    os.makedirs(OUT, exist_ok=True)
    started = datetime.datetime.fromisoformat(meta['started'])
    day = started.strftime('%Y-%m-%d')
    with open(os.path.join(OUT, 'fleet-%s.json' % day), 'w') as fh:
        json.dump(dict(meta, results=results), fh, indent=1, default=str)
    base_n = min(r['n'] for r in results)
    machine = ('on %s (%d CPUs)' % (meta['host'], meta['cpus']) if meta.get('host') and meta.get('cpus')
               else '(machine and CPU count not recorded in this JSON)')
    last = [v for v in results[-1].values() if isinstance(v, dict) and 'load_after' in v]
    if meta.get('load_end') is not None:
        load_end = '%.2f at the end' % meta['load_end']
    elif last:
        load_end = '%.2f after the last run' % last[-1]['load_after']
    else:
        load_end = 'the end not recorded'
    lines = ['# Fleet scale (bench/fleet_scale.py, `bash bench/run.sh fleet`)', '',
             'Run %s UTC %s; load average %.2f at the start, %s (other jobs share '
             'this machine). Settings: inventories/example/ansible.cfg (forks %s, pipelining). Each N on N fresh '
             'podman hosts with the real pg_tde 2.2.0 and a lab PyKMIP KMS; wall time of ansible-playbook.'
             % (started.strftime('%Y-%m-%d %H:%M'), machine, meta['load_start'], load_end, example_forks()), '',
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
    for r in results:
        kms = r['rotate'].get('kms')
        if kms:
            lines.append('- %d host(s), rotate_keys.yml as the lab KMS saw it: %d connections, %d KMIP sessions '
                         '(median %s s, longest %s s), longest time without a new connection %s s, %d failure '
                         'lines in its log.' % (r['n'], kms['connections'], kms['sessions'], kms['median_session'],
                                                kms['longest_session'], kms['longest_gap_between_connections'],
                                                kms['failures']))
    lines += ['', 'Slowest tasks of the largest run (%d hosts), seconds of wall time per task:' % big['n'], '']
    for key in ('site_first', 'site_noop', 'rotate', 'report'):
        lines.append('- %s: %s' % (key, '; '.join('%s %.1f' % (p['task'], p['seconds']) for p in big[key]['slowest'][:6])))
    lines += [''] + cpu_section(results)
    text = '\n'.join(lines) + '\n'
    for name in ('fleet-%s.md' % day, 'fleet.md'):
        with open(os.path.join(OUT, name), 'w') as fh:
            fh.write(text)
    print(text)


TIMED = (('site_first', 'site.yml first converge'), ('site_noop', 'site.yml no-op'), ('rotate', 'rotate_keys.yml'),
         ('report', 'report.yml'))

# Where each run can wait while the CPUs idle, besides the linear strategy (each task waits for its slowest host).
WAITS = {
    'site_first': "each host's PostgreSQL restart (stop, start, wait until it accepts connections) and key creation "
                  "on the one lab KMS all hosts share",
    'site_noop': 'the read-only play that groups the hosts before the roles, and the KMS checks against the one lab KMS',
    'rotate': 'three new keys per host on the one lab KMS all hosts share (a KMIP round trip each)',
    'report': 'the fleet play on the controller alone (report.json/md/html) and the KMS check of each host',
}


def has_cpu(run: dict | None) -> bool:
    return bool(run) and run.get('cpu_busy_seconds') is not None and bool(run.get('cpus'))


def cpu_section(results: list[dict]) -> list[str]:
    """CPU: the floor on these machines - how low the ratio N / 1 host could go with the CPUs of this machine."""
    lines = ['## CPU: the floor on these machines', '']
    if not any(has_cpu(r.get(key)) for r in results for key, _ in TIMED):
        return lines + ['Not recorded: this JSON is from a run before the benchmark read /proc/stat. Run '
                        '`bash bench/run.sh fleet` again for the CPU figures.', '']
    base = min(results, key=lambda r: r['n'])
    big = max(results, key=lambda r: r['n'])
    lines += ['CPU time of the whole machine around each timed run, from /proc/stat (busy = user + nice + system + irq '
              '+ softirq + steal): the controller, every podman host and the lab KMS - and any other job on the '
              'machine, so read it with the load averages. Utilisation = busy / (wall x CPUs). The floor of the ratio '
              'N / %d = busy(N) / (CPUs x wall(%d)): even with perfect parallelism the N-host run needs busy(N) / CPUs '
              'seconds here, so its ratio cannot be lower; measured / floor = 1 / utilisation(N). Controller = '
              'ansible-playbook and the processes it waited for (its forks and the podman CLI).' % (base['n'], base['n']),
              '', '| run | hosts | wall | CPU-s busy | utilisation | CPU-s per host | controller CPU-s | ratio N / %d '
              'measured | CPU floor of the ratio |' % base['n'], '|---|---|---|---|---|---|---|---|---|']
    readings = []
    for key, label in TIMED:
        one = base.get(key)
        for r in results:
            run = r.get(key)
            if not run:
                continue
            if not has_cpu(run):
                lines.append('| %s | %d | %.1f s | - | - | - | - | - | - |' % (label, r['n'], run['wall']))
                continue
            busy, cpus = run['cpu_busy_seconds'], run['cpus']
            util = busy / (run['wall'] * cpus)
            measured = floor = None
            if one and one['wall'] > 0:
                measured = run['wall'] / one['wall']
                floor = busy / (cpus * one['wall'])
            lines.append('| %s | %d | %.1f s | %.1f | %.0f%% | %.1f | %s | %s | %s |' % (
                label, r['n'], run['wall'], busy, 100 * util, busy / r['n'],
                '%.1f' % run['controller_cpu_seconds'] if run.get('controller_cpu_seconds') is not None else '-',
                '%.2f' % measured if measured is not None else '-', '%.2f' % floor if floor is not None else '-'))
            if r['n'] != base['n'] and measured is not None:
                readings.append('- %s, %d hosts: ' % (label, r['n']) + reading(key, r['n'], run, measured, floor, util))
    lines += ['', 'Reading (close to the floor: CPUs busy at least 80% of the wall time; far above: less than 55%):', '']
    lines += readings or ['- only one size was measured: no ratio to read.']
    if big['n'] != base['n']:
        lines += ['', 'Per host, for other machines: per added host = (busy(%d) - busy(%d)) / %d, without the fixed cost '
                  '(ansible-playbook, the plays on the controller). On one machine with C cores running everything, '
                  'N hosts need at least (busy(%d) + (N - %d) x per added host) / C seconds. In production every host '
                  'brings its own CPU: the controller\'s share per added host is what the controller\'s cores carry (with '
                  'SSH instead of the podman CLI).' % (big['n'], base['n'], big['n'] - base['n'], base['n'], base['n']),
                  '', '| run | CPU-s busy, %d host(s) | whole machine, CPU-s per added host | controller CPU-s per added '
                  'host |' % base['n'], '|---|---|---|---|']
        for key, label in TIMED:
            one, run = base.get(key), big.get(key)
            if not (has_cpu(one) and has_cpu(run)):
                continue
            added = big['n'] - base['n']
            ctl = ('%.2f' % ((run['controller_cpu_seconds'] - one['controller_cpu_seconds']) / added)
                   if run.get('controller_cpu_seconds') is not None and one.get('controller_cpu_seconds') is not None
                   else '-')
            lines.append('| %s | %.1f | %.2f | %s |' % (label, one['cpu_busy_seconds'],
                                                         (run['cpu_busy_seconds'] - one['cpu_busy_seconds']) / added, ctl))
    return lines + ['']


def reading(key: str, n: int, run: dict, measured: float, floor: float, util: float) -> str:
    head = 'measured %.2f, floor %.2f (CPUs %.0f%% busy)' % (measured, floor, 100 * util)
    idle = run['wall'] * run['cpus'] - run['cpu_busy_seconds']
    slowest = run.get('slowest') or []
    slow = '; slowest task: %s (%.1f s)' % (slowest[0]['task'], slowest[0]['seconds']) if slowest else ''
    crowded = (' Load %.1f before the run on %d CPUs: other jobs\' CPU is in these figures, so the floor is too high '
               'and part of "busy" may be theirs.' % (run['load_before'], run['cpus'])
               if run.get('load_before', 0) > run['cpus'] else '')
    if util >= 0.8:
        text = ('close to the floor: the remaining cost is CPU work per host (%d CPUs run the controller, all %d '
                'hosts and the KMS), not serialisation in the collection.' % (run['cpus'], n))
    elif util >= 0.55:
        text = ('between: mostly CPU work per host, but %.0f of %.0f CPU-s idle, so some waiting is left - look at %s, '
                'and the linear strategy%s.' % (idle, run['wall'] * run['cpus'], WAITS[key], slow))
    else:
        text = ('far above the floor: %.0f of %.0f CPU-s idle, so waiting/serialisation is left - look at %s, and the '
                'linear strategy (each task waits for its slowest host)%s.' % (idle, run['wall'] * run['cpus'],
                                                                                 WAITS[key], slow))
    return head + ' - ' + text + crowded


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
