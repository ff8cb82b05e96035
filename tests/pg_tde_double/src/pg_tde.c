/*-------------------------------------------------------------------------
 *
 * pg_tde.c
 *		TEST DOUBLE of Percona pg_tde 2.2.0 for the tests of tdeops.pg_tde.
 *
 *		THIS IS NOT pg_tde.  IT ENCRYPTS NOTHING.  It exists so that the
 *		collection's modules and roles can be tested on Debian's PostgreSQL 15,
 *		where Percona's pg_tde cannot be installed.  It lives under tests/ and
 *		is never shipped.
 *
 *		What this C part does (the SQL API itself is PL/Python, see
 *		../sql/pg_tde--2.2.0.sql and ../python/pg_tde_double_impl.py):
 *		- refuses to be loaded outside shared_preload_libraries with the real
 *		  FATAL text;
 *		- defines the real settings (names, types, defaults, contexts, enum
 *		  values, short descriptions);
 *		- with pg_tde.wal_encrypt = on checks at postmaster start that a server
 *		  key is configured and that its key provider answers (TLS handshake
 *		  with the client certificate for KMIP, HTTPS request for Vault, the
 *		  keyring file for file providers), failing with the real texts;
 *		- provides the tde_heap table access method (plain heap storage);
 *		- pg_tde_is_encrypted(), pg_tde_version();
 *		- the DDL event trigger functions that enforce
 *		  pg_tde.enforce_encryption and require a principal key for tde_heap.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <netinet/in.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "access/htup_details.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "commands/defrem.h"
#include "commands/event_trigger.h"
#include "access/parallel.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_type.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_MODULE_MAGIC;

#define TDE_DOUBLE_VERSION "pg_tde 2.2.0 (tdeops test double)"
#define TDE_STATE_DIR "pg_tde"
#define TDE_GLOBAL_STATE "pg_tde/1664.json"

/* settings */
static bool tde_wal_encrypt = false;
static bool tde_enforce_encryption = false;
static bool tde_inherit_global_providers = true;
static int	tde_cipher = 0;

static const struct config_enum_entry cipher_options[] = {
	{"aes_128", 0, false},
	{"aes_256", 1, false},
	{NULL, 0, false}
};

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static bool key_checked_in_this_backend = false;
static bool checking_key = false;

void		_PG_init(void);
static void tde_shmem_startup(void);
static void check_server_key_at_startup(void);
static void tde_ExecutorStart(QueryDesc *queryDesc, int eflags);
static JsonbContainer *call_dispatch(const char *function, const char *args);
static Oid	tde_am_oid(void);

