# Copyright: tdeops.pg_tde contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only swap inspection for tdeops.pg_tde.hardening (run by ansible.builtin.script).

Prints one JSON object: what swap exists (/proc/swaps, /etc/fstab, /etc/crypttab), whether a
hibernation resume device is configured, whether device-mapper is available, and - for the
requested mode - the plan the role applies (crypttab lines, fstab rewrites, swapoff/swapon) or
the reasons it refuses. It never changes anything.

Usage: swap_plan.py MODE ALLOW_REMOVE PREFIX CIPHER SIZE IN_CONTAINER

In a container (IN_CONTAINER true) /proc/swaps shows the host's swap, which the container cannot
change: active swaps are then reported but left out of the plan.
"""
from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

FSTAB = os.environ.get('HARDENING_FSTAB', '/etc/fstab')
CRYPTTAB = os.environ.get('HARDENING_CRYPTTAB', '/etc/crypttab')
PROC_SWAPS = os.environ.get('HARDENING_PROC_SWAPS', '/proc/swaps')
PROC_CMDLINE = os.environ.get('HARDENING_PROC_CMDLINE', '/proc/cmdline')
RESUME_FILES = ['/etc/initramfs-tools/conf.d/resume', '/etc/uswsusp.conf', '/etc/default/grub',
                '/etc/suspend.conf'] + sorted(glob.glob('/etc/dracut.conf.d/*.conf')) \
    + sorted(glob.glob('/etc/default/grub.d/*.cfg'))


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def table_lines(text):
    """(line, fields) of the non-comment, non-empty lines of an fstab-like file."""
    out = []
    for line in (text or '').splitlines():
        s = line.strip()
        if not s or s.startswith('#'):
            continue
        out.append((line, s.split()))
    return out


def active_swaps():
    out = []
    for line in (read(PROC_SWAPS) or '').splitlines()[1:]:
        f = line.split()
        if len(f) >= 2:
            out.append({'name': f[0].replace('\\040', ' '), 'type': f[1]})
    return out


def blkid_resolve(spec):
    """Device path for UUID=/LABEL=/PARTUUID=/PARTLABEL= specs, else the spec itself."""
    if re.match(r'^(UUID|LABEL|PARTUUID|PARTLABEL)=', spec):
        try:
            res = subprocess.run(['blkid', '-l', '-o', 'device', '-t', spec],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 universal_newlines=True, timeout=30, check=False)
            dev = res.stdout.strip()
            return dev or None
        except (OSError, subprocess.SubprocessError):
            return None
    return spec


def stable_path(dev):
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


def is_crypt_dm(dev):
    """True for an active dm-crypt device (dm uuid CRYPT-...), by /dev/dm-N or /dev/mapper/NAME."""
    real = os.path.realpath(dev)
    base = os.path.basename(real)
    if not base.startswith('dm-'):
        return False
    uuid = read('/sys/block/%s/dm/uuid' % base) or ''
    return uuid.startswith('CRYPT-')


def resume_configured():
    found = []
    cmdline = read(PROC_CMDLINE) or ''
    for tok in cmdline.split():
        if tok.startswith('resume=') and tok != 'resume=none':
            found.append('kernel command line: %s' % tok)
    for path in RESUME_FILES:
        text = read(path)
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


def dm_available():
    misc = read('/proc/misc') or ''
    return os.path.exists('/dev/mapper/control') or bool(re.search(r'\bdevice-mapper\b', misc))


def main(argv):
    mode, allow_remove, prefix, cipher, size = argv[1], argv[2] in ('1', 'true', 'True'), argv[3], argv[4], argv[5]
    in_container = len(argv) > 6 and argv[6] in ('1', 'true', 'True')
    fstab_text = read(FSTAB)
    crypttab_text = read(CRYPTTAB)
    crypt = {}
    for line, f in table_lines(crypttab_text):
        if len(f) >= 2:
            crypt[f[0]] = {'name': f[0], 'device': f[1], 'key': f[2] if len(f) > 2 else 'none',
                           'options': f[3] if len(f) > 3 else '', 'line': line}
    fstab = []
    for line, f in table_lines(fstab_text):
        if len(f) >= 3 and f[2] == 'swap':
            src = f[0]
            entry = {'src': src, 'line': line, 'options': f[3] if len(f) > 3 else 'defaults'}
            m = re.match(r'^/dev/mapper/(.+)$', src)
            if m and m.group(1) in crypt:
                c = crypt[m.group(1)]
                entry['encrypted'] = True
                entry['crypt_name'] = m.group(1)
                entry['random_key'] = c['key'] in ('/dev/urandom', '/dev/random')
            else:
                entry['encrypted'] = False
                entry['device'] = blkid_resolve(src)
            fstab.append(entry)
    host_active = active_swaps()
    active = [] if in_container else host_active
    for a in active:
        a['encrypted'] = is_crypt_dm(a['name'])
        a['zram'] = os.path.basename(a['name']).startswith('zram')
        a['in_fstab'] = False
        for e in fstab:
            dev = e.get('device') or ('/dev/mapper/' + e['crypt_name'] if e.get('crypt_name') else e['src'])
            if dev and os.path.exists(dev) and os.path.exists(a['name']) and \
                    os.path.realpath(dev) == os.path.realpath(a['name']):
                a['in_fstab'] = True
    resume = resume_configured()
    facts = {'active': active, 'host_active_in_container': host_active if in_container else [],
             'fstab': fstab, 'crypttab': list(crypt.values()), 'resume': resume,
             'dm_available': dm_available(), 'fstab_present': fstab_text is not None}
    plan = {'crypttab_add': [], 'fstab_replace': [], 'swapoff': [], 'swapon': [], 'start': [],
            'comment_fstab': [], 'comment_crypttab': []}
    refuse = []
    notes = []
    plaintext_active = [a for a in active if not a['encrypted'] and not a['zram']]
    encrypted_active = [a for a in active if a['encrypted']]

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
            path, kind = stable_path(dev)
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
            for a in plaintext_active:
                if os.path.exists(dev) and os.path.realpath(a['name']) == os.path.realpath(dev):
                    plan['swapoff'].append(a['name'])
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
    active_real = set(os.path.realpath(a['name']) for a in host_active)
    facts['encrypted_inactive'] = ['/dev/mapper/' + e['crypt_name'] for e in fstab if e.get('crypt_name')
                                   and os.path.realpath('/dev/mapper/' + e['crypt_name']) not in active_real]
    facts['plan'] = plan
    facts['refuse'] = refuse
    facts['notes'] = notes
    facts['plaintext_active'] = [a['name'] for a in plaintext_active]
    print(json.dumps(facts))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
