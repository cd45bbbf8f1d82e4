/*
 * login: authentication, from the method the configuration (or the first
 * matching hba line) chooses to AuthenticationOk and the pool the client
 * joins; what comes before (the startup packet, TLS) and after (the hello,
 * src/hello.c) is client.c's.
 *
 * A login is a small state machine kept on the client (c->auth_step): the
 * secret is found first — the auth_file, a database's password=, or an
 * auth_query lookup that answers later (login_lookup_done) — then the
 * exchange runs (cleartext, md5, SCRAM), each answer arriving as a
 * password message (login_on_password). A user without a usable secret
 * goes through the same exchange against a stand-in, and fails like a
 * wrong password: nothing a stranger sees tells which users exist.
 */
#include "login.h"

#include <openssl/crypto.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "auth_query.h"
#include "client.h"
#include "config.h"
#include "hba.h"
#include "hello.h"
#include "log.h"
#include "login_stats.h"
#include "pool.h"
#include "proto.h"
#include "scram.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

static void send_auth_request(struct client *c, uint32_t code, const void *data, size_t len)
{
	proto_put_auth(stream_out(&c->st), code, data, len);
	stream_send_out(&c->st);
}

static void fail_password(struct client *c)
{
	if (c->secret_looked_up)
		auth_query_drop_cached(c); /* perhaps the password changed: the next login looks again */
	client_fatal(c, "28P01", "password authentication failed for user \"%s\"", c->user);
}

/* max_db_client_connections and max_user_client_connections (the admin console is exempt) */
static bool within_client_limits(struct client *c)
{
	const struct cfg *cfg = worker->cfg;
	c->login_user = pool_find_user(c->user, true);
	if (c->is_admin)
		return true;
	int db_limit = c->db->max_db_client_connections >= 0 ? c->db->max_db_client_connections
							       : cfg->max_db_client_connections;
	if (db_limit > 0 && c->db->client_count >= db_limit) {
		client_fatal(c, "53300", "no more connections allowed to database \"%s\" (max_db_client_connections = %d)",
			     c->db->name, db_limit);
		return false;
	}
	int user_limit = (int)pool_user_setting(c->login_user, c->login_user->max_user_client_connections,
						cfg->max_user_client_connections);
	if (user_limit > 0 && c->login_user->client_count >= user_limit) {
		client_fatal(c, "53300", "no more connections allowed for user \"%s\" (max_user_client_connections = %d)",
			     c->user, user_limit);
		return false;
	}
	return true;
}

/*
 * A secret auth_query found is how pgpulse logs in to PostgreSQL as that
 * user (an md5 hash, or a SCRAM secret with the keys the client proved):
 * kept with the user, replaced at each such login.
 */
static void keep_looked_up_secret(struct client *c)
{
	if (!c->secret_looked_up || !c->secret || c->is_admin)
		return;
	struct pool_user *u = c->login_user;
	if (u->looked_up_secret && strcmp(u->looked_up_secret, c->secret) == 0)
		return;
	free(u->looked_up_secret);
	u->looked_up_secret = xstrdup(c->secret);
}

/* after AuthenticationOk, as PostgreSQL checks its database only then; false after the error */
static bool database_accepts_login(struct client *c)
{
	if (!c->db) {
		client_fatal(c, "3D000", "database \"%s\" does not exist", c->dbname);
		return false;
	}
	if (c->db->disabled) {
		client_fatal(c, "57P03", "database \"%s\" is disabled", c->dbname);
		return false;
	}
	if (c->settings_refusal) {
		/* startup parameters come after the database, as in PostgreSQL's InitPostgres */
		if (c->settings_refusal_hint)
			client_fatal_hint(c, c->settings_refusal_code, c->settings_refusal_hint, "%s", c->settings_refusal);
		else
			client_fatal(c, c->settings_refusal_code, "%s", c->settings_refusal);
		return false;
	}
	return true;
}

