# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    # The login_* options, as users know them from community.postgresql.
    DOCUMENTATION = r'''
options:
  login_user:
    description:
      - The PostgreSQL role to connect as. pg_tde needs a superuser for provider changes and for
        operations on global key providers.
    type: str
    default: postgres
    aliases: [ login ]
  login_password:
    description:
      - The password of O(login_user). Leave unset for peer or certificate authentication.
    type: str
  login_host:
    description:
      - Host name or IP address of the server. Leave unset to connect through the Unix socket,
        which is the usual way on the database host (with C(become_user=postgres)).
    type: str
  login_port:
    description:
      - Port of the server.
    type: int
    default: 5432
    aliases: [ port ]
  login_unix_socket:
    description:
      - Directory of the server's Unix socket, when it is not libpq's default.
    type: str
  login_db:
    description:
      - Database to connect to when the module does not name one itself.
    type: str
    default: postgres
  ssl_mode:
    description:
      - libpq C(sslmode) of the connection.
    type: str
    default: prefer
    choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
  ca_cert:
    description:
      - CA certificate file that signs the server's certificate (libpq C(sslrootcert)).
    type: path
    aliases: [ ssl_rootcert ]
  connect_params:
    description:
      - Further libpq connection parameters, for example C(connect_timeout) or C(sslcert).
    type: dict
    default: {}
requirements:
  - psycopg >= 3.1 (Python 3) on the host that runs the module
'''