PG_FUNCTION_INFO_V1(pg_tdeam_handler);
PG_FUNCTION_INFO_V1(pg_tde_is_encrypted);
PG_FUNCTION_INFO_V1(pg_tde_version);
PG_FUNCTION_INFO_V1(pg_tde_ddl_command_start_capture);
PG_FUNCTION_INFO_V1(pg_tde_ddl_command_end_capture);
PG_FUNCTION_INFO_V1(pg_tde_double_api);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(FATAL,
				errmsg("pg_tde can only be loaded at server startup. Restart required."));

	DefineCustomBoolVariable("pg_tde.wal_encrypt",
							 "Enable/Disable encryption of WAL.",
							 NULL,
							 &tde_wal_encrypt,
							 false,
							 PGC_POSTMASTER,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_tde.enforce_encryption",
							 "Only allow the creation of encrypted tables.",
							 NULL,
							 &tde_enforce_encryption,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_tde.inherit_global_providers",
							 "Allow using global key providers for databases.",
							 NULL,
							 &tde_inherit_global_providers,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("pg_tde.cipher",
							 "TDE encryption algorithm.",
							 NULL,
							 &tde_cipher,
							 0,
							 cipher_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("pg_tde");

	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = tde_shmem_startup;

	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = tde_ExecutorStart;
}

/*
 * Reading or writing a tde_heap relation needs the database's principal key,
 * as with pg_tde: the first time a backend touches one, the key must be in
 * the cache or fetchable from its provider (so, after a restart with the KMS
 * down, queries on encrypted tables fail with pg_tde's WARNING and ERROR).
 * The double's data is not encrypted; this only emulates the failure.
 */
static void
tde_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (!key_checked_in_this_backend && !checking_key && !IsParallelWorker() &&
		!(eflags & EXEC_FLAG_EXPLAIN_ONLY) && queryDesc->plannedstmt != NULL)
	{
		Oid			tdeam = InvalidOid;
		bool		found = false;
		ListCell   *lc;

		foreach(lc, queryDesc->plannedstmt->rtable)
		{
			RangeTblEntry *rte = (RangeTblEntry *) lfirst(lc);
			HeapTuple	tp;

			if (rte->rtekind != RTE_RELATION)
				continue;
			tp = SearchSysCache1(RELOID, ObjectIdGetDatum(rte->relid));
			if (!HeapTupleIsValid(tp))
				continue;
			if (((Form_pg_class) GETSTRUCT(tp))->relam != InvalidOid)
			{
				if (tdeam == InvalidOid)
					tdeam = tde_am_oid();
				found = OidIsValid(tdeam) && ((Form_pg_class) GETSTRUCT(tp))->relam == tdeam;
			}
			ReleaseSysCache(tp);
			if (found)
				break;
		}
		if (found)
		{
			checking_key = true;
			PG_TRY();
			{
				(void) call_dispatch("check_key_for_access", "[]");
			}
			PG_FINALLY();
			{
				checking_key = false;
			}
			PG_END_TRY();
			key_checked_in_this_backend = true;
		}
	}

	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
tde_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	/* Only the postmaster (or a standalone backend) checks, once per start. */
	if (!IsUnderPostmaster && tde_wal_encrypt)
		check_server_key_at_startup();
}

/* ------------------------------------------------------------------------
 * State file access (JSON written by the PL/Python part, read with jsonb)
 * ------------------------------------------------------------------------
 */

static char *
read_whole_file(const char *path, int *err)
{
	FILE	   *f = AllocateFile(path, "r");
	StringInfoData buf;
	char		chunk[4096];
	size_t		n;

	*err = 0;
	if (f == NULL)
	{
		*err = errno;
		return NULL;
	}
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		appendBinaryStringInfo(&buf, chunk, n);
	FreeFile(f);
	return buf.data;
}

static JsonbContainer *
parse_json_object(const char *text)
{
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));

	return &jb->root;
}

/* value of key as a C string (strings and numbers); NULL when absent/null */
static char *
jb_get_str(JsonbContainer *c, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(c, key, strlen(key), NULL);

	if (v == NULL)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	return NULL;
}

