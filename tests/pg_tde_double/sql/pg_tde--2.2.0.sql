-- pg_tde TEST DOUBLE, extension script of "pg_tde" 2.2.0 for the tests of tdeops.pg_tde.
-- NOT Percona pg_tde: it encrypts NOTHING. Same function names, argument names, types,
-- overloads, languages and ACLs as pg_tde 2.2.0 (observed/functions.txt). The C entry
-- point pg_tde_double_api() of the double runs the PL/Python implementation
-- tde_double.dispatch() (language tde_double_python: the PL/Python 3 handler registered
-- under a private name, so the double needs no plpython3u extension) and raises its
-- WARNINGs and ERRORs itself, with pg_tde's exact texts. See tests/pg_tde_double/README.md.

\echo Use "CREATE EXTENSION pg_tde" to load this file. \quit

CREATE SCHEMA tde_double;
GRANT USAGE ON SCHEMA tde_double TO PUBLIC;

CREATE FUNCTION tde_double.python_call_handler() RETURNS language_handler
    AS '$libdir/plpython3', 'plpython3_call_handler' LANGUAGE C;
CREATE FUNCTION tde_double.python_inline_handler(internal) RETURNS void
    AS '$libdir/plpython3', 'plpython3_inline_handler' LANGUAGE C STRICT;
CREATE FUNCTION tde_double.python_validator(oid) RETURNS void
    AS '$libdir/plpython3', 'plpython3_validator' LANGUAGE C STRICT;
CREATE LANGUAGE tde_double_python
    HANDLER tde_double.python_call_handler
    INLINE tde_double.python_inline_handler
    VALIDATOR tde_double.python_validator;

-- internal: the PL/Python implementation behind every C entry point pg_tde_double_api()
CREATE FUNCTION tde_double.dispatch(function text, args_json text)
RETURNS text
LANGUAGE tde_double_python
AS $py$
import sys
_p = '/usr/share/postgresql/15/extension'
if _p not in sys.path:
    sys.path.append(_p)
from pg_tde_double_impl import dispatch
return dispatch(plpy, function, args_json)
$py$;

-- key providers
CREATE FUNCTION pg_tde_add_database_key_provider(type text, name text, options json)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_add_database_key_provider(text, text, json) FROM PUBLIC;

