#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_tde_report
short_description: Judge one pg_tde server against a compliance policy (read-only)
version_added: 1.0.0
description:
  - Builds the host section of the fleet compliance report (C(playbooks/report.yml), schema in
    C(docs/report.md)) from the result of M(tdeops.pg_tde.pg_tde_info) and what it reads on the
    database host itself, and judges it against O(policy).
  - "Reads: the KMS of every kmip and vault_v2 provider with a verified TLS handshake (chain to the
    provider's CA, host name, validity - the checks of M(tdeops.pg_tde.kms_preflight), which pg_tde
    does not make), the client certificate's expiry, owner and mode of every file a provider points
    at, the postmaster's core file limit, C(kernel.core_pattern), C(fs.suid_dumpable), active swap
    (dm-crypt or not), C(pgbackrest info --output=json) of the stanza and C(pg_stat_archiver)."
  - "Judges: encryption coverage per database and kind with bytes (sequences and pg_statistic are
    never encrypted by pg_tde and never counted as gaps), WAL encryption, enforcement and
    C(default_table_access_method), the age of each principal key against the maximum age, file
    keyrings (not for production), KMS reachability and certificate verification, certificate
    expiry, file modes, and - where the policy asks for them - hardening and backups."
  - Never changes anything; C(changed) is always false. Run it as the PostgreSQL OS user on the
    database host (C(become_user=postgres)), which can read every file pg_tde reads.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.postgres
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.info_module
  - tdeops.pg_tde.attributes.actiongroup_pg_tde
