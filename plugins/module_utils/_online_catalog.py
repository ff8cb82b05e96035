# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the online method must know about a table: its definition and everything that
depends on it, read from the catalogs into plain data (dicts and lists of text).

The same reader describes the source before the copy, the source again under the switch lock
(to see whether it changed meanwhile) and the new table after the switch (to prove it carries
everything over). Definitions come from PostgreSQL's own pg_get_*def functions, read with an
empty search_path so that every name in them is schema-qualified and means the same object
when the text runs again. Objects this reader does not know how to carry over are listed in
`unhandled`, so that the plan refuses them instead of losing them."""
from __future__ import annotations

from typing import Any

# Triggers the online method puts on the source (never copied, never counted as the user's).
CAPTURE_TRIGGER = 'tdeops_online_capture'
TRUNCATE_TRIGGER = 'tdeops_online_truncate'
STATE_SCHEMA = 'tdeops_online'

TABLE_SQL = """
SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       c.relpersistence::text AS persistence, pg_get_userbyid(c.relowner) AS owner,
       coalesce(am.amname, '') AS access_method, c.reloptions AS reloptions,
       (SELECT t.reloptions FROM pg_class t WHERE t.oid = c.reltoastrelid) AS toast_reloptions,
       (SELECT s.spcname FROM pg_tablespace s WHERE s.oid = c.reltablespace) AS tablespace,
       c.relispartition AS is_partition, c.reloftype <> 0 AS is_typed,
       pg_get_expr(c.relpartbound, c.oid) AS partition_bound,
       CASE WHEN c.relispartition THEN pg_get_partition_constraintdef(c.oid) END AS partition_constraint,
       par.nspname AS parent_schema, par.relname AS parent_name,
       EXISTS (SELECT 1 FROM pg_partitioned_table pt WHERE pt.partrelid = par.oid AND pt.partdefid <> 0
               AND pt.partdefid <> c.oid) AS parent_has_default,
       EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = par.oid AND f.contype = 'f') AS parent_referenced,
       c.relhassubclass AS has_children,
       EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) AS has_parent,
       c.relrowsecurity AS rls, c.relforcerowsecurity AS rls_force, c.relreplident::text AS replident,
       c.relfilenode::bigint AS filenode, c.reltype::bigint AS rowtype,
       obj_description(c.oid, 'pg_class') AS comment,
       EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
               AND d.deptype = 'e') AS extension_member,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS i_am_superuser,
       pg_has_role(c.relowner, 'USAGE') AS i_own
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am am ON am.oid = c.relam
LEFT JOIN LATERAL (SELECT p.oid, p.relname, pn.nspname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                   JOIN pg_namespace pn ON pn.oid = p.relnamespace
                   WHERE i.inhrelid = c.oid AND c.relispartition) par ON true
WHERE c.oid = %(oid)s::oid
"""

ACL_SQL = """
SELECT coalesce(pg_get_userbyid(NULLIF(a.grantor, 0)), '') AS grantor,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee,
       a.privilege_type AS privilege, a.is_grantable AS grantable
FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault(%(kind)s, c.relowner))) a
WHERE c.oid = %(oid)s::oid
ORDER BY 1, 2, 3, 4
"""

COLUMNS_SQL = """
SELECT a.attnum AS num, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS notnull, a.attgenerated::text AS generated, a.attidentity::text AS identity,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation,
       a.attstattarget AS stattarget, a.attoptions AS options, a.attstorage::text AS storage,
       a.attcompression::text AS compression,
       col_description(a.attrelid, a.attnum) AS comment,
       (SELECT array_agg(x ORDER BY x) FROM (
          SELECT coalesce(pg_get_userbyid(NULLIF(e.grantor, 0)), '') || '|' ||
                 CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(e.grantee) END || '|' ||
                 e.privilege_type || '|' || e.is_grantable::text AS x
          FROM aclexplode(a.attacl) e) q) AS acl
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE a.attrelid = %(oid)s::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

