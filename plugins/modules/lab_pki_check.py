#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: lab_pki_check
short_description: Say whether the lab PKI is already what the lab_kms role would leave (read-only, LAB AND TEST ONLY)
version_added: 1.0.0
description:
  - LAB AND TEST ONLY, like the C(tdeops.pg_tde.lab_kms) role that uses it. One look at the
    throw-away PKI in O(pki_dir) (the CA, the client certificates and the KMS server certificate) -
    every key an RSA key of O(key_size) bits, every certificate issued for its key with exactly the
    request the role makes (subject, basic constraints, key usage, extended key usage, subject
    alternative names in their order), signed by the lab CA, valid for longer than O(renew_days),
    and the modes of the directory and files.
  - RV(fresh) is true only when nothing differs; the role then skips its community.crypto tasks,
    which would change nothing. Anything in doubt is listed in RV(problems), and the role runs
    those tasks, which decide what to issue again. Reads public material and key sizes only;
    nothing of a key is returned.
  - Never changes anything; C(changed) is always false. Run it where the PKI is (the role runs it
    on the controller).
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.info_module
  - tdeops.pg_tde.attributes.actiongroup_none
options:
  pki_dir:
    description: The lab PKI directory (C(lab_kms_pki_dir)), wanted with mode C(0700).
    type: path
    required: true
  certs:
    description: The certificates, each as C(<name>.key) and C(<name>.crt) in O(pki_dir); exactly one of kind C(ca).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The file name without C(.key)/C(.crt).
        type: str
        required: true
      cn:
        description: The common name, the whole subject of the request.
        type: str
        required: true
      kind:
        description: C(ca) (self-signed), C(client) (clientAuth) or C(server) (serverAuth).
        type: str
        required: true
        choices: [ca, client, server]
      sans:
        description: The subject alternative names of the request (C(DNS:name), C(IP:address)), in order; empty means C(DNS:<cn>).
        type: list
        elements: str
        default: []
  key_size:
    description: The RSA key size (C(lab_kms_key_size)).
    type: int
    default: 2048
  renew_days:
    description: A certificate that expires within this many days is not fresh (C(lab_kms_cert_renew_days)).
    type: int
    default: 30
seealso:
  - module: tdeops.pg_tde.kms_client_files
'''

EXAMPLES = r'''
- name: Is the lab PKI what the role would leave?
  tdeops.pg_tde.lab_pki_check:
    pki_dir: /srv/lab/state/pki
    certs:
      - {name: ca, cn: tdeops lab CA, kind: ca}
      - {name: pg_tde, cn: pg_tde, kind: client}
      - {name: server-kms1, cn: kms1, kind: server, sans: ['DNS:kms1', 'IP:127.0.0.1']}
  delegate_to: localhost
  register: pki
'''

RETURN = r'''
fresh:
  description: True when RV(problems) is empty, so the role's PKI tasks would change nothing.
  returned: always
  type: bool
problems:
  description: What differs from what the role would leave, one line each (file, what, why).
  returned: always
  type: list
  elements: str
  sample: ['server-kms1: it expires 2027-01-01T00:00:00+00:00, within the renewal margin of 30 days']
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tdeops.pg_tde.plugins.module_utils._lab_pki import HAS_CRYPTOGRAPHY, pki_problems


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            pki_dir=dict(type='path', required=True),
            certs=dict(type='list', elements='dict', required=True, options=dict(
                name=dict(type='str', required=True),
                cn=dict(type='str', required=True),
                kind=dict(type='str', required=True, choices=['ca', 'client', 'server']),
                sans=dict(type='list', elements='str', default=[]),
            )),
            key_size=dict(type='int', default=2048),
            renew_days=dict(type='int', default=30),
        ),
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'))
    p = module.params
    if sum(1 for c in p['certs'] if c['kind'] == 'ca') != 1:
        module.fail_json(msg='certs must name exactly one certificate of kind ca (the lab CA)')
    problems = pki_problems(p['pki_dir'], p['certs'], p['key_size'], p['renew_days'])
    module.exit_json(changed=False, fresh=not problems, problems=problems)


if __name__ == '__main__':
    main()
