"""The include file of the configure role (module_utils/_settings.py, module pg_tde_conf)."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _settings as S


def test_merged_preload_parses_once_and_strips_quotes():
    # quoted entries (postgresql.conf allows them) must not be taken for other libraries
    assert S.merged_preload('"pg_stat_statements", percona_pg_telemetry') == [
        'pg_tde', 'pg_stat_statements', 'percona_pg_telemetry']
    assert S.merged_preload('pg_stat_statements', 'last') == ['pg_stat_statements', 'pg_tde']
    assert S.merged_preload('"pg_tde",a', 'last') == ['pg_tde', 'a']       # keeps the order it has
    assert S.merged_preload('', 'first', ['auto_explain', 'pg_tde']) == ['pg_tde', 'auto_explain']
    assert S.merged_preload(None) == ['pg_tde']


def test_pg_value():
    assert S.pg_value(True) == 'on' and S.pg_value(False) == 'off'
    assert S.pg_value(12) == '12' and S.pg_value(1.5) == '1.5'
    assert S.pg_value("it's") == "'it''s'"
    assert S.pg_value('aes_256') == "'aes_256'"


def test_refused_settings():
    assert S.refused_settings({'pg_tde.wal_encrypt': True, 'work_mem': '8MB'}) == ['pg_tde.wal_encrypt']


def test_render_is_the_former_template_text():
    text = S.render(['pg_tde', 'pg_stat_statements'], {'max_wal_senders': 12, 'pg_tde.cipher': 'aes_256'},
                    True, False, 'tde_heap', 'first')
    assert text == (
        '# Ansible managed\n'
        "# Written by the tdeops.pg_tde.configure role; edit the role's variables, not this file.\n"
        "# shared_preload_libraries is the server's own list with pg_tde added (first).\n"
        "shared_preload_libraries = 'pg_tde,pg_stat_statements'\n"
        'max_wal_senders = 12\n'
        "pg_tde.cipher = 'aes_256'\n"
        '# Switched on only once the server key is set and verified (wal_encrypt needs a restart,\n'
        '# enforce_encryption a reload).\n'
        'pg_tde.wal_encrypt = on\n'
        'pg_tde.enforce_encryption = off\n'
        '# New tables without USING are encrypted (configure_default_table_access_method).\n'
        "default_table_access_method = 'tde_heap'\n")
    assert 'default_table_access_method' not in S.render(['pg_tde'], {}, False, False, '', 'last')


def test_preload_restart_reason():
    assert S.preload_restart_reason('pg_tde, "pg_stat_statements"', ['pg_tde', 'pg_stat_statements']) is None
    assert S.preload_restart_reason('pg_stat_statements', ['pg_tde', 'pg_stat_statements']) == \
        'shared_preload_libraries (running: pg_stat_statements)'