INDEXES_SQL = """
SELECT i.indexrelid::bigint AS oid, ic.relname AS name, quote_ident(ic.relname) AS quoted,
       pg_get_indexdef(i.indexrelid) AS def,
       i.indisprimary AS is_primary, i.indisunique AS is_unique, i.indisvalid AS valid,
       i.indisclustered AS clustered, i.indisreplident AS replident,
       i.indpred IS NULL AS full_index, i.indexprs IS NULL AS plain_columns,
       i.indnkeyatts AS nkeyatts,
       (SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE k.n <= i.indnkeyatts) AS key_columns,
       (SELECT bool_and(oc.opcdefault) FROM unnest(i.indclass) k(opc) JOIN pg_opclass oc ON oc.oid = k.opc)
         AS default_opclasses,
       (SELECT bool_and(k.coll = 0 OR k.coll = a.attcollation)
        FROM unnest(i.indcollation) WITH ORDINALITY k(coll, n)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.n - 1]) AS default_collations,
       (SELECT s.spcname FROM pg_tablespace s WHERE s.oid = ic.reltablespace) AS tablespace,
       obj_description(i.indexrelid, 'pg_class') AS comment,
       con.conname AS constraint_name, con.contype::text AS constraint_type,
       CASE WHEN con.oid IS NOT NULL THEN pg_get_constraintdef(con.oid) END AS constraint_def,
       CASE WHEN con.oid IS NOT NULL THEN obj_description(con.oid, 'pg_constraint') END AS constraint_comment,
       am.amname AS method
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
     AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = %(oid)s::oid
ORDER BY ic.relname
"""

CHECKS_SQL = """
SELECT con.conname AS name, pg_get_constraintdef(con.oid) AS def, con.convalidated AS validated,
       con.connoinherit AS noinherit, con.conislocal AS islocal,
       obj_description(con.oid, 'pg_constraint') AS comment
FROM pg_constraint con
WHERE con.conrelid = %(oid)s::oid AND con.contype = 'c'
ORDER BY con.conname
"""

FKS_OUT_SQL = """
SELECT con.conname AS name, pg_get_constraintdef(con.oid) AS def, con.convalidated AS validated,
       con.confrelid::bigint AS ref_oid, con.conparentid <> 0 AS inherited,
       obj_description(con.oid, 'pg_constraint') AS comment
FROM pg_constraint con
WHERE con.conrelid = %(oid)s::oid AND con.contype = 'f'
ORDER BY con.conname
"""

FKS_IN_SQL = """
SELECT con.conname AS name, pg_get_constraintdef(con.oid) AS def, con.convalidated AS validated,
       con.conrelid::bigint AS table_oid, n.nspname AS table_schema, c.relname AS table_name,
       c.relkind::text AS table_relkind, con.conparentid <> 0 AS inherited,
       pg_has_role(c.relowner, 'USAGE') AS owned,
       obj_description(con.oid, 'pg_constraint') AS comment
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.confrelid = %(oid)s::oid AND con.conrelid <> %(oid)s::oid AND con.contype = 'f'
ORDER BY n.nspname, c.relname, con.conname
"""

TRIGGERS_SQL = """
SELECT t.tgname AS name, pg_get_triggerdef(t.oid) AS def, t.tgenabled::text AS enabled,
       t.tgparentid <> 0 AS inherited, obj_description(t.oid, 'pg_trigger') AS comment
FROM pg_trigger t
WHERE t.tgrelid = %(oid)s::oid AND NOT t.tgisinternal
ORDER BY t.tgname
"""

RULES_SQL = """
SELECT r.rulename AS name, pg_get_ruledef(r.oid) AS def, r.ev_enabled::text AS enabled,
       obj_description(r.oid, 'pg_rewrite') AS comment
FROM pg_rewrite r
WHERE r.ev_class = %(oid)s::oid AND r.rulename <> '_RETURN'
ORDER BY r.rulename
"""

POLICIES_SQL = """
SELECT p.polname AS name, p.polpermissive AS permissive, p.polcmd::text AS cmd,
       CASE WHEN p.polroles = '{0}' THEN ARRAY['PUBLIC']
            ELSE (SELECT array_agg(quote_ident(pg_get_userbyid(r)) ORDER BY pg_get_userbyid(r))
                  FROM unnest(p.polroles) r) END AS roles,
       pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS with_check,
       obj_description(p.oid, 'pg_policy') AS comment
FROM pg_policy p
WHERE p.polrelid = %(oid)s::oid
ORDER BY p.polname
"""

