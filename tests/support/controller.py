"""What AWX / Automation Platform does with the collection's controller content, for tests.

The rules follow the controller's source (ansible/awx: awx/main/fields.py CredentialTypeInputField
and CredentialTypeInjectorField, awx/main/models/credential CredentialType.inject_credential,
awx/main/utils/safe_yaml.safe_dump, awx/main/models/mixins SurveyJobTemplateMixin, the survey
spec checks of the job template API), written again here, without the Django parts:

- a credential type's inputs and injectors are validated as the API validates them on save;
- at launch the injectors are rendered with a sandboxed Jinja environment over the credential's
  inputs: `file` templates become files in <private_data_dir>/env (the `tower.filename`
  namespace), `env` templates environment variables, `extra_vars` templates a YAML file whose
  strings are all tagged !unsafe and which is passed as `-e @file`;
- survey specs are validated as on save, and the launch extra vars are the template's extra vars,
  then the survey defaults that pass the question's checks, then the answers.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from typing import Any

import jinja2
import yaml
from jinja2 import sandbox
from jinja2.nativetypes import NativeEnvironment

_NAME = re.compile(r'^[a-zA-Z_]+[a-zA-Z0-9_]*$')
_FILE_LABEL = re.compile(r'^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$')
_FIELD_KEYS = {'id', 'label', 'type', 'format', 'choices', 'help_text', 'multiline', 'secret',
               'ask_at_runtime', 'default'}
# Environment variables the controller refuses in injectors (besides every ANSIBLE_* one).
_ENV_BLOCKLIST = {'JOB_ID', 'INVENTORY_ID', 'INVENTORY_SOURCE_ID', 'INVENTORY_UPDATE_ID',
                  'AD_HOC_COMMAND_ID', 'REST_API_URL', 'REST_API_TOKEN', 'MAX_EVENT_RES',
                  'CALLBACK_QUEUE', 'CALLBACK_CONNECTION', 'CACHE', 'JOB_CALLBACK_DEBUG',
                  'INVENTORY_HOSTVARS', 'AWX_HOST', 'PROJECT_REVISION', 'SUPERVISOR_CONFIG_PATH'}
SURVEY_TYPES = {'text': str, 'textarea': str, 'password': str, 'multiplechoice': str,
                'multiselect': str, 'integer': int, 'float': (float, int)}


# --- YAML as the controller content files are written (infra.controller_configuration) --------

class _Loader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's !unsafe tag as a plain string (what the API receives)."""


_Loader.add_constructor('!unsafe', lambda loader, node: loader.construct_scalar(node))


def load_yaml(path: str) -> Any:
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def render_vars(data: Any, variables: dict[str, Any]) -> Any:
    """Template the Jinja expressions of a vars file (as Ansible does when a role reads them)."""
    env = NativeEnvironment(undefined=jinja2.StrictUndefined)
    if isinstance(data, dict):
        return {k: render_vars(v, variables) for k, v in data.items()}
    if isinstance(data, list):
        return [render_vars(v, variables) for v in data]
    if isinstance(data, str) and ('{{' in data or '{%' in data):
        return env.from_string(data).render(**variables)
    return data


# --- credential types ----------------------------------------------------------------------------

