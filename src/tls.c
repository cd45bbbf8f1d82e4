/*
 * tls: building OpenSSL contexts from the configuration, and the small
 * questions pgpulse asks of a session (its version, the client's name).
 *
 * Both contexts turn renegotiation and the session cache off: libpq never
 * resumes a session, and without renegotiation a write never has to wait
 * for a read, which keeps stream.c's event handling simple (a TLS write
 * waits for a writable socket; a read waits for a readable one, or for a
 * writable one in the rare case that it must answer a TLS 1.3 KeyUpdate).
 */
#include "tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "util.h"

struct tls_config {
	enum tls_mode client_mode;
	enum tls_mode server_mode;
	SSL_CTX *accept_ctx;  /* clients: pgpulse is the TLS server; NULL when disabled */
	SSL_CTX *connect_ctx; /* servers: pgpulse is the TLS client; NULL when disabled */
};

static struct tls_config *g_tls;

static const char *const mode_words[] = { "disable", "allow", "prefer", "require", "verify-ca", "verify-full" };

static enum tls_mode mode_from_word(const char *word)
{
	for (size_t i = 0; i < sizeof(mode_words) / sizeof(mode_words[0]); i++)
		if (word && strcasecmp(word, mode_words[i]) == 0)
			return (enum tls_mode)i;
	return TLS_DISABLE; /* config/params.c accepts only the words above */
}

static bool has_value(const char *s)
{
	return s && *s;
}

void tls_last_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	if (e == 0)
		str_copy(buf, "unknown TLS error", len);
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

/* "what: OpenSSL's reason" into err; always returns false */
static bool fail(char *err, size_t errlen, const char *what)
{
	char reason[256];
	tls_last_error(reason, sizeof(reason));
	snprintf(err, errlen, "%s: %s", what, reason);
	return false;
}

/* ---- protocols and ciphers ---- */

struct proto_word {
	const char *name;
	int version;
};

static const struct proto_word proto_words[] = {
	{ "tlsv1.0", TLS1_VERSION },   { "tlsv1", TLS1_VERSION },     { "tlsv1.1", TLS1_1_VERSION },
	{ "tlsv1.2", TLS1_2_VERSION }, { "tlsv1.3", TLS1_3_VERSION }, { NULL, 0 },
};

static bool add_protocol(const char *word, int *lo, int *hi)
{
	if (strcasecmp(word, "secure") == 0) {
		return add_protocol("tlsv1.2", lo, hi) && add_protocol("tlsv1.3", lo, hi);
	}
	if (strcasecmp(word, "all") == 0 || strcasecmp(word, "legacy") == 0) {
		return add_protocol("tlsv1.0", lo, hi) && add_protocol("tlsv1.3", lo, hi);
	}
	for (const struct proto_word *p = proto_words; p->name; p++) {
		if (strcasecmp(word, p->name) == 0) {
			if (*lo == 0 || p->version < *lo)
				*lo = p->version;
			if (p->version > *hi)
				*hi = p->version;
			return true;
		}
	}
	return false;
}

/*
 * PgBouncer's protocol list ("secure", "all", "tlsv1.2,tlsv1.3", ...)
 * becomes OpenSSL's version range from the oldest to the newest named:
 * OpenSSL has no way to leave a hole in the middle.
 */
static bool set_protocols(SSL_CTX *ctx, const char *param, const char *value, char *err, size_t errlen)
{
	char copy[256];
	int lo = 0, hi = 0;
	str_copy(copy, has_value(value) ? value : "secure", sizeof(copy));
	for (char *save = NULL, *w = strtok_r(copy, ", :", &save); w; w = strtok_r(NULL, ", :", &save)) {
		if (!add_protocol(w, &lo, &hi)) {
			snprintf(err, errlen, "%s: unknown protocol \"%s\" (use secure, all, legacy or tlsv1.0 to tlsv1.3)",
				 param, w);
			return false;
		}
	}
	if (lo == 0) {
		snprintf(err, errlen, "%s: no protocol named", param);
		return false;
	}
	if (lo < TLS1_2_VERSION)
		SSL_CTX_set_security_level(ctx, 0); /* OpenSSL 3 refuses TLS 1.0/1.1 at its default level */
	if (!SSL_CTX_set_min_proto_version(ctx, lo) || !SSL_CTX_set_max_proto_version(ctx, hi))
		return fail(err, errlen, param);
	return true;
}