STATS_SQL = """
SELECT s.oid::bigint AS oid, n.nspname AS schema, s.stxname AS name,
       pg_get_statisticsobjdef(s.oid) AS def, s.stxstattarget AS stattarget,
       pg_get_userbyid(s.stxowner) AS owner,
       obj_description(s.oid, 'pg_statistic_ext') AS comment
FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
WHERE s.stxrelid = %(oid)s::oid
ORDER BY n.nspname, s.stxname
"""

PUBLICATIONS_SQL = """
SELECT p.pubname AS name,
       (SELECT array_agg(quote_ident(a.attname) ORDER BY k.n) FROM unnest(pr.prattrs) WITH ORDINALITY k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = pr.prrelid AND a.attnum = k.attnum) AS columns,
       pg_get_expr(pr.prqual, pr.prrelid) AS row_filter
FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
WHERE pr.prrelid = %(oid)s::oid
ORDER BY p.pubname
"""

SEQUENCES_SQL = """
SELECT d.deptype::text AS deptype, s.oid::bigint AS oid, n.nspname AS schema, s.relname AS name,
       a.attname AS column_name, format_type(q.seqtypid, NULL) AS data_type,
       q.seqstart AS start, q.seqincrement AS increment, q.seqmin AS min, q.seqmax AS max,
       q.seqcache AS cache, q.seqcycle AS cycle,
       obj_description(s.oid, 'pg_class') AS comment,
       (SELECT array_agg(x ORDER BY x) FROM (
          SELECT coalesce(pg_get_userbyid(NULLIF(e.grantor, 0)), '') || '|' ||
                 CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(e.grantee) END || '|' ||
                 e.privilege_type || '|' || e.is_grantable::text AS x
          FROM aclexplode(s.relacl) e) q2) AS acl,
       (SELECT count(*) FROM pg_depend o WHERE o.refclassid = 'pg_class'::regclass AND o.refobjid = s.oid
          AND NOT (o.classid = 'pg_attrdef'::regclass AND o.objid IN
                   (SELECT ad.oid FROM pg_attrdef ad WHERE ad.adrelid = %(oid)s::oid))
          AND o.deptype <> 'i') AS other_users
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace n ON n.oid = s.relnamespace
JOIN pg_sequence q ON q.seqrelid = s.oid
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = %(oid)s::oid AND d.deptype IN ('a', 'i')
ORDER BY a.attnum
"""

VIEWS_SQL = """
SELECT DISTINCT v.oid::bigint AS oid, n.nspname AS schema, v.relname AS name, v.relkind::text AS relkind,
       n.nspname LIKE 'pg\\_temp%%' AS temporary,
       v.reloptions AS reloptions, pg_has_role(v.relowner, 'USAGE') AS owned,
       CASE WHEN v.relkind = 'v' THEN pg_get_viewdef(v.oid) END AS def
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace n ON n.oid = v.relnamespace
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = %(oid)s::oid AND v.oid <> %(oid)s::oid
  AND n.oid IS DISTINCT FROM pg_my_temp_schema()
ORDER BY n.nspname, v.relname
"""