def validate_credential_type(ct: dict[str, Any]) -> list[str]:
    """Errors the controller's API would give when this credential type is saved."""
    errors: list[str] = []
    for key in ('name', 'kind', 'inputs', 'injectors'):
        if key not in ct:
            errors.append(f'{key} missing')
    if ct.get('kind') not in ('cloud', 'net'):
        errors.append(f"kind {ct.get('kind')!r}: custom credential types are cloud or net")
    inputs = ct.get('inputs') or {}
    if set(inputs) - {'fields', 'required'}:
        errors.append(f'inputs: unknown keys {sorted(set(inputs) - {"fields", "required"})}')
    ids: list[str] = []
    for field in inputs.get('fields', []):
        if set(field) - _FIELD_KEYS:
            errors.append(f"field {field.get('id')}: unknown keys {sorted(set(field) - _FIELD_KEYS)}")
        if not {'id', 'label'} <= set(field):
            errors.append(f'field {field}: id and label are required')
            continue
        if not _NAME.match(field['id']):
            errors.append(f"{field['id']} is an invalid variable name")
        if field['id'] == 'tower' or field['id'] in ids:
            errors.append(f"field id {field['id']} is reserved or not unique")
        ids.append(field['id'])
        ftype = field.get('type', 'string')
        if ftype not in ('string', 'boolean'):
            errors.append(f"field {field['id']}: type {ftype}")
        if ftype != 'string' and set(field) & {'choices', 'multiline', 'format', 'secret'}:
            errors.append(f"field {field['id']}: choices/multiline/format/secret only for strings")
        if 'format' in field and field['format'] not in ('ssh_private_key', 'url'):
            errors.append(f"field {field['id']}: format {field['format']}")
    for name in inputs.get('required', []):
        if name not in ids:
            errors.append(f'required {name} is not a field')
    injectors = ct.get('injectors') or {}
    if set(injectors) - {'file', 'env', 'extra_vars'}:
        errors.append(f'injectors: unknown keys {sorted(set(injectors) - {"file", "env", "extra_vars"})}')
    for label in injectors.get('file', {}):
        if not _FILE_LABEL.match(label):
            errors.append(f'file injector {label}: must be template or template.<name>')
    labels = list(injectors.get('file', {}))
    if 'template' in labels and len(labels) > 1:
        errors.append('must use multi-file syntax when injecting multiple files')
    for var in injectors.get('env', {}):
        if not _NAME.match(var) or var.startswith('ANSIBLE_') or var in _ENV_BLOCKLIST:
            errors.append(f'env injector {var} is not allowed')
    for var in injectors.get('extra_vars', {}):
        if not _NAME.match(var):
            errors.append(f'extra_vars injector {var} is an invalid variable name')
    # Every template may use the defined fields and tower.filename(.<label>) only: `tower` itself
    # and `tower.filename` without an unnamed file injector do not render.
    class _Exploding:
        def __str__(self):
            raise jinja2.UndefinedError('Must define unnamed file injector in order to reference `tower.filename`.')

    class _Tower:
        def __init__(self):
            self.filename: Any = _Exploding()

        def __str__(self):
            raise jinja2.UndefinedError('Cannot directly reference reserved `tower` namespace container.')

    namespace: dict[str, Any] = {i: 'EXAMPLE' for i in ids}
    namespace['tower'] = _Tower()
    if 'template' in labels:
        namespace['tower'].filename = 'EXAMPLE_FILENAME'
    else:
        for label in labels:
            setattr(namespace['tower'].filename, label.split('.', 1)[1], 'EXAMPLE_FILENAME')
    strict = sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    for kind, templates in injectors.items():
        for key, template in templates.items():
            if not isinstance(template, str):
                errors.append(f'{kind}.{key}: template must be a string')
                continue
            try:
                strict.from_string(template).render(**namespace)
            except jinja2.UndefinedError as exc:
                errors.append(f'{kind}.{key} uses an undefined field ({exc})')
            except jinja2.TemplateError as exc:
                errors.append(f'{kind}.{key}: {exc}')
    return errors


def secret_fields(ct: dict[str, Any]) -> list[str]:
    return [f['id'] for f in ct['inputs'].get('fields', []) if f.get('secret') is True]


def safe_dump(data: dict[str, Any]) -> str:
    """YAML of the injected extra vars: every string (keys too) tagged !unsafe."""

    class _Dumper(yaml.SafeDumper):
        def represent_data(self, value):
            if isinstance(value, str):
                return self.represent_scalar('!unsafe', value)
            return super().represent_data(value)

    return ''.join(yaml.dump_all([{k: v}], None, Dumper=_Dumper, default_flow_style=False)
                   for k, v in data.items())


def inject_credential(ct: dict[str, Any], inputs: dict[str, Any], private_data_dir: str,
                      env: dict[str, str], args: list[str]) -> dict[str, Any]:
    """Render the injectors at job launch; returns the rendered extra vars (also written to a
    0440 file in <private_data_dir>/env that `args` passes with -e @file)."""
    tower: Any = type('Tower', (), {})()
    namespace: dict[str, Any] = {'tower': tower}
    for name, value in inputs.items():
        if isinstance(value, bool) or len(value):
            namespace[name] = value
    for field in ct['inputs'].get('fields', []):
        if field.get('type') == 'boolean' and field['id'] not in inputs:
            namespace[field['id']] = False
        if field.get('format') == 'ssh_private_key' and field['id'] in namespace \
                and not namespace[field['id']].endswith('\n'):
            namespace[field['id']] += '\n'
    sandbox_env = sandbox.ImmutableSandboxedEnvironment()
    env_dir = os.path.join(private_data_dir, 'env')
    os.makedirs(env_dir, exist_ok=True)
    for label, template in ct['injectors'].get('file', {}).items():
        data = sandbox_env.from_string(template).render(**namespace)
        fd, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(fd, 'w') as f:
            f.write(data)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)
        if '.' not in label:
            tower.filename = path
        else:
            if not hasattr(tower, 'filename'):
                tower.filename = type('Files', (), {})()
            setattr(tower.filename, label.split('.', 1)[1], path)
    for var, template in ct['injectors'].get('env', {}).items():
        env[var] = sandbox_env.from_string(template).render(**namespace)
    extra_vars = {var: sandbox_env.from_string(template).render(**namespace)
                  for var, template in ct['injectors'].get('extra_vars', {}).items()}
    if extra_vars:
        fd, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(fd, 'w') as f:
            f.write(safe_dump(extra_vars))
        os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
        args.extend(['-e', '@' + path])
    return extra_vars


# --- job templates and surveys -------------------------------------------------------------------

