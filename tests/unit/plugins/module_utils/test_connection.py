"""The libpq keywords built from the login_* options and error formatting."""
from __future__ import annotations

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
