"""Decisions and statements of the online method (_online_plan, _online_sql, the pure parts of
_online): key choice, refusals, fingerprint, comparison, plan, quoting, checksum algebra."""
from __future__ import annotations

import copy

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _online as online
from ansible_collections.tdeops.pg_tde.plugins.module_utils import _online_plan as plan
from ansible_collections.tdeops.pg_tde.plugins.module_utils import _online_sql as q
from ansible_collections.tdeops.pg_tde.plugins.module_utils import _tables


def col(name, type_='integer', notnull=False, **kw):
    base = {'num': 1, 'name': name, 'type': type_, 'notnull': notnull, 'generated': '', 'identity': '',
            'default_expr': None, 'collation': None, 'stattarget': None, 'options': None, 'storage': 'p',
            'compression': '', 'comment': None, 'acl': None}
    base.update(kw)
    return base


def idx(oid, name, cols, primary=False, unique=True, **kw):
    base = {'oid': oid, 'name': name, 'quoted': name, 'def': 'CREATE %sINDEX %s ON public.t USING btree (%s)'
            % ('UNIQUE ' if unique else '', name, ', '.join(cols)),
            'is_primary': primary, 'is_unique': unique, 'valid': True, 'clustered': False, 'replident': False,
            'full_index': True, 'plain_columns': True, 'nkeyatts': len(cols), 'key_columns': cols,
            'default_opclasses': True, 'default_collations': True, 'tablespace': None, 'comment': None,
            'constraint_name': None, 'constraint_type': None, 'constraint_def': None, 'constraint_comment': None,
            'method': 'btree'}
    base.update(kw)
    return base


def definition(**over):
    d = {
        'table': {'oid': 100, 'schema': 'public', 'name': 't', 'qualified': 'public.t', 'relkind': 'r',
                  'persistence': 'p', 'owner': 'app', 'access_method': 'heap', 'reloptions': None,
                  'toast_reloptions': None, 'tablespace': None, 'is_partition': False, 'is_typed': False,
                  'has_children': False, 'has_parent': False, 'rls': False, 'rls_force': False, 'replident': 'd',
                  'filenode': 100, 'rowtype': 101, 'comment': None, 'extension_member': False,
                  'i_am_superuser': True, 'i_own': False, 'partition_bound': None, 'partition_constraint': None,
                  'parent_schema': None, 'parent_name': None, 'parent_has_default': False,
                  'parent_referenced': False},
        'acl': ['app|app|SELECT|false'],
        'columns': [col('id', 'bigint', True), col('v', 'text')],
        'indexes': [idx(200, 't_pkey', ['id'], primary=True, constraint_name='t_pkey', constraint_type='p',
                        constraint_def='PRIMARY KEY (id)')],
        'checks': [], 'fks_out': [], 'fks_in': [], 'triggers': [], 'capture_triggers': [], 'rules': [],
        'policies': [], 'statistics': [], 'publications': [], 'sequences': [], 'views': [],
        'other_dependents': [], 'seclabels': 0, 'subscriptions': [], 'all_tables_publications': [],
    }
    for key, value in over.items():
        if key in d['table']:
            d['table'][key] = value
        else:
            d[key] = value
    return d


def render(stmt):
    return stmt.as_string(None)


# -- key ------------------------------------------------------------------------------------------

def test_key_prefers_primary_key():
    d = definition()
    d['indexes'].append(idx(201, 't_v', ['v']))
    assert plan.choose_key(d)['name'] == 't_pkey'


def test_key_falls_back_to_unique_index_on_not_null_columns():
    d = definition(indexes=[idx(201, 'u_v', ['v']), idx(202, 'u_id', ['id']),
                            idx(203, 'u_partial', ['id'], full_index=False),
                            idx(204, 'u_expr', ['id'], plain_columns=False),
                            idx(205, 'u_coll', ['id'], default_collations=False),
                            idx(206, 'u_hash', ['id'], method='hash')])
    assert plan.choose_key(d)['name'] == 'u_id'          # v is nullable; the others do not qualify
    d['indexes'] = d['indexes'][:1] + d['indexes'][2:]
    assert plan.choose_key(d) is None
    assert any('no primary key' in r for r in plan.refusals(d))


# -- refusals -------------------------------------------------------------------------------------

