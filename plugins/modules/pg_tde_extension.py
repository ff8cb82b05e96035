#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_tde_extension
short_description: Create the pg_tde extension in a list of databases
version_added: 1.0.0
description:
  - Creates the C(pg_tde) extension in every database of O(databases) that does not have it,
    in one task, after checking that pg_tde is preloaded (C(CREATE EXTENSION) would otherwise
    fail with a FATAL that does not say why).
  - A database that has the extension is left alone (its version is not changed).
  - In check mode, a server that does not preload pg_tde yet (the configure role restarts it
    first in a real run) is reported with a warning, not refused.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.postgres
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.actiongroup_pg_tde
attributes:
  check_mode:
    support: full
    details: Reads which databases have the extension and returns the statements it would run.
  diff_mode:
    support: none
options:
  databases:
    description: Databases that must have the extension. Default O(login_db).
    type: list
    elements: str
notes:
  - C(CREATE EXTENSION pg_tde) needs a superuser (O(login_user)).
seealso:
  - module: tdeops.pg_tde.pg_tde_info
'''

EXAMPLES = r'''
- name: The extension in two databases and template1 (new databases inherit it)
  tdeops.pg_tde.pg_tde_extension:
    databases: [postgres, appdb, template1]
  become: true
  become_user: postgres
'''

RETURN = r'''
created:
  description: Databases where the extension was created (would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [appdb]
executed_queries:
  description: Statements run (in check mode, that would run).
  returned: always
  type: list
  elements: str
'''

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import (
    Sessions,
    open_session,
    pg_error_text,
    postgres_argument_spec,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import (
    has_extension,
    not_preloaded_message,
    preloaded_libraries,
)

# pg_tde needs no other extension; CASCADE matters only for builds that do.
CREATE_SQL = 'CREATE EXTENSION IF NOT EXISTS pg_tde CASCADE'


def missing_databases(databases: list[str], has: dict[str, bool]) -> list[str]:
    """The databases (in the order given, once each) that lack the extension."""
    return [db for db in dict.fromkeys(databases) if not has[db]]


def main() -> None:
    argument_spec = postgres_argument_spec()
    argument_spec.update(databases=dict(type='list', elements='str'))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    databases: list[str] = module.params['databases'] or [module.params['login_db']]
    queries: list[str] = []
    result: dict[str, Any] = {}
    with Sessions(lambda db: open_session(module, db)) as sessions:
        libraries = preloaded_libraries(sessions(databases[0]))
        missing = missing_databases(databases, {db: has_extension(sessions(db)) for db in dict.fromkeys(databases)})
        if missing and 'pg_tde' not in libraries:
            if not module.check_mode:
                module.fail_json(msg='Cannot create the pg_tde extension in %s: %s' % (
                    ', '.join(missing), not_preloaded_message(libraries)), created=[], executed_queries=[])
            module.warn('pg_tde is not preloaded yet: a real run restarts with it first, then creates the extension.')
        for db in missing:
            session = sessions(db)
            try:
                session.execute(CREATE_SQL)
            except Exception as exc:
                module.fail_json(msg='Creating the pg_tde extension in database "%s" failed: %s' % (db, pg_error_text(exc)),
                                 created=missing[:missing.index(db)], executed_queries=queries + session.executed_queries)
            queries += ['%s (database %s)' % (q, db) for q in session.executed_queries]
        result = {'changed': bool(missing), 'created': missing, 'executed_queries': queries}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
