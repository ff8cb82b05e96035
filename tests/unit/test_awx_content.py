"""The controller content in awx/ as AWX / Automation Platform would take it: credential types
that the API accepts and whose injected extra vars are exactly options of the roles (secret inputs
only into no_log options), job templates whose playbooks exist and read every survey variable,
surveys the API accepts and can launch with, and an execution environment definition that points
at files that exist. molecule/awx runs a job built from these on a real pg_tde host."""
from __future__ import annotations

import glob
import os
import re

import pytest
import yaml

from tests.support import controller

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AWX = os.path.join(ROOT, 'awx')
CREDENTIAL_TYPES = controller.load_yaml(os.path.join(AWX, 'credential_types.yml'))['controller_credential_types']
_TEMPLATES_FILE = controller.load_yaml(os.path.join(AWX, 'job_templates.yml'))
TEMPLATES = controller.render_vars(
    _TEMPLATES_FILE['controller_templates'],
    {k: v for k, v in _TEMPLATES_FILE.items() if k.startswith('tdeops_awx_')})
PEM = '-----BEGIN TEST-----\nMIIBszCCAVmgAwIBAgIUQ2xpZW50IGtleSBib2R5IGxpbmUx\n-----END TEST-----\n'


def _role_options() -> dict[str, dict]:
    """Every option of every entry point of every role: name -> spec."""
    options: dict[str, dict] = {}
    for path in glob.glob(os.path.join(ROOT, 'roles', '*', 'meta', 'argument_specs.yml')):
        with open(path, encoding='utf-8') as f:
            for entry in yaml.safe_load(f)['argument_specs'].values():
                for name, spec in (entry.get('options') or {}).items():
                    options.setdefault(name, {}).update(spec)
    return options


OPTIONS = _role_options()


def _ids(items):
    return [i['name'] for i in items]


@pytest.mark.parametrize('ct', CREDENTIAL_TYPES, ids=_ids(CREDENTIAL_TYPES))
def test_credential_type_is_accepted_by_the_controller(ct):
    assert controller.validate_credential_type(ct) == []


@pytest.mark.parametrize('ct', CREDENTIAL_TYPES, ids=_ids(CREDENTIAL_TYPES))
def test_injected_extra_vars_are_role_options(ct):
    secret = set(controller.secret_fields(ct))
    for var, template in ct['injectors']['extra_vars'].items():
        assert var in OPTIONS, f'{ct["name"]} injects {var}, which no role reads (meta/argument_specs.yml)'
        used = set(re.findall(r'{{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*}}', template))
        if used & secret:
            assert OPTIONS[var].get('no_log') is True, f'{var} carries a secret but is not no_log'


@pytest.mark.parametrize('ct', CREDENTIAL_TYPES, ids=_ids(CREDENTIAL_TYPES))
def test_every_input_reaches_the_job_and_secret_fields_are_marked(ct, tmp_path):
    fields = ct['inputs']['fields']
    inputs = {f['id']: PEM if f.get('multiline') else f'value-of-{f["id"]}' for f in fields}
    env: dict[str, str] = {}
    args: list[str] = []
    extra_vars = controller.inject_credential(ct, inputs, str(tmp_path), env, args)
    assert set(extra_vars) == set(ct['injectors']['extra_vars'])
    assert args[0] == '-e' and args[1].startswith('@')
    with open(args[1][1:], encoding='utf-8') as f:
        text = f.read()
    assert text.count('!unsafe') == 2 * len(extra_vars)     # keys and values, as the controller writes
    assert controller.load_yaml(args[1][1:]) == extra_vars
    # Each input ends up in the job: as an extra var value or in a file an extra var points at.
    delivered = list(extra_vars.values())
    for value in extra_vars.values():
        if os.path.isfile(value):
            assert oct(os.stat(value).st_mode & 0o777) == '0o660'
            with open(value, encoding='utf-8') as f:
                delivered.append(f.read())
    for name, value in inputs.items():
        assert value in delivered, f'input {name} does not reach the job'
    # Keys, tokens and passphrases are secret fields (the controller encrypts them, shows ****).
    for f in fields:
        if re.search(r'key|token|pass|secret', f['id']) and not f['id'].endswith(('_ca', '_cert')):
            assert f.get('secret') is True, f'{ct["name"]}: {f["id"]} should be secret'


def test_credential_types_cover_the_secrets_of_the_roles():
    injected = {v for ct in CREDENTIAL_TYPES for v in ct['injectors']['extra_vars']}
    assert {'certificates_kmip_ca_src', 'certificates_kmip_cert_src', 'certificates_kmip_key_src',
            'certificates_vault_token', 'pgbackrest_cipher_pass', 'pgbackrest_repo_s3_key',
            'pgbackrest_repo_s3_key_secret'} <= injected


@pytest.mark.parametrize('template', TEMPLATES, ids=_ids(TEMPLATES))
def test_job_template_playbook_and_survey(template):
    playbook = os.path.join(ROOT, template['playbook'])
    assert os.path.isfile(playbook), template['playbook']
    with open(playbook, encoding='utf-8') as f:
        text = f.read()
    assert template['survey_enabled'] is True
    assert controller.validate_survey_spec(template['survey_spec']) == []
    for q in template['survey_spec']['spec']:
        assert re.search(r'\b%s\b' % re.escape(q['variable']), text), (
            f"{template['playbook']} does not read survey variable {q['variable']}")
    assert all(isinstance(c, str) and c for c in template['credentials'])
    assert template['job_type'] in ('run', 'check')