@pytest.mark.parametrize('over, text', [
    ({'is_partition': True, 'parent_has_default': True, 'parent_schema': 's', 'parent_name': 'p'},
     'partition of s.p, which has a DEFAULT partition'),
    ({'is_partition': True, 'parent_referenced': True, 'parent_schema': 's', 'parent_name': 'p'},
     'partition of s.p, which foreign keys reference'),
    ({'has_parent': True}, 'table inheritance'),
    ({'has_children': True}, 'table inheritance'),
    ({'is_typed': True}, 'typed table'),
    ({'extension_member': True}, 'belongs to an extension'),
    ({'i_am_superuser': False}, 'neither owns it nor is a superuser'),
    ({'relkind': 'p'}, 'partitioned table, not a table'),
    ({'views': [{'schema': 's', 'name': 'mv', 'relkind': 'm'}]}, 'materialized view s.mv reads it'),
    ({'views': [{'schema': 'pg_temp_3', 'name': 'v', 'relkind': 'v', 'temporary': True}]}, 'temporary view'),
    ({'fks_in': [{'name': 'fk', 'table_schema': 's', 'table_name': 'p', 'table_relkind': 'p', 'inherited': False}]},
     'foreign key fk of partitioned table s.p references it'),
    ({'sequences': [{'deptype': 'i', 'schema': 'public', 'name': 't_id_seq', 'other_users': 1}]},
     'identity sequence public.t_id_seq is used by other objects'),
    ({'other_dependents': [{'object': 'function public.f()', 'deptype': 'n'}]},
     'function public.f() depends on it'),
    ({'seclabels': 1}, 'security labels'),
    ({'subscriptions': ['sub1']}, 'target of subscription sub1'),
    ({'all_tables_publications': ['everything']}, 'publication everything publishes all tables'),
])
def test_refusals(over, text):
    reasons = plan.refusals(definition(**over))
    assert any(text in r for r in reasons), reasons


def test_partition_without_default_partition_is_moved_and_its_switch_detaches_and_attaches():
    d = definition(is_partition=True, has_parent=True, parent_schema='public', parent_name='ev',
                   partition_bound="FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
                   partition_constraint="((at IS NOT NULL) AND (at >= '2025-01-01'::date))",
                   triggers=[{'name': 'cloned', 'def': 'CREATE TRIGGER cloned ...', 'enabled': 'O', 'inherited': True,
                              'comment': None},
                             {'name': 'own', 'def': 'CREATE TRIGGER own AFTER INSERT ON public.t FOR EACH ROW '
                              'EXECUTE FUNCTION f()', 'enabled': 'O', 'inherited': False, 'comment': None}])
    assert plan.refusals(d) == []
    assert 'public.ev (partitioned table' in plan.lock_windows(d)[1]['also'][0]
    assert render(q.partition_check(3, d)) == ('ALTER TABLE "tdeops_online"."shadow_3" ADD CONSTRAINT '
                                               '"tdeops_partition_3" CHECK (((at IS NOT NULL) AND (at >= '
                                               '\'2025-01-01\'::date)))')
    stmts = q.swap_statements(3, d, definition(), {})[0]
    text = [render(s) for s in stmts]
    assert text[0] == 'ALTER TABLE "public"."ev" DETACH PARTITION "public"."t"'
    attach = text.index('ALTER TABLE "public"."ev" ATTACH PARTITION "public"."t" FOR VALUES FROM (\'2025-01-01\') '
                        'TO (\'2026-01-01\')')
    assert text[attach + 1] == 'ALTER TABLE "public"."t" DROP CONSTRAINT "tdeops_partition_3"'
    assert attach > text.index('ALTER TABLE "tdeops_online"."shadow_3" SET SCHEMA "public"')
    assert not any('CREATE TRIGGER cloned' in s for s in text) and any(s.startswith('CREATE TRIGGER own') for s in text)


def test_no_refusal_for_a_plain_table_with_views_and_foreign_keys():
    d = definition(views=[{'schema': 'public', 'name': 'v', 'relkind': 'v', 'owned': True}],
                   fks_in=[{'name': 'fk', 'table_schema': 'public', 'table_name': 'child', 'table_relkind': 'r',
                            'inherited': False, 'owned': True}])
    assert plan.refusals(d) == []


# -- fingerprint and comparison ---------------------------------------------------------------------

