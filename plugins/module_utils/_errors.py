# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL's and pg_tde's error texts, written once: the texts themselves (for messages that
quote what pg_tde would say), PostgreSQL's own words of an exception (pg_error_text, sqlstate),
and what a pg_tde text means and what to do (explain_tde_error). The text itself is always
passed on; the explanation is added after it.

The texts are those of pg_tde 2.2.0 (pg_tde facts, section 5, and observed runs). Keep them
exact: tests/integration/test_error_texts.py checks every ERROR/FATAL line the real server
wrote against explain_tde_error()."""
from __future__ import annotations

import re

# --- pg_tde's texts (%s stands for a name pg_tde fills in) ----------------------------------------

KMIP_CONNECT_FAILED = 'SSL error: BIO_do_connect failed'
KMIP_CLIENT_CERT_FAILED = 'SSL error: Loading the client certificate failed'
KMIP_CLIENT_KEY_FAILED = 'SSL error: Loading the client key failed'
KMIP_CA_FAILED = 'SSL error: Loading the CA certificate failed'
VAULT_REQUEST_FAILED = 'HTTP(S) request to keyring provider "%s" failed'
VAULT_ENGINE_TYPE = 'vault mount at "%s" has unsupported engine type "%s"'
VAULT_KV_VERSION = 'vault mount at "%s" has unsupported Key/Value engine version "%s"'
VAULT_NO_VERSION = 'failed to parse mount info for "%s" at mountpoint "%s": missing version field'
VAULT_LIST_FAILED = 'Listing secrets of "%s" at mountpoint "%s" failed'
PROVIDER_IN_USE = 'cannot delete provider which is currently in use'
PROVIDER_MISSING = 'key provider "%s" does not exists'
PROVIDER_EXISTS = 'Key provider "%s" already exists.'
PROVIDER_CHANGE_OTHER_DB = 'key "%s" used by database "%s" not found in modified key provider "%s"'
KEY_MISSING = 'key "%s" does not exist'
KEY_NOT_FOUND = 'key "%s" not found in key provider "%s"'
KEY_EXISTS = 'cannot create key "%s" because it already exists'
NO_PRINCIPAL_KEY = 'principal key not configured'
ENFORCE_REFUSED = 'pg_tde.enforce_encryption is ON, only the tde_heap access method is allowed.'
NOT_PRELOADED = 'pg_tde can only be loaded at server startup. Restart required.'
FILE_COPY_REFUSED = 'The FILE_COPY strategy cannot be used when there are encrypted objects in the template database'


def text_pattern(text: str) -> re.Pattern[str]:
    """A regular expression for one of the texts above: literal, each %s one captured name."""
    return re.compile(re.escape(text).replace('%s', '(.*)'))


# --- PostgreSQL's words of an exception ------------------------------------------------------------


def pg_error_text(exc: BaseException) -> str:
    """PostgreSQL's own words: message, SQLSTATE, detail and hint, as psql shows them."""
    diag = getattr(exc, 'diag', None)
    if diag is None or not getattr(diag, 'message_primary', None):
        return str(exc).strip()
    text = diag.message_primary
    if diag.sqlstate:
        text = '%s (SQLSTATE %s)' % (text, diag.sqlstate)
    if diag.message_detail:
        text += ' DETAIL: %s' % diag.message_detail
    if diag.message_hint:
        text += ' HINT: %s' % diag.message_hint
    return text


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg error, None for anything else."""
    diag = getattr(exc, 'diag', None)
    return getattr(diag, 'sqlstate', None) if diag is not None else None


# --- texts the modules decide on -----------------------------------------------------------------

_KEY_EXISTS_RE = text_pattern(KEY_EXISTS)
_OTHER_DB_KEY_RE = text_pattern(PROVIDER_CHANGE_OTHER_DB)


def is_key_already_exists(text: str | None) -> bool:
    """pg_tde's answer to create_key for a key that is on the provider already."""
    return bool(text and _KEY_EXISTS_RE.search(text))