/* everything after authentication: the pool, and the hello when it can be said */
static void enter_pool(struct client *c)
{
	const struct cfg *cfg = worker->cfg;
	proto_put_auth(stream_out(&c->st), AUTH_REQ_OK, NULL, 0);
	c->auth_step = CA_NONE;
	if (!database_accepts_login(c) || !within_client_limits(c)) {
		free(c->secret);
		c->secret = NULL;
		return;
	}
	keep_looked_up_secret(c);
	free(c->secret);
	c->secret = NULL;
	c->db->had_login = true;
	if (c->is_admin) {
		if (c->replication) {
			client_fatal(c, "0A000", "the admin console takes no replication connections");
			return;
		}
		login_stats_authenticated(c);
		hello_send(c);
		return;
	}
	struct pool_db *db = c->db;
	const char *server_user = db->forced_user ? db->forced_user : c->user;
	struct pool_user *u = pool_find_user(server_user, true);
	/* a walsender session gets a server of its own, in session mode (pool.for_replication) */
	struct pool *p = c->replication ? pool_get_for_replication(db, u) : pool_get(db, u);
	c->pool = p;
	login_stats_authenticated(c);
	if (hello_needs_server(c)) {
		hello_take_server(c);
		return;
	}
	if (p->have_welcome) {
		hello_send(c);
		return;
	}
	/* the hello needs server_version & co: wait for the pool's first server */
	if (p->last_connect_failure && pool_server_count(p) == 0 &&
	    now_usec() - p->last_connect_failure < cfg->server_login_retry) {
		client_fatal(c, p->last_error_code[0] ? p->last_error_code : "08006", "%s",
			     p->last_error[0] ? p->last_error : "server login has been failing");
		return;
	}
	c->wait_start = now_usec();
	client_set_state(c, CL_WELCOME);
	stream_send_out(&c->st);
	pool_launch_if_needed(p);
}

/*
 * Over TLS, SCRAM-SHA-256-PLUS is offered first, as PostgreSQL lists it:
 * bound to the certificate pgpulse showed, so a client that insists on it
 * (libpq's channel_binding=require) logs in, and a man in the middle with
 * another certificate cannot relay the exchange.
 */