/* PgBouncer's cipher aliases; anything else is an OpenSSL cipher list */
static const char *cipher_list(const char *value)
{
	if (strcasecmp(value, "secure") == 0 || strcasecmp(value, "fast") == 0 || strcasecmp(value, "normal") == 0)
		return "HIGH:!aNULL:!MD5:!3DES";
	if (strcasecmp(value, "all") == 0 || strcasecmp(value, "compat") == 0)
		return "ALL:!aNULL";
	return value;
}

static bool set_ciphers(SSL_CTX *ctx, const char *param, const char *value, char *err, size_t errlen)
{
	if (!has_value(value) || strcasecmp(value, "default") == 0)
		return true;
	if (!SSL_CTX_set_cipher_list(ctx, cipher_list(value)))
		return fail(err, errlen, param);
	return true;
}

/*
 * TLS 1.3 suites are set apart from the older ciphers in OpenSSL; empty:
 * OpenSSL's. OpenSSL 3 drops a name it does not know when another one of
 * the list is good, so each name is tried alone first: a mistyped suite
 * stops the start rather than quietly narrowing the list.
 */
static bool set_tls13_ciphers(SSL_CTX *ctx, const char *param, const char *value, char *err, size_t errlen)
{
	if (!has_value(value) || strcasecmp(value, "default") == 0)
		return true;
	char name[128];
	for (const char *p = value; *p;) {
		size_t len = strcspn(p, ":");
		bool fits = len > 0 && len < sizeof(name);
		if (fits) {
			memcpy(name, p, len);
			name[len] = '\0';
		}
		if (!fits || !SSL_CTX_set_ciphersuites(ctx, name)) {
			snprintf(err, errlen, "%s: unknown TLS 1.3 cipher suite \"%.*s\"", param, (int)(len < 100 ? len : 100),
				 p);
			return false;
		}
		p += len;
		if (*p == ':')
			p++;
	}
	if (!SSL_CTX_set_ciphersuites(ctx, value))
		return fail(err, errlen, param);
	return true;
}

/* ---- contexts ---- */

static SSL_CTX *new_context(const SSL_METHOD *method, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (!ctx) {
		fail(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_TICKET);
	/*
	 * Partial writes and a moving buffer: stream.c retries a write from its
	 * receive buffer, which may have been compacted in between. Released
	 * buffers: an idle TLS connection then holds no record buffers.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	return ctx;
}

static bool load_key_pair(SSL_CTX *ctx, const char *cert_param, const char *cert, const char *key_param,
			  const char *key, char *err, size_t errlen)
{
	char what[600];
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(what, sizeof(what), "%s \"%s\"", cert_param, cert);
		return fail(err, errlen, what);
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		snprintf(what, sizeof(what), "%s \"%s\"", key_param, key);
		return fail(err, errlen, what);
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(what, sizeof(what), "%s does not match %s", key_param, cert_param);
		return fail(err, errlen, what);
	}
	return true;
}

static bool load_ca_file(SSL_CTX *ctx, const char *param, const char *file, char *err, size_t errlen)
{
	char what[600];
	if (SSL_CTX_load_verify_locations(ctx, file, NULL) != 1) {
		snprintf(what, sizeof(what), "%s \"%s\"", param, file);
		return fail(err, errlen, what);
	}
	return true;
}

/* a curve list other than auto; DH parameters from OpenSSL's built-in groups */
static bool set_key_exchange(SSL_CTX *ctx, const struct cfg *cfg, char *err, size_t errlen)
{
	const char *curves = cfg->client_tls_ecdhcurve;
	if (has_value(curves) && strcasecmp(curves, "auto") != 0 && SSL_CTX_set1_groups_list(ctx, curves) != 1)
		return fail(err, errlen, "client_tls_ecdhcurve");
	const char *dh = cfg->client_tls_dheparams;
	if (!has_value(dh) || strcasecmp(dh, "auto") == 0 || strcasecmp(dh, "legacy") == 0) {
		SSL_CTX_set_dh_auto(ctx, 1);
	} else if (strcasecmp(dh, "none") != 0) {
		snprintf(err, errlen, "client_tls_dheparams: \"%s\" is not one of none, auto, legacy", dh);
		return false;
	}
	return true;
}

/*
 * Which client certificates to ask for. With a CA file a certificate is
 * requested from every TLS client (auth_type = cert and verify-full need
 * it at login), but only verify-ca and verify-full make the handshake
 * fail without one; a certificate that is presented must verify.
 */
static void set_client_verification(SSL_CTX *ctx, enum tls_mode mode, const char *ca_file)
{
	if (!has_value(ca_file)) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return;
	}
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
	if (names)
		SSL_CTX_set_client_CA_list(ctx, names);
	int flags = SSL_VERIFY_PEER;
	if (mode >= TLS_VERIFY_CA)
		flags |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, flags, NULL);
	static const unsigned char sid_ctx[] = "pgpulse";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
}

