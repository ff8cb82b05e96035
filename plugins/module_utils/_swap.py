# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Swap inspection and plan of the hardening role (module swap_plan): what swap exists
(/proc/swaps, fstab, crypttab), whether hibernation resume is configured, whether device-mapper
is there, and for a mode (keep | none | encrypted) the plan the role applies or the reasons it
refuses. Reads only. The file locations come in a SwapPaths, so tests can point at their own."""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

# run(argv) -> (rc, stdout, stderr): AnsibleModule.run_command in the module
Runner = Callable[[list[str]], tuple[int, str, str]]


def default_resume_files() -> list[str]:
    return (['/etc/initramfs-tools/conf.d/resume', '/etc/uswsusp.conf', '/etc/default/grub', '/etc/suspend.conf']
            + sorted(glob.glob('/etc/dracut.conf.d/*.conf')) + sorted(glob.glob('/etc/default/grub.d/*.cfg')))


@dataclass
class SwapPaths:
    fstab: str = '/etc/fstab'
    crypttab: str = '/etc/crypttab'
    proc_swaps: str = '/proc/swaps'
    proc_cmdline: str = '/proc/cmdline'
    proc_misc: str = '/proc/misc'
    resume_files: list[str] = field(default_factory=default_resume_files)


def read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def table_lines(text: str | None) -> list[tuple[str, list[str]]]:
    """(line, fields) of the non-comment, non-empty lines of an fstab-like file."""
    out = []
    for line in (text or '').splitlines():
        s = line.strip()
        if not s or s.startswith('#'):
            continue
        out.append((line, s.split()))
    return out


def active_swaps(text: str | None) -> list[dict[str, Any]]:
    out = []
    for line in (text or '').splitlines()[1:]:
        f = line.split()
        if len(f) >= 2:
            out.append({'name': f[0].replace('\\040', ' '), 'type': f[1]})
    return out


def blkid_resolver(run: Runner) -> Callable[[str], str | None]:
    """Device path for UUID=/LABEL=/PARTUUID=/PARTLABEL= specs (blkid), else the spec itself."""
    def resolve(spec: str) -> str | None:
        if re.match(r'^(UUID|LABEL|PARTUUID|PARTLABEL)=', spec):
            try:
                _rc, out, _err = run(['blkid', '-l', '-o', 'device', '-t', spec])
            except OSError:
                return None
            return out.strip() or None
        return spec
    return resolve


def stable_path(dev: str) -> tuple[str | None, str | None]:
    """A path that survives reboots AND the loss of the swap signature (plain dm-crypt with a
    random key rewrites the device each boot, so UUID= / LABEL= stop working)."""
    if os.path.isfile(dev):
        return dev, 'file'
    real = os.path.realpath(dev)
    for d in ('/dev/disk/by-partuuid', '/dev/disk/by-id'):
        for link in sorted(glob.glob(d + '/*')):
            if os.path.realpath(link) == real and not os.path.basename(link).startswith('dm-'):
                return link, 'partition'
    return None, None


def is_crypt_dm(dev: str) -> bool:
    """True for an active dm-crypt device (dm uuid CRYPT-...), by /dev/dm-N or /dev/mapper/NAME."""
    base = os.path.basename(os.path.realpath(dev))
    if not base.startswith('dm-'):
        return False
    return (read('/sys/block/%s/dm/uuid' % base) or '').startswith('CRYPT-')


def resume_configured(cmdline: str | None, files: dict[str, str | None]) -> list[str]:
    """Where a hibernation resume device is configured: the kernel command line, initramfs,
    uswsusp, grub and dracut files ({path: text or None})."""
    found = []
    for tok in (cmdline or '').split():
        if tok.startswith('resume=') and tok != 'resume=none':
            found.append('kernel command line: %s' % tok)
    for path, text in files.items():
        if text is None:
            continue
        for line in text.splitlines():
            s = line.strip()
            if not s or s.startswith('#'):
                continue
            if re.match(r'^RESUME\s*=', s) and not re.match(r'^RESUME\s*=\s*"?none"?\s*$', s, re.I):
                found.append('%s: %s' % (path, s))
            elif re.match(r'^resume device\s*[=:]', s):
                found.append('%s: %s' % (path, s))
            elif re.search(r'(^|[\s"])resume=(?!none)', s):
                found.append('%s: %s' % (path, s))
            elif path.startswith('/etc/dracut.conf.d') and re.search(r'add_dracutmodules.*resume', s):
                found.append('%s: %s' % (path, s))
    return found


@dataclass
class Host:
    """What the plan needs to know of the host, read once (tests build it directly)."""
    fstab_text: str | None
    crypttab_text: str | None
    swaps_text: str | None
    resume: list[str]
    dm_available: bool
    resolve: Callable[[str], str | None] = lambda spec: spec
    stable: Callable[[str], tuple[str | None, str | None]] = stable_path
    is_crypt: Callable[[str], bool] = is_crypt_dm
    same_file: Callable[[str, str], bool] = lambda a, b: (
        os.path.exists(a) and os.path.exists(b) and os.path.realpath(a) == os.path.realpath(b))


def read_host(paths: SwapPaths, run: Runner) -> Host:
    misc = read(paths.proc_misc) or ''
    return Host(fstab_text=read(paths.fstab), crypttab_text=read(paths.crypttab), swaps_text=read(paths.proc_swaps),
                resume=resume_configured(read(paths.proc_cmdline), {p: read(p) for p in paths.resume_files}),
                dm_available=os.path.exists('/dev/mapper/control') or bool(re.search(r'\bdevice-mapper\b', misc)),
                resolve=blkid_resolver(run))


def swap_plan(host: Host, mode: str, allow_remove: bool, prefix: str, cipher: str, size: str,
              in_container: bool) -> dict[str, Any]:
    """The swap facts and the plan for `mode` (keep | none | encrypted), with refuse (reasons
    not to change anything) and notes. In a container /proc/swaps shows the host's swap, which
    the container cannot change: active swaps are reported but left out of the plan."""
    crypt: dict[str, dict[str, Any]] = {}
    for line, f in table_lines(host.crypttab_text):
        if len(f) >= 2:
            crypt[f[0]] = {'name': f[0], 'device': f[1], 'key': f[2] if len(f) > 2 else 'none',
                           'options': f[3] if len(f) > 3 else '', 'line': line}
    fstab: list[dict[str, Any]] = []
    for line, f in table_lines(host.fstab_text):
        if len(f) >= 3 and f[2] == 'swap':
            src = f[0]
            entry: dict[str, Any] = {'src': src, 'line': line, 'options': f[3] if len(f) > 3 else 'defaults'}
            m = re.match(r'^/dev/mapper/(.+)$', src)
            if m and m.group(1) in crypt:
                entry['encrypted'] = True
                entry['crypt_name'] = m.group(1)
                entry['random_key'] = crypt[m.group(1)]['key'] in ('/dev/urandom', '/dev/random')
            else:
                entry['encrypted'] = False
                entry['device'] = host.resolve(src)
            fstab.append(entry)
    host_active = active_swaps(host.swaps_text)
    active = [] if in_container else host_active
    for a in active:
        a['encrypted'] = host.is_crypt(a['name'])
        a['zram'] = os.path.basename(a['name']).startswith('zram')
        a['in_fstab'] = any(host.same_file(e.get('device') or ('/dev/mapper/' + e['crypt_name'] if e.get('crypt_name')
                                                               else e['src']), a['name']) for e in fstab)
    facts: dict[str, Any] = {'active': active, 'host_active_in_container': host_active if in_container else [],
                             'fstab': fstab, 'crypttab': list(crypt.values()), 'resume': host.resume,
                             'dm_available': host.dm_available, 'fstab_present': host.fstab_text is not None}
    plan: dict[str, list[Any]] = {'crypttab_add': [], 'fstab_replace': [], 'swapoff': [], 'swapon': [], 'start': [],
                                  'comment_fstab': [], 'comment_crypttab': []}
    refuse: list[str] = []
    notes: list[str] = []
    plaintext_active = [a for a in active if not a['encrypted'] and not a['zram']]
    encrypted_active = [a for a in active if a['encrypted']]
    resume = host.resume

    if mode == 'keep':
        if plaintext_active:
            notes.append('plaintext swap active (%s): decrypted keys can be paged out to disk; '
                         'set hardening_swap: encrypted or none' % ', '.join(a['name'] for a in plaintext_active))
    elif mode == 'none':
        if resume:
            refuse.append('hibernation is configured (%s): removing swap breaks resume; remove the '
                          'resume configuration first' % '; '.join(resume))
        to_remove = [a for a in active if not a['zram']]
        if (to_remove or fstab) and not allow_remove:
            refuse.append('hardening_swap: none would remove all swap of this host (%s); set '
                          'hardening_swap_allow_remove: true to allow it'
                          % ', '.join(sorted(set([a['name'] for a in to_remove] + [e['src'] for e in fstab]))))
        plan['swapoff'] = [a['name'] for a in to_remove]
        plan['comment_fstab'] = [e['line'] for e in fstab]
        plan['comment_crypttab'] = [c['line'] for c in crypt.values() if 'swap' in c['options'].split(',')]
    elif mode == 'encrypted':
        if resume:
            refuse.append('hibernation is configured (%s): swap encrypted with a random key per boot '
                          'cannot be resumed from; remove the resume configuration first, or keep '
                          'hardening_swap: keep' % '; '.join(resume))
        used = set(crypt)
        n = 0
        for e in fstab:
            if e['encrypted']:
                if not e.get('random_key'):
                    notes.append('%s is dm-crypt with a persistent key (crypttab), left as it is' % e['src'])
                continue
            dev = e.get('device')
            if not dev:
                refuse.append('cannot resolve fstab swap source %s to a device (blkid)' % e['src'])
                continue
            path, kind = host.stable(dev)
            if not path:
                refuse.append('no stable path (/dev/disk/by-partuuid, /dev/disk/by-id) for swap device %s '
                              '(%s): UUID=/LABEL= do not survive random-key encryption; add it by hand' % (dev, e['src']))
                continue
            while '%s%d' % (prefix, n) in used:
                n += 1
            name = '%s%d' % (prefix, n)
            used.add(name)
            plan['crypttab_add'].append({'name': name, 'line': '%s %s /dev/urandom swap,cipher=%s,size=%s'
                                         % (name, path, cipher, size), 'device': path, 'kind': kind})
            f = e['line'].split()
            f[0] = '/dev/mapper/' + name
            plan['fstab_replace'].append({'old': e['line'], 'new': '\t'.join(f)})
            plan['swapoff'] += [a['name'] for a in plaintext_active if host.same_file(a['name'], dev)]
            plan['start'].append(name)
            plan['swapon'].append('/dev/mapper/' + name)
        for a in plaintext_active:
            if not a['in_fstab']:
                refuse.append('active plaintext swap %s is not in /etc/fstab: the role cannot convert it; '
                              'swapoff it and add it to fstab, or convert it by hand' % a['name'])
        if plan['swapoff'] and not encrypted_active and not allow_remove and \
                len(plan['swapoff']) >= len([a for a in active if not a['zram']]):
            refuse.append('converting %s to encrypted swap needs swapoff of the only swap of this host; '
                          'set hardening_swap_allow_remove: true to allow it' % ', '.join(plan['swapoff']))
        if not fstab and not active:
            notes.append('no swap configured: nothing to encrypt')
    # configured as encrypted swap in fstab but not active (not activated yet, or in a container)
    facts['encrypted_inactive'] = ['/dev/mapper/' + e['crypt_name'] for e in fstab if e.get('crypt_name')
                                   and not any(host.same_file('/dev/mapper/' + e['crypt_name'], a['name'])
                                               for a in host_active)]
    facts['plan'] = plan
    facts['refuse'] = refuse
    facts['notes'] = notes
    facts['plaintext_active'] = [a['name'] for a in plaintext_active]
    return facts