static JsonbContainer *
jb_get_container(JsonbContainer *c, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(c, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return v->val.binary.data;
}

/* ------------------------------------------------------------------------
 * Start-up check of the server key (pg_tde.wal_encrypt = on)
 * ------------------------------------------------------------------------
 */

/* Same steps and texts as pg_tde's kmipSslConnect(); returns false on failure. */
static bool
kmip_tls_check(const char *host, const char *port, const char *cert,
			   const char *key, const char *ca, int level)
{
	SSL_CTX    *ctx;
	BIO		   *bio;
	SSL		   *ssl = NULL;

	ctx = SSL_CTX_new(SSLv23_method());
	if (ctx == NULL)
	{
		ereport(level, errmsg("SSL error: SSL_CTX_new failed"));
		return false;
	}
	if (cert == NULL || SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1)
	{
		SSL_CTX_free(ctx);
		ereport(level, errmsg("SSL error: Loading the client certificate failed"));
		return false;
	}
	if (key == NULL || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
	{
		SSL_CTX_free(ctx);
		ereport(level, errmsg("SSL error: Loading the client key failed"));
		return false;
	}
	if (ca == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
	{
		SSL_CTX_free(ctx);
		ereport(level, errmsg("SSL error: Loading the CA certificate failed"));
		return false;
	}
	bio = BIO_new_ssl_connect(ctx);
	if (bio == NULL)
	{
		SSL_CTX_free(ctx);
		ereport(level, errmsg("SSL error: BIO_new_ssl_connect failed"));
		return false;
	}
	BIO_get_ssl(bio, &ssl);
	SSL_set_mode(ssl, SSL_MODE_AUTO_RETRY);
	BIO_set_conn_hostname(bio, host ? host : "");
	BIO_set_conn_port(bio, port ? port : "");
	if (BIO_do_connect(bio) != 1)
	{
		BIO_free_all(bio);
		SSL_CTX_free(ctx);
		ERR_clear_error();
		ereport(level, errmsg("SSL error: BIO_do_connect failed"));
		return false;
	}
	BIO_free_all(bio);
	SSL_CTX_free(ctx);
	return true;
}

/*
 * GET <url>/v1/<mount>/data/<key> over HTTPS with the token; returns the HTTP
 * status, or -1 when the request could not be made.
 */
static int
vault_get_status(const char *url, const char *mount, const char *key_name,
				 const char *token_path, const char *ca, const char *ns)
{
	const char *p;
	char	   *hostport;
	char	   *host;
	char	   *port;
	char	   *colon;
	SSL_CTX    *ctx;
	BIO		   *bio;
	SSL		   *ssl = NULL;
	StringInfoData req;
	char		resp[256];
	int			n;
	int			status = -1;
	char	   *token = NULL;
	int			err;
	bool		tls = true;

	if (url == NULL || mount == NULL)
		return -1;
	if (strncmp(url, "https://", 8) == 0)
		p = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
	{
		p = url + 7;
		tls = false;
	}
	else
		return -1;
	hostport = pstrdup(p);
	if (strchr(hostport, '/'))
		*strchr(hostport, '/') = '\0';
	colon = strrchr(hostport, ':');
	if (colon)
	{
		*colon = '\0';
		host = hostport;
		port = colon + 1;
	}
	else
	{
		host = hostport;
		port = tls ? "443" : "80";
	}

	if (token_path)
	{
		token = read_whole_file(token_path, &err);
		if (token && strchr(token, '\n'))
			*strchr(token, '\n') = '\0';
	}
	if (token == NULL)
		token = "";

	ctx = SSL_CTX_new(SSLv23_method());
	if (ctx == NULL)
		return -1;
	if (tls)
	{
		if (ca && ca[0])
		{
			if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
			{
				SSL_CTX_free(ctx);
				ERR_clear_error();
				return -1;
			}
		}
		else
			SSL_CTX_set_default_verify_paths(ctx);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		bio = BIO_new_ssl_connect(ctx);
		BIO_get_ssl(bio, &ssl);
		SSL_set_mode(ssl, SSL_MODE_AUTO_RETRY);
		SSL_set_tlsext_host_name(ssl, host);
	}
	else
		bio = BIO_new(BIO_s_connect());
	BIO_set_conn_hostname(bio, host);
	BIO_set_conn_port(bio, port);
	if (BIO_do_connect(bio) != 1)
	{
		BIO_free_all(bio);
		SSL_CTX_free(ctx);
		ERR_clear_error();
		return -1;
	}
	initStringInfo(&req);
	appendStringInfo(&req, "GET /v1/%s/data/%s HTTP/1.0\r\nHost: %s\r\nX-Vault-Token: %s\r\n",
					 mount, key_name, host, token);
	if (ns && ns[0])
		appendStringInfo(&req, "X-Vault-Namespace: %s\r\n", ns);
	appendStringInfoString(&req, "Connection: close\r\n\r\n");
	if (BIO_write(bio, req.data, req.len) == req.len)
	{
		n = BIO_read(bio, resp, sizeof(resp) - 1);
		if (n > 12)
		{
			resp[n] = '\0';
			if (strncmp(resp, "HTTP/", 5) == 0 && strchr(resp, ' '))
				status = atoi(strchr(resp, ' ') + 1);
		}
	}
	BIO_free_all(bio);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return status;
}

/* true when the keyring file (one JSON object per line) holds key_name */
static bool
file_keyring_has_key(const char *path, const char *key_name, int level)
{
	int			err;
	char	   *text;
	char	   *line;
	char	   *saveptr = NULL;

	if (path == NULL)
		return false;
	text = read_whole_file(path, &err);
	if (text == NULL)
	{
		errno = err;
		ereport(level, errcode_for_file_access(),
				errmsg("Failed to open keyring file %s: %m", path));
		return false;
	}
	for (line = strtok_r(text, "\n", &saveptr); line; line = strtok_r(NULL, "\n", &saveptr))
	{
		char	   *name;

		if (line[0] != '{')
			continue;
		name = jb_get_str(parse_json_object(line), "name");
		if (name && strcmp(name, key_name) == 0)
			return true;
	}
	return false;
}

static void
check_server_key_at_startup(void)
{
	char	   *path = psprintf("%s/%s", DataDir, TDE_GLOBAL_STATE);
	int			err;
	char	   *text = read_whole_file(path, &err);
	JsonbContainer *state;
	JsonbContainer *server_key = NULL;
	JsonbContainer *providers;
	JsonbContainer *provider = NULL;
	JsonbContainer *opts;
	char	   *key_name;
	char	   *provider_id;
	char	   *provider_name = NULL;
	char	   *type;
	char	   *options;
	bool		ok = false;
	int			i;

	if (text != NULL)
	{
		state = parse_json_object(text);
		server_key = jb_get_container(state, "server_key");
	}
	if (server_key == NULL)
		ereport(FATAL,
				errmsg("principal key not configured"),
				errhint("Use pg_tde_set_server_key_using_global_key_provider() to configure one."));

	key_name = jb_get_str(server_key, "name");
	provider_id = jb_get_str(server_key, "provider_id");
	providers = jb_get_container(state, "providers");
	if (providers != NULL && provider_id != NULL)
	{
		for (i = 0; i < JsonContainerSize(providers); i++)
		{
			JsonbValue *v = getIthJsonbValueFromContainer(providers, i);
			char	   *id;

			if (v == NULL || v->type != jbvBinary)
				continue;
			id = jb_get_str(v->val.binary.data, "id");
			if (id && strcmp(id, provider_id) == 0)
			{
				provider = v->val.binary.data;
				break;
			}
		}
	}
	if (provider == NULL)
		ereport(FATAL,
				errcode(ERRCODE_DATA_CORRUPTED),
				errmsg("keyring lookup failed for principal key %s, unknown keyring with ID %s",
					   key_name ? key_name : "", provider_id ? provider_id : "?"));

	provider_name = jb_get_str(provider, "name");
	type = jb_get_str(provider, "type");
	options = jb_get_str(provider, "options");
	opts = parse_json_object(options ? options : "{}");

	if (type && strcmp(type, "kmip") == 0)
	{
		ok = kmip_tls_check(jb_get_str(opts, "host"), jb_get_str(opts, "port"),
							jb_get_str(opts, "certPath"), jb_get_str(opts, "keyPath"),
							jb_get_str(opts, "caPath"), WARNING);
	}
	else if (type && strcmp(type, "vault-v2") == 0)
	{
		int			status = vault_get_status(jb_get_str(opts, "url"),
											  jb_get_str(opts, "mountPath"),
											  key_name,
											  jb_get_str(opts, "tokenPath"),
											  jb_get_str(opts, "caPath"),
											  jb_get_str(opts, "namespace"));

		if (status < 0)
			ereport(WARNING,
					errmsg("HTTP(S) request to keyring provider \"%s\" failed", provider_name));
		else if (status / 100 != 2 && status != 404)
			ereport(WARNING,
					errmsg("HTTP(S) request to keyring provider \"%s\" returned invalid response %i",
						   provider_name, status));
		ok = (status / 100 == 2);
	}
	else if (type && strcmp(type, "file") == 0)
		ok = file_keyring_has_key(jb_get_str(opts, "path"), key_name, WARNING);

	if (!ok)
		ereport(FATAL,
				errcode(ERRCODE_NO_DATA_FOUND),
				errmsg("key \"%s\" not found in key provider \"%s\"", key_name, provider_name));
}

/* ------------------------------------------------------------------------
 * SQL-callable functions
 * ------------------------------------------------------------------------
 */

Datum
pg_tdeam_handler(PG_FUNCTION_ARGS)
{
	/* The double stores tde_heap tables exactly like heap ones. */
	PG_RETURN_POINTER(GetHeapamTableAmRoutine());
}

Datum
pg_tde_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(TDE_DOUBLE_VERSION));
}

static Oid
tde_am_oid(void)
{
	return get_table_am_oid("tde_heap", true);
}

static bool
rel_info(Oid relid, char *relkind, Oid *relam)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class form;

	if (!HeapTupleIsValid(tp))
		return false;
	form = (Form_pg_class) GETSTRUCT(tp);
	*relkind = form->relkind;
	*relam = form->relam;
	ReleaseSysCache(tp);
	return true;
}

