#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: swap_plan
short_description: Inspect swap and plan keep, none or encrypted swap (read-only)
version_added: 1.0.0
description:
  - Reads what swap a host has (C(/proc/swaps), C(/etc/fstab), C(/etc/crypttab)), whether a
    hibernation resume device is configured (kernel command line, initramfs, uswsusp, grub,
    dracut) and whether device-mapper is available, and returns for O(mode) the plan the
    C(tdeops.pg_tde.hardening) role applies (crypttab lines, fstab rewrites, swapoff/swapon) or
    the reasons it refuses (RV(swap.refuse)).
  - Decrypted principal and data keys live in the memory of PostgreSQL; plaintext swap can page
    them out to disk. Encrypted swap uses plain dm-crypt with a random key per boot.
  - Never changes anything; C(changed) is always false.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.info_module
  - tdeops.pg_tde.attributes.actiongroup_none
options:
  mode:
    description:
      - C(keep) leaves swap alone and notes an active plaintext swap. C(none) plans swapoff and
        commenting out the swap entries of fstab and crypttab. C(encrypted) plans a crypttab
        mapping with a random key per boot for every plaintext swap in fstab.
    type: str
    required: true
    choices: [ keep, none, encrypted ]
  allow_remove:
    description: Allow a plan that removes the only swap of the host (C(none), or the swapoff of a conversion).
    type: bool
    default: false
  crypt_prefix:
    description: crypttab mapping names are O(crypt_prefix) followed by a number.
    type: str
    default: cryptswap
  cipher:
    description: dm-crypt cipher of the crypttab lines.
    type: str
    default: aes-xts-plain64
  key_size:
    description: Key size in bits of the crypttab lines.
    type: int
    default: 512
  in_container:
    description:
      - The host is a container. C(/proc/swaps) shows the swap of the machine, which the container
        cannot change; active swaps are reported in RV(swap.host_active_in_container) and left out of the plan.
    type: bool
    default: false
  fstab:
    description: The fstab to read.
    type: path
    default: /etc/fstab
  crypttab:
    description: The crypttab to read.
    type: path
    default: /etc/crypttab
notes:
  - UUID= and LABEL= sources do not survive random-key encryption; the plan uses
    C(/dev/disk/by-partuuid) or C(/dev/disk/by-id) paths, or refuses.
seealso:
  - module: tdeops.pg_tde.pg_tde_info
'''

EXAMPLES = r'''
- name: Plan encrypted swap
  tdeops.pg_tde.swap_plan:
    mode: encrypted
    in_container: "{{ ansible_facts['virtualization_role'] == 'guest' and ansible_facts['virtualization_type'] in ['podman', 'docker', 'container'] }}"
  register: swap

- name: Refuse what would break the host
  ansible.builtin.fail:
    msg: "{{ swap.swap.refuse | join('; ') }}"
  when: swap.swap.refuse | length > 0
'''

RETURN = r'''
swap:
  description: What the host has and the plan for O(mode).
  returned: always
  type: dict
  contains:
    active:
      description: Active swaps (C(name), C(type), C(encrypted), C(zram), C(in_fstab)); empty in a container.
      type: list
      elements: dict
    host_active_in_container:
      description: With O(in_container), the active swaps of the machine (not the container's to change).
      type: list
      elements: dict
    fstab:
      description: Swap entries of fstab (C(src), C(line), C(options), C(encrypted), C(device) or C(crypt_name)).
      type: list
      elements: dict
    crypttab:
      description: crypttab entries (C(name), C(device), C(key), C(options), C(line)).
      type: list
      elements: dict
    resume:
      description: Where hibernation resume is configured (each a place and the line).
      type: list
      elements: str
    dm_available:
      description: Whether device-mapper is available.
      type: bool
    fstab_present:
      description: Whether the fstab exists.
      type: bool
    encrypted_inactive:
      description: Encrypted swap configured in fstab but not active.
      type: list
      elements: str
    plaintext_active:
      description: Names of the active plaintext swaps.
      type: list
      elements: str
    plan:
      description:
        - C(crypttab_add) ({name, line, device, kind}), C(fstab_replace) ({old, new}), C(swapoff),
          C(start) (mapping names), C(swapon), C(comment_fstab) and C(comment_crypttab) (lines).
      type: dict
    refuse:
      description: Reasons not to apply the plan (empty when it can be applied).
      type: list
      elements: str
    notes:
      description: Remarks that are no refusal (for example an active plaintext swap with O(mode=keep)).
      type: list
      elements: str
  sample:
    plan: {crypttab_add: [], fstab_replace: [], swapoff: [], start: [], swapon: [], comment_fstab: [], comment_crypttab: []}
    refuse: []
    notes: ["no swap configured: nothing to encrypt"]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils._swap import SwapPaths, read_host, swap_plan


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type='str', required=True, choices=['keep', 'none', 'encrypted']),
            allow_remove=dict(type='bool', default=False),
            crypt_prefix=dict(type='str', default='cryptswap'),
            cipher=dict(type='str', default='aes-xts-plain64'),
            key_size=dict(type='int', default=512),
            in_container=dict(type='bool', default=False),
            fstab=dict(type='path', default='/etc/fstab'),
            crypttab=dict(type='path', default='/etc/crypttab'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    host = read_host(SwapPaths(fstab=p['fstab'], crypttab=p['crypttab']), module.run_command)
    module.exit_json(changed=False, swap=swap_plan(host, p['mode'], p['allow_remove'], p['crypt_prefix'], p['cipher'],
                                                   str(p['key_size']), p['in_container']))


if __name__ == '__main__':
    main()