static void begin_scram(struct client *c, const struct scram_secret *secret)
{
	static const char plain[] = "SCRAM-SHA-256\0";
	static const char both[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
	uint8_t cbind[64];
	size_t cbind_len = c->st.tls ? tls_server_end_point(c->st.tls, cbind, sizeof(cbind)) : 0;
	c->scram = xcalloc(1, sizeof(*c->scram));
	c->scram->secret = *secret;
	scram_server_bind(c->scram, cbind, cbind_len, false);
	c->auth_step = CA_SCRAM_FIRST;
	if (cbind_len)
		send_auth_request(c, AUTH_REQ_SASL, both, sizeof(both));
	else
		send_auth_request(c, AUTH_REQ_SASL, plain, sizeof(plain));
}

/* a secret that can never match, so unknown users take the same path as known ones */
static void begin_mock_scram(struct client *c)
{
	struct scram_secret fake;
	scram_secret_mock(c->user, &fake);
	begin_scram(c, &fake);
}

/*
 * auth_type = cert and client_tls_sslmode = verify-full: the client's
 * verified certificate must name the user it logs in as (its common
 * name), as PostgreSQL's clientcert=verify-full does. False after
 * sending the error.
 */
static bool certificate_names_user(struct client *c)
{
	char cn[256];
	if (!c->st.tls) {
		client_fatal(c, "28000", "certificate authentication needs a TLS connection (user \"%s\")", c->user);
		return false;
	}
	if (!tls_peer_common_name(c->st.tls, cn, sizeof(cn))) {
		client_fatal(c, "28000", "connection requires a valid client certificate");
		return false;
	}
	if (strcmp(cn, c->user) != 0) {
		client_log(c, LOG_LVL_INFO, "certificate common name \"%s\" does not match user \"%s\"", cn, c->user);
		client_fatal(c, "28000", "certificate authentication failed for user \"%s\"", c->user);
		return false;
	}
	return true;
}

/* the operating-system user at the other end of a unix socket (SO_PEERCRED); name may be NULL */
static bool peer_os_user(const struct client *c, uid_t *uid, char *name, size_t len)
{
	struct ucred cred;
	socklen_t cred_len = sizeof(cred);
	if (!client_is_unix(c) || getsockopt(c->st.fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0)
		return false;
	*uid = cred.uid;
	if (!name)
		return true;
	struct passwd pw, *found = NULL;
	char buf[4096];
	if (getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &found) != 0 || !found)
		return false;
	str_copy(name, pw.pw_name, len);
	return true;
}

/*
 * PgBouncer's rule: over the unix socket, the operating-system user the
 * pooler runs as opens the admin console as user "pgbouncer" (here also
 * "pgpulse") without a password, whatever auth_type says.
 */
static bool console_from_own_os_user(const struct client *c)
{
	uid_t uid;
	return c->is_admin && (strcmp(c->user, "pgbouncer") == 0 || strcmp(c->user, "pgpulse") == 0) &&
	       peer_os_user(c, &uid, NULL, 0) && uid == geteuid();
}

/* hba's cert: a verified certificate whose common name is the user, or maps to it */
static bool hba_certificate_allows(struct client *c, const char *map)
{
	char cn[256];
	if (!c->st.tls || !tls_peer_common_name(c->st.tls, cn, sizeof(cn))) {
		client_fatal(c, "28000", "connection requires a valid client certificate");
		return false;
	}
	if (map ? hba_ident_allows(worker->hba, map, cn, c->user) : strcmp(cn, c->user) == 0)
		return true;
	client_log(c, LOG_LVL_INFO, "certificate common name \"%s\" may not log in as \"%s\"%s%s", cn, c->user,
		   map ? " by ident map " : "", map ? map : "");
	client_fatal(c, "28000", "certificate authentication failed for user \"%s\"", c->user);
	return false;
}

/* hba's peer: the socket's operating-system user is the user, or maps to it */
static bool hba_peer_allows(struct client *c, const char *map)
{
	char name[256];
	uid_t uid;
	if (!peer_os_user(c, &uid, name, sizeof(name))) {
		client_fatal(c, "28000", "could not get the peer's operating-system user name");
		return false;
	}
	if (map ? hba_ident_allows(worker->hba, map, name, c->user) : strcmp(name, c->user) == 0)
		return true;
	if (map)
		client_log(c, LOG_LVL_INFO, "no match in usermap \"%s\" for user \"%s\" authenticated as \"%s\"", map,
			   c->user, name);
	else
		client_log(c, LOG_LVL_INFO, "peer \"%s\" is not user \"%s\"", name, c->user);
	client_fatal(c, "28000", "peer authentication failed for user \"%s\"", c->user);
	return false;
}

/*
 * auth_type = hba: the first matching rule decides. Its password methods
 * become the auth_type whose exchange runs below (true); reject, no rule,
 * peer and cert are settled here (false: the client is closed or has
 * entered its pool).
 */
static bool hba_method_as_auth_type(struct client *c, int *type)
{
	struct hba_client hc = { client_is_unix(c), c->st.tls != NULL, &c->peer_addr.sa, c->dbname, c->user,
				 c->replication == REPL_PHYSICAL };
	struct hba_verdict v;
	char host[64];
	const char *enc = c->st.tls ? "SSL encryption" : "no encryption";
	if (!hba_match(worker->hba, &hc, &v)) {
		if (hc.physical_replication)
			client_fatal(c, "28000", "no pg_hba.conf entry for replication connection from host \"%s\", user \"%s\", %s",
				     hba_host_text(&hc, host, sizeof(host)), c->user, enc);
		else
			client_fatal(c, "28000", "no pg_hba.conf entry for host \"%s\", user \"%s\", database \"%s\", %s",
				     hba_host_text(&hc, host, sizeof(host)), c->user, c->dbname, enc);
		return false;
	}
	client_log(c, LOG_LVL_DEBUG, "%s:%d: %s", v.file, v.line, hba_method_name(v.method));
	switch (v.method) {
	case HBA_TRUST: *type = AUTH_TRUST; return true;
	case HBA_MD5: *type = AUTH_MD5; return true;
	case HBA_PASSWORD: *type = AUTH_PLAIN; return true;
	case HBA_SCRAM: *type = AUTH_SCRAM; return true;
	case HBA_REJECT:
		client_fatal(c, "28000", "pg_hba.conf rejects connection for host \"%s\", user \"%s\", database \"%s\", %s",
			     hba_host_text(&hc, host, sizeof(host)), c->user, c->dbname, enc);
		return false;
	case HBA_CERT:
		if (hba_certificate_allows(c, v.map))
			enter_pool(c);
		return false;
	case HBA_PEER:
		if (hba_peer_allows(c, v.map))
			enter_pool(c);
		return false;
	}
	return false;
}

/* the exchanges that check a password against a secret (trust checks that the user has one) */
static bool method_needs_secret(int type)
{
	return type == AUTH_TRUST || type == AUTH_PLAIN || type == AUTH_MD5 || type == AUTH_SCRAM;
}

/* the verifier a scram-sha-256 exchange checks the client against, if the secret can give one */
static bool scram_verifier_of(struct client *c, bool from_auth_file, struct scram_secret *sec)
{
	if (!c->secret)
		return false;
	switch (auth_secret_kind(c->secret)) {
	case SECRET_SCRAM:
		return scram_parse_secret(c->secret, sec);
	case SECRET_PLAIN:
		if (from_auth_file) /* a plaintext password's verifier is derived once and kept */
			return auth_file_scram_verifier(worker->auth, c->user, worker->cfg->scram_iterations, sec);
		/* a [databases] password for its forced user, or a plaintext auth_query value */
		return scram_verifier_for_password(&pool_find_user(c->user, true)->db_password_verifier, c->secret,
						   worker->cfg->scram_iterations, sec);
	case SECRET_MD5:
		client_log(c, LOG_LVL_WARNING, "the secret of \"%s\" is md5: it cannot serve scram-sha-256", c->user);
		return false;
	}
	return false;
}

/* with c->secret known (or known to be missing), run the exchange c->auth_method names */
static void run_exchange(struct client *c, bool from_auth_file)
{
	switch (c->auth_method) {
	case AUTH_ANY:
		enter_pool(c);
		return;
	case AUTH_TRUST:
		/*
		 * The role must exist, as in PostgreSQL: in the auth_file, or as
		 * auth_query's row, which needs no secret (no password, or an
		 * expired one: trust does not look at either).
		 */
		if ((worker->auth || c->secret_looked_up) && !c->secret && !c->looked_up_role_found) {
			client_fatal(c, "28000", "role \"%s\" does not exist", c->user);
			return;
		}
		enter_pool(c);
		return;
	case AUTH_PLAIN:
		c->auth_step = CA_CLEARTEXT;
		send_auth_request(c, AUTH_REQ_CLEARTEXT, NULL, 0);
		return;
	case AUTH_MD5:
		if (!c->secret && c->secret_looked_up) {
			/*
			 * As PostgreSQL does for a role it cannot find: go through the
			 * motions with the mechanism a new password would be stored
			 * with today (SCRAM), so that md5 is not the tell of a miss.
			 */
			begin_mock_scram(c);
			return;
		}
		if (c->secret && auth_secret_kind(c->secret) == SECRET_SCRAM) {
			struct scram_secret sec;
			if (scram_parse_secret(c->secret, &sec)) {
				begin_scram(c, &sec);
				return;
			}
		}
		c->auth_step = CA_MD5;
		random_bytes(c->md5_salt, sizeof(c->md5_salt));
		send_auth_request(c, AUTH_REQ_MD5, c->md5_salt, sizeof(c->md5_salt));
		return;
	case AUTH_SCRAM: {
		struct scram_secret sec;
		if (scram_verifier_of(c, from_auth_file, &sec))
			begin_scram(c, &sec);
		else
			begin_mock_scram(c);
		return;
	}
	case AUTH_CERT:
		if (certificate_names_user(c))
			enter_pool(c);
		return;
	default:
		client_fatal(c, "28000", "auth_type \"%s\" is not supported yet", cfg_auth_type_name(c->auth_method));
		return;
	}
}

void login_authenticate(struct client *c)
{
	const struct cfg *cfg = worker->cfg;
	int type = cfg->auth_type;
	if (console_from_own_os_user(c)) {
		enter_pool(c);
		return;
	}
	if (type == AUTH_HBA && !hba_method_as_auth_type(c, &type))
		return;
	c->auth_method = type;
	const char *secret = worker->auth ? auth_file_lookup(worker->auth, c->user) : NULL;
	bool from_auth_file = secret != NULL;
	if (!secret && c->db && c->db->password && c->db->forced_user && strcmp(c->db->forced_user, c->user) == 0)
		secret = c->db->password;
	if (!secret && method_needs_secret(type) && auth_query_user_for(c->db)) {
		/* not in the auth_file: ask PostgreSQL (the answer may come later, see login_lookup_done) */
		c->auth_step = CA_LOOKUP;
		if (!auth_query_find(c, &secret))
			return;
		c->auth_step = CA_NONE;
		c->secret_looked_up = true;
		c->looked_up_role_found = secret != NULL; /* the cache keeps only roles with a secret */
	}
	/* a copy: a RELOAD may replace the auth_file (or the cache) while this login runs */
	c->secret = xstrdup(secret);
	run_exchange(c, from_auth_file);
}

void login_lookup_done(struct client *c, const char *secret, bool role_found, const char *error)
{
	if (c->state != CL_LOGIN || c->auth_step != CA_LOOKUP)
		return;
	c->auth_step = CA_NONE;
	if (error) {
		/* the same for every user: a broken lookup must not tell who exists */
		client_fatal(c, "28000", "authentication failed for user \"%s\": the auth_query lookup failed",
			     c->user);
		return;
	}
	c->secret_looked_up = true;
	c->looked_up_role_found = role_found;
	c->secret = xstrdup(secret);
	run_exchange(c, false);
}

bool login_admin_allowed(struct client *c)
{
	const struct cfg *cfg = worker->cfg;
	if (console_from_own_os_user(c)) {
		c->admin_may_change = true;
		return true;
	}
	if (cfg_list_contains(cfg->admin_users, c->user)) {
		c->admin_may_change = true;
		return true;
	}
	if (cfg_list_contains(cfg->stats_users, c->user))
		return true;
	client_fatal(c, "28000", "not allowed: \"%s\" is not in admin_users or stats_users", c->user);
	return false;
}

/*
 * client_tls_sslmode = require and stricter refuse plaintext over TCP;
 * unix sockets are exempt, as in PostgreSQL, which offers no TLS there.
 * verify-full is verify-ca, as in PgBouncer: which user a certificate
 * may log in as is for auth_type = cert and hba's cert lines (with map=).
 */
bool login_meets_tls_requirement(struct client *c)
{
	enum tls_mode mode = tls_client_mode();
	if (mode < TLS_REQUIRE || client_is_unix(c))
		return true;
	if (!c->st.tls) {
		client_fatal(c, "28000", "SSL required: pgpulse accepts TCP connections with TLS only (sslmode=require)");
		return false;
	}
	return true;
}

/* ---- password exchanges ---- */

/* the SCRAM keys a client proved it has also let pgpulse log in to PostgreSQL as it */
static void keep_scram_keys(struct client *c, const uint8_t client_key[SCRAM_KEY_LEN],
			    const uint8_t server_key[SCRAM_KEY_LEN])
{
	if (!c->db)
		return; /* the login ends in 3D000 */
	const char *server_user = c->db->forced_user ? c->db->forced_user : c->user;
	if (strcmp(server_user, c->user) != 0)
		return;
	struct pool_user *u = pool_find_user(c->user, true);
	memcpy(u->scram_client_key, client_key, SCRAM_KEY_LEN);
	memcpy(u->scram_server_key, server_key, SCRAM_KEY_LEN);
	u->have_scram_keys = true;
}

static bool cleartext_matches(struct client *c, const char *password)
{
	if (!c->secret)
		return false;
	switch (auth_secret_kind(c->secret)) {
	case SECRET_PLAIN:
		return auth_secure_equal(c->secret, password);
	case SECRET_MD5: {
		char md5[36];
		auth_md5_secret(password, c->user, md5);
		return auth_secure_equal(c->secret, md5);
	}
	case SECRET_SCRAM: {
		/* the password gives the keys: the server login can do SCRAM too */
		struct scram_secret stored;
		uint8_t client_key[SCRAM_KEY_LEN];
		if (!scram_parse_secret(c->secret, &stored) || !scram_password_keys(&stored, password, client_key))
			return false;
		keep_scram_keys(c, client_key, stored.server_key);
		OPENSSL_cleanse(client_key, sizeof(client_key));
		return true;
	}
	}
	return false;
}

static bool md5_matches(const struct client *c, const char *response)
{
	char md5[36], expected[36];
	if (!c->secret)
		return false;
	switch (auth_secret_kind(c->secret)) {
	case SECRET_PLAIN:
		auth_md5_secret(c->secret, c->user, md5);
		break;
	case SECRET_MD5:
		str_copy(md5, c->secret, sizeof(md5));
		break;
	default:
		return false;
	}
	auth_md5_response(md5, c->md5_salt, expected);
	return auth_secure_equal(expected, response);
}

/* a SCRAM login proved the ClientKey of a stored verifier */
static void remember_scram_keys(struct client *c)
{
	if (c->scram->have_client_key && c->secret && auth_secret_kind(c->secret) == SECRET_SCRAM)
		keep_scram_keys(c, c->scram->client_key, c->scram->secret.server_key);
}

static void handle_scram_message(struct client *c, const struct pkt *pkt)
{
	char out[512], err[256];
	struct pkt_reader r;
	pkt_reader_init(&r, pkt->body, pkt->body_len);
	if (c->auth_step == CA_SCRAM_FIRST) {
		const char *mech = pkt_get_str(&r);
		uint32_t len = pkt_get_u32(&r);
		const uint8_t *data = (len == 0xffffffffu) ? NULL : pkt_get_bytes(&r, len);
		bool plus = mech && strcmp(mech, "SCRAM-SHA-256-PLUS") == 0 && c->scram->cbind_len > 0;
		if (r.bad || !mech || (strcmp(mech, "SCRAM-SHA-256") != 0 && !plus) || !data) {
			client_fatal(c, "08P01", "malformed SASLInitialResponse");
			return;
		}
		scram_server_bind(c->scram, c->scram->cbind_data, c->scram->cbind_len, plus);
		struct scram_secret secret = c->scram->secret;
		if (!scram_server_first(c->scram, &secret, (const char *)data, len, out, sizeof(out), err,
					sizeof(err))) {
			client_fatal(c, "08P01", "SCRAM: %s", err);
			return;
		}
		c->auth_step = CA_SCRAM_FINAL;
		send_auth_request(c, AUTH_REQ_SASL_CONTINUE, out, strlen(out));
		return;
	}
	if (!scram_server_final(c->scram, (const char *)pkt->body, pkt->body_len, out, sizeof(out), err,
				sizeof(err)) ||
	    !c->secret) {
		client_log(c, LOG_LVL_INFO, "SCRAM authentication failed: %s", c->secret ? err : "no such user");
		fail_password(c);
		return;
	}
	remember_scram_keys(c);
	proto_put_auth(stream_out(&c->st), AUTH_REQ_SASL_FINAL, out, strlen(out));
	scram_server_reset(c->scram);
	free(c->scram);
	c->scram = NULL;
	enter_pool(c);
}

enum pkt_action login_on_password(struct client *c, struct pkt *pkt)
{
	if (pkt->type != 'p') {
		client_fatal(c, "08P01", "expected a password message, got '%c'", pkt->type);
		return PKT_GONE;
	}
	if (!pkt->complete)
		return PKT_NEED_FULL;
	switch (c->auth_step) {
	case CA_CLEARTEXT:
	case CA_MD5: {
		const char *given = (const char *)pkt->body;
		if (pkt->body_len == 0 || pkt->body[pkt->body_len - 1] != '\0') {
			client_fatal(c, "08P01", "malformed password message");
			return PKT_GONE;
		}
		bool ok = c->auth_step == CA_CLEARTEXT ? cleartext_matches(c, given) : md5_matches(c, given);
		if (!ok) {
			client_log(c, LOG_LVL_INFO, "password authentication failed");
			fail_password(c);
			return PKT_GONE;
		}
		enter_pool(c);
		break;
	}
	case CA_SCRAM_FIRST:
	case CA_SCRAM_FINAL:
		handle_scram_message(c, pkt);
		break;
	case CA_NONE:
	case CA_LOOKUP:
		client_fatal(c, "08P01", "unexpected password message");
		return PKT_GONE;
	}
	return c->state == CL_CLOSED ? PKT_GONE : PKT_CONSUMED;
}