@pytest.mark.parametrize('template', TEMPLATES, ids=_ids(TEMPLATES))
def test_job_template_launches_with_its_defaults(template):
    required_without_default = [q['variable'] for q in template['survey_spec']['spec']
                                if q['required'] and 'default' not in q]
    answers = {v: 'appdb' for v in required_without_default}
    extra_vars = controller.launch_extra_vars(template, answers)
    for q in template['survey_spec']['spec']:
        if q['required']:
            assert q['variable'] in extra_vars
    if required_without_default:
        with pytest.raises(ValueError):
            controller.launch_extra_vars(template)


def test_site_template_carries_the_kms_credentials():
    site = next(t for t in TEMPLATES if t['playbook'] == 'playbooks/site.yml')
    assert 'pg_tde KMIP client' in site['credentials']
    assert {'playbooks/site.yml', 'playbooks/rotate_keys.yml', 'playbooks/encrypt_tables.yml',
            'playbooks/backup.yml', 'playbooks/restore_drill.yml'} <= {t['playbook'] for t in TEMPLATES}


def test_survey_answers_are_checked_like_the_controller():
    rotate = next(t for t in TEMPLATES if t['playbook'] == 'playbooks/rotate_keys.yml')
    assert controller.launch_extra_vars(rotate, {'rotate_keys_targets': ['server']})['rotate_keys_targets'] == ['server']
    with pytest.raises(ValueError):
        controller.launch_extra_vars(rotate, {'rotate_keys_targets': ['everything']})
    with pytest.raises(ValueError):
        controller.launch_extra_vars(rotate, {'rotate_keys_serial': 0})
    # A multiselect default is a newline-separated string: the controller drops it at an API
    # launch, so the play's own default (all three targets) applies.
    assert 'rotate_keys_targets' not in controller.launch_extra_vars(rotate)


def test_execution_environment_definitions():
    meta = yaml.safe_load(open(os.path.join(ROOT, 'meta', 'execution-environment.yml'), encoding='utf-8'))
    assert meta['version'] == 1
    for kind in ('python', 'system'):
        assert os.path.isfile(os.path.join(ROOT, meta['dependencies'][kind])), meta['dependencies'][kind]
    sample = yaml.safe_load(open(os.path.join(AWX, 'execution-environment.yml'), encoding='utf-8'))
    assert sample['version'] == 3
    galaxy = yaml.safe_load(open(os.path.join(AWX, sample['dependencies']['galaxy']), encoding='utf-8'))
    assert [c['name'] for c in galaxy['collections']] == ['tdeops.pg_tde']


@pytest.mark.parametrize('doc', ['README.md', 'docs/awx.md'])
def test_docs_name_only_role_variables_that_exist(doc):
    with open(os.path.join(ROOT, doc), encoding='utf-8') as f:
        text = f.read()
    prefixes = ('certificates_', 'pgbackrest_', 'configure_', 'install_', 'hardening_', 'pg_layout_', 'lab_kms_')
    groups = {'pgbackrest_repo'}    # inventory groups the playbooks use, not variables
    named = {m for m in re.findall(r'`([a-z][a-z0-9_]+)`', text) if m.startswith(prefixes)} - groups
    unknown = sorted(n for n in named if n not in OPTIONS)
    assert not unknown, f'{doc} names variables no role has: {unknown}'


def test_secret_scan_finds_pem_lines():
    found = controller.find_secrets([], {'stdout': 'ok MIIBszCCAVmgAwIBAgIUQ2xpZW50IGtleSBib2R5IGxpbmUx'},
                                    {'key': PEM})
    assert found == ['key in stdout']
    assert controller.find_secrets([], {'stdout': 'nothing here'}, {'key': PEM}) == []


def test_controller_rendering_of_env_single_file_and_booleans(tmp_path):
    """The emulation itself: env injectors, the single-file tower.filename form, boolean fields
    that default to False, and the API's refusals."""
    ct = {'name': 't', 'kind': 'cloud',
          'inputs': {'fields': [{'id': 'token', 'label': 'Token', 'secret': True},
                                {'id': 'verify', 'label': 'Verify', 'type': 'boolean'}]},
          'injectors': {'file': {'template': '[auth]\ntoken={{ token }}\n'},
                        'env': {'TDEOPS_TOKEN_FILE': '{{ tower.filename }}'},
                        'extra_vars': {'tdeops_verify': '{{ verify }}', 'tdeops_file': '{{ tower.filename }}'}}}
    assert controller.validate_credential_type(ct) == []
    env: dict[str, str] = {}
    args: list[str] = []
    extra_vars = controller.inject_credential(ct, {'token': 's3cr3t'}, str(tmp_path), env, args)
    assert extra_vars['tdeops_verify'] == 'False'           # a missing boolean renders as False
    assert env['TDEOPS_TOKEN_FILE'] == extra_vars['tdeops_file']
    with open(env['TDEOPS_TOKEN_FILE'], encoding='utf-8') as f:
        # Jinja drops the template's own last newline (the controller's sandbox does the same);
        # a newline inside an input value (a PEM) stays.
        assert f.read() == '[auth]\ntoken=s3cr3t'
    refused = [
        dict(ct, injectors={'env': {'ANSIBLE_CONFIG': '{{ token }}'}}),
        dict(ct, injectors={'extra_vars': {'x': '{{ undefined_field }}'}}),
        dict(ct, injectors={'file': {'template': 'a', 'template.b': 'b'}}),
        dict(ct, injectors={'extra_vars': {'x': '{{ tower }}'}}),
        dict(ct, kind='ssh'),
        dict(ct, inputs={'fields': [{'id': 'tower', 'label': 'x'}]}),
    ]
    for bad in refused:
        assert controller.validate_credential_type(bad), bad
