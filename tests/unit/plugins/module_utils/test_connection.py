"""The libpq keywords built from the login_* options and error formatting."""
from __future__ import annotations

from types import SimpleNamespace

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _connection as c


def params(**kw):
    base = {k: v.get('default') for k, v in c.postgres_argument_spec().items()}
    base.update(kw)
    return base


def test_defaults_use_the_default_socket_and_postgres():
    kw = c.conninfo_kwargs(params())
    assert kw['user'] == 'postgres'
    assert kw['dbname'] == 'postgres'
    assert kw['port'] == 5432
    assert 'host' not in kw and 'password' not in kw


def test_unix_socket_wins_over_host():
    kw = c.conninfo_kwargs(params(login_host='db1', login_unix_socket='/run/pg'))
    assert kw['host'] == '/run/pg'


def test_database_argument_wins_over_login_db():
    assert c.conninfo_kwargs(params(login_db='a'), 'b')['dbname'] == 'b'


def test_password_ca_and_connect_params_pass_through():
    kw = c.conninfo_kwargs(params(login_password='s3cret', ca_cert='/ca.pem',
                                  connect_params={'connect_timeout': 3}))
    assert kw['password'] == 's3cret'
    assert kw['sslrootcert'] == '/ca.pem'
    assert kw['connect_timeout'] == 3


def test_login_password_is_no_log():
    assert c.postgres_argument_spec()['login_password']['no_log'] is True


def test_pg_error_text_has_sqlstate_and_hint():
    diag = SimpleNamespace(message_primary='key "k" does not exist', sqlstate='22023',
                           message_detail=None,
                           message_hint='Use pg_tde_create_key_using_global_key_provider() to create it.')
    exc = Exception('x')
    exc.diag = diag  # type: ignore[attr-defined]
    text = c.pg_error_text(exc)
    assert text.startswith('key "k" does not exist (SQLSTATE 22023)')
    assert 'HINT: Use pg_tde_create_key_using_global_key_provider()' in text


def test_pg_error_text_without_diag():
    assert c.pg_error_text(ValueError(' boom ')) == 'boom'