def test_fingerprint_changes_with_the_shape_only():
    d = definition()
    fp = plan.fingerprint(d)
    other = copy.deepcopy(d)
    other['table']['filenode'] = 999                       # VACUUM FULL: the copy still fits
    other['triggers'] = [{'name': 'x'}]                    # triggers are read again at the switch
    assert plan.fingerprint(other) == fp
    other['columns'].append(col('extra'))
    assert plan.fingerprint(other) != fp


def test_differences_ignore_access_method_and_not_valid_only():
    before = definition(fks_out=[{'name': 'fk', 'def': 'FOREIGN KEY (a) REFERENCES public.p(id)', 'comment': None}])
    after = copy.deepcopy(before)
    after['table']['access_method'] = 'tde_heap'
    after['table']['oid'] = 555
    after['fks_out'][0]['def'] += ' NOT VALID'
    assert plan.differences(before, after, 'tde_heap') == []
    after['acl'] = []
    after['columns'][1]['stattarget'] = 10
    diffs = plan.differences(before, after, 'tde_heap')
    assert any(d.startswith('columns differ') for d in diffs) and any(d.startswith('privileges') for d in diffs)
    assert plan.differences(before, before, 'tde_heap') == ['access method is heap, not tde_heap']


def test_online_plan_lists_lock_windows_and_space():
    d = definition(views=[{'schema': 'public', 'name': 'v', 'relkind': 'v', 'owned': True}])
    p = plan.online_plan(d, 1000, 20)
    assert p['key'] == ['id'] and p['copy_bytes'] == 1000 and p['free_space_needed_bytes'] == 1200
    assert [w['mode'] for w in p['lock_windows']] == ['SHARE ROW EXCLUSIVE', 'ACCESS EXCLUSIVE',
                                                      'SHARE UPDATE EXCLUSIVE']
    assert p['lock_windows'][1]['also'] == ['public.v (view, ACCESS EXCLUSIVE)']
    assert p['carried_over']['views'] == ['public.v'] and p['refused'] == []


def test_state_names_take_numbers_only():
    assert plan.state_name('shadow', 42) == 'shadow_42'
    with pytest.raises(ValueError):
        plan.state_name('shadow', '1; DROP TABLE x')


# -- statements -----------------------------------------------------------------------------------------

def test_identifiers_are_quoted():
    d = definition(schema='Sales "EU"', name='order items')
    d['columns'] = [col('Id"x', 'bigint', True), col('v', 'text')]
    stmts = [render(s) for s in q.create_shadow(7, d, 'tde_heap')]
    assert stmts[0].startswith('CREATE TABLE "tdeops_online"."shadow_7" (LIKE "Sales ""EU"""."order items" '
                               'INCLUDING DEFAULTS')
    assert stmts[0].endswith('USING "tde_heap" WITH ("autovacuum_enabled" = \'false\')')
    keycols = [d['columns'][0]]
    assert render(q.copy_batch(7, d, keycols, True, True)) == (
        'INSERT INTO "tdeops_online"."shadow_7" ("Id""x", "v") SELECT "Id""x", "v" FROM ONLY "Sales ""EU"""."order '
        'items" WHERE ("Id""x") > (%s::text::bigint) AND ("Id""x") <= (%s::text::bigint)')
    fn = render(q.create_capture_function(7, ['Id"x']))
    assert 'SECURITY DEFINER SET search_path = pg_catalog, pg_temp' in fn
    assert 'VALUES (OLD."Id""x")' in fn.replace("''", "'")


def test_generated_columns_are_not_copied_and_options_are_literals():
    d = definition(reloptions=["fillfactor=70", "autovacuum_enabled=false"], toast_reloptions=['autovacuum_enabled=off'],
                   tablespace='fast space', persistence='u')
    d['columns'].append(col('g', 'integer', generated='s'))
    d['columns'][1]['stattarget'] = 300
    assert q.copy_columns(d) == ['id', 'v']
    stmts = [render(s) for s in q.create_shadow(1, d, 'heap')]
    assert stmts[0].startswith('CREATE UNLOGGED TABLE')
    # autovacuum off on the copy (in its place when the table sets it), restored at the switch
    assert stmts[0].endswith('USING "heap" WITH ("fillfactor" = \'70\', "autovacuum_enabled" = \'false\') '
                             'TABLESPACE "fast space"')
    assert stmts[1] == 'ALTER TABLE "tdeops_online"."shadow_1" SET (toast."autovacuum_enabled" = \'false\')'
    assert stmts[2] == 'ALTER TABLE "tdeops_online"."shadow_1" ALTER COLUMN "v" SET STATISTICS 300'
    assert render(q.restore_autovacuum(q.sql.Identifier('t'), d['table']['reloptions'])) == \
        'ALTER TABLE "t" SET ("autovacuum_enabled" = \'false\')'
    assert render(q.restore_autovacuum(q.sql.Identifier('t'), ['fillfactor=70'], 'toast.')) == \
        'ALTER TABLE "t" RESET (toast."autovacuum_enabled")'
    plain = [render(s) for s in q.create_shadow(1, definition(), 'heap')]
    assert plain[0].endswith('USING "heap" WITH ("autovacuum_enabled" = \'false\')')


