"""Unit tests of the verify_function filter: the modules' map, and a clear error otherwise."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.tdeops.pg_tde.plugins.filter import keys
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import VERIFY_FUNCTION


def test_verify_function_is_the_modules_map():
    assert {k: keys.verify_function(k) for k in VERIFY_FUNCTION} == VERIFY_FUNCTION
    assert keys.verify_function('server') == 'pg_tde_verify_server_key'


def test_verify_function_refuses_other_kinds():
    with pytest.raises(AnsibleFilterError, match='"wal" is not a key kind'):
        keys.verify_function('wal')
