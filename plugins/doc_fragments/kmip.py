# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    # KMIP connection options shared by kmip_key and kms_preflight. The same values as the
    # pg_tde KMIP provider: host, port, client certificate, client key, CA (in pg_tde's order).
    DOCUMENTATION = r'''
options:
  kmip_host:
    description:
      - Host name or IP address of the KMIP server, as the pg_tde provider uses it.
      - Required by M(tdeops.pg_tde.kmip_key), and by M(tdeops.pg_tde.kms_preflight) with O(tdeops.pg_tde.kms_preflight#module:type=kmip).
    type: str
  kmip_port:
    description:
      - TCP port of the KMIP server.
    type: int
    default: 5696
  kmip_cert:
    description:
      - Path of the PEM client certificate on the host that runs the module.
      - Its subject CN is the client identity that owns keys on the KMS. Use the certificate of the
        pg_tde provider to see the keys pg_tde creates.
      - Required like O(kmip_host).
    type: path
  kmip_key:
    description:
      - Path of the unencrypted PEM private key of O(kmip_cert). Never read into results or logs.
      - Required like O(kmip_host).
    type: path
  kmip_ca:
    description:
      - Path of the PEM CA certificate (or bundle) that issued the KMIP server certificate.
      - Required like O(kmip_host).
    type: path
  timeout:
    description:
      - Seconds to wait for the connection and for each answer of the server.
    type: int
    default: 10
notes:
  - The PyKMIP client gets every setting from these options; it never reads
    C(/etc/pykmip/pykmip.conf) or C(~/.pykmip/pykmip.conf).
  - "Identity rule: a KMIP server owns every object by the client identity that created or
    registered it. On PyKMIP the owner is the CN of the client certificate and only that CN may
    locate or get the object; Cosmian KMS maps the CN to a user, Thales and Fortanix map the
    certificate to a client or group with similar ownership. Use the same client identity as
    the pg_tde provider."
'''
