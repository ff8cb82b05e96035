# pg_tde TEST DOUBLE: the SQL API of Percona pg_tde 2.2.0 for the tests of tdeops.pg_tde.
# NOT pg_tde. It encrypts nothing. Loaded by the PL/Python functions of the double's
# extension script (pg_tde--2.2.0.sql) in the PostgreSQL backend (system python3 with
# python3-pykmip). Message texts, SQLSTATEs, HINTs and WARNINGs follow pg_tde's sources and
# the captured output of a real pg_tde 2.2.0 run (see tests/pg_tde_double/README.md).
#
# State: $PGDATA/pg_tde/1664.json (global providers, server key, default key) and
# $PGDATA/pg_tde/<database oid>.json (database providers, database key), JSON written
# atomically under an exclusive flock on $PGDATA/pg_tde/.lock. $PGDATA/pg_tde/cache.json
# emulates pg_tde's shared-memory key cache (valid for one postmaster start only).
from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import json
import os
import secrets
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request

GLOBAL_OID = 1664
DEFAULT_OID = 1663
FORMAT = 'tdeops-pg_tde-double/1'
STATE_DIR = 'pg_tde'
PROVIDER_NAME_LEN = 128      # sizeof(provider_name) in pg_tde
OPTIONS_LEN = 1024           # sizeof(options) in pg_tde
KEY_NAME_LEN = 256           # PRINCIPAL_KEY_NAME_LEN in pg_tde
NET_TIMEOUT = 10

# KeyringReturnCode
SUCCESS = 'Success'
RESOURCE_NOT_AVAILABLE = 'Resource not available'
INVALID_RESPONSE = 'Invalid response from keyring provider'
INVALID_KEY = 'Invalid key'

KMIP_FIELDS = ('host', 'port', 'caPath', 'certPath', 'keyPath')
VAULT_FIELDS = ('tokenPath', 'url', 'mountPath', 'caPath', 'namespace')


def _sqlstate_for_errno(err):
    # errcode_for_file_access()
    if err in (errno.EACCES, errno.EPERM, errno.EROFS):
        return '42501'
    if err in (errno.ENOENT, errno.ENOTDIR):
        return '58P01'
    if err == errno.EEXIST:
        return '58P02'
    if err in (errno.ENOSPC,):
        return '53100'
    return '58030'


