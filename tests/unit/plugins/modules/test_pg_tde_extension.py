"""Unit test of pg_tde_extension's decision: which databases lack the extension."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.modules import pg_tde_extension as m


def test_missing_databases_in_order_once_each():
    has = {'postgres': True, 'appdb': False, 'template1': False}
    assert m.missing_databases(['appdb', 'postgres', 'template1', 'appdb'], has) == ['appdb', 'template1']
    assert m.missing_databases(['postgres'], has) == []