def test_index_statement_replaces_only_the_expected_prefix():
    d = definition()
    plain = idx(300, 't_lower', ['v'], unique=False, def_='')
    plain['def'] = 'CREATE INDEX t_lower ON public.t USING btree (lower(v)) WHERE (v IS NOT NULL)'
    plain['tablespace'] = 'ts'
    assert render(q.index_statement(9, d, plain)) == (
        'CREATE INDEX "tdeops_9_300" ON "tdeops_online"."shadow_9" USING btree (lower(v)) WHERE (v IS NOT NULL) '
        'TABLESPACE "ts"')
    assert render(q.index_statement(9, d, d['indexes'][0])) == (
        'ALTER TABLE "tdeops_online"."shadow_9" ADD CONSTRAINT "tdeops_9_200" PRIMARY KEY (id)')
    plain['def'] = 'CREATE INDEX t_lower ON public.other USING btree (v)'
    with pytest.raises(q.DefinitionError):
        q.index_statement(9, d, plain)


def test_grants_revoke_first_and_use_the_grantor():
    stmts = [render(s) for s in q.grant_statements(
        q.sql.Identifier('public', 't'), ['app|app|SELECT|false', 'app|bob|SELECT|true', 'bob|carol|SELECT|false'],
        'app', current_acl=['postgres|postgres|INSERT|false'])]
    assert stmts[:5] == ['REVOKE ALL ON TABLE "public"."t" FROM PUBLIC CASCADE',
                         'REVOKE ALL ON TABLE "public"."t" FROM "app" CASCADE',
                         'REVOKE ALL ON TABLE "public"."t" FROM "bob" CASCADE',
                         'REVOKE ALL ON TABLE "public"."t" FROM "carol" CASCADE',
                         'REVOKE ALL ON TABLE "public"."t" FROM "postgres" CASCADE']
    grants = stmts[5:]
    assert grants[:2] == ['GRANT SELECT ON TABLE "public"."t" TO "app"',
                          'GRANT SELECT ON TABLE "public"."t" TO "bob" WITH GRANT OPTION']
    assert grants[2:] == ['SET LOCAL ROLE "bob"', 'GRANT SELECT ON TABLE "public"."t" TO "carol"', 'RESET ROLE']


