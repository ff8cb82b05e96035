"""The roles' nested provider and database-key options (meta/argument_specs.yml) and
pg_tde_config_check agree, and the check, not the argument-spec engine, answers for every entry.

The engine names only the list ("value of type must be one of: kmip, vault_v2, file, got: kmpi found
in configure_providers"): no index, no fix. So these lists are declared `elements: raw` (the engine
then leaves the entries alone) while their `options` stay as documentation, and every choice,
required option, type and unknown option of an entry is answered by the check as
`<var>[<index>].<option>: <problem> Fix: <fix>`."""
from __future__ import annotations

import os

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.tdeops.pg_tde.plugins.module_utils._config_check import (
    DATABASE_KEY_OPTIONS,
    PROVIDER_COMMON,
    PROVIDER_OPTIONAL,
    PROVIDER_REQUIRED,
    config_problems,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))

# (role, variable, config key of pg_tde_config_check)
CHECKED = [
    ('configure', 'configure_providers', 'providers'),
    ('configure', 'configure_database_keys', 'database_keys'),
    ('patroni', 'patroni_providers', 'providers'),
]
OPTIONS = {
    'providers': set(PROVIDER_COMMON) | {o for names in PROVIDER_REQUIRED.values() for o in names}
    | {o for names in PROVIDER_OPTIONAL.values() for o in names},
    'database_keys': set(DATABASE_KEY_OPTIONS),
}
# A valid entry of each list (a provider of each type), which the cases below spoil one option at a time.
PROVIDERS = {
    'kmip': {'name': 'kms', 'type': 'kmip', 'kmip_host': 'kms.example.com', 'kmip_cert': '/etc/pg_tde/c.crt',
             'kmip_key': '/etc/pg_tde/c.key', 'kmip_ca': '/etc/pg_tde/ca.crt'},
    'vault_v2': {'name': 'kms', 'type': 'vault_v2', 'vault_url': 'https://v:8200', 'vault_token_path': '/etc/t'},
    'file': {'name': 'kms', 'type': 'file', 'file_path': '/var/lib/postgresql/k.per'},
}
DATABASE_KEY = {'name': 'appkey', 'provider': 'kms', 'databases': ['postgres']}
# Values the engine's types would refuse, per type.
NOT_OF_TYPE = {'int': 'abc', 'bool': 'maybe'}
_DROP = object()   # an option left out of the entry


def _spec(role):
    with open(os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml'), encoding='utf-8') as f:
        return yaml.safe_load(f)['argument_specs']['main']['options']


def _entry(key, **changes):
    base = dict(PROVIDERS.get(changes.get('type'), PROVIDERS['file']) if key == 'providers' else DATABASE_KEY)
    if key == 'providers' and changes.get('scope') == 'database':
        base['database'] = 'postgres'
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


def _problems(var, key, entry):
    """The problems of a configuration holding `entry` at index 0 (the inputs alone, no server)."""
    config = {'providers': [PROVIDERS['file']], 'extension_databases': ['postgres'], 'login_db': 'postgres'}
    config[key] = [entry]
    return {p.path: p for p in config_problems(config, {}, var[:-len(key)])}


def _engine_errors(role, var, entry):
    errors = ArgumentSpecValidator(_spec(role)).validate({var: [entry]}).errors
    return [str(e) for e in errors if var in str(e)]   # not the role's other required variables


def _nested_cases():
    """(role, var, key, option, spec of the option) of every nested option of the checked lists."""
    for role, var, key in CHECKED:
        for option, spec in _spec(role)[var]['options'].items():
            yield role, var, key, option, spec


NESTED = list(_nested_cases())
IDS = ['%s.%s' % (c[1], c[3]) for c in NESTED]


@pytest.mark.parametrize('role,var,key', CHECKED)
def test_the_list_leaves_its_entries_to_the_check(role, var, key):
    spec = _spec(role)[var]
    assert spec['type'] == 'list' and spec['elements'] == 'raw', (
        '%s: elements must stay raw; with dict the engine answers first and names no index' % var)
    assert set(spec['options']) == OPTIONS[key], (
        '%s documents %s, pg_tde_config_check checks %s' % (var, sorted(spec['options']), sorted(OPTIONS[key])))


@pytest.mark.parametrize('role,var,key,option,spec', [c for c in NESTED if 'choices' in c[4]],
                         ids=[i for i, c in zip(IDS, NESTED) if 'choices' in c[4]])
def test_each_documented_choice_is_accepted_and_any_other_value_named_by_index(role, var, key, option, spec):
    path = '%s[0].%s' % (var, option)
    for choice in spec['choices']:
        assert path not in _problems(var, key, _entry(key, **{option: choice})), (path, choice)
    entry = _entry(key, **{option: 'bogus'})
    assert _engine_errors(role, var, entry) == [], 'the engine would answer first'
    problem = _problems(var, key, entry).get(path)
    assert problem, '%s: "bogus" not refused' % path
    assert str(problem).startswith('%s: is "bogus"' % path), str(problem)
    assert 'Fix: set it to one of %s' % ', '.join(spec['choices']) in str(problem), str(problem)


@pytest.mark.parametrize('role,var,key,option,spec', [c for c in NESTED if c[4].get('required')],
                         ids=[i for i, c in zip(IDS, NESTED) if c[4].get('required')])
def test_each_required_option_is_named_by_index_when_missing(role, var, key, option, spec):
    entry = _entry(key, **{option: _DROP})
    assert _engine_errors(role, var, entry) == [], 'the engine would answer first'
    problem = _problems(var, key, entry).get('%s[0].%s' % (var, option))
    assert problem and 'is missing' in problem.problem and problem.fix, problem


@pytest.mark.parametrize('role,var,key,option,spec', [c for c in NESTED if c[4].get('type') in NOT_OF_TYPE],
                         ids=[i for i, c in zip(IDS, NESTED) if c[4].get('type') in NOT_OF_TYPE])
def test_each_typed_option_is_named_by_index_when_not_of_its_type(role, var, key, option, spec):
    kind = {'kmip_port': 'kmip'}.get(option, 'file')
    entry = _entry(key, **({'type': kind} if key == 'providers' else {}))
    entry[option] = NOT_OF_TYPE[spec['type']]
    assert _engine_errors(role, var, entry) == [], 'the engine would answer first'
    problem = _problems(var, key, entry).get('%s[0].%s' % (var, option))
    assert problem and problem.fix, (option, _problems(var, key, entry))


@pytest.mark.parametrize('role,var,key', CHECKED)
def test_an_unknown_option_is_named_by_index_with_the_spelling(role, var, key):
    entry = _entry(key, nme='x')
    assert _engine_errors(role, var, entry) == [], 'the engine would answer first'
    problem = _problems(var, key, entry)['%s[0].nme' % var]
    assert 'not an option' in problem.problem and 'name' in problem.fix, problem


@pytest.mark.parametrize('role,var,key', CHECKED)
def test_a_valid_entry_passes_both(role, var, key):
    entry = _entry(key)
    assert _engine_errors(role, var, entry) == []
    assert _problems(var, key, entry) == {}


def test_the_kmpi_case_names_the_index_and_the_fix():
    entry = dict(PROVIDERS['file'], type='kmpi')
    assert _engine_errors('configure', 'configure_providers', entry) == []
    assert [str(p) for p in _problems('configure_providers', 'providers', entry).values()] == [
        'configure_providers[0].type: is "kmpi", which is not a pg_tde provider type. '
        'Fix: set it to one of kmip, vault_v2, file (did you mean "kmip"?).']