Datum
pg_tde_is_encrypted(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char		relkind;
	Oid			relam;
	Oid			tdeam = tde_am_oid();

	if (!rel_info(relid, &relkind, &relam))
		PG_RETURN_NULL();

	if (!RELKIND_HAS_STORAGE(relkind))
		PG_RETURN_NULL();

	if (relkind == RELKIND_SEQUENCE)
		PG_RETURN_BOOL(false);

	if (relkind == RELKIND_INDEX)
	{
		/* an index (also a TOAST index) is encrypted with its table */
		Oid			heapid = IndexGetRelation(relid, true);
		char		hkind;

		if (!OidIsValid(heapid) || !rel_info(heapid, &hkind, &relam))
			PG_RETURN_NULL();
	}

	/* TOAST tables are created with their table's access method */
	PG_RETURN_BOOL(OidIsValid(tdeam) && relam == tdeam);
}

/* ------------------------------------------------------------------------
 * The SQL API: one C entry point for every pg_tde function that is written
 * in C in pg_tde.  It runs tde_double.dispatch(function, args) (PL/Python,
 * ../python/pg_tde_double_impl.py) through SPI and then raises the
 * WARNINGs and the ERROR that came back itself, so that clients see
 * pg_tde's texts, SQLSTATEs, HINTs and DETAILs without PL/Python's
 * decoration.
 * ------------------------------------------------------------------------
 */

