"""The report filters and renderings: the fleet document matches docs/report.schema.json, the
Markdown summary and the HTML page carry what the auditor reads, and the page fetches nothing."""
from __future__ import annotations

import json
import os
import re

import jsonschema
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.tdeops.pg_tde.plugins.filter import report as flt
from ansible_collections.tdeops.pg_tde.plugins.module_utils import _report as r
from tests.unit import report_samples as s

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SCHEMA = os.path.join(ROOT, 'docs', 'report.schema.json')


def sample_fleet() -> dict:
    """Three hosts: compliant, one with gaps, an old key and a file keyring, one unreachable."""
    pol = r.effective_policy({})
    good = r.evaluate_host('db1', s.info(), s.facts(), pol, s.NOW, {'hardening': True, 'backup': True})
    inf = s.info(wal_encryption={'setting': 'off', 'pending_restart': False, 'server_key_set': True})
    inf['databases']['appdb']['unencrypted'] = [{'name': 'public.legacy', 'kind': 'table', 'bytes': 4 * 1024 * 1024},
                                                {'name': 'public.legacy_pkey', 'kind': 'index', 'bytes': 512 * 1024}]
    inf['principal_keys']['server']['key_creation_time'] = s.days_ago(420)
    inf['providers']['global'].append({'id': -2, 'name': 'labfile', 'type': 'file', 'scope': 'global',
                                       'options': {'path': '/var/lib/postgresql/keyring.per'}})
    bad = r.evaluate_host('db2', inf, s.facts(), pol, s.NOW, {'hardening': False, 'backup': True})
    return flt.fleet_report({'db1': {'report': good, 'changed': False}, 'db2': bad, 'db3': None},
                            ['db1', 'db2', 'db3'], {}, s.NOW.isoformat(),
                            {'name': 'tdeops.pg_tde.report', 'collection_version': '0.1.0'})


def test_fleet_document_matches_the_schema():
    with open(SCHEMA) as fh:
        schema = json.load(fh)
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = sample_fleet()
    # through JSON, as the playbook writes it
    jsonschema.validate(json.loads(json.dumps(doc)), schema)
    assert doc['summary']['hosts_by_status'] == {'pass': 1, 'warn': 0, 'fail': 1, 'error': 1}
    assert doc['hosts'][2]['error'].startswith('no report from this host')


def test_schema_lists_every_policy_setting():
    with open(SCHEMA) as fh:
        schema = json.load(fh)
    assert set(schema['$defs']['policy']['required']) == set(r.DEFAULT_POLICY)
    assert schema['properties']['schema_version']['pattern'].startswith('^' + r.SCHEMA_VERSION.split('.', maxsplit=1)[0])


def test_markdown_summary():
    md = flt.report_markdown(sample_fleet())
    assert md.startswith('# pg_tde compliance report')
    assert 'Fleet status: **ERROR**' in md
    assert '| db2 | FAIL |' in md and '| db3 | ERROR |' in md
    assert '`wal_encryption_off`' in md and '`key_too_old`' in md and 'public.legacy' in md
    assert 'sequences and pg_statistic' in md


def test_html_page_is_self_contained():
    page = flt.report_html(sample_fleet())
    assert page.startswith('<!DOCTYPE html>')
    assert page.count('<svg') == 2
    # nothing is fetched: no src/href attributes, no CSS url() or @import (the SVG namespace is a name)
    assert not re.search(r'\s(src|href)\s*=', page)
    assert 'url(' not in page and '@import' not in page
    assert re.findall(r'https?://[^"\s<]+', page) == ['http://www.w3.org/2000/svg'] * 2
    assert 'file keyring: not for production' in page


def test_html_escapes_what_it_shows():
    doc = sample_fleet()
    doc['hosts'][0]['host'] = '<script>alert(1)</script>'
    page = flt.report_html(doc)
    assert '<script>' not in page and '&lt;script&gt;' in page


def test_gate_filter():
    doc = sample_fleet()
    assert flt.report_gate(doc, 'none') == []
    assert any('[wal_encryption_off]' in line for line in flt.report_gate(doc, 'violation'))
    with pytest.raises(AnsibleFilterError, match='report_fail_on must be'):
        flt.report_gate(doc, 'sometimes')


def test_fleet_filter_refuses_a_bad_policy():
    with pytest.raises(AnsibleFilterError, match='report_policy.max_key_age_days'):
        flt.fleet_report({}, [], {'max_key_age_days': 'old'})
