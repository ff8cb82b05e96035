# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Files on the database host as the PostgreSQL OS user sees them: who that user is, whether it
can reach, read (and write) a path, and whether a secret file is open to others.

One rule for every check: every directory from / down must be searchable and the file must
have the read (write) bit for the user by owner, group or other, as the kernel decides; root
may do anything, but the file must exist. ACLs are not evaluated. Paths only: nothing here
reads a file's content."""
from __future__ import annotations

import os
import stat
from typing import Any, Callable

StatFunc = Callable[[str], Any]


def os_user_ids(user: str) -> tuple[int, list[int]] | None:
    """(uid, group ids) of an OS user by name, None when there is no such user here."""
    import pwd
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    return pw.pw_uid, sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid)))


def server_os_identity(session: Any) -> dict[str, Any] | None:
    """The OS user that runs PostgreSQL, from the owner of its data directory, when the data
    directory is on this host: {'user', 'uid', 'gids', 'data_directory'}; None otherwise (the
    module does not run on the database host, or the role may not read data_directory)."""
    import pwd
    try:
        row = session.query_one("SELECT current_setting('data_directory') AS d")
    except Exception:
        return None
    datadir = row['d'] if row else None
    if not datadir or not os.path.isdir(datadir):
        return None
    st = os.stat(datadir)
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        return {'user': str(st.st_uid), 'uid': st.st_uid, 'gids': [st.st_gid], 'data_directory': datadir}
    ids = os_user_ids(name) or (st.st_uid, [st.st_gid])
    return {'user': name, 'uid': ids[0], 'gids': ids[1], 'data_directory': datadir}


def _allowed(st: Any, uid: int, gids: list[int], owner_bit: int, group_bit: int, other_bit: int) -> bool:
    """The kernel's owner / group / other rule (root may do anything)."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & owner_bit)
    if st.st_gid in gids:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


def _mode_text(st: Any) -> str:
    return 'mode %04o, owner uid %d, gid %d' % (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def _dir_walk_problem(directory: str, uid: int, gids: list[int], st_fn: StatFunc) -> str | None:
    """Every directory from / down to directory must exist and be searchable."""
    current = '/'
    for part in [p for p in directory.split('/') if p]:
        current = os.path.join(current, part)
        try:
            st = st_fn(current)
        except FileNotFoundError:
            return 'does not exist (directory %s is missing)' % current
        except OSError as exc:
            return 'cannot be checked: %s' % exc
        if not stat.S_ISDIR(st.st_mode):
            return 'does not exist (%s is not a directory)' % current
        if not _allowed(st, uid, gids, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return 'is not reachable: directory %s is not searchable for the user (%s)' % (current, _mode_text(st))
    return None


def path_access_problem(path: str | None, uid: int, gids: list[int], need_write: bool = False,
                        stat_func: StatFunc | None = None) -> str | None:
    """Why the OS user uid (with groups gids) cannot read (and write) path, or None when it can.
    Problems of a missing file start with 'does not exist'."""
    if not path:
        return 'is empty'
    if not os.path.isabs(path):
        return 'is not an absolute path'
    st_fn = stat_func or os.stat
    problem = _dir_walk_problem(os.path.dirname(path), uid, gids, st_fn)
    if problem:
        return problem
    try:
        st = st_fn(path)
    except FileNotFoundError:
        return 'does not exist'
    except OSError as exc:
        return 'cannot be checked: %s' % exc
    if stat.S_ISDIR(st.st_mode):
        return 'is a directory, not a file'
    if not _allowed(st, uid, gids, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH):
        return 'is not readable for the user (%s)' % _mode_text(st)
    if need_write and not _allowed(st, uid, gids, stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH):
        return 'is not writable for the user (%s)' % _mode_text(st)
    return None


def dir_write_problem(path: str, uid: int, gids: list[int], stat_func: StatFunc | None = None) -> str | None:
    """For a file that pg_tde will create: its directory must exist, be searchable and writable."""
    st_fn = stat_func or os.stat
    directory = os.path.dirname(path) or '/'
    problem = _dir_walk_problem(directory, uid, gids, st_fn)
    if problem:
        return problem
    st = st_fn(directory)
    if not _allowed(st, uid, gids, stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH):
        return 'cannot be created: directory %s is not writable for the user (%s)' % (directory, _mode_text(st))
    return None


def file_access_problems(path: str, user: str) -> list[str]:
    """path_access_problem() for an OS user given by name, as sentences that name the user and
    the path; [] when the user can read the file."""
    ids = os_user_ids(user)
    if ids is None:
        return ['the OS user %s does not exist on this host' % user]
    problem = path_access_problem(os.path.abspath(path), ids[0], ids[1])
    return ['%s cannot read %s: the path %s' % (user, path, problem)] if problem else []


def loose_secret_mode(path: str) -> str | None:
    """A sentence when a private key or token file is open to other users: anything for others,
    or group write/execute (group read, 0640, is tolerated)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if mode & 0o077 & ~0o040:
        return '%s has mode %04o: a secret must not be accessible to other users (use 0600)' % (path, mode)
    return None