CREATE FUNCTION pg_tde_add_database_key_provider_file(provider_name text, file_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_add_database_key_provider('file', provider_name,
        json_build_object('path', file_path));
END;

CREATE FUNCTION pg_tde_add_database_key_provider_kmip(provider_name text, kmip_host text, kmip_port integer, kmip_cert_path text, kmip_key_path text, kmip_ca_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_add_database_key_provider('kmip', provider_name,
        json_build_object('host', kmip_host, 'port', kmip_port, 'certPath', kmip_cert_path,
                          'keyPath', kmip_key_path, 'caPath', kmip_ca_path));
END;

CREATE FUNCTION pg_tde_add_database_key_provider_vault_v2(provider_name text, vault_url text, vault_mount_path text, vault_token_path text, vault_ca_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_add_database_key_provider('vault-v2', provider_name,
        json_build_object('url', vault_url, 'mountPath', vault_mount_path,
                          'tokenPath', vault_token_path, 'caPath', vault_ca_path));
END;

CREATE FUNCTION pg_tde_add_database_key_provider_vault_v2(provider_name text, vault_url text, vault_mount_path text, vault_token_path text, vault_ca_path text, vault_namespace text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_add_database_key_provider('vault-v2', provider_name,
        json_build_object('url', vault_url, 'mountPath', vault_mount_path,
                          'tokenPath', vault_token_path, 'caPath', vault_ca_path,
                          'namespace', vault_namespace));
END;

CREATE FUNCTION pg_tde_change_database_key_provider(type text, name text, options json)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_change_database_key_provider(text, text, json) FROM PUBLIC;

CREATE FUNCTION pg_tde_change_database_key_provider_file(provider_name text, file_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_change_database_key_provider('file', provider_name,
        json_build_object('path', file_path));
END;

CREATE FUNCTION pg_tde_change_database_key_provider_kmip(provider_name text, kmip_host text, kmip_port integer, kmip_cert_path text, kmip_key_path text, kmip_ca_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_change_database_key_provider('kmip', provider_name,
        json_build_object('host', kmip_host, 'port', kmip_port, 'certPath', kmip_cert_path,
                          'keyPath', kmip_key_path, 'caPath', kmip_ca_path));
END;

CREATE FUNCTION pg_tde_change_database_key_provider_vault_v2(provider_name text, vault_url text, vault_mount_path text, vault_token_path text, vault_ca_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_change_database_key_provider('vault-v2', provider_name,
        json_build_object('url', vault_url, 'mountPath', vault_mount_path,
                          'tokenPath', vault_token_path, 'caPath', vault_ca_path));
END;

CREATE FUNCTION pg_tde_change_database_key_provider_vault_v2(provider_name text, vault_url text, vault_mount_path text, vault_token_path text, vault_ca_path text, vault_namespace text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_change_database_key_provider('vault-v2', provider_name,
        json_build_object('url', vault_url, 'mountPath', vault_mount_path,
                          'tokenPath', vault_token_path, 'caPath', vault_ca_path,
                          'namespace', vault_namespace));
END;

CREATE FUNCTION pg_tde_delete_database_key_provider(provider_name text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_delete_database_key_provider(text) FROM PUBLIC;

CREATE FUNCTION pg_tde_list_all_database_key_providers(OUT id integer, OUT name text, OUT type text, OUT options json)
RETURNS SETOF record
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_list_all_database_key_providers() FROM PUBLIC;

CREATE FUNCTION pg_tde_add_global_key_provider(type text, name text, options json)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_add_global_key_provider(text, text, json) FROM PUBLIC;

CREATE FUNCTION pg_tde_add_global_key_provider_file(provider_name text, file_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_add_global_key_provider('file', provider_name,
        json_build_object('path', file_path));
END;

CREATE FUNCTION pg_tde_add_global_key_provider_kmip(provider_name text, kmip_host text, kmip_port integer, kmip_cert_path text, kmip_key_path text, kmip_ca_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_add_global_key_provider('kmip', provider_name,
        json_build_object('host', kmip_host, 'port', kmip_port, 'certPath', kmip_cert_path,
                          'keyPath', kmip_key_path, 'caPath', kmip_ca_path));
END;

CREATE FUNCTION pg_tde_add_global_key_provider_vault_v2(provider_name text, vault_url text, vault_mount_path text, vault_token_path text, vault_ca_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_add_global_key_provider('vault-v2', provider_name,
        json_build_object('url', vault_url, 'mountPath', vault_mount_path,
                          'tokenPath', vault_token_path, 'caPath', vault_ca_path));
END;

CREATE FUNCTION pg_tde_add_global_key_provider_vault_v2(provider_name text, vault_url text, vault_mount_path text, vault_token_path text, vault_ca_path text, vault_namespace text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_add_global_key_provider('vault-v2', provider_name,
        json_build_object('url', vault_url, 'mountPath', vault_mount_path,
                          'tokenPath', vault_token_path, 'caPath', vault_ca_path,
                          'namespace', vault_namespace));
END;

CREATE FUNCTION pg_tde_change_global_key_provider(type text, name text, options json)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_change_global_key_provider(text, text, json) FROM PUBLIC;

CREATE FUNCTION pg_tde_change_global_key_provider_file(provider_name text, file_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_change_global_key_provider('file', provider_name,
        json_build_object('path', file_path));
END;

CREATE FUNCTION pg_tde_change_global_key_provider_kmip(provider_name text, kmip_host text, kmip_port integer, kmip_cert_path text, kmip_key_path text, kmip_ca_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_change_global_key_provider('kmip', provider_name,
        json_build_object('host', kmip_host, 'port', kmip_port, 'certPath', kmip_cert_path,
                          'keyPath', kmip_key_path, 'caPath', kmip_ca_path));
END;

CREATE FUNCTION pg_tde_change_global_key_provider_vault_v2(provider_name text, vault_url text, vault_mount_path text, vault_token_path text, vault_ca_path text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_change_global_key_provider('vault-v2', provider_name,
        json_build_object('url', vault_url, 'mountPath', vault_mount_path,
                          'tokenPath', vault_token_path, 'caPath', vault_ca_path));
END;

CREATE FUNCTION pg_tde_change_global_key_provider_vault_v2(provider_name text, vault_url text, vault_mount_path text, vault_token_path text, vault_ca_path text, vault_namespace text)
RETURNS void
LANGUAGE SQL
BEGIN ATOMIC
    SELECT pg_tde_change_global_key_provider('vault-v2', provider_name,
        json_build_object('url', vault_url, 'mountPath', vault_mount_path,
                          'tokenPath', vault_token_path, 'caPath', vault_ca_path,
                          'namespace', vault_namespace));
END;

CREATE FUNCTION pg_tde_delete_global_key_provider(provider_name text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_delete_global_key_provider(text) FROM PUBLIC;

CREATE FUNCTION pg_tde_list_all_global_key_providers(OUT id integer, OUT name text, OUT type text, OUT options json)
RETURNS SETOF record
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_list_all_global_key_providers() FROM PUBLIC;

-- principal keys
CREATE FUNCTION pg_tde_create_key_using_database_key_provider(key_name text, provider_name text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_create_key_using_database_key_provider(text, text) FROM PUBLIC;

CREATE FUNCTION pg_tde_create_key_using_global_key_provider(key_name text, provider_name text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_create_key_using_global_key_provider(text, text) FROM PUBLIC;

CREATE FUNCTION pg_tde_set_key_using_database_key_provider(key_name text, provider_name text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_set_key_using_database_key_provider(text, text) FROM PUBLIC;

CREATE FUNCTION pg_tde_set_key_using_global_key_provider(key_name text, provider_name text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_set_key_using_global_key_provider(text, text) FROM PUBLIC;

CREATE FUNCTION pg_tde_set_server_key_using_global_key_provider(key_name text, provider_name text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_set_server_key_using_global_key_provider(text, text) FROM PUBLIC;

CREATE FUNCTION pg_tde_set_default_key_using_global_key_provider(key_name text, provider_name text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_set_default_key_using_global_key_provider(text, text) FROM PUBLIC;

CREATE FUNCTION pg_tde_delete_key()
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_delete_key() FROM PUBLIC;

CREATE FUNCTION pg_tde_delete_default_key()
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_delete_default_key() FROM PUBLIC;

CREATE FUNCTION pg_tde_key_info()
RETURNS TABLE(key_name text, provider_name text, provider_id integer, key_creation_time timestamp with time zone)
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_key_info() FROM PUBLIC;

CREATE FUNCTION pg_tde_server_key_info()
RETURNS TABLE(key_name text, provider_name text, provider_id integer, key_creation_time timestamp with time zone)
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_server_key_info() FROM PUBLIC;

CREATE FUNCTION pg_tde_default_key_info()
RETURNS TABLE(key_name text, provider_name text, provider_id integer, key_creation_time timestamp with time zone)
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_default_key_info() FROM PUBLIC;

CREATE FUNCTION pg_tde_verify_key()
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_verify_key() FROM PUBLIC;

CREATE FUNCTION pg_tde_verify_server_key()
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_verify_server_key() FROM PUBLIC;

CREATE FUNCTION pg_tde_verify_default_key()
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'pg_tde_double_api';
REVOKE ALL ON FUNCTION pg_tde_verify_default_key() FROM PUBLIC;

-- C functions of the double (tests/pg_tde_double/src/pg_tde.c)
CREATE FUNCTION pg_tde_version() RETURNS text
    LANGUAGE C AS 'MODULE_PATHNAME';

CREATE FUNCTION pg_tde_is_encrypted(relation regclass) RETURNS boolean
    LANGUAGE C AS 'MODULE_PATHNAME';

CREATE FUNCTION pg_tdeam_handler(internal) RETURNS table_am_handler
    LANGUAGE C AS 'MODULE_PATHNAME';
REVOKE ALL ON FUNCTION pg_tdeam_handler(internal) FROM PUBLIC;

CREATE ACCESS METHOD tde_heap TYPE TABLE HANDLER pg_tdeam_handler;
COMMENT ON ACCESS METHOD tde_heap IS 'tde_heap of the pg_tde TEST DOUBLE: plain heap storage, NOT encrypted';

CREATE FUNCTION pg_tde_ddl_command_start_capture() RETURNS event_trigger
    LANGUAGE C AS 'MODULE_PATHNAME';
REVOKE ALL ON FUNCTION pg_tde_ddl_command_start_capture() FROM PUBLIC;
CREATE FUNCTION pg_tde_ddl_command_end_capture() RETURNS event_trigger
    LANGUAGE C AS 'MODULE_PATHNAME';
REVOKE ALL ON FUNCTION pg_tde_ddl_command_end_capture() FROM PUBLIC;

CREATE EVENT TRIGGER pg_tde_ddl_start ON ddl_command_start
    EXECUTE FUNCTION pg_tde_ddl_command_start_capture();
CREATE EVENT TRIGGER pg_tde_ddl_end ON ddl_command_end
    EXECUTE FUNCTION pg_tde_ddl_command_end_capture();

-- as pg_tde at CREATE EXTENSION: forget this database's old providers and key
SELECT tde_double.dispatch('extension_created', '[]');