# Everything else that depends on the table or its row type. Each row is an object the online
# switch would leave pointing at the old table: the plan refuses the table and names it.
OTHER_DEPENDENTS_SQL = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS object, d.deptype::text AS deptype
FROM pg_depend d
WHERE ((d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s::oid)
       OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = %(rowtype)s::oid))
  AND NOT (d.classid = 'pg_class'::regclass AND d.objid IN (
        SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = %(oid)s::oid
        UNION ALL SELECT c.reltoastrelid FROM pg_class c WHERE c.oid = %(oid)s::oid
        UNION ALL SELECT %(oid)s::oid))
  AND NOT (d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
           AND EXISTS (SELECT 1 FROM pg_class s WHERE s.oid = d.objid AND s.relkind = 'S'))
  AND NOT (d.classid = 'pg_type'::regclass AND d.deptype = 'i')
  AND NOT (d.classid = 'pg_constraint'::regclass AND d.objid IN (
        SELECT con.oid FROM pg_constraint con WHERE con.conrelid = %(oid)s::oid
        OR (con.confrelid = %(oid)s::oid AND con.contype = 'f')))
  AND NOT (d.classid = 'pg_trigger'::regclass AND d.objid IN (
        SELECT t.oid FROM pg_trigger t WHERE t.tgrelid = %(oid)s::oid))
  AND NOT (d.classid = 'pg_attrdef'::regclass AND d.objid IN (
        SELECT ad.oid FROM pg_attrdef ad WHERE ad.adrelid = %(oid)s::oid))
  AND NOT (d.classid = 'pg_policy'::regclass AND d.objid IN (
        SELECT p.oid FROM pg_policy p WHERE p.polrelid = %(oid)s::oid))
  AND NOT (d.classid = 'pg_statistic_ext'::regclass)
  AND NOT (d.classid = 'pg_publication_rel'::regclass)
  AND NOT (d.classid = 'pg_rewrite'::regclass AND d.objid IN (
        SELECT r.oid FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class
        WHERE r.ev_class = %(oid)s::oid OR r.rulename = '_RETURN'))
ORDER BY 1
"""

SECLABELS_SQL = "SELECT count(*) AS n FROM pg_seclabel WHERE classoid = 'pg_class'::regclass AND objoid = %(oid)s::oid"
SUBSCRIPTION_SQL = ("SELECT s.subname AS name FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid "
                    "WHERE r.srrelid = %(oid)s::oid")
ALL_TABLES_PUBS_SQL = ("SELECT pubname AS name FROM pg_publication WHERE puballtables UNION ALL "
                       "SELECT p.pubname FROM pg_publication_namespace pn JOIN pg_publication p ON p.oid = pn.pnpubid "
                       "JOIN pg_namespace n ON n.oid = pn.pnnspid WHERE n.nspname = %(state_schema)s ORDER BY 1")


def _acl(session, oid: int, kind: str = 'r') -> list[str]:
    return ['%s|%s|%s|%s' % (r['grantor'], r['grantee'], r['privilege'], str(r['grantable']).lower())
            for r in session.query(ACL_SQL, {'oid': oid, 'kind': kind})]


def _rows(session, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in session.query(query, params)]


def read_definition(session, oid: int) -> dict[str, Any] | None:
    """The table `oid` and everything that hangs on it, or None when it does not exist.
    The session's search_path must be empty (qualified names in every definition)."""
    table = session.query_one(TABLE_SQL, {'oid': oid})
    if table is None:
        return None
    table = dict(table)
    params = {'oid': oid, 'rowtype': table['rowtype'], 'state_schema': STATE_SCHEMA}
    triggers = _rows(session, TRIGGERS_SQL, params)
    return {
        'table': table,
        'acl': _acl(session, oid),
        'columns': _rows(session, COLUMNS_SQL, params),
        'indexes': _rows(session, INDEXES_SQL, params),
        'checks': _rows(session, CHECKS_SQL, params),
        'fks_out': _rows(session, FKS_OUT_SQL, params),
        'fks_in': _rows(session, FKS_IN_SQL, params),
        'triggers': [t for t in triggers if t['name'] not in (CAPTURE_TRIGGER, TRUNCATE_TRIGGER)],
        'capture_triggers': [t for t in triggers if t['name'] in (CAPTURE_TRIGGER, TRUNCATE_TRIGGER)],
        'rules': _rows(session, RULES_SQL, params),
        'policies': _rows(session, POLICIES_SQL, params),
        'statistics': _rows(session, STATS_SQL, params),
        'publications': _rows(session, PUBLICATIONS_SQL, params),
        'sequences': _rows(session, SEQUENCES_SQL, params),
        'views': _rows(session, VIEWS_SQL, params),
        'other_dependents': _rows(session, OTHER_DEPENDENTS_SQL, params),
        'seclabels': int(session.query_one(SECLABELS_SQL, params)['n']),
        'subscriptions': [r['name'] for r in session.query(SUBSCRIPTION_SQL, params)],
        'all_tables_publications': [r['name'] for r in session.query(ALL_TABLES_PUBS_SQL, params)],
    }