def test_swap_moves_dependents_and_validates_foreign_keys_after():
    d = definition(
        sequences=[{'deptype': 'a', 'schema': 'public', 'name': 't_no_seq', 'column_name': 'no', 'oid': 9},
                   {'deptype': 'i', 'schema': 'public', 'name': 't_id_seq', 'column_name': 'id', 'oid': 8,
                    'increment': 1, 'min': 1, 'max': 100, 'start': 1, 'cache': 1, 'cycle': False, 'acl': None,
                    'comment': None}],
        fks_out=[{'name': 'fk_p', 'def': 'FOREIGN KEY (v) REFERENCES public.p(v)', 'comment': None},
                 {'name': 'fk_nv', 'def': 'FOREIGN KEY (v) REFERENCES public.q(v) NOT VALID', 'comment': None}],
        fks_in=[{'name': 'fk_c', 'def': 'FOREIGN KEY (t_id) REFERENCES public.t(id)', 'table_schema': 'public',
                 'table_name': 'child', 'comment': None}],
        views=[{'schema': 'public', 'name': 'v', 'relkind': 'v', 'reloptions': ['security_barrier=true'],
                'def': ' SELECT id FROM public.t;'}])
    d['columns'][0]['identity'] = 'a'
    stmts, views, validate = q.swap_statements(5, d, definition(), {'t_id_seq': {'last_value': 42, 'is_called': True}})
    text = [render(s) for s in stmts]
    order = [text.index(s) for s in (
        'ALTER TABLE "public"."child" DROP CONSTRAINT "fk_c"',
        'ALTER SEQUENCE "public"."t_no_seq" OWNED BY NONE',
        'ALTER TABLE "public"."t" RENAME TO "old_5"',
        'ALTER TABLE "tdeops_online"."shadow_5" SET SCHEMA "public"',
        'ALTER TABLE "public"."t" RENAME CONSTRAINT "tdeops_5_200" TO "t_pkey"',
        'ALTER SEQUENCE "public"."t_no_seq" OWNED BY "public"."t"."no"',
        'SELECT pg_catalog.setval(\'"public"."t_id_seq"\', 42, true)',
        'ALTER TABLE "public"."t" ADD CONSTRAINT "fk_p" FOREIGN KEY (v) REFERENCES public.p(v) NOT VALID',
        'ALTER TABLE "public"."child" ADD CONSTRAINT "fk_c" FOREIGN KEY (t_id) REFERENCES public.t(id) NOT VALID')]
    assert order == sorted(order)
    assert 'ALTER TABLE "public"."t" ADD CONSTRAINT "fk_nv" FOREIGN KEY (v) REFERENCES public.q(v) NOT VALID' in text
    assert any(s.startswith('ALTER TABLE "public"."t" ALTER COLUMN "id" ADD GENERATED ALWAYS AS IDENTITY '
                            '(SEQUENCE NAME "public"."t_id_seq" INCREMENT BY 1') for s in text)
    assert validate == [('public', 't', 'fk_p'), ('public', 'child', 'fk_c')]      # not the one already NOT VALID
    assert [render(v) for v in views] == [
        'CREATE OR REPLACE VIEW "public"."v" WITH ("security_barrier" = \'true\') AS  SELECT id FROM public.t']


def test_lock_statement_and_timeout_take_no_snapshot():
    assert render(q.lock(q.sql.Identifier('s', 't'), 'ACCESS EXCLUSIVE')) == \
        'LOCK TABLE ONLY "s"."t" IN ACCESS EXCLUSIVE MODE'
    assert render(q.set_lock_timeout("1s'; x")) == "SET LOCAL lock_timeout = '1s''; x'"
    with pytest.raises(ValueError):
        q.lock(q.sql.Identifier('t'), 'EXCLUSIVE; DROP')


# -- the checksum algebra (it relies on _tables.row_checksum being a count and an exact sum) ---------------------

def test_running_total_replaces_rows_exactly():
    rows = {1: 11, 2: 22, 3: 33}

    def total(values):
        return {'rows': len(values), 'sum': sum(values)}

    start = total(rows.values())
    removed = total([rows[2], rows[3]])
    rows[2] = 99
    del rows[3]
    rows[4] = 44
    added = total([rows[2], rows[4]])
    assert online.replace_rows(start, removed, added) == total(rows.values())


def test_row_checksum_is_additive():
    text = _tables.checksum_statement('s', 't')
    assert 'count(*) AS rows' in text and 'sum(' in text and 'bit_xor(' not in text
    assert online.totals_from({'rows': 3, 'hash_sum': '-5'}) == {'rows': 3, 'sum': -5}


def test_preview_statement():
    item = {'schema': 'public', 'table': 't', 'oid': 12, 'action': 'rewrite', 'target_access_method': 'tde_heap'}
    assert online.preview_statement(item, {}).startswith(
        '-- online: CREATE TABLE tdeops_online.shadow_12 (LIKE "public"."t" ...) USING tde_heap')
    assert 'remove the copy' in online.preview_statement(item, {'online_abort': True})


# -- the module's options for the online method -----------------------------------------------------------

def module_params(**kw):
    from ansible_collections.tdeops.pg_tde.plugins.modules import pg_tde_table_encrypt as m
    p = {k: v.get('default') for k, v in m.argument_spec().items()}
    p.update(tables=['t'])
    p.update(kw)
    return m, p


def test_online_options_defaults_and_errors():
    m, p = module_params()
    assert p['method'] == 'rewrite' and p['online_batch_rows'] == 50000 and p['online_keep_old'] is False
    assert m.option_errors(p) == []
    m, p = module_params(method='online', online_batch_rows=0)
    assert m.option_errors(p) == ['online_batch_rows must be 1 or more, not 0']
    m, p = module_params(online_abort=True)
    assert m.option_errors(p) == ['online_abort needs method: online']
