#!/usr/bin/env python3
"""Launch one of awx/job_templates.yml the way AWX / Automation Platform launches a job, through
ansible-runner (the library the controller runs jobs with), and check what the job printed.

As the controller does (tests/support/controller.py): the job's extra vars are the template's
survey defaults plus the answers, written to env/extravars as !unsafe YAML; every credential type
of awx/credential_types.yml is validated, and its injectors rendered with the credential's inputs
into files in env/ and an extra-vars file passed with -e @file. The inputs are the lab KMS PKI
(KMIP client) and fresh random values (Vault token, pgBackRest cipher, S3 keys): what an
administrator enters into the credentials. The project is this checkout (playbooks/*.yml), the
collection comes from .cache/collections (what the execution environment has installed).

Afterwards every secret input is searched in the job's events, stdout and artifacts. Writes
<work>/result.json (status, stats, leaks, SHA-1 of the inputs for verify.yml) and exits
non-zero when the job failed or a secret leaked.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shlex
import shutil
import sys
import time

import ansible_runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from tests.support import controller  # noqa: E402


def credentials(pki: str) -> list[dict]:
    """The job's credentials: name, type and the inputs an administrator would enter."""
    def read(name: str) -> str:
        with open(os.path.join(pki, name), encoding='utf-8') as f:
            return f.read()

    cn = 'pg_tde'    # lab_kms_client_cns[0]
    return [
        {'name': 'pg_tde KMIP client', 'credential_type': 'tdeops.pg_tde KMIP client',
         'inputs': {'kmip_ca': read('ca.crt'), 'kmip_client_cert': read(f'{cn}.crt'),
                    'kmip_client_key': read(f'{cn}.key')}},
        {'name': 'pg_tde pgBackRest cipher', 'credential_type': 'tdeops.pg_tde pgBackRest cipher',
         'inputs': {'cipher_pass': secrets.token_urlsafe(32)}},
        # Attached too (an administrator may add them): injected, unused by this inventory, and
        # they must not show up in the output either.
        {'name': 'pg_tde Vault token', 'credential_type': 'tdeops.pg_tde Vault token',
         'inputs': {'vault_token': 'hvs.' + secrets.token_urlsafe(24)}},
        {'name': 'pg_tde S3 keys', 'credential_type': 'tdeops.pg_tde pgBackRest S3 keys',
         'inputs': {'s3_key': 'AKIA' + secrets.token_hex(8).upper(), 's3_key_secret': secrets.token_urlsafe(30)}},
    ]


def job_env() -> dict[str, str]:
    """The job's environment: no ANSIBLE_* of the calling molecule run; the project's ansible.cfg
    (as the controller runs ansible-playbook in the project directory) and the installed collection."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(('ANSIBLE_', 'MOLECULE_'))}
    env.update({
        'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(ROOT, '.cache', 'collections'),
        'ANSIBLE_PIPELINING': 'True',
        'ANSIBLE_NOCOLOR': '1',
    })
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--template', required=True, help='name of a job template in awx/job_templates.yml')
    parser.add_argument('--answers', default='{}', help='survey answers (JSON)')
    parser.add_argument('--inventory', required=True)
    parser.add_argument('--limit', default='')
    parser.add_argument('--pki', required=True, help='lab KMS PKI directory (lab_kms_pki_dir)')
    parser.add_argument('--work', required=True, help='directory for the job (private data dir)')
    args = parser.parse_args()

    types = {ct['name']: ct for ct in
             controller.load_yaml(os.path.join(ROOT, 'awx', 'credential_types.yml'))['controller_credential_types']}
    tfile = controller.load_yaml(os.path.join(ROOT, 'awx', 'job_templates.yml'))
    templates = controller.render_vars(tfile['controller_templates'],
                                       {k: v for k, v in tfile.items() if k.startswith('tdeops_awx_')})
    template = next(t for t in templates if t['name'] == args.template)
    extra_vars = controller.launch_extra_vars(template, json.loads(args.answers))

    shutil.rmtree(args.work, ignore_errors=True)
    pdd = os.path.join(args.work, 'private_data_dir')
    os.makedirs(os.path.join(pdd, 'env'), mode=0o700)
    with open(os.path.join(pdd, 'env', 'extravars'), 'w', encoding='utf-8') as f:
        f.write(controller.safe_dump(extra_vars))

    env = job_env()
    cmdline: list[str] = []
    injected: dict[str, list[str]] = {}
    secret_values: dict[str, str] = {}
    input_sha1: dict[str, dict[str, str]] = {}
    for cred in credentials(args.pki):
        ct = types[cred['credential_type']]
        errors = controller.validate_credential_type(ct)
        if errors:
            print(f"credential type {ct['name']} refused: {errors}")
            return 1
        injected[cred['name']] = sorted(controller.inject_credential(ct, cred['inputs'], pdd, env, cmdline))
        for field in controller.secret_fields(ct):
            secret_values[f"{cred['name']}.{field}"] = cred['inputs'][field]
        # verify.yml compares what landed on the host with these, without seeing the values.
        input_sha1[cred['name']] = {k: hashlib.sha1(v.encode()).hexdigest()  # noqa: S324
                                    for k, v in cred['inputs'].items()}

    started = time.monotonic()
    run = ansible_runner.run(
        private_data_dir=pdd,
        project_dir=ROOT,
        playbook=template['playbook'],
        inventory=args.inventory,
        limit=args.limit or None,
        cmdline=shlex.join(cmdline),
        envvars=env,
        quiet=True,
        ident='job',
    )
    stdout = run.stdout.read()
    events = list(run.events)
    artifacts = os.path.join(pdd, 'artifacts', 'job')
    leaks = controller.find_secrets([artifacts], {'stdout': stdout, 'events': json.dumps(events)},
                                    secret_values)
    result = {
        'template': template['name'],
        'playbook': template['playbook'],
        'status': run.status,
        'rc': run.rc,
        'stats': run.stats,
        'extra_vars': sorted(extra_vars),
        'injected': injected,
        'secrets_checked': sorted(secret_values),
        'seconds': round(time.monotonic() - started),
        'events': len(events),
        'leaks': leaks,
        'input_sha1': input_sha1,
        'deprecations': sorted({line.strip() for line in stdout.splitlines() if 'DEPRECATION' in line}),
    }
    with open(os.path.join(args.work, 'result.json'), 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != 'input_sha1'}, indent=2))
    if run.status != 'successful':
        print(stdout[-6000:])
    return 0 if run.status == 'successful' and not leaks else 1


if __name__ == '__main__':
    sys.exit(main())