static void
raise_from_json(int elevel, JsonbContainer *e)
{
	char	   *msg = jb_get_str(e, "message");
	char	   *state = jb_get_str(e, "sqlstate");
	char	   *hint = jb_get_str(e, "hint");
	char	   *detail = jb_get_str(e, "detail");
	int			code = (elevel == WARNING) ? ERRCODE_WARNING : ERRCODE_INTERNAL_ERROR;

	if (state && strlen(state) == 5)
		code = MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4]);
	ereport(elevel,
			errcode(code),
			errmsg_internal("%s", msg ? msg : "pg_tde double: error without message"),
			detail ? errdetail_internal("%s", detail) : 0,
			hint ? errhint("%s", hint) : 0);
}

/* Runs the implementation; emits its WARNINGs, raises its ERROR, returns its rows (or NULL). */
static JsonbContainer *
call_dispatch(const char *function, const char *args)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char	   *answer = NULL;
	int			ret;
	JsonbContainer *res;
	JsonbContainer *warnings;
	JsonbContainer *error;
	int			i;

	values[0] = CStringGetTextDatum(function);
	values[1] = CStringGetTextDatum(args);

	SPI_connect();
	ret = SPI_execute_with_args("SELECT tde_double.dispatch($1, $2)", 2, argtypes, values,
								NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_tde double: tde_double.dispatch failed: %d", ret);
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v)
			answer = MemoryContextStrdup(caller, v);
	}
	SPI_finish();

	if (answer == NULL)
		elog(ERROR, "pg_tde double: tde_double.dispatch returned NULL");
	res = parse_json_object(answer);

	warnings = jb_get_container(res, "warnings");
	if (warnings)
	{
		for (i = 0; i < JsonContainerSize(warnings); i++)
		{
			JsonbValue *w = getIthJsonbValueFromContainer(warnings, i);

			if (w && w->type == jbvBinary)
				raise_from_json(WARNING, w->val.binary.data);
		}
	}
	error = jb_get_container(res, "error");
	if (error)
		raise_from_json(ERROR, error);
	return jb_get_container(res, "rows");
}