def other_database_in_change_error(text: str | None, database: str) -> tuple[str, str] | None:
    """(key, database) when pg_tde refused a change of a provider because of a key of a database
    other than `database` (database provider ids collide across databases), else None."""
    m = _OTHER_DB_KEY_RE.search(text or '')
    if not m or m.group(2) == database:
        return None
    return m.group(1), m.group(2)


# --- what a pg_tde text means and what to do (first match wins: specific texts first) ------------

_EXPLANATIONS: list[tuple[re.Pattern[str], str]] = [
    (text_pattern(KMIP_CONNECT_FAILED),
     'pg_tde could not open a TLS connection to the KMIP server. pg_tde uses this same text for '
     'three causes: the KMS is down or not reachable from the database host, the host or port is '
     'wrong, or the KMS does not trust the client certificate (signed by a CA it does not accept).'),
    (text_pattern(KMIP_CLIENT_CERT_FAILED),
     'PostgreSQL could not load the client certificate (kmip_cert): the file is missing, not '
     'readable by the PostgreSQL OS user, or not a PEM certificate.'),
    (text_pattern(KMIP_CLIENT_KEY_FAILED),
     'PostgreSQL could not load the client key (kmip_key): the file is missing, not readable by '
     'the PostgreSQL OS user, not a PEM key, or it does not match the client certificate.'),
    (text_pattern(KMIP_CA_FAILED),
     'PostgreSQL could not load the CA certificate (kmip_ca): the file is missing, not readable by '
     'the PostgreSQL OS user, or not a PEM certificate.'),
    (text_pattern(VAULT_REQUEST_FAILED),
     'pg_tde could not talk to Vault/OpenBao: check vault_url from the database host, that '
     'vault_ca_path signs the server certificate, and that the token in vault_token_path is valid.'),
    (re.compile(r'vault mount at "(.*)" has unsupported|at mountpoint "(.*)": missing version field'),
     'pg_tde stores keys only in a KV version 2 secrets engine (mount type "kv" with version 2; a '
     '"generic" mount is always version 1). Enable one ("bao secrets enable -path=<mount> kv-v2", '
     'or vault) and set vault_mount_path to it.'),
    (text_pattern(VAULT_LIST_FAILED),
     'The token in vault_token_path may not list <mount>/metadata, or the mount is not KV version 2: '
     'pg_tde needs list on <mount>/metadata, create and read on <mount>/data/*.'),
    (text_pattern(PROVIDER_IN_USE),
     'A principal key (server, default or a database key) still uses this provider. Rotate those '
     'keys to another provider (tdeops.pg_tde.pg_tde_key) before deleting it.'),
    (re.compile(r'(used as server key|used by database|does not match existing)'),
     'pg_tde changes a provider only when every key in use is still fetchable, and identical, '
     'through the new settings. The new settings reach a different KMS, identity or keyring that '
     'does not hold those keys: point them at the KMS that holds the keys, or rotate the keys to '
     'another provider first.'),
    (text_pattern(PROVIDER_MISSING),
     'The key provider does not exist in this scope: add it with tdeops.pg_tde.pg_tde_provider '
     '(check provider_scope: global providers and database providers are separate).'),
    (text_pattern(KEY_MISSING),
     'The key does not exist on the provider: create it (pg_tde_key create: true) or check the '
     'key name.'),
    (re.compile(r'not found in key provider'),
     'pg_tde could not fetch the key from its provider: the KMS is unreachable, or the key was '
     'deleted/destroyed there, or the provider now points elsewhere.'),
    (re.compile(re.escape(NO_PRINCIPAL_KEY) + ' for'),
     'No principal key is set for this target: set one with tdeops.pg_tde.pg_tde_key.'),
    (text_pattern(NO_PRINCIPAL_KEY),
     'No principal key is set where pg_tde needs one. At server start with pg_tde.wal_encrypt = on '
     '(FATAL) it is the server key: set it (tdeops.pg_tde.pg_tde_key, targets: [server]) before WAL '
     'encryption is turned on, or turn pg_tde.wal_encrypt off to start. For an encrypted table it is '
     'the key of the database or the default key (targets: [database] or [default]).'),
    (re.compile(r'cannot delete (default )?principal key'),
     'pg_tde keeps a key that encrypted data still needs: the default key while a database that uses it '
     'has encrypted tables or the WAL uses it as the server key, a database key while the database has '
     'encrypted tables and no default key to fall back to (the HINT/DETAIL names which). Give those '
     'databases a key of their own or a new default key first (tdeops.pg_tde.pg_tde_key).'),
    (re.compile(r'default principal key is not set|principal key does not exists for the database'),
     'There is no such key to delete (pg_tde_key state: absent finds nothing in place).'),
    (text_pattern(ENFORCE_REFUSED),
     'pg_tde.enforce_encryption is on (server, database or role): only tde_heap tables may be created or '
     'converted. Create tables USING tde_heap, or set default_table_access_method = tde_heap so that a '
     'plain CREATE TABLE is encrypted; a deliberate plaintext table needs enforcement off for that '
     'session or database (superuser).'),
    (re.compile(r'Failed to open keyring file'),
     'The PostgreSQL OS user cannot open the file keyring (file_path): its directory must exist and be '
     'writable, and the file readable and writable, for that user. A failed add can leave an empty '
     'keyring file behind.'),
    (re.compile(r'Invalid provider type'),
     'The generic pg_tde_add/change_*_key_provider() form knows the types file, vault-v2 and kmip only '
     '(pg_tde_provider type: file, vault_v2, kmip).'),
    (text_pattern(KEY_EXISTS),
     'A key of this name is already on the provider: set it (tdeops.pg_tde.pg_tde_key treats it as '
     'present), or choose a new name for a rotation. On a KMIP server names must be unique.'),
    (re.compile(r'already exists\.'),
     'A provider of this name already exists in this scope.'),
    (re.compile(r'permission denied for function pg_tde_'),
     'pg_tde revokes its functions from PUBLIC: the login role may not call this one. Connect as a '
     'superuser (login_user; the roles use pg_layout_user), or GRANT EXECUTE on the function for a '
     'read-only role.'),
    (re.compile(r'permission denied to examine "(.*)"'),
     'Reading this setting needs the pg_read_all_settings role (or a superuser): grant it to the login '
     'role, or connect as a superuser (login_user).'),
    (re.compile(r'must be superuser'),
     'Provider changes and operations on global key providers need a superuser: set login_user.'),
    (re.compile(r'usage of global key providers is disabled'),
     'pg_tde.inherit_global_providers is off: global providers cannot be used in databases.'),
    (re.compile(r'can only be loaded at server startup'),
     'pg_tde is not in shared_preload_libraries: add it and restart PostgreSQL.'),
    (re.compile(r'missing in the keyring options'),
     'A required provider option is empty.'),
    (text_pattern(FILE_COPY_REFUSED),
     'The template database holds encrypted tables: create the database with the default WAL_LOG '
     'strategy, which re-encrypts them with the new database\'s key (the default key, so one must be set).'),
]


def explain_tde_error(text: str | None) -> str | None:
    """What a pg_tde error means and what to do, or None when there is nothing to add."""
    if not text:
        return None
    for pattern, explanation in _EXPLANATIONS:
        if pattern.search(text):
            return explanation
    return None


def tde_failure_message(action: str, text: str, extra: str | None = None) -> str:
    """'<action> failed: <pg_tde text>. <explanation> <extra>'."""
    msg = '%s failed: %s' % (action, text.rstrip('.') + '.')
    explanation = explain_tde_error(text)
    if explanation:
        msg += ' ' + explanation
    if extra:
        msg += ' ' + extra
    return msg
