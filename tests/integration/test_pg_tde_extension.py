"""pg_tde_extension through real ansible against PostgreSQL 17 with the real pg_tde: check mode,
create where missing, a no-op second run, and the refusal while pg_tde is not preloaded."""
from __future__ import annotations

import uuid

import pytest

from tests.support.ansible_runner import run_module

pytestmark = pytest.mark.slow


def has_ext(pg, db):
    return pg.psql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_tde'", db) == '1'


def test_create_where_missing_check_mode_and_noop(pg):
    fresh = pg.create_database('ext_%s' % uuid.uuid4().hex[:8])
    done = pg.create_database('ext_%s' % uuid.uuid4().hex[:8], extension=True)
    task = dict(pg.login_args(), databases=[done, fresh, fresh])
    planned = run_module('pg_tde_extension', task, check=True)
    assert planned['changed'] and planned['created'] == [fresh], planned.get('msg')
    assert not has_ext(pg, fresh)
    res = run_module('pg_tde_extension', task)
    assert res['changed'] and res['created'] == [fresh], res.get('msg')
    assert res['executed_queries'] == ['CREATE EXTENSION IF NOT EXISTS pg_tde CASCADE (database %s)' % fresh]
    assert has_ext(pg, fresh)
    again = run_module('pg_tde_extension', task)
    assert not again['changed'] and again['created'] == [] and again['executed_queries'] == []


def test_refused_while_not_preloaded(pg_cluster_factory):
    pg = pg_cluster_factory(preload=(), extension=False)
    res = run_module('pg_tde_extension', dict(pg.login_args()))
    assert res.get('failed') and 'pg_tde is not loaded' in res['msg'] and 'restart' in res['msg']
    assert res['created'] == [] and not has_ext(pg, 'postgres')
    planned = run_module('pg_tde_extension', dict(pg.login_args()), check=True)
    assert not planned.get('failed') and planned['created'] == ['postgres']
    assert any('not preloaded yet' in w for w in planned.get('warnings', []))
