/*
 * tls: the OpenSSL contexts pgpulse speaks TLS with, one for the client
 * side (pgpulse as the TLS server) and one for the server side (pgpulse as
 * the TLS client), built from the client_tls_* and server_tls_* settings.
 *
 * A configuration is built whole and checked (files readable, key matching
 * its certificate, protocol and cipher names known) before it replaces the
 * one in force, so a RELOAD with a broken certificate keeps the old one.
 * Sessions already running keep the context they were made from (OpenSSL
 * counts references), so a RELOAD drops no connection.
 *
 * The handshake and record I/O on a session are driven by stream.c.
 */
#ifndef PGPULSE_TLS_H
#define PGPULSE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct cfg;

/* libpq's sslmode words, in order of strictness */
enum tls_mode {
	TLS_DISABLE = 0,
	TLS_ALLOW,
	TLS_PREFER,
	TLS_REQUIRE,
	TLS_VERIFY_CA,
	TLS_VERIFY_FULL,
};

struct tls_config;

/* build the contexts cfg asks for; NULL with err set when a setting is unusable */
struct tls_config *tls_config_build(const struct cfg *cfg, char *err, size_t errlen);
void tls_config_free(struct tls_config *tc);

/* make tc the configuration new sessions use (takes ownership; frees the previous one) */
void tls_config_install(struct tls_config *tc);
/* free the configuration in force (at exit) */
void tls_config_release(void);

/* the modes in force */
enum tls_mode tls_client_mode(void);
enum tls_mode tls_server_mode(void);
/* can clients be offered TLS (client_tls_sslmode is not disable) */
bool tls_client_enabled(void);

/* a session for an accepted client socket, or NULL (logged) */
SSL *tls_accept_session(int fd);
/*
 * A session for a server socket, or NULL (logged). host is the name the
 * connection was made to: it is sent as SNI and, under verify-full,
 * checked against the certificate (an IP address against its IP entries).
 */
SSL *tls_connect_session(int fd, const char *host);

/* "TLSv1.3/TLS_AES_256_GCM_SHA384" for SHOW CLIENTS/SERVERS */
void tls_describe(SSL *ssl, char *buf, size_t len);
/* the verified client certificate's common name; false when there is none */
bool tls_peer_common_name(SSL *ssl, char *buf, size_t len);

/*
 * tls-server-end-point channel binding data of our side of ssl (the hash of
 * our certificate, RFC 5929): its length, 0 when there is none (a signature
 * algorithm without a single hash, such as Ed25519). out: 64 bytes suffice.
 */
size_t tls_server_end_point(SSL *ssl, uint8_t *out, size_t outlen);

/* the reason of the last OpenSSL failure, for a log line or an error message */
void tls_last_error(char *buf, size_t len);

#endif
