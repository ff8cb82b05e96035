"""What Galaxy, Automation Hub and the controller read from the collection, checked for every role
and module that exists (new ones included): READMEs, honest platforms, module attributes, action
groups that agree with meta/runtime.yml, versions and dependency ranges."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What the molecule scenarios and the integration tier run on (molecule/shared/images): a role
# claims no other platform in meta/main.yml; the README says what else is expected to work.
TESTED_PLATFORMS = {'Debian': {'bookworm'}}
ATTRIBUTES = ('check_mode', 'diff_mode', 'platform', 'action_group')


def _yaml(*path: str):
    with open(os.path.join(ROOT, *path), encoding='utf-8') as f:
        return yaml.safe_load(f)


GALAXY = _yaml('galaxy.yml')
RUNTIME = _yaml('meta', 'runtime.yml')
ROLES = sorted(d for d in os.listdir(os.path.join(ROOT, 'roles'))
               if os.path.isdir(os.path.join(ROOT, 'roles', d)))
MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, 'plugins', 'modules'))
                 if f.endswith('.py') and not f.startswith('_'))


@pytest.fixture(scope='module')
def module_docs() -> dict:
    """The modules' documentation as ansible-doc renders it (doc fragments merged)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.cache', 'collections'))
    ansible_doc = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')
    out = subprocess.run([ansible_doc, '--metadata-dump', '--no-fail-on-errors', 'tdeops.pg_tde'],
                         capture_output=True, text=True, env=env, check=True).stdout
    return {name.rsplit('.', 1)[1]: data['doc']
            for name, data in json.loads(out)['all']['module'].items()}


@pytest.mark.parametrize('role', ROLES)
def test_every_role_has_a_readme_and_an_argument_spec(role):
    # galaxy-importer refuses the whole collection for one role without README.md.
    readme = os.path.join(ROOT, 'roles', role, 'README.md')
    assert os.path.isfile(readme), f'roles/{role}/README.md is missing (Galaxy refuses the import)'
    with open(readme, encoding='utf-8') as f:
        assert len(f.read().strip()) > 200, f'roles/{role}/README.md says next to nothing'
    assert os.path.isfile(os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml'))


@pytest.mark.parametrize('role', ROLES)
def test_roles_claim_only_tested_platforms(role):
    info = _yaml('roles', role, 'meta', 'main.yml')['galaxy_info']
    claimed = {p['name']: set(map(str, p.get('versions', []))) for p in info.get('platforms', [])}
    assert claimed, f'roles/{role}/meta/main.yml lists no platform'
    for name, versions in claimed.items():
        assert name in TESTED_PLATFORMS and versions <= TESTED_PLATFORMS[name], (
            f'roles/{role}/meta/main.yml claims {name} {sorted(versions)}, but the tests run only on '
            f'{TESTED_PLATFORMS}; name other platforms in the README as expected to work, untested')
    wanted = RUNTIME['requires_ansible'].lstrip('>=')
    assert LooseVersion(str(info['min_ansible_version'])) >= LooseVersion('.'.join(wanted.split('.')[:2]))


@pytest.mark.parametrize('module', MODULES)
def test_modules_document_their_attributes(module, module_docs):
    attributes = module_docs[module].get('attributes', {})
    missing = [a for a in ATTRIBUTES if a not in attributes]
    assert not missing, f'{module} does not document attributes {missing} (tdeops.pg_tde.attributes fragments)'
    for name in ATTRIBUTES:
        assert attributes[name].get('support') in ('full', 'partial', 'none', 'N/A'), (module, name)
        assert attributes[name].get('description'), (module, name)


def test_action_groups_agree_with_runtime(module_docs):
    runtime = {m: {f'tdeops.pg_tde.{g}' for g, ms in RUNTIME['action_groups'].items() if m in ms}
               for m in MODULES}
    documented = {m: set(module_docs[m].get('attributes', {}).get('action_group', {}).get('membership', []))
                  for m in MODULES}
    assert documented == runtime
    listed = {m for ms in RUNTIME['action_groups'].values() for m in ms}
    assert listed <= set(MODULES), f'meta/runtime.yml lists modules that do not exist: {listed - set(MODULES)}'


@pytest.mark.parametrize('module', MODULES)
def test_version_added_is_released(module, module_docs):
    doc = module_docs[module]
    release = LooseVersion(GALAXY['version'])
    assert LooseVersion(str(doc['version_added'])) <= release, (module, doc['version_added'])
    for option, spec in doc.get('options', {}).items():
        if 'version_added' in spec:
            assert LooseVersion(str(spec['version_added'])) <= release, (module, option)


def test_release_is_at_least_1_0_0():
    # Certified content on Automation Hub starts at 1.0.0.
    assert LooseVersion(GALAXY['version']) >= LooseVersion('1.0.0')


@pytest.mark.parametrize('collection', sorted(GALAXY['dependencies']))
def test_dependencies_have_both_bounds(collection):
    spec = GALAXY['dependencies'][collection]
    assert '>=' in spec and '<' in spec.replace('<=', ''), (
        f'galaxy.yml: {collection} "{spec}" needs a lower and an upper bound')


def test_urls_are_not_placeholders():
    for key in ('repository', 'documentation', 'issues'):
        assert GALAXY.get(key, '').startswith('https://') and 'example' not in GALAXY[key], key


def _announced_objects() -> dict[str, set[str]]:
    """Roles and playbooks named in `add object.<type>` fragments or in released changelog data."""
    found: dict[str, set[str]] = {'role': set(), 'playbook': set()}
    frag_dir = os.path.join(ROOT, 'changelogs', 'fragments')
    for name in os.listdir(frag_dir):
        if name.endswith(('.yml', '.yaml')):
            data = _yaml('changelogs', 'fragments', name) or {}
            for kind in found:
                found[kind] |= {o['name'] for o in data.get(f'add object.{kind}', [])}
    releases = (_yaml('changelogs', 'changelog.yaml') or {}).get('releases') or {}
    for release in releases.values():
        for kind in found:
            found[kind] |= {o['name'] for o in (release.get('objects') or {}).get(kind, [])}
    return found


@pytest.mark.parametrize('kind,names', [
    ('role', ROLES),
    ('playbook', sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, 'playbooks')) if f.endswith('.yml'))),
])
def test_new_roles_and_playbooks_are_in_the_changelog(kind, names):
    # antsibull-changelog lists "New Roles" / "New Playbooks" only from `add object.<kind>` entries.
    missing = sorted(set(names) - _announced_objects()[kind])
    assert not missing, (f'no changelog fragment announces the {kind}(s) {missing}: add '
                         f'"add object.{kind}: [{{name: ..., description: ...}}]" to a fragment')