static SSL_CTX *build_accept_context(const struct cfg *cfg, enum tls_mode mode, char *err, size_t errlen)
{
	if (!has_value(cfg->client_tls_key_file) || !has_value(cfg->client_tls_cert_file)) {
		snprintf(err, errlen, "client_tls_sslmode = %s needs client_tls_key_file and client_tls_cert_file",
			 mode_words[mode]);
		return NULL;
	}
	if ((mode >= TLS_VERIFY_CA || cfg->auth_type == AUTH_CERT) && !has_value(cfg->client_tls_ca_file)) {
		snprintf(err, errlen, "%s needs client_tls_ca_file to verify client certificates",
			 mode >= TLS_VERIFY_CA ? "client_tls_sslmode = verify-ca or verify-full" : "auth_type = cert");
		return NULL;
	}
	SSL_CTX *ctx = new_context(TLS_server_method(), err, errlen);
	if (!ctx)
		return NULL;
	if (!set_protocols(ctx, "client_tls_protocols", cfg->client_tls_protocols, err, errlen) ||
	    !set_ciphers(ctx, "client_tls_ciphers", cfg->client_tls_ciphers, err, errlen) ||
	    !set_tls13_ciphers(ctx, "client_tls13_ciphers", cfg->client_tls13_ciphers, err, errlen) ||
	    !set_key_exchange(ctx, cfg, err, errlen) ||
	    !load_key_pair(ctx, "client_tls_cert_file", cfg->client_tls_cert_file, "client_tls_key_file",
			   cfg->client_tls_key_file, err, errlen) ||
	    (has_value(cfg->client_tls_ca_file) &&
	     !load_ca_file(ctx, "client_tls_ca_file", cfg->client_tls_ca_file, err, errlen))) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	set_client_verification(ctx, mode, cfg->client_tls_ca_file);
	return ctx;
}

static SSL_CTX *build_connect_context(const struct cfg *cfg, enum tls_mode mode, char *err, size_t errlen)
{
	bool has_cert = has_value(cfg->server_tls_cert_file), has_key = has_value(cfg->server_tls_key_file);
	if (has_cert != has_key) {
		snprintf(err, errlen, "server_tls_cert_file and server_tls_key_file go together: set both or neither");
		return NULL;
	}
	SSL_CTX *ctx = new_context(TLS_client_method(), err, errlen);
	if (!ctx)
		return NULL;
	bool ok = set_protocols(ctx, "server_tls_protocols", cfg->server_tls_protocols, err, errlen) &&
		  set_ciphers(ctx, "server_tls_ciphers", cfg->server_tls_ciphers, err, errlen) &&
		  set_tls13_ciphers(ctx, "server_tls13_ciphers", cfg->server_tls13_ciphers, err, errlen);
	if (ok && has_cert)
		ok = load_key_pair(ctx, "server_tls_cert_file", cfg->server_tls_cert_file, "server_tls_key_file",
				   cfg->server_tls_key_file, err, errlen);
	if (ok && has_value(cfg->server_tls_ca_file))
		ok = load_ca_file(ctx, "server_tls_ca_file", cfg->server_tls_ca_file, err, errlen);
	else if (ok && mode >= TLS_VERIFY_CA && SSL_CTX_set_default_verify_paths(ctx) != 1)
		ok = fail(err, errlen, "the system's trusted certificates");
	if (!ok) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, mode >= TLS_VERIFY_CA ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	return ctx;
}