class TdeError(Exception):
    def __init__(self, message, sqlstate=None, hint=None, detail=None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.hint = hint
        self.detail = detail


class Double:
    """One call of a pg_tde SQL function."""

    def __init__(self, plpy):
        self.plpy = plpy
        self.datadir = os.getcwd()      # a backend's CWD is the data directory
        self.state_dir = os.path.join(self.datadir, STATE_DIR)
        self._lock_fd = None
        self.warnings = []

    # ------------------------------------------------------------------ errors
    def error(self, msg, sqlstate=None, hint=None, detail=None):
        """ERROR: raised by the calling C function with exactly this text (no plpy prefix)."""
        self.unlock()
        raise TdeError(msg, sqlstate=sqlstate, hint=hint, detail=detail)

    def warning(self, msg, sqlstate=None):
        """WARNING: emitted by the calling C function, in order, before its result or error."""
        self.warnings.append({'message': msg, 'sqlstate': sqlstate})

    def report(self, level_error, msg, sqlstate=None):
        if level_error:
            self.error(msg, sqlstate=sqlstate)
        self.warning(msg, sqlstate=sqlstate)

    # ------------------------------------------------------------------- state
    def lock(self):
        if self._lock_fd is not None:
            return
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.state_dir, '.lock'), os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def unlock(self):
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _path(self, oid):
        return os.path.join(self.state_dir, '%d.json' % oid)

    def load(self, oid):
        try:
            with open(self._path(oid)) as f:
                state = json.load(f)
        except FileNotFoundError:
            state = {}
        state.setdefault('format', FORMAT)
        state.setdefault('providers', [])
        state.setdefault('max_provider_id', 0)
        if oid == GLOBAL_OID:
            state.setdefault('server_key', None)
            state.setdefault('default_key', None)
        else:
            state.setdefault('key', None)
            state.setdefault('encrypted_objects', False)
        return state

    def _write_json(self, path, data):
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=self.state_dir)
        try:
            with os.fdopen(fd, 'w') as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.write('\n')
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        dfd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def save(self, oid, state):
        self._write_json(self._path(oid), state)

    def database_oids_with_state(self):
        """Databases that exist and have a state file (pg_tde scans pg_database)."""
        existing = {int(r['oid']) for r in self.plpy.execute('SELECT oid FROM pg_catalog.pg_database')}
        return [oid for oid in self._state_file_oids() if oid in existing]

    def _state_file_oids(self):
        oids = []
        try:
            names = os.listdir(self.state_dir)
        except FileNotFoundError:
            return oids
        for n in names:
            if n.endswith('.json') and n[:-5].isdigit():
                oid = int(n[:-5])
                if oid not in (GLOBAL_OID, DEFAULT_OID):
                    oids.append(oid)
        return sorted(oids)

    # key records ----------------------------------------------------------
    KEY_SLOTS = {GLOBAL_OID: 'server_key', DEFAULT_OID: 'default_key'}

    def get_key_record(self, oid):
        if oid in self.KEY_SLOTS:
            return self.load(GLOBAL_OID)[self.KEY_SLOTS[oid]]
        return self.load(oid)['key']

    def put_key_record(self, oid, rec):
        if oid in self.KEY_SLOTS:
            st = self.load(GLOBAL_OID)
            st[self.KEY_SLOTS[oid]] = rec
            self.save(GLOBAL_OID, st)
        else:
            st = self.load(oid)
            st['key'] = rec
            self.save(oid, st)

    # cache (pg_tde keeps fetched principal keys in shared memory) ---------
    def _postmaster_start(self):
        return self.plpy.execute('SELECT pg_catalog.pg_postmaster_start_time()::text AS t')[0]['t']

    def load_cache(self):
        start = self._postmaster_start()
        try:
            with open(os.path.join(self.state_dir, 'cache.json')) as f:
                cache = json.load(f)
        except (FileNotFoundError, ValueError):
            cache = {}
        if cache.get('postmaster_start') != start:
            cache = {'postmaster_start': start, 'keys': {}}
        return cache

    def cache_get(self, oid):
        return self.load_cache()['keys'].get(str(oid))

    def cache_put(self, oid, fingerprint):
        cache = self.load_cache()
        cache['keys'][str(oid)] = fingerprint
        self._write_json(os.path.join(self.state_dir, 'cache.json'), cache)

    def cache_clear(self, oid):
        cache = self.load_cache()
        if cache['keys'].pop(str(oid), None) is not None:
            self._write_json(os.path.join(self.state_dir, 'cache.json'), cache)

    # ---------------------------------------------------------- session facts
    def my_database_oid(self):
        return int(self.plpy.execute(
            'SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()')[0]['oid'])

    def is_superuser(self):
        return self.plpy.execute("SELECT pg_catalog.current_setting('is_superuser') AS v")[0]['v'] == 'on'

    def setting(self, name):
        return self.plpy.execute("SELECT pg_catalog.current_setting('%s') AS v" % name)[0]['v']

    def database_name(self, oid):
        rows = self.plpy.execute('SELECT datname FROM pg_catalog.pg_database WHERE oid = %d' % oid)
        return rows[0]['datname'] if rows else str(oid)

    def count_encrypted_objects_here(self):
        rows = self.plpy.execute(
            "SELECT count(*) AS n FROM pg_catalog.pg_class c JOIN pg_catalog.pg_am a ON a.oid = c.relam "
            "WHERE a.amname = 'tde_heap'")
        return int(rows[0]['n'])

    # -------------------------------------------------------------- providers
    @staticmethod
    def provider_typename_ok(typename):
        return typename in ('file', 'vault-v2', 'kmip')

    def find_provider(self, name, oid):
        """GetKeyProviderByName: case-insensitive, error when missing."""
        for p in self.load(oid)['providers']:
            if p['name'].lower() == name.lower():
                return dict(p)
        self.error('key provider "%s" does not exists' % name, sqlstate='22023')

    def provider_by_id(self, provider_id, db_oid):
        oid = GLOBAL_OID if provider_id < 0 else db_oid
        for p in self.load(oid)['providers']:
            if p['id'] == provider_id:
                return dict(p)
        return None

    def parse_options(self, ptype, text):
        """ParseKeyringJSONOptions + load_*_keyring_provider_options."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            self.error('invalid input syntax for type json', sqlstate='22P02', detail=str(exc))
        if not isinstance(data, dict):
            if isinstance(data, list):
                self.error('key provider options must be an object', sqlstate='22023')
            self.error('key provider options must be an object', sqlstate='22023')
        allowed = {'file': ('path',), 'vault-v2': VAULT_FIELDS, 'kmip': KMIP_FIELDS}[ptype]
        opts = {}
        for key, value in data.items():
            if key not in allowed:
                self.error('unexpected field "%s" for %s provider'
                           % (key, 'file' if ptype == 'file' else 'vault-v2'), sqlstate='22023')
            if isinstance(value, bool):
                self.error('unexpected boolean in field "%s"' % key, sqlstate='22023')
            if isinstance(value, dict):
                self.error('key provider value cannot be an object')
            if isinstance(value, list):
                self.error('unexpected array in field "%s"' % key, sqlstate='22023')
            if value is None:
                opts[key] = None
            elif isinstance(value, str):
                opts[key] = value
            else:
                opts[key] = json.dumps(value)
        if ptype == 'file':
            if not opts.get('path'):
                self.error('file path is missing in the keyring options', sqlstate='22023')
        elif ptype == 'vault-v2':
            missing = [n for n in ('tokenPath', 'url', 'mountPath') if not opts.get(n)]
            if missing:
                self.error('missing in the keyring options: %s' % ' '.join(missing), sqlstate='22023')
        else:
            miss = {n for n in KMIP_FIELDS if not opts.get(n)}
            if miss:
                # Names in pg_tde's order (host port caPath certPath keyPath). The observed
                # 2.2.0 texts also name certPath when caPath is missing and host/port when
                # keyPath is missing: "caPath certPath" for a NULL CA,
                # "host port caPath certPath keyPath" for {"host","port"} only.
                shown = {
                    'host': 'host' in miss or 'keyPath' in miss,
                    'port': 'port' in miss or 'keyPath' in miss,
                    'caPath': 'caPath' in miss,
                    'certPath': 'certPath' in miss or 'caPath' in miss,
                    'keyPath': 'keyPath' in miss,
                }
                self.error('missing in the keyring options: %s'
                           % ' '.join(n for n in KMIP_FIELDS if shown[n]), sqlstate='22023')
        return opts

    # ------------------------------------------------------------- keyrings
    # Each returns like pg_tde's keyring routines: get -> (bytes|None, code),
    # store raises, validate raises.

    def keyring_get(self, provider, key_name):
        opts = self.parse_options(provider['type'], provider['options'])
        t = provider['type']
        if t == 'file':
            key, code = self._file_get(provider, opts, key_name)
        elif t == 'kmip':
            key, code = self._kmip_get(provider, opts, key_name)
        else:
            key, code = self._vault_get(provider, opts, key_name)
        if code != SUCCESS or key is None:
            return None, code
        if len(key) not in (16, 32):
            self.warning('invalid key: unsupported key length "%d"' % len(key))
            return None, INVALID_KEY
        return key, SUCCESS

    def keyring_store(self, provider, key_name, key):
        opts = self.parse_options(provider['type'], provider['options'])
        t = provider['type']
        if t == 'file':
            self._file_store(provider, opts, key_name, key)
        elif t == 'kmip':
            self._kmip_store(provider, opts, key_name, key)
        else:
            self._vault_store(provider, opts, key_name, key)

    def keyring_validate(self, provider, opts):
        t = provider['type']
        if t == 'file':
            self._file_validate(provider, opts)
        elif t == 'kmip':
            conn = self._kmip_connect(opts, True)
            conn.close()
        else:
            self._vault_validate(provider, opts)

    # file ------------------------------------------------------------------
    def _file_validate(self, provider, opts):
        path = opts['path']
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        except OSError as exc:
            self.error('Failed to open keyring file %s: %s' % (path, os.strerror(exc.errno)),
                       sqlstate=_sqlstate_for_errno(exc.errno))

    def _file_records(self, path):
        recs = []
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith('{'):
                    try:
                        recs.append(json.loads(line))
                    except ValueError:
                        continue
        return recs

    def _file_get(self, provider, opts, key_name):
        path = opts['path']
        try:
            recs = self._file_records(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None, SUCCESS
            self.warning('Failed to open keyring file %s: %s' % (path, os.strerror(exc.errno)),
                         sqlstate=_sqlstate_for_errno(exc.errno))
            return None, RESOURCE_NOT_AVAILABLE
        for rec in recs:
            if rec.get('name') == key_name:
                try:
                    return base64.b64decode(rec['key']), SUCCESS
                except (KeyError, ValueError):
                    self.warning('keyring file "%s" is corrupted' % path, sqlstate='XX001')
                    return None, RESOURCE_NOT_AVAILABLE
        return None, SUCCESS

    def _file_store(self, provider, opts, key_name, key):
        path = opts['path']
        line = json.dumps({'name': key_name, 'key': base64.b64encode(key).decode()}) + '\n'
        try:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.error('Failed to open keyring file %s: %s' % (path, os.strerror(exc.errno)),
                       sqlstate=_sqlstate_for_errno(exc.errno))

    # kmip ------------------------------------------------------------------
    def _kmip_connect(self, opts, throw):
        """kmipSslConnect(): same order of steps and texts; no server verification."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.set_ciphers('DEFAULT')
        except ssl.SSLError:
            pass
        cert, key, ca = opts.get('certPath'), opts.get('keyPath'), opts.get('caPath')

        def fail(what):
            self.report(throw, 'SSL error: %s' % what)
            return None

        try:
            ssl._ssl._test_decode_cert(cert)
            with open(cert, 'rb'):
                pass
        except Exception:
            return fail('Loading the client certificate failed')
        try:
            with open(key, 'rb'):
                pass
            ctx.load_cert_chain(cert, key, password=lambda: b'')
        except Exception:
            return fail('Loading the client key failed')
        try:
            ctx.load_verify_locations(cafile=ca)
        except Exception:
            return fail('Loading the CA certificate failed')
        try:
            sock = socket.create_connection((opts.get('host'), int(opts.get('port'))), timeout=NET_TIMEOUT)
        except Exception:
            return fail('BIO_do_connect failed')
        try:
            conn = ctx.wrap_socket(sock)
            conn.settimeout(NET_TIMEOUT)
        except Exception:
            sock.close()
            return fail('BIO_do_connect failed')
        return conn

    def _kmip_client(self, conn):
        from kmip.pie.client import ProxyKmipClient
        from kmip.services.kmip_protocol import KMIPProtocol
        client = ProxyKmipClient(config_file='/dev/null')
        client.proxy.socket = conn
        client.proxy.protocol = KMIPProtocol(conn)
        client._is_open = True
        return client

    def _kmip_get(self, provider, opts, key_name):
        conn = self._kmip_connect(opts, False)
        if conn is None:
            return None, SUCCESS
        try:
            from kmip.core import enums
            from kmip.core.factories.attributes import AttributeFactory
            client = self._kmip_client(conn)
            name_attr = AttributeFactory().create_attribute(enums.AttributeType.NAME, key_name)
            try:
                ids = client.locate(attributes=[name_attr])
            except Exception:
                return None, RESOURCE_NOT_AVAILABLE
            if not ids:
                return None, SUCCESS
            if len(ids) > 1:
                self.warning('KMIP server contains multiple results for key, ignoring')
                return None, RESOURCE_NOT_AVAILABLE
            try:
                obj = client.get(ids[0])
                value = bytes(obj.value)
            except Exception as exc:
                self.warning('KMIP server LOCATEd key, but GET failed with %s' % getattr(exc, 'status', 1))
                return None, RESOURCE_NOT_AVAILABLE
            return value, SUCCESS
        finally:
            conn.close()

    def _kmip_store(self, provider, opts, key_name, key):
        conn = self._kmip_connect(opts, True)
        try:
            from kmip.core import enums
            from kmip.pie import objects
            client = self._kmip_client(conn)
            sym = objects.SymmetricKey(enums.CryptographicAlgorithm.AES, len(key) * 8, key, name=key_name)
            try:
                client.register(sym)
            except Exception as exc:
                self.error('KMIP server reported error on register symmetric key: %s'
                           % getattr(exc, 'status', 1))
        finally:
            conn.close()

    # vault -----------------------------------------------------------------
    def _vault_token(self, provider, opts):
        path = opts.get('tokenPath')
        try:
            with open(path) as f:
                return f.readline().rstrip('\r\n')
        except OSError as exc:
            self.error('could not open file "%s" for reading: %s' % (path, os.strerror(exc.errno)),
                       sqlstate=_sqlstate_for_errno(exc.errno))

    def _vault_request(self, provider, opts, url, body=None):
        """curl_perform(): (status, text) or (None, None) when the request failed."""
        token = self._vault_token(provider, opts)
        headers = {'X-Vault-Token': token, 'Content-Type': 'application/json'}
        if opts.get('namespace'):
            headers['X-Vault-Namespace'] = opts['namespace']
        data = json.dumps(body).encode() if body is not None else None
        try:
            req = urllib.request.Request(url, data=data, headers=headers,
                                         method='POST' if data is not None else 'GET')
            ctx = ssl.create_default_context(cafile=opts.get('caPath') or None)
        except Exception:       # malformed URL, unreadable CA file: curl fails the same way
            return None, None
        try:
            with urllib.request.urlopen(req, timeout=NET_TIMEOUT, context=ctx) as resp:
                return resp.status, resp.read().decode('utf-8', 'replace')
        except urllib.error.HTTPError as exc:
            try:
                text = exc.read().decode('utf-8', 'replace')
            except Exception:
                text = ''
            return exc.code, text
        except Exception:
            return None, None

    def _vault_validate(self, provider, opts):
        url, mount = opts['url'], opts['mountPath']
        status, text = self._vault_request(provider, opts, '%s/v1/sys/mounts/%s' % (url, mount))
        if status is None:
            self.error('HTTP(S) request to keyring provider "%s" failed' % provider['name'])
        if status != 200:
            self.warning('failed to get mount info for "%s" at mountpoint "%s" (HTTP %d)'
                         % (url, mount, status), sqlstate='22023')
        else:
            try:
                info = json.loads(text)
                data = info.get('data', info)
                mtype = data.get('type')
                version = (data.get('options') or {}).get('version')
            except (ValueError, AttributeError) as exc:
                info, mtype, version = None, None, None
                self.warning('failed to parse mount info for "%s" at mountpoint "%s": %s'
                             % (url, mount, exc), sqlstate='22032')
            # pg_tde >= 2.1.2: a mount that is not KV version 2 only gets a WARNING
            if info is not None:
                hint_kv2 = 'The only supported vault engine type is Key/Value version "2"'
                if mtype is None:
                    self.warning('failed to parse mount info for "%s" at mountpoint "%s": missing type field'
                                 % (url, mount), sqlstate='22023')
                elif mtype != 'kv':
                    self.warning('vault mount at "%s" has unsupported engine type "%s"' % (mount, mtype),
                                 sqlstate='22023')
                elif version is None:
                    self.warning('failed to parse mount info for "%s" at mountpoint "%s": missing version field'
                                 % (url, mount), sqlstate='22023')
                elif str(version) != '2':
                    self.warning('vault mount at "%s" has unsupported Key/Value engine version "%s"'
                                 % (mount, version), sqlstate='22023')
                del hint_kv2
        status, text = self._vault_request(provider, opts, '%s/v1/%s/metadata/?list=true' % (url, mount))
        if status is None:
            self.error('HTTP(S) request to keyring provider "%s" failed' % provider['name'])
        if status not in (200, 404):
            self.error('Listing secrets of "%s" at mountpoint "%s" failed' % (url, mount), sqlstate='22023')

    def _vault_get(self, provider, opts, key_name):
        url = '%s/v1/%s/data/%s' % (opts['url'], opts['mountPath'], key_name)
        status, text = self._vault_request(provider, opts, url)
        if status is None:
            self.warning('HTTP(S) request to keyring provider "%s" failed' % provider['name'])
            return None, INVALID_KEY
        if status == 404:
            return None, SUCCESS
        if status // 100 != 2:
            self.warning('HTTP(S) request to keyring provider "%s" returned invalid response %d'
                         % (provider['name'], status))
            return None, INVALID_RESPONSE
        try:
            key_b64 = json.loads(text)['data']['data']['key']
        except (ValueError, KeyError, TypeError):
            self.warning('HTTP(S) request to keyring provider "%s" returned no key' % provider['name'])
            return None, INVALID_RESPONSE
        try:
            return base64.b64decode(key_b64), SUCCESS
        except ValueError:
            self.warning('keyring provider "%s" returned invalid key size: %d' % (provider['name'], len(key_b64)))
            return None, INVALID_KEY

    def _vault_store(self, provider, opts, key_name, key):
        url = '%s/v1/%s/data/%s' % (opts['url'], opts['mountPath'], key_name)
        status, _ = self._vault_request(provider, opts, url, {'data': {'key': base64.b64encode(key).decode()}})
        if status is None:
            self.error('HTTP(S) request to keyring provider "%s" failed' % provider['name'])
        if status // 100 != 2:
            self.error('Invalid HTTP response from keyring provider "%s": %d' % (provider['name'], status))

    # ---------------------------------------------------- provider functions
    def _check_provider_record(self, ptype, name, options_text, oid, existing_id):
        if not self.provider_typename_ok(ptype):
            self.error('Invalid provider type.', sqlstate='22000')
        opts = self.parse_options(ptype, options_text)
        provider = {'id': existing_id, 'name': name, 'type': ptype, 'options': options_text}
        self.keyring_validate(provider, opts)
        if existing_id:
            self._verify_provider_keys_in_use(provider, oid)
        return provider

    def _required(self, value, what):
        if value is None:
            self.error('%s cannot be null' % what, sqlstate='22004')
        return value

    def add_provider(self, scope, ptype, name, options):
        oid = GLOBAL_OID if scope == 'global' else self.my_database_oid()
        if not self.is_superuser():
            self.error('must be superuser to modify key providers', sqlstate='42501')
        ptype = self._required(ptype, 'provider type')
        name = self._required(name, 'provider name')
        options = self._required(options, 'provider options')
        nlen = len(name.encode())
        if nlen == 0:
            self.error('provider name "" is too short', sqlstate='22023')
        if nlen >= PROVIDER_NAME_LEN:
            self.error('provider name "%s" is too long' % name, sqlstate='22023',
                       hint='Maximum length is %d bytes.' % (PROVIDER_NAME_LEN - 1))
        if len(options.encode()) >= OPTIONS_LEN:
            self.error('too large provider options, maximum size is %d bytes' % (OPTIONS_LEN - 1),
                       sqlstate='22023')
        provider = self._check_provider_record(ptype, name, options, oid, 0)
        self.lock()
        try:
            st = self.load(oid)
            for p in st['providers']:
                if p['name'] == name:
                    self.error('Key provider "%s" already exists.' % name, sqlstate='42710')
            new_id = st['max_provider_id'] + 1
            st['max_provider_id'] = new_id
            provider['id'] = -new_id if oid == GLOBAL_OID else new_id
            st['providers'].append(provider)
            self.save(oid, st)
        finally:
            self.unlock()

    def change_provider(self, scope, ptype, name, options):
        oid = GLOBAL_OID if scope == 'global' else self.my_database_oid()
        if not self.is_superuser():
            self.error('must be superuser to modify key providers', sqlstate='42501')
        ptype = self._required(ptype, 'provider type')
        name = self._required(name, 'provider name')
        options = self._required(options, 'provider options')
        existing = self.find_provider(name, oid)
        if len(options.encode()) >= OPTIONS_LEN:
            self.error('too large provider options, maximum size is %d bytes' % (OPTIONS_LEN - 1),
                       sqlstate='22023')
        provider = self._check_provider_record(ptype, existing['name'], options, oid, existing['id'])
        self.lock()
        try:
            st = self.load(oid)
            for i, p in enumerate(st['providers']):
                if p['id'] == existing['id']:
                    st['providers'][i] = provider
                    break
            else:
                self.error('keyring "%s" does not exist' % name, sqlstate='22023')
            self.save(oid, st)
        finally:
            self.unlock()

    def _verify_provider_keys_in_use(self, provider, oid):
        """pg_tde_verify_provider_keys_in_use(): every key in use must still be fetchable and
        identical through the new settings."""
        pname = provider['name']
        uses = []
        if oid == GLOBAL_OID:
            uses.append((GLOBAL_OID, 'server key', None))
            uses.append((DEFAULT_OID, 'default key', None))
            for db in self.database_oids_with_state():
                uses.append((db, 'database', self.database_name(db)))
        else:
            uses.append((oid, 'database', self.database_name(oid)))
        for key_oid, what, dbname in uses:
            rec = self.get_key_record(key_oid)
            if rec is None or rec['provider_id'] != provider['id']:
                continue
            kname = rec['name']
            key, code = self.keyring_get(provider, kname)
            if what == 'database':
                if code != SUCCESS:
                    self.error('failed to retreive "%s" key used by database "%s" from modified key provider "%s"'
                               % (kname, dbname, pname), detail=code)
                if key is None:
                    self.error('key "%s" used by database "%s" not found in modified key provider "%s"'
                               % (kname, dbname, pname), sqlstate='P0002')
                if hashlib.sha256(key).hexdigest() != rec['fingerprint']:
                    self.error('key "%s" from modified key provider "%s" does not match existing key used by database "%s"'
                               % (kname, pname, dbname))
            else:
                if code != SUCCESS:
                    self.error('failed to retreive "%s" key used as %s from modified key provider "%s"'
                               % (kname, what, pname), detail=code)
                if key is None:
                    self.error('key "%s" used as %s not found in modified key provider "%s"'
                               % (kname, what, pname), sqlstate='P0002')
                if hashlib.sha256(key).hexdigest() != rec['fingerprint']:
                    self.error('key "%s" from modified key provider "%s" does not match existing %s'
                               % (kname, pname, what))

    def _provider_used(self, oid, provider_id):
        if oid == GLOBAL_OID:
            g = self.load(GLOBAL_OID)
            for slot in ('server_key', 'default_key'):
                if g[slot] and g[slot]['provider_id'] == provider_id:
                    return True
            for db in self.database_oids_with_state():
                rec = self.load(db)['key']
                if rec and rec['provider_id'] == provider_id:
                    return True
            return False
        rec = self.load(oid)['key']
        return bool(rec and rec['provider_id'] == provider_id)

    def delete_provider(self, scope, name):
        oid = GLOBAL_OID if scope == 'global' else self.my_database_oid()
        if not self.is_superuser():
            self.error('must be superuser to modify key providers', sqlstate='42501')
        name = self._required(name, 'provider_name')
        provider = self.find_provider(name, oid)
        self.lock()
        try:
            if self._provider_used(oid, provider['id']):
                self.error('cannot delete provider which is currently in use', sqlstate='55006')
            st = self.load(oid)
            st['providers'] = [p for p in st['providers'] if p['id'] != provider['id']]
            self.save(oid, st)
        finally:
            self.unlock()

    def list_providers(self, scope):
        oid = GLOBAL_OID if scope == 'global' else self.my_database_oid()
        return [[str(p['id']), p['name'], p['type'], p['options']] for p in self.load(oid)['providers']]

    # ------------------------------------------------------------ principal keys
    def _check_key_args(self, provider_oid, key_name, provider_name):
        if provider_oid == GLOBAL_OID and not self.is_superuser():
            self.error('must be superuser to access global key providers', sqlstate='42501')
        if provider_oid == GLOBAL_OID and self.setting('pg_tde.inherit_global_providers') != 'on':
            self.error('usage of global key providers is disabled',
                       hint='Set "pg_tde.inherit_global_providers = on" in postgresql.conf.')
        if key_name is None:
            self.error('key name cannot be null', sqlstate='22004')
        if len(key_name.encode()) == 0:
            self.error('key name "" is too short', sqlstate='22023')
        if len(key_name.encode()) >= KEY_NAME_LEN:
            self.error('key name "%s" is too long' % key_name, sqlstate='22023',
                       hint='Maximum length is %d bytes.' % (KEY_NAME_LEN - 1))
        if provider_name is None:
            self.error('key provider name cannot be null', sqlstate='22004')

    def create_key(self, scope, key_name, provider_name):
        provider_oid = GLOBAL_OID if scope == 'global' else self.my_database_oid()
        self._check_key_args(provider_oid, key_name, provider_name)
        provider = self.find_provider(provider_name, provider_oid)
        key, _code = self.keyring_get(provider, key_name)
        if key is not None:
            self.error('cannot create key "%s" because it already exists' % key_name, sqlstate='22023')
        length = 32 if self.setting('pg_tde.cipher') == 'aes_256' else 16
        self.keyring_store(provider, key_name, secrets.token_bytes(length))

    def _fetch_key(self, oid, rec, db_oid):
        """get_principal_key_from_keyring(): the key bytes of a key record, or an ERROR."""
        provider = self.provider_by_id(rec['provider_id'], db_oid)
        if provider is None:
            self.error('keyring lookup failed for principal key %s, unknown keyring with ID %d'
                       % (rec['name'], rec['provider_id']), sqlstate='XX001')
        key, code = self.keyring_get(provider, rec['name'])
        if code != SUCCESS:
            self.error('failed to retrieve principal key "%s" from key provider "%s"'
                       % (rec['name'], provider['name']), detail=code)
        if key is None:
            self.error('key "%s" not found in key provider "%s"' % (rec['name'], provider['name']),
                       sqlstate='P0002')
        if hashlib.sha256(key).hexdigest() != rec['fingerprint']:
            self.error('Failed to verify principal key header for key %s, incorrect principal key or '
                       'corrupted key file' % rec['name'], sqlstate='XX001')
        return key

    def _key_no_default(self, oid, db_oid):
        """GetPrincipalKeyNoDefault(): the key record (cached, or fetched and cached)."""
        rec = self.get_key_record(oid)
        if rec is None:
            return None
        if self.cache_get(oid) != rec['fingerprint']:
            self._fetch_key(oid, rec, db_oid)
            self.cache_put(oid, rec['fingerprint'])
        return rec

    @staticmethod
    def _same_key(a, b):
        return a is not None and b is not None and a['name'] == b['name'] and a['provider_id'] == b['provider_id']

    def set_key(self, provider_scope, target, key_name, provider_name):
        my_db = self.my_database_oid()
        provider_oid = GLOBAL_OID if provider_scope == 'global' else my_db
        db_oid = {'server': GLOBAL_OID, 'default': DEFAULT_OID, 'database': my_db}[target]
        self._check_key_args(provider_oid, key_name, provider_name)
        self.lock()
        try:
            existing_default = None
            if db_oid == DEFAULT_OID:
                existing_default = self._key_no_default(DEFAULT_OID, my_db)
            self._key_no_default(db_oid, my_db)      # the current key (fetched when not cached)
            provider = self.find_provider(provider_name, provider_oid)
            key, code = self.keyring_get(provider, key_name)
            if code != SUCCESS:
                self.error('failed to retrieve principal key "%s" from key provider "%s"'
                           % (key_name, provider['name']), detail=code)
            if key is None:
                which = 'global' if provider_oid == GLOBAL_OID else 'database'
                self.error('key "%s" does not exist' % key_name, sqlstate='22023',
                           hint='Use pg_tde_create_key_using_%s_key_provider() to create it.' % which)
            rec = {
                'name': key_name,
                'provider_id': provider['id'],
                'created_us': int(time.time() * 1000000),
                'fingerprint': hashlib.sha256(key).hexdigest(),
                'key_length': len(key),
            }
            self.put_key_record(db_oid, rec)
            self.cache_put(db_oid, rec['fingerprint'])
            if db_oid == DEFAULT_OID and existing_default is not None:
                # pg_tde_update_default_principal_key_everywhere()
                if self._same_key(existing_default, self.get_key_record(GLOBAL_OID)):
                    self.put_key_record(GLOBAL_OID, dict(rec))
                    self.cache_put(GLOBAL_OID, rec['fingerprint'])
                for db in self.database_oids_with_state():
                    if self._same_key(existing_default, self.get_key_record(db)):
                        self.put_key_record(db, dict(rec))
                        self.cache_put(db, rec['fingerprint'])
        finally:
            self.unlock()

    def delete_key(self):
        my_db = self.my_database_oid()
        self.lock()
        try:
            rec = self._key_no_default(my_db, my_db)
            if rec is None:
                self.error('principal key does not exists for the database')
            if self.count_encrypted_objects_here() != 0:
                default = self._key_no_default(DEFAULT_OID, my_db)
                if default is None:
                    self.error('cannot delete principal key', sqlstate='55006',
                               detail='There are encrypted tables in the database.',
                               hint='Set default principal key as fallback option or decrypt all tables '
                                    'before deleting principal key.')
                if self._same_key(rec, default):
                    self.error('cannot delete principal key', sqlstate='55006',
                               detail='There are encrypted tables in the database.')
                self.put_key_record(my_db, dict(default))
                self.cache_put(my_db, default['fingerprint'])
                return
            self.put_key_record(my_db, None)
            self.cache_clear(my_db)
        finally:
            self.unlock()

    def delete_default_key(self):
        my_db = self.my_database_oid()
        if not self.is_superuser():
            self.error('must be superuser to access global key providers', sqlstate='42501')
        self.lock()
        try:
            default = self._key_no_default(DEFAULT_OID, my_db)
            if default is None:
                self.error('default principal key is not set')
            dbs = []
            for db in self.database_oids_with_state():
                if self._same_key(default, self.get_key_record(db)):
                    if db == my_db:
                        used = self.count_encrypted_objects_here() != 0
                    else:
                        used = bool(self.load(db).get('encrypted_objects'))
                    if used:
                        self.error('cannot delete default principal key', sqlstate='55006',
                                   hint='There are encrypted tables in the database with id: %d.' % db)
                    dbs.append(db)
            if self._same_key(default, self.get_key_record(GLOBAL_OID)):
                if self.setting('pg_tde.wal_encrypt') == 'on':
                    self.error('cannot delete default principal key', sqlstate='55006',
                               hint='There are WAL encryption keys.')
                self.put_key_record(GLOBAL_OID, None)
                self.cache_clear(GLOBAL_OID)
            for db in dbs:
                self.put_key_record(db, None)
                self.cache_clear(db)
            self.put_key_record(DEFAULT_OID, None)
            self.cache_clear(DEFAULT_OID)
        finally:
            self.unlock()

    def key_info(self, target):
        my_db = self.my_database_oid()
        oid = {'server': GLOBAL_OID, 'default': DEFAULT_OID, 'database': my_db}[target]
        self.lock()
        try:
            rec = self._key_no_default(oid, my_db)
        finally:
            self.unlock()
        if rec is None:
            return [[None, None, None, None]]
        provider = self.provider_by_id(rec['provider_id'], my_db)
        created = self.plpy.execute(
            "SELECT (pg_catalog.to_timestamp(0) + %d * interval '1 microsecond')::text AS t"
            % rec['created_us'])[0]['t']
        return [[rec['name'], provider['name'] if provider else None, str(rec['provider_id']), created]]

    def verify_key(self, target):
        my_db = self.my_database_oid()
        oid = {'server': GLOBAL_OID, 'default': DEFAULT_OID, 'database': my_db}[target]
        self.lock()
        try:
            rec = self.get_key_record(oid)
            if rec is None:
                self.error('principal key not configured for current database')
            key = self._fetch_key(oid, rec, my_db)
            cached = self.cache_get(oid)
            if cached is not None and cached != hashlib.sha256(key).hexdigest():
                self.error('key returned from keyring and cached in pg_tde differ')
        finally:
            self.unlock()

    def check_key_for_access(self):
        """First access of a backend to a tde_heap relation: GetPrincipalKey() must succeed."""
        my_db = self.my_database_oid()
        self.lock()
        try:
            if self._key_no_default(my_db, my_db) is None:
                self._key_no_default(DEFAULT_OID, my_db)
        finally:
            self.unlock()

    def extension_created(self):
        """CREATE EXTENSION pg_tde: like pg_tde's key_provider_startup_cleanup() and
        principal_key_startup_cleanup(), forget what an earlier incarnation of the extension in
        this database (or a dropped database with the same OID) left behind."""
        my_db = self.my_database_oid()
        self.lock()
        try:
            try:
                os.unlink(self._path(my_db))
            except FileNotFoundError:
                pass
            self.cache_clear(my_db)
        finally:
            self.unlock()

    def ensure_principal_key(self):
        """pg_tde_principal_key_configured() + GetPrincipalKey() for a new encrypted object."""
        my_db = self.my_database_oid()
        self.lock()
        try:
            rec = self._key_no_default(my_db, my_db)
            if rec is None:
                default = self._key_no_default(DEFAULT_OID, my_db)
                if default is None:
                    self.error('principal key not configured',
                               hint='create one using pg_tde_set_key before using encrypted tables')
                rec = dict(default)
                self.put_key_record(my_db, rec)
                self.cache_put(my_db, rec['fingerprint'])
            st = self.load(my_db)
            if not st.get('encrypted_objects'):
                st['encrypted_objects'] = True
                self.save(my_db, st)
        finally:
            self.unlock()


