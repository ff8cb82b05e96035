"""Knowledge that lives in one place only (issue 13): pg_tde's verify functions (the map in
module_utils/_pg_tde.py, the verify_function filter for task files), the SQLSTATE of an error
(_errors.sqlstate), the enforce_encryption refusal text (_errors.ENFORCE_REFUSED), and the
checksum of a table (pg_tde_checksum, not SQL written in a playbook)."""
from __future__ import annotations

import glob
import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def files(*patterns: str) -> list[str]:
    out: list[str] = []
    for pattern in patterns:
        out += glob.glob(os.path.join(ROOT, pattern), recursive=True)
    return sorted(out)


def code_lines(path: str):
    """Lines of a file without comments (YAML) and without the DOCUMENTATION strings (Python)."""
    text = open(path, encoding='utf-8').read()
    if path.endswith('.py'):
        text = re.sub(r"(DOCUMENTATION|EXAMPLES|RETURN) = r'''.*?'''", '', text, flags=re.S)
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith('#'):
            continue
        yield n, line


def test_verify_functions_are_named_in_one_place():
    allowed = {os.path.join(ROOT, 'plugins', 'module_utils', '_pg_tde.py')}
    hits = [(p, n) for p in files('plugins/**/*.py', 'roles/*/tasks/*.yml', 'playbooks/**/*.yml')
            if p not in allowed for n, line in code_lines(p) if re.search(r'pg_tde_verify_\w*key\(', line)
            or re.search(r"['\"]pg_tde_verify_\w*key['\"]", line)]
    assert hits == [], 'name the verify function through _pg_tde.VERIFY_FUNCTION or the verify_function filter: %s' % hits


def test_sqlstate_and_enforce_text_are_defined_once():
    defs = [p for p in files('plugins/**/*.py') for _n, line in code_lines(p) if re.match(r'def _?sqlstate\(', line)]
    assert defs == [os.path.join(ROOT, 'plugins', 'module_utils', '_errors.py')]
    texts = [p for p in files('plugins/**/*.py') for _n, line in code_lines(p)
             if 'only the tde_heap access method is allowed' in line]
    assert texts == [os.path.join(ROOT, 'plugins', 'module_utils', '_errors.py')]


def test_restore_drill_compares_with_the_modules_checksum():
    plays = yaml.safe_load(open(os.path.join(ROOT, 'playbooks', 'restore_drill.yml'), encoding='utf-8'))
    text = yaml.safe_dump(plays)
    assert 'md5(' not in text and 'FROM {{ item.table }}' not in text
    tasks = []

    def walk(items):
        for task in items or []:
            tasks.append(task)
            for key in ('block', 'rescue', 'always'):
                walk(task.get(key))
    for play in plays:
        walk(play.get('tasks'))
    sums = [t for t in tasks if t.get('name', '').startswith('Checksums on')]
    assert len(sums) == 2 and all('tdeops.pg_tde.pg_tde_checksum' in t for t in sums)