struct tls_config *tls_config_build(const struct cfg *cfg, char *err, size_t errlen)
{
	struct tls_config *tc = xcalloc(1, sizeof(*tc));
	tc->client_mode = mode_from_word(cfg->client_tls_sslmode);
	tc->server_mode = mode_from_word(cfg->server_tls_sslmode);
	ERR_clear_error();
	if (cfg->auth_type == AUTH_CERT && tc->client_mode == TLS_DISABLE) {
		snprintf(err, errlen, "auth_type = cert needs TLS: set client_tls_sslmode (require or stricter)");
		goto failed;
	}
	if (tc->client_mode != TLS_DISABLE) {
		tc->accept_ctx = build_accept_context(cfg, tc->client_mode, err, errlen);
		if (!tc->accept_ctx)
			goto failed;
	}
	if (tc->server_mode != TLS_DISABLE) {
		tc->connect_ctx = build_connect_context(cfg, tc->server_mode, err, errlen);
		if (!tc->connect_ctx)
			goto failed;
	}
	return tc;
failed:
	tls_config_free(tc);
	return NULL;
}

void tls_config_free(struct tls_config *tc)
{
	if (!tc)
		return;
	SSL_CTX_free(tc->accept_ctx);
	SSL_CTX_free(tc->connect_ctx);
	free(tc);
}

void tls_config_install(struct tls_config *tc)
{
	tls_config_free(g_tls);
	g_tls = tc;
}

void tls_config_release(void)
{
	tls_config_install(NULL);
}

enum tls_mode tls_client_mode(void)
{
	return g_tls ? g_tls->client_mode : TLS_DISABLE;
}

enum tls_mode tls_server_mode(void)
{
	return g_tls ? g_tls->server_mode : TLS_DISABLE;
}

bool tls_client_enabled(void)
{
	return g_tls && g_tls->accept_ctx;
}

/* ---- sessions ---- */

static SSL *new_session(SSL_CTX *ctx, int fd)
{
	ERR_clear_error();
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	if (!ssl || SSL_set_fd(ssl, fd) != 1) {
		char reason[256];
		tls_last_error(reason, sizeof(reason));
		log_error("could not start a TLS session: %s", reason);
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

SSL *tls_accept_session(int fd)
{
	SSL *ssl = new_session(g_tls ? g_tls->accept_ctx : NULL, fd);
	if (ssl)
		SSL_set_accept_state(ssl);
	return ssl;
}

static bool is_ip_address(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *tls_connect_session(int fd, const char *host)
{
	SSL *ssl = new_session(g_tls ? g_tls->connect_ctx : NULL, fd);
	if (!ssl)
		return NULL;
	SSL_set_connect_state(ssl);
	if (!has_value(host))
		return ssl;
	bool ip = is_ip_address(host);
	if (!ip)
		SSL_set_tlsext_host_name(ssl, host); /* SNI takes names only */
	if (g_tls->server_mode == TLS_VERIFY_FULL) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) : X509_VERIFY_PARAM_set1_host(param, host, 0);
		if (ok != 1) {
			log_error("could not set the host name to verify (%s)", host);
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

void tls_describe(SSL *ssl, char *buf, size_t len)
{
	if (!ssl) {
		str_copy(buf, "", len);
		return;
	}
	snprintf(buf, len, "%s/%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

bool tls_peer_common_name(SSL *ssl, char *buf, size_t len)
{
	X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
	if (!cert || SSL_get_verify_result(ssl) != X509_V_OK)
		return false;
	X509_NAME *subject = X509_get_subject_name(cert);
	/* the whole name or nothing: a cut one could match a shorter user */
	int need = X509_NAME_get_text_by_NID(subject, NID_commonName, NULL, 0);
	if (need <= 0 || (size_t)need >= len)
		return false;
	int n = X509_NAME_get_text_by_NID(subject, NID_commonName, buf, (int)len);
	/* a name with a NUL inside could pass for a shorter one: refuse it */
	return n == need && strlen(buf) == (size_t)n;
}

/*
 * RFC 5929's tls-server-end-point: the hash of our own certificate, with
 * the hash of its signature algorithm, SHA-256 in place of MD5 and SHA-1.
 * PostgreSQL binds SCRAM to it (SCRAM-SHA-256-PLUS), so does libpq.
 */
size_t tls_server_end_point(SSL *ssl, uint8_t *out, size_t outlen)
{
	X509 *cert = ssl ? SSL_get_certificate(ssl) : NULL;
	int algo = NID_undef;
	unsigned int n = 0;
	if (!cert || !OBJ_find_sigid_algs(X509_get_signature_nid(cert), &algo, NULL))
		return 0;
	const EVP_MD *md = (algo == NID_md5 || algo == NID_sha1) ? EVP_sha256() : EVP_get_digestbynid(algo);
	if (!md || (size_t)EVP_MD_get_size(md) > outlen || !X509_digest(cert, md, out, &n))
		return 0;
	return n;
}