ROUTES = {
    'pg_tde_add_database_key_provider': lambda d, *a: d.add_provider('database', *a),
    'pg_tde_add_global_key_provider': lambda d, *a: d.add_provider('global', *a),
    'pg_tde_change_database_key_provider': lambda d, *a: d.change_provider('database', *a),
    'pg_tde_change_global_key_provider': lambda d, *a: d.change_provider('global', *a),
    'pg_tde_delete_database_key_provider': lambda d, *a: d.delete_provider('database', *a),
    'pg_tde_delete_global_key_provider': lambda d, *a: d.delete_provider('global', *a),
    'pg_tde_list_all_database_key_providers': lambda d: d.list_providers('database'),
    'pg_tde_list_all_global_key_providers': lambda d: d.list_providers('global'),
    'pg_tde_create_key_using_database_key_provider': lambda d, *a: d.create_key('database', *a),
    'pg_tde_create_key_using_global_key_provider': lambda d, *a: d.create_key('global', *a),
    'pg_tde_set_key_using_database_key_provider': lambda d, *a: d.set_key('database', 'database', *a),
    'pg_tde_set_key_using_global_key_provider': lambda d, *a: d.set_key('global', 'database', *a),
    'pg_tde_set_server_key_using_global_key_provider': lambda d, *a: d.set_key('global', 'server', *a),
    'pg_tde_set_default_key_using_global_key_provider': lambda d, *a: d.set_key('global', 'default', *a),
    'pg_tde_delete_key': lambda d: d.delete_key(),
    'pg_tde_delete_default_key': lambda d: d.delete_default_key(),
    'pg_tde_key_info': lambda d: d.key_info('database'),
    'pg_tde_server_key_info': lambda d: d.key_info('server'),
    'pg_tde_default_key_info': lambda d: d.key_info('default'),
    'pg_tde_verify_key': lambda d: d.verify_key('database'),
    'pg_tde_verify_server_key': lambda d: d.verify_key('server'),
    'pg_tde_verify_default_key': lambda d: d.verify_key('default'),
    'ensure_principal_key': lambda d: d.ensure_principal_key(),
    'extension_created': lambda d: d.extension_created(),
    'check_key_for_access': lambda d: d.check_key_for_access(),
}


def dispatch(plpy, function, args_json):
    """Run one pg_tde SQL function for the double's C entry point; the answer is JSON:
    {"warnings": [{"message", "sqlstate"}], "error": null | {"message", "sqlstate", "hint", "detail"},
     "rows": null | [[text or null, ...], ...]}."""
    args = json.loads(args_json) if args_json else []
    d = Double(plpy)
    try:
        rows = ROUTES[function](d, *args)
        return json.dumps({'warnings': d.warnings, 'error': None, 'rows': rows})
    except TdeError as exc:
        return json.dumps({'warnings': d.warnings, 'rows': None,
                           'error': {'message': exc.message, 'sqlstate': exc.sqlstate,
                                     'hint': exc.hint, 'detail': exc.detail}})
    finally:
        d.unlock()
