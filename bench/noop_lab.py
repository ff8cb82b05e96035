"""Benchmark: a no-op run of the podman lab's site.yml (`make lab`), the figure issue 13 set a goal
for (at most 20 s). Run by `bash bench/run.sh noop_lab`; never a timed test.

Each variant is a whole lab brought up by its own scripts/lab.sh (a KMS host with the lab PyKMIP
and a database host with the REAL pg_tde 2.2.0 bundle, LAB_PG_TDE=bundle), under its own
LAB_PREFIX so two labs run side by side: the baseline (BENCH_NOOP_BASELINE, default the merge
base of HEAD and main, checked out into a temporary git worktree) and this checkout. `lab.sh up`
converges each (not timed); then the command lab.sh runs - `ansible-playbook -i lab/inventory.yml
playbooks/site.yml`, with the lab's settings (ansible.cfg of the checkout, ANSIBLE_PIPELINING) -
is run again BENCH_NOOP_ROUNDS times per variant (default 3), alternating. Figures: median wall
time, tasks, changed (must be 0). The whole site.yml is timed, the lab KMS play included.

Results: bench/results/noop_lab.md and noop_lab.json (BENCH_OUT); `python bench/noop_lab.py
--from-json bench/results/noop_lab.json` renders the tables again. BENCH_NOOP_KEEP=1 leaves the
labs (remove them with `LAB_PREFIX=<prefix> bash scripts/lab.sh down`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.fleet_scale import loadavg  # noqa: E402
from bench.noop_site import cli, figure, git, save, timed_site  # noqa: E402

ROUNDS = int(os.environ.get('BENCH_NOOP_ROUNDS', '3'))
KEEP = os.environ.get('BENCH_NOOP_KEEP') == '1'
BASELINE = os.environ.get('BENCH_NOOP_BASELINE', '')
OUT = os.environ.get('BENCH_OUT', os.path.join(ROOT, 'bench', 'results'))
BUNDLE = os.path.abspath(os.environ.get('TDEOPS_REAL_PG_TDE_BUNDLE', os.path.join(ROOT, '..', 'shared', 'real-pg_tde')))
ISSUE_SECONDS = 46.0      # issue 13: the podman lab's no-op before it
GOAL_SECONDS = 20.0
PREFIXES = {'baseline': 'tdeops-bench-lab-base', 'branch': 'tdeops-bench-lab-head'}


def log(msg: str) -> None:
    print('[noop_lab %s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def borrow_setup(tree: str) -> None:
    """The baseline worktree runs with this checkout's venv; its collection path points at itself."""
    os.symlink(os.path.join(ROOT, '.venv'), os.path.join(tree, '.venv'))
    coll = os.path.join(tree, '.cache', 'collections', 'ansible_collections', 'tdeops')
    os.makedirs(coll)
    os.symlink(tree, os.path.join(coll, 'pg_tde'))


def lab_env(tree: str, prefix: str) -> dict[str, str]:
    """What scripts/lab.sh exports (scripts/env.sh of that tree, ANSIBLE_PIPELINING, LAB_*)."""
    env = dict(os.environ)
    env['PATH'] = os.path.join(tree, '.venv', 'bin') + os.pathsep + env.get('PATH', '')
    env['ANSIBLE_COLLECTIONS_PATH'] = os.path.join(tree, '.cache', 'collections')
    env['ANSIBLE_CONFIG'] = os.path.join(tree, 'ansible.cfg')
    env['CONTAINERS_CONF'] = os.path.join(ROOT, 'molecule', 'shared', 'containers.conf')
    env['ANSIBLE_PIPELINING'] = 'True'
    env['LAB_PREFIX'] = prefix
    env['LAB_KMS'] = 'kmip'
    env['LAB_PG_TDE'] = 'bundle'
    env['TDEOPS_REAL_PG_TDE_BUNDLE'] = BUNDLE
    return env


