"""Unit tests of the swap plan of the hardening role (module_utils/_swap.py, module swap_plan):
keep / none / encrypted on hosts described in memory (no swap is touched)."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _swap as s

SWAPS = 'Filename\tType\tSize\tUsed\tPriority\n/dev/sda2 partition 1048572 0 -2\n'
FSTAB = 'UUID=abc none swap sw 0 0\n/dev/sda1 / ext4 defaults 0 1\n'


def host(fstab=FSTAB, crypttab=None, swaps=SWAPS, resume=(), dm=True, stable='/dev/disk/by-partuuid/p2',
         crypt=()):
    return s.Host(fstab_text=fstab, crypttab_text=crypttab, swaps_text=swaps, resume=list(resume), dm_available=dm,
                  resolve=lambda spec: '/dev/sda2' if spec == 'UUID=abc' else (None if spec.startswith('UUID=') else spec),
                  stable=lambda dev: (stable, 'partition') if stable else (None, None),
                  is_crypt=lambda dev: dev in crypt,
                  same_file=lambda a, b: a == b)


def plan(h, mode, allow_remove=False, in_container=False):
    return s.swap_plan(h, mode, allow_remove, 'cryptswap', 'aes-xts-plain64', '512', in_container)


def test_keep_notes_plaintext_swap_and_plans_nothing():
    out = plan(host(), 'keep')
    assert out['refuse'] == [] and out['plaintext_active'] == ['/dev/sda2']
    assert 'plaintext swap active (/dev/sda2)' in out['notes'][0]
    assert all(v == [] for v in out['plan'].values())
    assert out['active'][0]['in_fstab'] is True


def test_none_refuses_the_only_swap_unless_allowed():
    out = plan(host(), 'none')
    assert 'hardening_swap_allow_remove: true' in out['refuse'][0]
    out = plan(host(), 'none', allow_remove=True)
    assert out['refuse'] == []
    assert out['plan']['swapoff'] == ['/dev/sda2'] and out['plan']['comment_fstab'] == ['UUID=abc none swap sw 0 0']


def test_hibernation_refuses_none_and_encrypted():
    for mode in ('none', 'encrypted'):
        out = plan(host(resume=['kernel command line: resume=/dev/sda2']), mode, allow_remove=True)
        assert any(r.startswith('hibernation is configured') for r in out['refuse']), mode


def test_encrypted_plans_crypttab_fstab_and_activation():
    out = plan(host(), 'encrypted', allow_remove=True)
    assert out['refuse'] == []
    p = out['plan']
    assert p['crypttab_add'] == [{'name': 'cryptswap0', 'device': '/dev/disk/by-partuuid/p2', 'kind': 'partition',
                                  'line': 'cryptswap0 /dev/disk/by-partuuid/p2 /dev/urandom swap,cipher=aes-xts-plain64,size=512'}]
    assert p['fstab_replace'] == [{'old': 'UUID=abc none swap sw 0 0', 'new': '/dev/mapper/cryptswap0\tnone\tswap\tsw\t0\t0'}]
    assert p['swapoff'] == ['/dev/sda2'] and p['start'] == ['cryptswap0'] and p['swapon'] == ['/dev/mapper/cryptswap0']
    # the only swap: the swapoff needs allow_remove
    assert 'swapoff of the only swap' in plan(host(), 'encrypted')['refuse'][0]


def test_encrypted_skips_used_mapping_names_and_keeps_persistent_keys():
    crypttab = 'cryptswap0 /dev/sdb1 /etc/keyfile luks\n'
    fstab = FSTAB + '/dev/mapper/cryptswap0 none swap sw 0 0\n'
    out = plan(host(fstab=fstab, crypttab=crypttab), 'encrypted', allow_remove=True)
    assert [c['name'] for c in out['plan']['crypttab_add']] == ['cryptswap1']
    assert any('persistent key' in n for n in out['notes'])
    assert out['encrypted_inactive'] == ['/dev/mapper/cryptswap0']


def test_encrypted_refuses_unresolvable_and_unstable_sources():
    out = plan(host(fstab='UUID=gone none swap sw 0 0\n', swaps='Filename\n'), 'encrypted')
    assert 'cannot resolve fstab swap source UUID=gone' in out['refuse'][0]
    out = plan(host(stable=None), 'encrypted', allow_remove=True)
    assert 'no stable path' in out['refuse'][0]


def test_active_swap_outside_fstab_is_refused_for_encrypted():
    out = plan(host(fstab='', swaps=SWAPS), 'encrypted')
    assert 'is not in /etc/fstab' in out['refuse'][0]


def test_container_reports_the_machines_swap_but_plans_nothing_for_it():
    out = plan(host(fstab=''), 'none', in_container=True)
    assert out['active'] == [] and out['host_active_in_container'][0]['name'] == '/dev/sda2'
    assert out['refuse'] == [] and out['plan']['swapoff'] == []


def test_zram_is_not_removed():
    swaps = 'Filename\n/dev/zram0 partition 100 0 100\n'
    out = plan(host(fstab='', swaps=swaps), 'none')
    assert out['refuse'] == [] and out['plan']['swapoff'] == []


def test_resume_configured_reads_cmdline_and_files():
    found = s.resume_configured('quiet resume=/dev/sda2', {
        '/etc/initramfs-tools/conf.d/resume': 'RESUME=none\n',
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX="resume=UUID=x"\n',
        '/etc/dracut.conf.d/x.conf': 'add_dracutmodules+=" resume "\n',
        '/etc/uswsusp.conf': None})
    assert found == ['kernel command line: resume=/dev/sda2',
                     '/etc/default/grub: GRUB_CMDLINE_LINUX="resume=UUID=x"',
                     '/etc/dracut.conf.d/x.conf: add_dracutmodules+=" resume "']
    assert s.resume_configured('resume=none', {}) == []


def test_read_host_reads_the_given_files(tmp_path):
    fstab = tmp_path / 'fstab'
    fstab.write_text(FSTAB)
    calls = []
    h = s.read_host(s.SwapPaths(fstab=str(fstab), crypttab=str(tmp_path / 'none'), proc_swaps=str(tmp_path / 'x'),
                                proc_cmdline=str(tmp_path / 'x'), proc_misc=str(tmp_path / 'x'), resume_files=[]),
                    lambda argv: calls.append(argv) or (0, '/dev/sda2\n', ''))
    assert h.fstab_text == FSTAB and h.crypttab_text is None and h.resume == []
    # UUID= specs through blkid (the module's run_command), device paths as they are
    assert h.resolve('UUID=abc') == '/dev/sda2' and calls == [['blkid', '-l', '-o', 'device', '-t', 'UUID=abc']]
    assert h.resolve('/dev/sdb1') == '/dev/sdb1' and len(calls) == 1