Datum
pg_tde_double_api(PG_FUNCTION_ARGS)
{
	Oid			fn_oid = fcinfo->flinfo->fn_oid;
	char	   *fname = get_func_name(fn_oid);
	Oid		   *argtypes;
	int			nargs;
	StringInfoData args;
	JsonbContainer *rows;
	int			i;

	get_func_signature(fn_oid, &argtypes, &nargs);
	initStringInfo(&args);
	appendStringInfoChar(&args, '[');
	for (i = 0; i < PG_NARGS(); i++)
	{
		if (i > 0)
			appendStringInfoString(&args, ", ");
		if (PG_ARGISNULL(i))
			appendStringInfoString(&args, "null");
		else
		{
			Oid			outfunc;
			bool		isvarlena;

			getTypeOutputInfo(argtypes[i], &outfunc, &isvarlena);
			escape_json(&args, OidOutputFunctionCall(outfunc, PG_GETARG_DATUM(i)));
		}
	}
	appendStringInfoChar(&args, ']');

	rows = call_dispatch(fname, args.data);

	if (fcinfo->resultinfo && IsA(fcinfo->resultinfo, ReturnSetInfo))
	{
		ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
		TupleDesc	tupdesc;
		AttInMetadata *attinmeta;
		Tuplestorestate *tupstore;
		MemoryContext oldcontext;

		if (!(rsinfo->allowedModes & SFRM_Materialize))
			ereport(ERROR,
					errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					errmsg("%s: materialize mode required, but it is not allowed in this context", fname));
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "%s: return type must be a row type", fname);

		oldcontext = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		tupdesc = CreateTupleDescCopy(tupdesc);
		attinmeta = TupleDescGetAttInMetadata(tupdesc);
		tupstore = tuplestore_begin_heap(true, false, work_mem);
		rsinfo->returnMode = SFRM_Materialize;
		rsinfo->setResult = tupstore;
		rsinfo->setDesc = tupdesc;
		MemoryContextSwitchTo(oldcontext);

		if (rows)
		{
			for (i = 0; i < JsonContainerSize(rows); i++)
			{
				JsonbValue *row = getIthJsonbValueFromContainer(rows, i);
				char	  **cols;
				int			j;

				if (row == NULL || row->type != jbvBinary)
					continue;
				cols = palloc0(sizeof(char *) * tupdesc->natts);
				for (j = 0; j < tupdesc->natts && j < JsonContainerSize(row->val.binary.data); j++)
				{
					JsonbValue *col = getIthJsonbValueFromContainer(row->val.binary.data, j);

					if (col && col->type == jbvString)
						cols[j] = pnstrdup(col->val.string.val, col->val.string.len);
					else if (col && col->type == jbvNumeric)
						cols[j] = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(col->val.numeric)));
				}
				oldcontext = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
				tuplestore_puttuple(tupstore, BuildTupleFromCStrings(attinmeta, cols));
				MemoryContextSwitchTo(oldcontext);
			}
		}
		return (Datum) 0;
	}
	PG_RETURN_VOID();
}

/* ------------------------------------------------------------------------
 * DDL event triggers (as pg_tde's pg_tde_event_capture.c)
 * ------------------------------------------------------------------------
 */

typedef enum
{
	MODE_RETAIN,
	MODE_ENCRYPT,
	MODE_PLAIN
} EncryptMode;

typedef enum
{
	MIX_UNKNOWN,
	MIX_PLAIN,
	MIX_ENCRYPTED,
	MIX_MIXED
} EncryptionMix;

static void
check_principal_key_configured(void)
{
	/*
	 * The PL/Python part knows the keys: it raises "principal key not
	 * configured" when the database has neither its own key nor a default
	 * key, fetches the key from its provider when this server has not done
	 * so yet (failing like pg_tde when the KMS is unreachable) and makes a
	 * database without a key of its own use the default key.
	 */
	(void) call_dispatch("ensure_principal_key", "[]");
}

static bool
should_encrypt(const char *am)
{
	if (am)
		return strcmp(am, "tde_heap") == 0;
	return default_table_access_method && strcmp(default_table_access_method, "tde_heap") == 0;
}

static void
check_encryption_status(EncryptMode mode)
{
	if (mode == MODE_ENCRYPT)
		check_principal_key_configured();
	else if (tde_enforce_encryption)
		ereport(ERROR,
				errmsg("pg_tde.enforce_encryption is ON, only the tde_heap access method is allowed."));
}