def lab(tree: str, prefix: str, action: str) -> None:
    proc = subprocess.run(['bash', 'scripts/lab.sh', action], cwd=tree, env=lab_env(tree, prefix),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError('lab.sh %s in %s failed (rc %d): %s' % (action, tree, proc.returncode,
                                                                  (proc.stdout + proc.stderr)[-4000:]))


def run_site(tree: str, prefix: str) -> dict:
    env = lab_env(tree, prefix)
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
    env['ANSIBLE_LOAD_CALLBACK_PLUGINS'] = '1'
    env['ANSIBLE_DEPRECATION_WARNINGS'] = '0'
    cmd = ['ansible-playbook', '-i', 'lab/inventory.yml', 'playbooks/site.yml', '-e', 'lab_pg_tde_source=bundle']
    return timed_site(cmd, env, tree, slowest=8)


def main() -> int:
    if not os.path.exists(os.path.join(BUNDLE, 'install.sh')):
        log('STOP: no real pg_tde bundle at %s (TDEOPS_REAL_PG_TDE_BUNDLE)' % BUNDLE)
        return 1
    if shutil.which('podman') is None:
        log('STOP: podman is not installed (scripts/setup.sh)')
        return 1
    baseline = BASELINE or git('merge-base', 'HEAD', 'main')
    head = git('rev-parse', '--short', 'HEAD')
    dirty = bool(git('status', '--porcelain', '--untracked-files=no'))
    workdir = tempfile.mkdtemp(prefix='tdeops-noop-lab-')
    tree = os.path.join(workdir, 'baseline')
    git('worktree', 'add', '--detach', tree, baseline)
    borrow_setup(tree)
    variants = {'baseline': tree, 'branch': ROOT}
    results: dict = {'baseline_commit': git('rev-parse', '--short', baseline), 'branch_commit': head + (' (dirty)' if dirty else ''),
                     'rounds': ROUNDS, 'load_start': loadavg(), 'runs': {}}
    up: list[str] = []
    try:
        for name, src in variants.items():
            log('%s: lab.sh up (%s, not timed)' % (name, PREFIXES[name]))
            up.append(name)
            lab(src, PREFIXES[name], 'up')
        for r in range(ROUNDS):
            for name, src in variants.items():
                res = run_site(src, PREFIXES[name])
                log('%s round %d: %.1f s, %d tasks (%d ran), %d changed' % (name, r + 1, res['wall'], res['tasks'],
                                                                            res['ran'], res['changed']))
                results['runs'].setdefault(name, []).append(res)
    finally:
        if KEEP:
            log('BENCH_NOOP_KEEP: labs kept (%s); LAB_PREFIX=<prefix> bash scripts/lab.sh down removes them'
                % ', '.join(PREFIXES[n] for n in up))
        else:
            for name in up:
                lab(variants[name], PREFIXES[name], 'down')
        subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force', tree], check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    results['load_end'] = loadavg()
    write_results(results)
    return 0


def write_results(results: dict) -> None:
    os.makedirs(OUT, exist_ok=True)
    base, branch = figure(results['runs']['baseline']), figure(results['runs']['branch'])
    loads = [(r['load_before'], r['load_after']) for runs in results['runs'].values() for r in runs]
    lines = [
        '# The podman lab\'s site.yml, no-op (`make lab` run again)',
        '',
        'Measured %s by `bash bench/run.sh noop_lab` (bench/noop_lab.py): two labs side by side, each brought '
        'up by its own scripts/lab.sh (lab PyKMIP KMS host + database host with the real pg_tde 2.2.0 bundle), '
        'then the command lab.sh runs, `ansible-playbook -i lab/inventory.yml playbooks/site.yml`, with the lab\'s '
        'settings (podman connection, ANSIBLE_PIPELINING). Whole site.yml timed, lab KMS play included. Median of '
        '%d no-op runs each, alternating; baseline %s, branch %s.'
        % (time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), results['rounds'], results['baseline_commit'],
           results['branch_commit']),
        '',
        '| | tasks listed | tasks that ran | changed | seconds (median) | each round |',
        '|---|---|---|---|---|---|',
    ]
    for name, fig in (('baseline', base), ('branch', branch)):
        lines.append('| %s %s | %d | %d | %d | %.1f | %s |' % (
            name, results[name + '_commit'], fig['tasks'], fig['ran'], fig['changed'], fig['wall'],
            ' / '.join('%.1f' % r['wall'] for r in results['runs'][name])))
    lines += [
        '| ratio branch / baseline | %.2f | %.2f | | %.2f | |' % (branch['tasks'] / base['tasks'], branch['ran'] / base['ran'],
                                                                branch['wall'] / base['wall']),
        '',
        'Issue 13: the lab\'s no-op took %.0f s before it; goal at most %.0f s. Branch: %.1f s (%s), %.2f of the '
        'issue\'s figure, %.2f of the baseline measured in this run.'
        % (ISSUE_SECONDS, GOAL_SECONDS, branch['wall'], 'met' if branch['wall'] <= GOAL_SECONDS else 'NOT met',
           branch['wall'] / ISSUE_SECONDS, branch['wall'] / base['wall']),
        '',
        'Load average (1 min) at the start %s, at the end %s; before/after each run: %s. On a shared 2-core machine '
        'the seconds are only comparable within one run.' % (results.get('load_start'), results.get('load_end'),
                                                             ', '.join('%s/%s' % lb for lb in loads)),
        '',
    ]
    save(results, 'noop_lab', lines, OUT)


if __name__ == '__main__':
    sys.exit(cli(main, write_results))
