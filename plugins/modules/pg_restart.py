#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_restart
short_description: The collection's one safe restart (and reload) of PostgreSQL with pg_tde
version_added: 1.0.0
description:
  - The ONLY way the roles of the collection restart or reload PostgreSQL. The roles notify the
    handler topic C(tdeops.pg_tde restart postgresql) (role C(tdeops.pg_tde.pg_layout)), which runs
    this module once with the reasons and undo entries every role recorded.
  - Checks first, on the configuration files as the server will read them - C(postgres -C) parses
    them; every library of the new C(shared_preload_libraries) is installed; with
    C(pg_tde.wal_encrypt) on in the new configuration, the server key is set and fetchable
    (C(pg_tde_verify_server_key())) and the KMS of its provider is reachable from this host with
    the provider's own files (TLS handshake with the client certificate for KMIP, the token and
    the KV v2 mount for Vault). A refused check puts the O(undo) files back and reloads;
    PostgreSQL keeps running as it was, and the module fails naming the check.
  - Then restarts through systemd or, where PostgreSQL is not a systemd unit, through
    C(pg_ctlcluster) or C(pg_ctl) (O(ctl)), and waits until the server accepts connections. When
    it does not start, the module reads PostgreSQL's reason (server log, startup log, journal),
    puts the O(undo) files back, starts the server again and fails quoting the reason.
  - With O(allowed=false) nothing is restarted and nothing undone; the pending restart is
    returned (RV(restart_pending), RV(msg)) and warned in the one format every role shares.
  - Runs as root on the database host. SQL runs as the PostgreSQL OS user (O(os_user)) with
    C(psql) over the Unix socket (peer or trust authentication, as the roles' own tasks).
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.actiongroup_none
attributes:
  check_mode:
    support: full
    details: Runs the read-only checks and reports what it would do (RV(outcome)); nothing is undone or restarted.
  diff_mode:
    support: none
options:
  mode:
    description:
      - C(restart) for settings that need one (C(shared_preload_libraries), C(pg_tde.wal_encrypt),
        C(archive_mode), unit limits); C(reload) for the others (C(pg_reload_conf()), the files
        parse-checked first, and rolled back when the server reports an error in them).
    type: str
    choices: [restart, reload]
    default: restart
  reasons:
    description: Who asks and why, for example C(hardening - LimitCORE drop-in changed). Shown in every result and message.
    type: list
    elements: str
    default: []
  allowed:
    description:
      - false - nothing is restarted and nothing undone; the pending restart is reported (RV(restart_pending))
        and the O(undo) entries are returned (RV(undo_pending)) for the caller that wants to roll back.
      - The handler of C(tdeops.pg_tde.pg_layout) sets it true when at least one role that asks is allowed
        to restart; the changes of the others ride along (named in O(reasons)).
    type: bool
    default: true
  not_allowed_by:
    description: The variables that forbid the restart (named in the message with the fix).
    type: list
    elements: str
    default: []
  undo:
    description:
      - Files changed for this restart, each C({path, backup}); C(backup) empty means the file did
        not exist before (it is removed on a rollback). Restored in reverse order.
    type: list
    elements: dict
    default: []
  service:
    description: The systemd unit (pg_layout_service). Also the name in messages.
    type: str
    required: true
  systemd:
    description: Whether PostgreSQL runs as the systemd unit O(service) (pg_layout_systemd).
    type: bool
    default: true
  ctl:
    description:
      - Without systemd, the command that controls the server, without the action - C([pg_ctlcluster, '17', main])
        (run as root) or C([/usr/pgsql-17/bin/pg_ctl, -w, -D, DATADIR, -l, LOGFILE]) (run as O(os_user)).
    type: list
    elements: str
    default: []
  bindir:
    description: PostgreSQL's bin directory (C(postgres), C(psql), C(pg_isready), C(pg_config)).
    type: path
    required: true
  confdir:
    description: The directory of postgresql.conf (C(postgres -D confdir -C ...)).
    type: path
    required: true
  datadir:
    description: The data directory (its C(log) folder is read after a failed start).
    type: path
    required: true
  os_user:
    description: The PostgreSQL OS user.
    type: str
    default: postgres
  socket_dir:
    description: The server's Unix socket directory.
    type: path
    default: /var/run/postgresql
  port:
    description: The server's port.
    type: int
    default: 5432
  login_db:
    description: The database for the checks (it has the pg_tde extension when WAL encryption is on).
    type: str
    default: postgres
  server_log:
    description: The server log file read after a failed start (Debian's C(/var/log/postgresql/postgresql-17-main.log)).
    type: path
  start_timeout:
    description: Seconds to wait for the server to accept connections after a (re)start.
    type: int
    default: 120
  start_stopped:
    description: false - a server that is not running is not started; its changes wait for its next start.
    type: bool
    default: false
  kms_timeout:
    description: Seconds for the KMS reachability check.
    type: int
    default: 10
notes:
  - Needs C(runuser) (util-linux) when it runs as root, as the roles do.
seealso:
  - module: tdeops.pg_tde.kms_preflight
'''

EXAMPLES = r'''
# The roles notify the handler; call the module directly only outside the roles.
- name: Restart safely for archive_mode
  tdeops.pg_tde.pg_restart:
    reasons: ["pgbackrest: archive_mode=on"]
    service: postgresql@17-main
    bindir: /usr/lib/postgresql/17/bin
    confdir: /etc/postgresql/17/main
    datadir: /var/lib/postgresql/17/main
    server_log: /var/log/postgresql/postgresql-17-main.log
  become: true

- name: Where PostgreSQL is not a systemd unit
  tdeops.pg_tde.pg_restart:
    reasons: ["configure: shared_preload_libraries"]
    service: postgresql@17-main
    systemd: false
    ctl: [pg_ctlcluster, "17", main]
    bindir: /usr/lib/postgresql/17/bin
    confdir: /etc/postgresql/17/main
    datadir: /var/lib/postgresql/17/main
    undo:
      - {path: /etc/postgresql/17/main/conf.d/90-tdeops-pg_tde.conf, backup: ""}
'''

RETURN = r'''
outcome:
  description: >-
    What happened (in check mode, what would): C(restarted), C(reloaded), C(pending) (not allowed),
    C(refused) (a check failed), C(rolled_back) (the start failed), C(not_running), C(none) (no reasons).
  returned: always
  type: str
reasons:
  description: The reasons given.
  returned: always
  type: list
  elements: str
restart_pending:
  description: A restart is needed and was not done (not allowed, or the server is not running).
  returned: always
  type: bool
undo_pending:
  description: The O(undo) entries, untouched, when the restart is pending (not allowed).
  returned: when RV(restart_pending) because of O(allowed=false)
  type: list
  elements: dict
checks:
  description: The checks run before the restart, each C({name, ok, msg}).
  returned: always
  type: list
  elements: dict
undone:
  description: Files put back (or removed) from O(undo).
  returned: always
  type: list
  elements: str
server_said:
  description: PostgreSQL's lines after a failed start.
  returned: when the start failed
  type: list
  elements: str
msg:
  description: The outcome in one sentence; with RV(restart_pending) the one format every role shares.
  returned: always
  type: str
'''

import json
import os
import pwd
import shutil
import tempfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _restart as R
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import VERIFY_FUNCTION, parse_options


class Server:
    """The commands that reach PostgreSQL on this host."""

    def __init__(self, module: AnsibleModule):
        self.module = module
        self.p = module.params

    def owner_argv(self, argv: list[str]) -> list[str]:
        try:
            uid = pwd.getpwnam(self.p['os_user']).pw_uid
        except KeyError:
            self.module.fail_json(msg='os_user %s does not exist on this host: set pg_layout_user to the '
                                      'PostgreSQL OS user.' % self.p['os_user'])
        if os.geteuid() == uid:
            return argv
        return ['runuser', '-u', self.p['os_user'], '--'] + argv

    def run(self, argv: list[str], owner: bool = False) -> tuple[int, str, str]:
        rc, out, err = self.module.run_command(self.owner_argv(argv) if owner else argv)
        return rc, out or '', err or ''

    def bin(self, name: str) -> str:
        return os.path.join(self.p['bindir'], name)

    def postgres_c(self, name: str) -> tuple[int, str, str]:
        rc, out, err = self.run([self.bin('postgres'), '-D', self.p['confdir'], '-C', name], owner=True)
        return rc, out.strip(), err.strip()

    def psql(self, sql: str) -> tuple[int, str, str]:
        rc, out, err = self.run([self.bin('psql'), '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
                                 '-h', self.p['socket_dir'], '-p', str(self.p['port']), '-d', self.p['login_db'],
                                 '-c', sql], owner=True)
        return rc, out.strip(), err.strip()

    def ready(self) -> bool:
        # As the server user: a probe as root would log FATAL: role "root" does not exist (or a failed
        # peer authentication) in the server log on every call.
        rc, _out, _err = self.run([self.bin('pg_isready'), '-q', '-h', self.p['socket_dir'], '-p', str(self.p['port']),
                                   '-U', self.p['os_user'], '-d', self.p['login_db']], owner=True)
        return rc == 0

    def wait_ready(self) -> bool:
        deadline = time.monotonic() + self.p['start_timeout']
        while True:
            if self.ready():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(1)

    def pkglibdir(self) -> str:
        rc, out, _err = self.run([self.bin('pg_config'), '--pkglibdir'])
        if rc == 0 and out.strip():
            return out.strip()
        return os.path.join(os.path.dirname(self.p['bindir'].rstrip('/')), 'lib')

    def control(self, action: str) -> tuple[int, str, str]:
        """restart/start through systemd or pg_ctlcluster/pg_ctl."""
        if self.p['systemd']:
            self.run(['systemctl', 'daemon-reload'])
            return self.run(['systemctl', action, self.p['service']])
        ctl = self.p['ctl']
        return self.run(R.ctl_command(ctl, action), owner=R.ctl_runs_as_owner(ctl))

    def reload(self) -> tuple[int, str, str]:
        if self.p['systemd']:
            self.run(['systemctl', 'daemon-reload'])
        return self.psql('SELECT pg_reload_conf()')


class Logs:
    """Where a failed start leaves PostgreSQL's reason: read only what was written after `mark`."""

    def __init__(self, server: Server):
        self.server = server
        p = server.p
        self.files = [f for f in (p['server_log'], R.ctl_log_file(p['ctl']) if not p['systemd'] else None) if f]
        self.logdir = os.path.join(p['datadir'], 'log')
        self.sizes: dict[str, int] = {}
        self.started = time.time()

    def mark(self) -> None:
        self.started = time.time()
        for path in self.files + self._logdir_files():
            try:
                self.sizes[path] = os.path.getsize(path)
            except OSError:
                self.sizes[path] = 0

    def _logdir_files(self) -> list[str]:
        try:
            return [os.path.join(self.logdir, n) for n in os.listdir(self.logdir)]
        except OSError:
            return []

    def lines(self, extra: str = '') -> list[str]:
        out: list[str] = []
        recent = [f for f in self._logdir_files() if _mtime(f) >= self.started - 1]
        for path in self.files + recent:
            try:
                with open(path, 'rb') as handle:
                    handle.seek(self.sizes.get(path, 0))
                    out.extend(handle.read().decode('utf-8', errors='replace').splitlines())
            except OSError:
                continue
        if self.server.p['systemd']:
            _rc, text, _err = self.server.run(['journalctl', '-u', self.server.p['service'], '--since',
                                               '@%d' % int(self.started - 1), '--no-pager', '-o', 'cat'])
            out.extend(text.splitlines())
        out.extend(extra.splitlines())
        return R.reason_lines(out)

    def where(self) -> str:
        return ', '.join(self.files + [self.logdir + '/*.log'] + (['the journal'] if self.server.p['systemd'] else []))


def _with(result: dict[str, Any], **values: Any) -> dict[str, Any]:
    """The result with the outcome of this exit."""
    result.update(values)
    return result


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def put_back(undo: list[dict[str, Any]]) -> list[str]:
    """Restore the files of the undo entries (newest change first), each atomically with the
    owner and mode the file has now; remove the files that did not exist before."""
    done = []
    for entry in reversed(undo):
        path, backup = entry['path'], entry.get('backup') or ''
        if not backup:
            if os.path.lexists(path):
                os.unlink(path)
                done.append(path)
            continue
        st = os.stat(path) if os.path.exists(path) else os.stat(backup)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.pg_restart.')
        os.close(fd)
        try:
            shutil.copyfile(backup, tmp)
            os.chown(tmp, st.st_uid, st.st_gid)
            os.chmod(tmp, st.st_mode & 0o7777)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        done.append(path)
    return done


class Checks:
    def __init__(self, server: Server, running: bool):
        self.server = server
        self.running = running
        self.results: list[dict[str, Any]] = []

    def add(self, name: str, problem: str | None, ok_text: str) -> None:
        self.results.append({'name': name, 'ok': problem is None, 'msg': problem or ok_text})

    @property
    def problems(self) -> list[str]:
        return [r['msg'] for r in self.results if not r['ok']]

    def parse(self) -> str | None:
        rc, out, err = self.server.postgres_c('shared_preload_libraries')
        if rc != 0:
            self.add('parse', 'the configuration files in %s do not parse (postgres -C): %s'
                     % (self.server.p['confdir'], err or out), '')
            return None
        self.add('parse', None, 'the configuration files parse (postgres -C)')
        return out

    def libraries(self, preload: str) -> None:
        libdir = self.server.pkglibdir()
        missing = R.missing_libraries(preload, libdir)
        self.add('libraries',
                 ('libraries in shared_preload_libraries that are not installed: %s (looked in %s); the '
                  'server would not start' % (', '.join(missing), libdir)) if missing else None,
                 'every preloaded library is installed (%s)' % (preload or 'none'))

    def wal_key(self, preload: str, timeout: int) -> None:
        if 'pg_tde' not in R.split_guc_list(preload):
            return
        rc, out, err = self.server.postgres_c('pg_tde.wal_encrypt')
        if rc != 0 or not R.is_on(out):
            return
        if not self.running:
            self.add('server_key', 'pg_tde.wal_encrypt is on and the server is not running: the server key '
                                   'and the KMS cannot be checked through it', '')
            return
        rc, out, err = self.server.psql(
            'SELECT row_to_json(k) FROM (SELECT s.key_name, s.provider_name, p.type, p.options '
            'FROM pg_tde_server_key_info() s LEFT JOIN pg_tde_list_all_global_key_providers() p '
            'ON p.name = s.provider_name) k')
        if rc != 0:
            self.add('server_key', 'pg_tde.wal_encrypt is on in the new configuration and the server key cannot '
                                   'be read in database %s: %s' % (self.server.p['login_db'], err), '')
            return
        row = json.loads(out.splitlines()[0]) if out else {}
        if not row.get('key_name'):
            self.add('server_key', 'pg_tde.wal_encrypt is on in the new configuration but no server key is set: '
                                   'the server would not start (FATAL: principal key not configured); set the '
                                   'server key first (configure_server_key)', '')
            return
        rc, _out, err = self.server.psql('SELECT %s()' % VERIFY_FUNCTION['server'])
        self.add('server_key',
                 ('the server key "%s" cannot be fetched from provider "%s": %s; with WAL encryption on the '
                  'server would not start' % (row['key_name'], row.get('provider_name'), err)) if rc != 0 else None,
                 'the server key "%s" is set and fetchable' % row['key_name'])
        endpoint = R.kms_endpoint(row.get('type') or '', parse_options(row.get('options')))
        if endpoint:
            self.add('kms', kms_problem(endpoint, timeout, row.get('provider_name') or ''),
                     'the KMS of provider "%s" answers from this host' % row.get('provider_name'))


def kms_problem(endpoint: dict[str, Any], timeout: int, provider: str) -> str | None:
    """Reach the KMS as PostgreSQL will at its start, with the provider's own files."""
    if endpoint['type'] == 'kmip':
        from ansible_collections.tdeops.pg_tde.plugins.module_utils import _tls
        where = '%s:%s' % (endpoint['host'], endpoint['port'])
        try:
            _tls.tls_handshake(endpoint['host'], endpoint['port'], endpoint['ca'], endpoint['cert'],
                               endpoint['key'], timeout)
        except _tls.TlsCheckError as exc:
            return ('the KMIP server %s of provider "%s" (the server key) cannot be reached from this host: %s; '
                    'with WAL encryption on PostgreSQL would not start. Start or repair the KMS and run again'
                    % (where, provider, exc))
        return None
    from ansible_collections.tdeops.pg_tde.plugins.module_utils import _vault
    try:
        token, _more = _vault.read_token_file(endpoint['token_path'])
        _vault.check_kv2_mount(endpoint['url'], endpoint['mount'], token, endpoint['token_path'], endpoint['ca'],
                               endpoint['namespace'], timeout, provider)
    except _vault.VaultCheckError as exc:
        return ('the Vault server of provider "%s" (the server key) refused the check: %s; with WAL encryption '
                'on PostgreSQL would not start' % (provider, exc))
    except (OSError, ValueError) as exc:
        return ('the Vault server %s of provider "%s" (the server key) cannot be reached from this host: %s; '
                'with WAL encryption on PostgreSQL would not start. Start or repair the KMS and run again'
                % (endpoint['url'], provider, exc))
    return None


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type='str', default='restart', choices=['restart', 'reload']),
            reasons=dict(type='list', elements='str', default=[]),
            allowed=dict(type='bool', default=True),
            not_allowed_by=dict(type='list', elements='str', default=[]),
            undo=dict(type='list', elements='dict', default=[]),
            service=dict(type='str', required=True),
            systemd=dict(type='bool', default=True),
            ctl=dict(type='list', elements='str', default=[]),
            bindir=dict(type='path', required=True),
            confdir=dict(type='path', required=True),
            datadir=dict(type='path', required=True),
            os_user=dict(type='str', default='postgres'),
            socket_dir=dict(type='path', default='/var/run/postgresql'),
            port=dict(type='int', default=5432),
            login_db=dict(type='str', default='postgres'),
            server_log=dict(type='path'),
            start_timeout=dict(type='int', default=120),
            start_stopped=dict(type='bool', default=False),
            kms_timeout=dict(type='int', default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p['systemd'] and not p['ctl']:
        module.fail_json(msg='PostgreSQL is not a systemd unit here (systemd=false) and ctl is empty: set '
                             'pg_layout_ctl (pg_ctlcluster VERSION CLUSTER, or pg_ctl -D DATADIR -l LOG).')
    service, reasons, undo = p['service'], p['reasons'], p['undo']
    result: dict[str, Any] = dict(changed=False, mode=p['mode'], reasons=reasons, restart_pending=False,
                                  checks=[], undone=[], outcome='none')
    if not reasons and not undo:
        module.exit_json(msg='nothing asked a restart or reload', **result)

    server = Server(module)
    running = server.ready()
    if p['mode'] == 'restart' and not p['allowed']:
        msg = R.pending_message(service, reasons, p['not_allowed_by'])
        if p['systemd'] and not module.check_mode:
            server.run(['systemctl', 'daemon-reload'])      # a changed unit file applies at the next restart
        module.warn(msg)
        module.exit_json(msg=msg, **_with(result, outcome='pending', restart_pending=True, undo_pending=undo))
    if not running and not p['start_stopped']:
        if p['systemd'] and not module.check_mode:
            server.run(['systemctl', 'daemon-reload'])
        msg = ('PostgreSQL (%s) is not running: not started; the changes (%s) take effect at its next start.'
               % (service, '; '.join(reasons)))
        module.warn(msg)
        module.exit_json(msg=msg, **_with(result, outcome='not_running', restart_pending=p['mode'] == 'restart'))

    checks = Checks(server, running)
    for problem in R.undo_problems(undo):
        checks.add('undo', problem, '')
    preload = checks.parse()
    if preload is not None and p['mode'] == 'restart':
        checks.libraries(preload)
        checks.wal_key(preload, p['kms_timeout'])
    result['checks'] = checks.results

    if checks.problems:
        if module.check_mode:
            module.fail_json(msg='check mode: would refuse - ' + R.refusal_message(service, reasons, checks.problems, []),
                             **_with(result, outcome='refused'))
        result['undone'] = put_back(undo)
        if running:
            server.reload()
        module.fail_json(msg=R.refusal_message(service, reasons, checks.problems, result['undone']),
                         **_with(result, outcome='refused'))

    if module.check_mode:
        module.exit_json(msg='check mode: would %s PostgreSQL (%s) for: %s' % (p['mode'], service, '; '.join(reasons)),
                         **_with(result, changed=True, outcome='restarted' if p['mode'] == 'restart' else 'reloaded'))

    if p['mode'] == 'reload':
        reload_or_roll_back(module, server, result)

    logs = Logs(server)
    logs.mark()
    rc, out, err = server.control('restart')
    if rc == 0 and server.wait_ready():
        module.exit_json(msg='PostgreSQL (%s) restarted for: %s' % (service, '; '.join(reasons)),
                         **_with(result, changed=True, outcome='restarted'))

    said = logs.lines(out + '\n' + err)
    result['undone'] = put_back(undo)
    logs.mark()
    rc2, out2, err2 = server.control('restart')
    up = rc2 == 0 and server.wait_ready()
    again = [] if up else logs.lines(out2 + '\n' + err2)
    module.fail_json(msg=R.failed_start_message(service, reasons, said, logs.where(), up, again),
                     **_with(result, changed=True, outcome='rolled_back', server_said=said))


def reload_or_roll_back(module: AnsibleModule, server: Server, result: dict[str, Any]) -> None:
    """pg_reload_conf(); the server's own verdict on the files (pg_file_settings) decides. Returns
    once the postmaster has read the files (pg_conf_load_time moved), so pending_restart is current."""
    _rc, before, _err = server.psql('SELECT pg_conf_load_time()')
    rc, _out, err = server.reload()
    if rc != 0:
        module.fail_json(msg='PostgreSQL (%s) could not be reloaded: %s' % (server.p['service'], err),
                         **_with(result, outcome='refused'))
    deadline = time.monotonic() + 20
    while before.strip() and time.monotonic() < deadline:
        rc, now, _err = server.psql('SELECT pg_conf_load_time()')
        if rc != 0 or now.strip() != before.strip():
            break
        time.sleep(0.2)
    rc, out, err = server.psql("SELECT sourcefile || ':' || sourceline || ' ' || coalesce(name, '') || ': ' || error "
                               "FROM pg_file_settings WHERE error IS NOT NULL "
                               "AND error <> 'setting could not be applied'")
    errors = [line for line in out.splitlines() if line.strip()] if rc == 0 else []
    if errors:
        result['undone'] = put_back(server.p['undo'])
        server.reload()
        module.fail_json(msg=R.refusal_message(server.p['service'], server.p['reasons'],
                                               ['errors in the configuration files: ' + ' | '.join(errors)],
                                               result['undone']).replace('restart', 'reload', 1),
                         **_with(result, changed=True, outcome='refused'))
    module.exit_json(msg='PostgreSQL (%s) reloaded for: %s' % (server.p['service'], '; '.join(server.p['reasons'])),
                     **_with(result, changed=True, outcome='reloaded'))


if __name__ == '__main__':
    main()