static EncryptionMix
alter_table_encryption_mix(Oid relid)
{
	EncryptionMix enc = MIX_UNKNOWN;
	char		relkind;
	Oid			relam;
	List	   *children;
	ListCell   *lc;

	if (!rel_info(relid, &relkind, &relam))
		return MIX_UNKNOWN;
	if (RELKIND_HAS_STORAGE(relkind))
		enc = (OidIsValid(relam) && relam == tde_am_oid()) ? MIX_ENCRYPTED : MIX_PLAIN;

	children = find_inheritance_children(relid, AccessShareLock);
	foreach(lc, children)
	{
		EncryptionMix childenc = alter_table_encryption_mix(lfirst_oid(lc));

		if (childenc != MIX_UNKNOWN)
		{
			if (enc == MIX_UNKNOWN)
				enc = childenc;
			else if (enc != childenc)
				return MIX_MIXED;
		}
	}
	return enc;
}

Datum
pg_tde_ddl_command_start_capture(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *parsetree;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				errmsg("Function can only be fired by event trigger manager"));

	trigdata = (EventTriggerData *) fcinfo->context;
	parsetree = trigdata->parsetree;

	if (IsA(parsetree, IndexStmt))
	{
		IndexStmt  *stmt = (IndexStmt *) parsetree;
		Oid			relid = RangeVarGetRelid(stmt->relation, AccessShareLock, true);
		char		relkind;
		Oid			relam;

		if (OidIsValid(relid) && rel_info(relid, &relkind, &relam) &&
			OidIsValid(relam) && relam == tde_am_oid())
			check_principal_key_configured();
	}
	else if (IsA(parsetree, CreateStmt))
	{
		CreateStmt *stmt = (CreateStmt *) parsetree;
		EncryptMode mode = MODE_RETAIN;
		bool		found = false;

		if (stmt->accessMethod)
		{
			found = true;
			mode = strcmp(stmt->accessMethod, "tde_heap") == 0 ? MODE_ENCRYPT : MODE_PLAIN;
		}
		else if (stmt->partbound && list_length(stmt->inhRelations) == 1)
		{
			Oid			parent = RangeVarGetRelid(linitial(stmt->inhRelations), AccessShareLock, true);
			char		relkind;
			Oid			relam = InvalidOid;

			if (OidIsValid(parent) && rel_info(parent, &relkind, &relam) && OidIsValid(relam))
			{
				found = true;
				mode = relam == tde_am_oid() ? MODE_ENCRYPT : MODE_PLAIN;
			}
		}
		if (!found)
			mode = should_encrypt(NULL) ? MODE_ENCRYPT : MODE_PLAIN;
		check_encryption_status(mode);
	}
	else if (IsA(parsetree, CreateTableAsStmt))
	{
		CreateTableAsStmt *stmt = (CreateTableAsStmt *) parsetree;

		check_encryption_status(should_encrypt(stmt->into->accessMethod) ? MODE_ENCRYPT : MODE_PLAIN);
	}
	else if (IsA(parsetree, AlterTableStmt))
	{
		AlterTableStmt *stmt = (AlterTableStmt *) parsetree;
		Oid			relid = RangeVarGetRelid(stmt->relation, AccessShareLock, true);

		if (OidIsValid(relid))
		{
			AlterTableCmd *setam = NULL;
			ListCell   *lc;
			EncryptMode mode = MODE_RETAIN;
			EncryptionMix mix;

			foreach(lc, stmt->cmds)
			{
				AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

				if (cmd->subtype == AT_SetAccessMethod)
					setam = cmd;
			}
			mix = alter_table_encryption_mix(relid);
			if (mix == MIX_MIXED)
				ereport(ERROR,
						errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("Recursive ALTER TABLE on a mix of encrypted and unencrypted relations is not supported"));
			if (setam)
				mode = should_encrypt(setam->name) ? MODE_ENCRYPT : MODE_PLAIN;
			else if (mix == MIX_ENCRYPTED)
				mode = MODE_ENCRYPT;
			else if (mix == MIX_PLAIN)
				mode = MODE_PLAIN;
			check_encryption_status(mode);
		}
	}

	PG_RETURN_VOID();
}

Datum
pg_tde_ddl_command_end_capture(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				errmsg("Function can only be fired by event trigger manager"));
	PG_RETURN_VOID();
}