options:
  host:
    description: Name of the host in the report (usually C(inventory_hostname)).
    type: str
    required: true
  info:
    description:
      - The C(pg_tde) result of M(tdeops.pg_tde.pg_tde_info) run on this host with
        O(tdeops.pg_tde.pg_tde_info#module:include_sizes=true).
      - Leave it unset and set O(info_error) when pg_tde_info failed; the host is then reported
        as an error with that text.
    type: dict
  info_error:
    description: Why pg_tde_info gave no result (its C(msg)).
    type: str
  policy:
    description:
      - Policy settings over the defaults, see C(docs/report.md). Keys C(max_key_age_days) (365),
        C(key_age_warning_days) (30), C(cert_expiry_warning_days) (30), C(require_wal_encryption)
        (true), C(require_enforcement) (false), C(require_full_coverage) (true),
        C(allow_file_provider) (false), C(hardening) and C(backup) (C(required), C(reported) or
        C(auto)), C(backup_max_age_hours) (48), C(gap_list_limit) (20).
    type: dict
    default: {}
  roles:
    description:
      - Which of the collection's roles this host uses, for the policy value C(auto) -
        C(hardening) (site_hardening) and C(backup) (site_pgbackrest).
    type: dict
    default: {}
  stanza:
    description: pgBackRest stanza of this server.
    type: str
    default: main
  pgbackrest_config:
    description: pgBackRest configuration file on this host.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  kms_timeout:
    description: Seconds for each KMS connection.
    type: int
    default: 10
  now:
    description: Time of the report (ISO 8601); default the current time. Every host of one
      report should get the same value.
    type: str
notes:
  - The TLS handshake is made from the database host with the provider's own files, as pg_tde
    makes it.
seealso:
  - module: tdeops.pg_tde.pg_tde_info
  - module: tdeops.pg_tde.kms_preflight
'''

EXAMPLES = r'''
- name: What pg_tde says
  tdeops.pg_tde.pg_tde_info:
    include_sizes: true
  become: true
  become_user: postgres
  register: tde

- name: This host's section of the compliance report
  tdeops.pg_tde.pg_tde_report:
    host: "{{ inventory_hostname }}"
    info: "{{ tde.pg_tde }}"
    policy:
      max_key_age_days: 180
    roles:
      backup: true
  become: true
  become_user: postgres
  register: host_report
'''

RETURN = r'''
report:
  description:
    - The host section of the report (C(hosts[]) in C(docs/report.schema.json)) - C(host),
      C(status) (pass, warn, fail, error), C(error), C(findings) (C(id), C(severity), C(subject),
      C(message)), C(server), C(wal_encryption), C(databases) (coverage per kind with counts and
      bytes, the largest gaps, C(not_encryptable)), C(coverage), C(keys) (target, name, provider,
      provider type, creation time, age), C(providers) (type, production readiness, KMS check,
      client material files), C(hardening), C(backup).
  returned: always
  type: dict
  sample:
    host: db1
    status: pass
    findings: []
    wal_encryption: {setting: "on", "on": true, pending_restart: false, server_key_set: true}
    coverage: {encrypted_count: 6, unencrypted_count: 0, encrypted_bytes: 81920, unencrypted_bytes: 0,
               percent_bytes: 100.0, percent_relations: 100.0}
policy:
  description: The policy in effect (defaults with O(policy) on top).
  returned: always
  type: dict
'''

import datetime as dt
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _report, _report_host
from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import (
    open_session,
    pg_error_text,
    postgres_argument_spec,
)

ARCHIVER_SQL = ("SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, "
                "last_failed_time, current_setting('archive_mode') AS archive_mode FROM pg_stat_archiver")
SERVER_SQL = ("SELECT current_setting('data_directory') AS data_directory, "
              "current_setting('server_version') AS server_version")


def provider_list(info: dict[str, Any]) -> list[dict[str, Any]]:
    providers = info.get('providers') or {}
    out = list(providers.get('global') or [])
    for provs in (providers.get('databases') or {}).values():
        out += provs or []
    return out


def gather(module, info: dict[str, Any]) -> dict[str, Any]:
    """Everything read on this host besides pg_tde_info."""
    p = module.params
    facts: dict[str, Any] = {'kms': {}, 'files': {}}
    session = open_session(module)
    try:
        row = session.query_one(SERVER_SQL) or {}
        archiver = session.query_one(ARCHIVER_SQL) or {}
    finally:
        session.close()
    datadir = row.get('data_directory')
    facts['data_directory'] = datadir
    facts['server_version'] = row.get('server_version')
    facts['os_user'] = _report_host.file_state(datadir).get('owner') if datadir else None
    for prov in provider_list(info):
        for _role, path in _report.provider_files(prov):
            if path not in facts['files']:
                facts['files'][path] = _report_host.file_state(path)
        if prov.get('type') in ('kmip', 'vault_v2'):
            key = _report.kms_key(prov)
            if key not in facts['kms']:
                facts['kms'][key] = _report_host.kms_check(prov['type'], prov.get('options') or {}, p['kms_timeout'])
    facts['hardening'] = _report_host.hardening_state(datadir)
    backup = _report_host.backup_state(module.run_command, p['stanza'], p['pgbackrest_config'])
    backup['archiver'] = {k: (v.isoformat() if hasattr(v, 'isoformat') else v) for k, v in archiver.items()}
    facts['backup'] = backup
    return facts


def main() -> None:
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        host=dict(type='str', required=True),
        info=dict(type='dict'),
        info_error=dict(type='str'),
        policy=dict(type='dict', default={}),
        roles=dict(type='dict', default={}),
        stanza=dict(type='str', default='main'),
        pgbackrest_config=dict(type='path', default='/etc/pgbackrest/pgbackrest.conf'),
        kms_timeout=dict(type='int', default=10),
        now=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    problems = _report.policy_problems(p['policy'])
    if problems:
        module.fail_json(msg='Invalid report policy: %s.' % '; '.join(problems))
    policy = _report.effective_policy(p['policy'])
    now = _report.parse_time(p['now']) if p['now'] else dt.datetime.now(dt.timezone.utc)
    if now is None:
        module.fail_json(msg='now must be an ISO 8601 time, not %r.' % p['now'])
    roles = {k: bool(_report._as_bool(v)) for k, v in (p['roles'] or {}).items()}
    if p['info'] is None:
        report = _report.evaluate_host(p['host'], None, None, policy, now, roles,
                                       error=p['info_error'] or 'pg_tde_info gave no result')
        module.exit_json(changed=False, report=report, policy=policy)
    try:
        facts = gather(module, p['info'])
    except Exception as exc:  # noqa: BLE001 - a host that cannot be read is reported, not fatal
        report = _report.evaluate_host(p['host'], None, None, policy, now, roles,
                                       error='reading the host failed: %s' % pg_error_text(exc))
        module.exit_json(changed=False, report=report, policy=policy)
    report = _report.evaluate_host(p['host'], p['info'], facts, policy, now, roles)
    module.exit_json(changed=False, report=report, policy=policy)


if __name__ == '__main__':
    main()