def _choices(question: dict[str, Any]) -> list[str]:
    choices = question.get('choices', [])
    if isinstance(choices, str):
        choices = [c for c in choices.splitlines() if c.strip()]
    return list(choices)


def validate_survey_spec(spec: dict[str, Any]) -> list[str]:
    """Errors the controller's API gives when the survey spec is saved."""
    errors = []
    for key, kind in (('name', str), ('description', str), ('spec', list)):
        if not isinstance(spec.get(key), kind):
            errors.append(f'survey spec: {key} missing or not a {kind.__name__}')
    if errors:
        return errors
    if not spec['spec']:
        errors.append("'spec' doesn't contain any items")
    seen = set()
    for idx, q in enumerate(spec['spec']):
        for key in ('type', 'question_name', 'variable', 'required'):
            if key not in q:
                errors.append(f"'{key}' missing from survey question {idx}")
        if errors:
            continue
        if not isinstance(q['required'], bool):
            errors.append(f'question {idx}: required must be a boolean')
        if q['variable'] in seen:
            errors.append(f"variable {q['variable']} duplicated in survey question {idx}")
        seen.add(q['variable'])
        if q['type'] not in SURVEY_TYPES:
            errors.append(f"question {idx}: type {q['type']} is not allowed")
            continue
        if 'default' in q and not isinstance(q['default'], SURVEY_TYPES[q['type']]):
            errors.append(f"question {idx}: default {q['default']!r} has the wrong type")
        for key in ('min', 'max'):
            if key in q and q[key] is not None and not isinstance(q[key], int):
                errors.append(f'question {idx}: {key} must be an integer')
        if q['type'] in ('multiplechoice', 'multiselect') and 'choices' not in q:
            errors.append(f'question {idx}: {q["type"]} needs choices')
    return errors


def survey_element_errors(q: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """One question's checks of a value at launch (the controller's _survey_element_validation)."""
    var = q['variable']
    if var not in data:
        return [f"'{var}' value missing"] if q['required'] else []
    value = data[var]
    kind = q['type']
    errors = []
    if kind in ('text', 'textarea', 'password'):
        if not isinstance(value, str):
            return [f'{var}: a string is expected']
        if q.get('min') not in ('', None) and len(value) < int(q['min']):
            errors.append(f'{var}: shorter than {q["min"]}')
        if q.get('max') not in ('', None) and len(value) > int(q['max']):
            errors.append(f'{var}: longer than {q["max"]}')
    elif kind in ('integer', 'float'):
        if type(value) not in ((int,) if kind == 'integer' else (int, float)):  # noqa: E721
            return [f'{var}: a number is expected']
        if q.get('min') not in ('', None) and value < q['min']:
            errors.append(f'{var}: below {q["min"]}')
        if q.get('max') not in ('', None) and value > q['max']:
            errors.append(f'{var}: above {q["max"]}')
    elif kind == 'multiselect':
        if not isinstance(value, list):
            errors.append(f'{var}: a list is expected')
        else:
            errors += [f'{var}: {v} is not a choice' for v in value if v not in _choices(q)]
    elif kind == 'multiplechoice' and value not in _choices(q):
        errors.append(f'{var}: {value} is not a choice')
    return errors


def launch_extra_vars(template: dict[str, Any], answers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job's extra vars: template extra vars, valid survey defaults, then the answers.
    Raises ValueError when the launch would be refused (missing or invalid answers)."""
    answers = dict(answers or {})
    extra_vars = dict(template.get('extra_vars') or {})
    spec = template.get('survey_spec') or {}
    if template.get('survey_enabled') and spec.get('spec'):
        defaults = {q['variable']: q['default'] for q in spec['spec']
                    if q.get('default') is not None
                    and not survey_element_errors(q, {q['variable']: q['default']})}
        extra_vars.update(defaults)
        errors = [e for q in spec['spec'] for e in survey_element_errors(q, {**defaults, **answers})]
        if errors:
            raise ValueError('; '.join(errors))
    extra_vars.update(answers)
    return extra_vars


# --- what a job's output must not contain ---------------------------------------------------------

def secret_needles(secret: str) -> list[str]:
    """Strings whose presence in job output means the secret leaked: the value, the value with
    JSON-escaped newlines, and every long line of a multi-line value (a PEM body)."""
    needles = {secret, secret.replace('\n', '\\n')}
    for line in secret.splitlines():
        line = line.strip()
        if len(line) >= 16 and not line.startswith('-----'):
            needles.add(line)
    return sorted(n for n in needles if n)


def find_secrets(paths: list[str], texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """Names of secrets (with where) found in files under `paths` or in the given texts."""
    found = []
    blobs = dict(texts)
    for root in paths:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                with open(path, 'rb') as f:
                    blobs[path] = f.read().decode('utf-8', 'replace')
    for secret_name, value in secrets.items():
        for needle in secret_needles(value):
            for where, blob in blobs.items():
                if needle in blob:
                    found.append(f'{secret_name} in {where}')
    return sorted(set(found))
