/*
 * test_scram: SCRAM-SHA-256 against the RFC 7677 example, against verifiers
 * made by a real PostgreSQL 15, and against hostile input.
 *
 * Each test drives the server and client state machines the way the
 * protocol code does: messages are passed with explicit lengths, never
 * relying on a NUL terminator.
 */
#include "scram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* RFC 7677 section 3 */
#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT         "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CLIENT_NONCE
#define RFC_SERVER_FIRST "r=" RFC_CLIENT_NONCE RFC_SERVER_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL                              \
	"c=biws,r=" RFC_CLIENT_NONCE RFC_SERVER_NONCE \
	",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* made by PostgreSQL 15: SET password_encryption='scram-sha-256'; CREATE ROLE ... PASSWORD ... */
#define PG_SECRET_FOR_secret                                     \
	"SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/"                    \
	"We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:" \
	"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc="
#define PG_SALT_FOR_secret "WPYJt4J1/q7sdMG/We8pIA=="
/* password "pässwörd" in UTF-8 (NFC, so SASLprep leaves it unchanged) */
#define PG_PASSWORD_UTF8 "p\xc3\xa4ssw\xc3\xb6rd"
#define PG_SECRET_FOR_UTF8                                                                    \
	"SCRAM-SHA-256$4096:wMRaHg/XZEQfH0ynx5hDnw==$N2mFoDsDe2TCAb9rtKdY0HAVejUKizqvEHjSiK/" \
	"4m3w=:IR7+g1paR1/kK+NTo3nU3T0sGN93h2+XQLIYDqx9lC8="
#define PG_SECRET_FOR_pencil                                                                       \
	"SCRAM-SHA-256$4096:Bkkeeyl/"                                                              \
	"gVnSNLMEmmOYLQ==$3MVo1UdytFuKSXua3VqtyNLxnCx5yCZeu1u11Zyd1GM=:BqpVFEXdvqnBTOx+v3uE8FjtB+" \
	"VT6Gmg/9SHKI0N7wM="

/*
 * Made by PostgreSQL 15 (password_encryption = scram-sha-256), which
 * SASLpreps a password before deriving keys and uses the raw bytes when
 * SASLprep refuses it: password, then pg_authid.rolpassword.
 */
static const struct {
	const char *password;
	const char *secret;
} pg_prepared[] = {
	/* U+2168 ROMAN NUMERAL NINE: prepared to "IX-IX" */
	{ "IX-\u2168",
	  "SCRAM-SHA-256$4096:6O50Yl6NDj8xgMNa1sgVeg==$emVVQBtjYa4Lvn3VEPXUT19T3yumamkrebEjdHdoJ0w=:"
	  "1ytJm2puZJWDBB5C+SXIrBzm/zW7FCkmPPCBTf3BvxY=" },
	/* U+3000 IDEOGRAPHIC SPACE to SPACE, U+00AD SOFT HYPHEN to nothing: "a bc" */
	{ "a\u3000b\u00ADc",
	  "SCRAM-SHA-256$4096:PvN4wOd5mDF8FBS/LS4nmQ==$kKMgg+eln00TcGBPijaLlXKC8PhAZxsaGSka6MBe5o8=:"
	  "JeGeprd1CSETJmmTXy2MFzBIbWvxTmmYpElXEuyvkyc=" },
	/* U+0007 among non-ASCII: SASLprep refuses it, the raw bytes are used */
	{ "x\x07\xc3\xa9",
	  "SCRAM-SHA-256$4096:vxrM5RYPEgPYysA/K1WyIA==$/27LzUHDLifBOe1kqhIrZ1rNFsVCk7kbIW0TCQaopFo=:"
	  "jtMEslzSo27w9kJ/RtUd0ni62PH2iAV1i5Bq5hdNnp0=" },
	/* ALEF then "1" breaks the bidi rule: raw bytes */
	{ "\u06271",
	  "SCRAM-SHA-256$4096:wOwBh5NduTQfEOZBBrRmLA==$MTO+wRW9+CigmV8urlw2wWKjSHR8IaUfGx9Wrwc++Gg=:"
	  "MjlDzdMvH4ASwxnm8osc7FIdywqVF4bzNpHmPB1H6e8=" },
	/* conjoining jamo, composed by NFKC into U+AC01 */
	{ "\u1100\u1161\u11A8",
	  "SCRAM-SHA-256$4096:H6G4PYr0kS62XHG/3iWMfg==$38u5gpC6CnGFmpBcps56r6/k0uLvSABgQuJtsPHHfh0=:"
	  "zkalMbkijUHXnVojThqVxjDFCguZYYkUPMUwCbvX7i4=" },
};

#define BUF SCRAM_MAX_MESSAGE_LEN

/* messages are handed over with their length and without a terminator */
static char *unterminated(const char *s)
{
	size_t len = strlen(s);
	char *copy = malloc(len ? len : 1);
	memcpy(copy, s, len);
	return copy;
}

static bool server_first_of(struct scram_server *sv, const struct scram_secret *secret,
			    const char *msg, char *out, char *err)
{
	char *m = unterminated(msg);
	bool ok = scram_server_first(sv, secret, m, strlen(msg), out, BUF, err, 256);
	free(m);
	return ok;
}

static bool server_final_of(struct scram_server *sv, const char *msg, char *out, char *err)
{
	char *m = unterminated(msg);
	bool ok = scram_server_final(sv, m, strlen(msg), out, BUF, err, 256);
	free(m);
	return ok;
}

static bool client_final_of(struct scram_client *cl, const char *msg, char *out, char *err)
{
	char *m = unterminated(msg);
	bool ok = scram_client_final(cl, m, strlen(msg), out, BUF, err, 256);
	free(m);
	return ok;
}

static bool client_verify_of(struct scram_client *cl, const char *msg, char *err)
{
	char *m = unterminated(msg);
	bool ok = scram_client_verify(cl, m, strlen(msg), err, 256);
	free(m);
	return ok;
}

/* after the client wrote client_first: run the rest, true when both sides accept */
static bool finish_exchange(struct scram_server *sv, const struct scram_secret *secret,
			    struct scram_client *cl, const char *client_first)
{
	char m1[BUF], m2[BUF], m3[BUF], err[256];
	return server_first_of(sv, secret, client_first, m1, err) &&
	       client_final_of(cl, m1, m2, err) && server_final_of(sv, m2, m3, err) &&
	       client_verify_of(cl, m3, err);
}

static bool password_logs_in(const struct scram_secret *secret, const char *password)
{
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	char first[BUF];
	bool ok = scram_client_first(&cl, password, NULL, first, sizeof(first)) &&
		  finish_exchange(&sv, secret, &cl, first);
	scram_server_reset(&sv);
	scram_client_reset(&cl);
	return ok;
}

/* ---- tests ---- */

static void test_base64_matches_rfc4648_examples(void)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const coded[] = { "",         "Zg==",     "Zm8=",    "Zm9v",
					     "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	char out[16];
	uint8_t back[16];
	for (int i = 0; i < 7; i++) {
		size_t n = scram_b64_encode((const uint8_t *)plain[i], strlen(plain[i]), out,
					    sizeof(out));
		CHECK(n == strlen(coded[i]));
		CHECK_STR_EQ(out, coded[i]);
		int m = scram_b64_decode(coded[i], strlen(coded[i]), back, sizeof(back));
		CHECK(m == (int)strlen(plain[i]));
		CHECK(m >= 0 && memcmp(back, plain[i], (size_t)m) == 0);
	}
}

static void test_base64_rejects_malformed_input(void)
{
	static const char *const bad[] = { "Zg=",  "Z===", "====", "Zg==Zg==", "Zm9v\n",
					   "=Zm9", "Zm 9", "Zm9-", "Z=9v" };
	uint8_t out[16];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT_EQ(scram_b64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
	/* too small an output buffer is an error, not an overflow */
	CHECK_INT_EQ(scram_b64_decode("Zm9vYmFy", 8, out, 5), -1);
	char small[4];
	CHECK(scram_b64_encode((const uint8_t *)"foo", 3, small, sizeof(small)) == 0);
}

static void test_rfc7677_example_as_client(void)
{
	struct scram_client cl = { 0 };
	char out[BUF], err[256] = "";
	scram_test_set_client_user("user");
	scram_test_set_nonce(RFC_CLIENT_NONCE);
	CHECK(scram_client_first(&cl, "pencil", NULL, out, sizeof(out)));
	CHECK_STR_EQ(out, RFC_CLIENT_FIRST);
	CHECK(client_final_of(&cl, RFC_SERVER_FIRST, out, err));
	CHECK_STR_EQ(out, RFC_CLIENT_FINAL);
	CHECK(client_verify_of(&cl, RFC_SERVER_FINAL, err));
	scram_test_set_client_user(NULL);
	scram_test_set_nonce(NULL);
	scram_client_reset(&cl);
}

static void test_rfc7677_example_as_server(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	uint8_t salt[16];
	char out[BUF], err[256] = "";
	CHECK_INT_EQ(scram_b64_decode(RFC_SALT, strlen(RFC_SALT), salt, sizeof(salt)), 16);
	scram_test_set_salt(salt, sizeof(salt));
	CHECK(scram_secret_from_password("pencil", 4096, &secret));
	scram_test_set_salt(NULL, 0);

	scram_test_set_nonce(RFC_SERVER_NONCE);
	CHECK(server_first_of(&sv, &secret, RFC_CLIENT_FIRST, out, err));
	scram_test_set_nonce(NULL);
	CHECK_STR_EQ(out, RFC_SERVER_FIRST);
	CHECK(server_final_of(&sv, RFC_CLIENT_FINAL, out, err));
	CHECK_STR_EQ(out, RFC_SERVER_FINAL);
	CHECK(sv.have_client_key);
	scram_server_reset(&sv);
	CHECK(!sv.have_client_key && sv.client_first_bare == NULL);
}

static void test_client_and_server_agree_on_a_plaintext_password(void)
{
	struct scram_secret secret;
	CHECK(scram_secret_from_password("correct horse battery staple", SCRAM_DEFAULT_ITERATIONS,
					 &secret));
	CHECK(secret.salt_len == 16 && secret.iterations == SCRAM_DEFAULT_ITERATIONS);
	CHECK(password_logs_in(&secret, "correct horse battery staple"));
}

static void test_fresh_secrets_get_fresh_salts(void)
{
	struct scram_secret a, b;
	CHECK(scram_secret_from_password("same", 1, &a));
	CHECK(scram_secret_from_password("same", 1, &b));
	CHECK(memcmp(a.salt, b.salt, 16) != 0);
	CHECK(memcmp(a.stored_key, b.stored_key, SCRAM_KEY_LEN) != 0);
}

static void test_postgresql_verifiers_accept_their_passwords(void)
{
	struct scram_secret secret;
	CHECK(scram_parse_secret(PG_SECRET_FOR_secret, &secret));
	CHECK(secret.iterations == 4096 && secret.salt_len == 16);
	CHECK(password_logs_in(&secret, "secret"));
	CHECK(!password_logs_in(&secret, "Secret"));

	CHECK(scram_parse_secret(PG_SECRET_FOR_UTF8, &secret));
	CHECK(password_logs_in(&secret, PG_PASSWORD_UTF8));

	CHECK(scram_parse_secret(PG_SECRET_FOR_pencil, &secret));
	CHECK(password_logs_in(&secret, "pencil"));
}

static void test_derived_verifier_equals_postgresqls_for_the_same_salt(void)
{
	struct scram_secret pg, ours;
	uint8_t salt[16];
	CHECK(scram_parse_secret(PG_SECRET_FOR_secret, &pg));
	CHECK_INT_EQ(scram_b64_decode(PG_SALT_FOR_secret, strlen(PG_SALT_FOR_secret), salt,
				      sizeof(salt)),
		     16);
	scram_test_set_salt(salt, sizeof(salt));
	CHECK(scram_secret_from_password("secret", 4096, &ours));
	scram_test_set_salt(NULL, 0);
	CHECK(memcmp(pg.stored_key, ours.stored_key, SCRAM_KEY_LEN) == 0);
	CHECK(memcmp(pg.server_key, ours.server_key, SCRAM_KEY_LEN) == 0);
}

/*
 * Every place a plaintext password becomes keys agrees with PostgreSQL:
 * a verifier derived with PostgreSQL's salt (auth_file plaintext), a
 * cleartext login checked against PostgreSQL's secret, and pgpulse's own
 * client login (its server side runs on PostgreSQL's secret here).
 */
static void test_passwords_are_saslprepped_as_postgresql_does(void)
{
	for (size_t i = 0; i < sizeof(pg_prepared) / sizeof(pg_prepared[0]); i++) {
		struct scram_secret pg, ours;
		CHECK(scram_parse_secret(pg_prepared[i].secret, &pg));
		scram_test_set_salt(pg.salt, (size_t)pg.salt_len);
		CHECK(scram_secret_from_password(pg_prepared[i].password, 4096, &ours));
		scram_test_set_salt(NULL, 0);
		CHECK(memcmp(pg.stored_key, ours.stored_key, SCRAM_KEY_LEN) == 0);
		CHECK(memcmp(pg.server_key, ours.server_key, SCRAM_KEY_LEN) == 0);
		CHECK(scram_password_matches(&pg, pg_prepared[i].password));
		CHECK(password_logs_in(&pg, pg_prepared[i].password));
	}
	/* the prepared form is the same password */
	struct scram_secret pg;
	CHECK(scram_parse_secret(pg_prepared[0].secret, &pg));
	CHECK(scram_password_matches(&pg, "IX-IX"));
	CHECK(!scram_password_matches(&pg, "IX-"));
}

static void test_wrong_password_is_refused(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	char m0[BUF], m1[BUF], m2[BUF], m3[BUF], err[256] = "";
	CHECK(scram_secret_from_password("right", 4096, &secret));
	CHECK(scram_client_first(&cl, "wrong", NULL, m0, sizeof(m0)));
	CHECK(server_first_of(&sv, &secret, m0, m1, err));
	CHECK(client_final_of(&cl, m1, m2, err));
	CHECK(!server_final_of(&sv, m2, m3, err));
	CHECK(strstr(err, "wrong password") != NULL);
	CHECK(!sv.have_client_key);
	scram_server_reset(&sv);
	scram_client_reset(&cl);
}

static void test_server_allows_one_final_attempt(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	char m0[BUF], m1[BUF], m2[BUF], m3[BUF], err[256] = "";
	CHECK(scram_secret_from_password("pw", 4096, &secret));
	CHECK(scram_client_first(&cl, "pw", NULL, m0, sizeof(m0)));
	CHECK(server_first_of(&sv, &secret, m0, m1, err));
	CHECK(client_final_of(&cl, m1, m2, err));
	CHECK(server_final_of(&sv, m2, m3, err));
	CHECK(!server_final_of(&sv, m2, m3, err));
	scram_server_reset(&sv);
	scram_client_reset(&cl);
}

static void test_tampered_nonce_is_refused(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	char m0[BUF], m1[BUF], m2[BUF], m3[BUF], err[256] = "";
	CHECK(scram_secret_from_password("pw", 4096, &secret));

	/* client-final carries a nonce the server never issued */
	CHECK(scram_client_first(&cl, "pw", NULL, m0, sizeof(m0)));
	CHECK(server_first_of(&sv, &secret, m0, m1, err));
	CHECK(client_final_of(&cl, m1, m2, err));
	char *r = strstr(m2, ",r=") + 3;
	*r = *r == 'A' ? 'B' : 'A';
	CHECK(!server_final_of(&sv, m2, m3, err));
	CHECK(strstr(err, "nonce") != NULL);

	/* server-first does not extend the client's nonce */
	CHECK(scram_client_first(&cl, "pw", NULL, m0, sizeof(m0)));
	CHECK(server_first_of(&sv, &secret, m0, m1, err));
	m1[2] = m1[2] == 'A' ? 'B' : 'A';
	CHECK(!client_final_of(&cl, m1, m2, err));
	CHECK(strstr(err, "nonce") != NULL);

	/* server-first merely echoes the client's nonce */
	CHECK(scram_client_first(&cl, "pw", NULL, m0, sizeof(m0)));
	snprintf(m1, sizeof(m1), "r=%s,s=QSXCR+Q6sek8bf92,i=4096", cl.client_nonce);
	CHECK(!client_final_of(&cl, m1, m2, err));
	scram_server_reset(&sv);
	scram_client_reset(&cl);
}

static void test_wrong_server_signature_is_refused(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	char m0[BUF], m1[BUF], m2[BUF], m3[BUF], err[256] = "";
	CHECK(scram_secret_from_password("pw", 4096, &secret));
	CHECK(scram_client_first(&cl, "pw", NULL, m0, sizeof(m0)));
	CHECK(server_first_of(&sv, &secret, m0, m1, err));
	CHECK(client_final_of(&cl, m1, m2, err));
	CHECK(server_final_of(&sv, m2, m3, err));
	m3[5] = m3[5] == 'A' ? 'B' : 'A';
	CHECK(!client_verify_of(&cl, m3, err));
	CHECK(strstr(err, "signature") != NULL);
	scram_server_reset(&sv);
	scram_client_reset(&cl);
}

static void test_server_error_is_reported_to_the_client(void)
{
	struct scram_client cl = { 0 };
	char out[BUF], err[256] = "";
	scram_test_set_nonce(RFC_CLIENT_NONCE);
	CHECK(scram_client_first(&cl, "pencil", NULL, out, sizeof(out)));
	scram_test_set_nonce(NULL);
	/* the user name differs from the RFC's, so the server's v= would not match anyway */
	CHECK(client_final_of(&cl, RFC_SERVER_FIRST, out, err));
	CHECK(!client_verify_of(&cl, "e=invalid-proof", err));
	CHECK(strstr(err, "invalid-proof") != NULL);
	scram_client_reset(&cl);
}

static void test_malformed_client_first_is_refused(void)
{
	static const char *const bad[] = {
		"",
		"n",
		"n,",
		"n,,",
		"n,,n=",
		"n,,n=,",
		"n,,n=,r=",
		"n,,r=abc",
		"n,,n=,r=abc,",
		"n,,n=,r=ab,c",
		"n,,n=,r=ab,=x",
		"n,,n=,r=a c",
		"n,,n=,x=abc",
		"x,,n=,r=abc",
		"nn,,n=,r=abc",
		"n,a=bob,n=,r=abc",
		"n,,m=ext,n=,r=abc",
		"n,n=,r=abc",
	};
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	char out[BUF], err[256];
	CHECK(scram_secret_from_password("pw", 1, &secret));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		bool ok = server_first_of(&sv, &secret, bad[i], out, err);
		CHECK(!ok && err[0] != '\0');
		if (ok)
			fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
	}
	/* a NUL byte inside */
	CHECK(!scram_server_first(&sv, &secret, "n,,n=\0,r=abc", 12, out, sizeof(out), err,
				  sizeof(err)));
	/* far too long */
	char *huge = malloc(5000);
	memcpy(huge, "n,,n=,r=", 8);
	memset(huge + 8, 'a', 5000 - 8);
	CHECK(!scram_server_first(&sv, &secret, huge, 5000, out, sizeof(out), err, sizeof(err)));
	/* a nonce that does not leave room for ours */
	CHECK(!scram_server_first(&sv, &secret, huge, 8 + 120, out, sizeof(out), err, sizeof(err)));
	free(huge);
	/* extensions after the nonce are ignored */
	CHECK(server_first_of(&sv, &secret, "n,,n=,r=abc,x=1", out, err));
	scram_server_reset(&sv);
}

static void test_channel_binding_request_is_refused(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	char out[BUF], err[256] = "";
	CHECK(scram_secret_from_password("pw", 1, &secret));
	CHECK(!server_first_of(&sv, &secret, "p=tls-server-end-point,,n=,r=abc", out, err));
	CHECK(strstr(err, "channel binding") != NULL);
	scram_server_reset(&sv);
}

static void test_channel_binding_is_checked_as_postgresql_checks_it(void)
{
	static const uint8_t hash[32] = { 1, 2, 3 };
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	char out[BUF], err[256] = "", final[BUF], c_attr[200];
	CHECK(scram_secret_from_password("pw", 1, &secret));
	/* offered over TLS, plain SCRAM chosen: binding data is refused, so is 'y' (a stripped offer) */
	scram_server_bind(&sv, hash, sizeof(hash), false);
	CHECK(!server_first_of(&sv, &secret, "p=tls-server-end-point,,n=,r=abc", out, err));
	scram_server_bind(&sv, hash, sizeof(hash), false);
	CHECK(!server_first_of(&sv, &secret, "y,,n=,r=abc", out, err));
	CHECK(strstr(err, "negotiation") != NULL);
	scram_server_bind(&sv, hash, sizeof(hash), false);
	CHECK(server_first_of(&sv, &secret, "n,,n=,r=abc", out, err));
	/* PLUS chosen: it needs tls-server-end-point data */
	scram_server_bind(&sv, hash, sizeof(hash), true);
	CHECK(!server_first_of(&sv, &secret, "n,,n=,r=abc", out, err));
	scram_server_bind(&sv, hash, sizeof(hash), true);
	CHECK(!server_first_of(&sv, &secret, "p=tls-unique,,n=,r=abc", out, err));
	scram_server_bind(&sv, hash, sizeof(hash), true);
	CHECK(server_first_of(&sv, &secret, "p=tls-server-end-point,,n=,r=abc", out, err));
	/* c= must carry the header and the certificate's hash: another hash is a relayed exchange */
	uint8_t cb[24 + 32];
	memcpy(cb, "p=tls-server-end-point,,", 24);
	memcpy(cb + 24, hash, 32);
	cb[24] = 9;
	scram_b64_encode(cb, sizeof(cb), c_attr, sizeof(c_attr));
	snprintf(final, sizeof(final), "c=%s,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", c_attr, sv.nonce);
	CHECK(!server_final_of(&sv, final, out, err));
	CHECK(strstr(err, "channel binding") != NULL);
	scram_server_bind(&sv, hash, sizeof(hash), true);
	CHECK(server_first_of(&sv, &secret, "p=tls-server-end-point,,n=,r=abc", out, err));
	cb[24] = 1;
	scram_b64_encode(cb, sizeof(cb), c_attr, sizeof(c_attr));
	snprintf(final, sizeof(final), "c=%s,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", c_attr, sv.nonce);
	err[0] = '\0';
	CHECK(!server_final_of(&sv, final, out, err)); /* the proof is made up: past the binding, it fails there */
	CHECK(strstr(err, "channel binding") == NULL);
	scram_server_reset(&sv);
}

static void test_client_that_could_bind_must_echo_its_header(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	char out[BUF], err[256] = "", final[BUF];
	CHECK(scram_secret_from_password("pw", 1, &secret));
	CHECK(server_first_of(&sv, &secret, "y,,n=,r=abc", out, err));
	CHECK(sv.cbind_flag == 'y');
	/* "biws" is "n,,": not what this client sent */
	snprintf(final, sizeof(final),
		 "c=biws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", sv.nonce);
	CHECK(!server_final_of(&sv, final, out, err));
	CHECK(strstr(err, "channel binding") != NULL);
	/* "eSws" is "y,,": gets as far as the proof */
	CHECK(server_first_of(&sv, &secret, "y,,n=,r=abc", out, err));
	snprintf(final, sizeof(final),
		 "c=eSws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", sv.nonce);
	CHECK(!server_final_of(&sv, final, out, err));
	CHECK(strstr(err, "wrong password") != NULL);
	scram_server_reset(&sv);
}

static void test_truncated_client_final_is_refused(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	char m0[BUF], m1[BUF], m2[BUF], m3[BUF], err[256];
	CHECK(scram_secret_from_password("pw", 4096, &secret));
	CHECK(scram_client_first(&cl, "pw", NULL, m0, sizeof(m0)));
	CHECK(server_first_of(&sv, &secret, m0, m1, err));
	CHECK(client_final_of(&cl, m1, m2, err));
	size_t full = strlen(m2);
	int accepted = 0;
	for (size_t n = 0; n < full; n++) {
		/* the server issues a fresh nonce each time: keep it fixed for the copy */
		scram_test_set_nonce(sv.nonce + strlen(cl.client_nonce));
		CHECK(server_first_of(&sv, &secret, m0, m1, err));
		scram_test_set_nonce(NULL);
		char *cut = unterminated(m2);
		if (scram_server_final(&sv, cut, n, m3, sizeof(m3), err, sizeof(err)))
			accepted++;
		free(cut);
	}
	CHECK_INT_EQ(accepted, 0);
	scram_server_reset(&sv);
	scram_client_reset(&cl);
}

static void test_malformed_client_final_is_refused(void)
{
	static const char *const bad[] = {
		"c=biws,r=%s",
		"c=biws,r=%s,p=",
		"c=biws,r=%s,p=!!!!",
		"c=biws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
		"c=biws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1",
		"c=biws,r=%s,p=Zm9v",
		"c=bi,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=%s",
		"c=biws,r=%s,,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biws,r=%sX,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	};
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	char out[BUF], err[256], msg[BUF];
	CHECK(scram_secret_from_password("pw", 1, &secret));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(server_first_of(&sv, &secret, "n,,n=,r=abc", out, err));
		snprintf(msg, sizeof(msg), bad[i], sv.nonce);
		err[0] = '\0';
		bool ok = server_final_of(&sv, msg, out, err);
		CHECK(!ok && err[0] != '\0');
		if (ok)
			fprintf(stderr, "  accepted: \"%s\"\n", msg);
	}
	scram_server_reset(&sv);
}

static void test_malformed_server_first_is_refused(void)
{
	static const char *const bad[] = {
		"",
		"r=%s",
		"r=%sSRV",
		"r=%sSRV,s=",
		"r=%sSRV,s=abc,i=4096",
		"r=%sSRV,s=!!!!,i=4096",
		"r=%sSRV,s=QSXCR+Q6sek8bf92,i=",
		"r=%sSRV,s=QSXCR+Q6sek8bf92,i=0",
		"r=%sSRV,s=QSXCR+Q6sek8bf92,i=-1",
		"r=%sSRV,s=QSXCR+Q6sek8bf92,i=4096x",
		"r=%sSRV,s=QSXCR+Q6sek8bf92,i=99999999999",
		"r=%sSRV,s=QSXCR+Q6sek8bf92,i=100000000",
		"r=%sSRV,s=QSXCR+Q6sek8bf92,i=4096,",
		"m=x,r=%sSRV,s=QSXCR+Q6sek8bf92,i=4096",
		"r=%sSRV,i=4096,s=QSXCR+Q6sek8bf92",
		"r=%sS RV,s=QSXCR+Q6sek8bf92,i=4096",
		"e=other-error",
	};
	struct scram_client cl = { 0 };
	char out[BUF], err[256], msg[BUF];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(scram_client_first(&cl, "pw", NULL, out, sizeof(out)));
		snprintf(msg, sizeof(msg), bad[i], cl.client_nonce);
		err[0] = '\0';
		bool ok = client_final_of(&cl, msg, out, err);
		CHECK(!ok && err[0] != '\0');
		if (ok)
			fprintf(stderr, "  accepted: \"%s\"\n", msg);
	}
	/* a salt too long to keep */
	CHECK(scram_client_first(&cl, "pw", NULL, out, sizeof(out)));
	int n = snprintf(msg, sizeof(msg), "r=%sSRV,s=", cl.client_nonce);
	memset(msg + n, 'A', 100);
	strcpy(msg + n + 100, ",i=4096");
	CHECK(!client_final_of(&cl, msg, out, err));
	/* huge iteration counts are refused before any work is done */
	CHECK(scram_client_first(&cl, "pw", NULL, out, sizeof(out)));
	snprintf(msg, sizeof(msg), "r=%sSRV,s=QSXCR+Q6sek8bf92,i=%d", cl.client_nonce,
		 SCRAM_MAX_ITERATIONS + 1);
	CHECK(!client_final_of(&cl, msg, out, err));
	CHECK(strstr(err, "iteration") != NULL);
	/* every prefix short of a complete iteration count fails */
	CHECK(scram_client_first(&cl, "pw", NULL, out, sizeof(out)));
	snprintf(msg, sizeof(msg), "r=%sSRV,s=QSXCR+Q6sek8bf92,i=4096", cl.client_nonce);
	size_t upto = (size_t)(strstr(msg, ",i=") - msg) + 3;
	int accepted = 0;
	for (size_t k = 0; k < upto; k++)
		if (scram_client_final(&cl, msg, k, out, sizeof(out), err, sizeof(err)))
			accepted++;
	CHECK_INT_EQ(accepted, 0);
	/* extensions after i= are ignored */
	CHECK(scram_client_first(&cl, "pw", NULL, out, sizeof(out)));
	snprintf(msg, sizeof(msg), "r=%sSRV,s=QSXCR+Q6sek8bf92,i=1,x=y", cl.client_nonce);
	CHECK(client_final_of(&cl, msg, out, err));
	scram_client_reset(&cl);
}

static void test_malformed_server_final_is_refused(void)
{
	static const char *const bad[] = {
		"",
		"v",
		"v=",
		"v=!!!!",
		"x=abc",
		"v=Zm9v",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,",
	};
	struct scram_client cl = { 0 };
	char out[BUF], err[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		scram_test_set_client_user("user");
		scram_test_set_nonce(RFC_CLIENT_NONCE);
		CHECK(scram_client_first(&cl, "pencil", NULL, out, sizeof(out)));
		scram_test_set_client_user(NULL);
		scram_test_set_nonce(NULL);
		CHECK(client_final_of(&cl, RFC_SERVER_FIRST, out, err));
		err[0] = '\0';
		CHECK(!client_verify_of(&cl, bad[i], err) && err[0] != '\0');
	}
	/* and the right one still passes after all that */
	scram_test_set_client_user("user");
	scram_test_set_nonce(RFC_CLIENT_NONCE);
	CHECK(scram_client_first(&cl, "pencil", NULL, out, sizeof(out)));
	scram_test_set_client_user(NULL);
	scram_test_set_nonce(NULL);
	CHECK(client_final_of(&cl, RFC_SERVER_FIRST, out, err));
	CHECK(client_verify_of(&cl, RFC_SERVER_FINAL, err));
	CHECK(!client_verify_of(&cl, RFC_SERVER_FINAL, err)); /* only once */
	scram_client_reset(&cl);
}

static void test_steps_out_of_order_are_refused(void)
{
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	char out[BUF], err[256];
	CHECK(!server_final_of(&sv, RFC_CLIENT_FINAL, out, err));
	CHECK(!client_final_of(&cl, RFC_SERVER_FIRST, out, err));
	CHECK(!client_verify_of(&cl, RFC_SERVER_FINAL, err));
	CHECK(scram_client_first(&cl, "pw", NULL, out, sizeof(out)));
	CHECK(!client_verify_of(&cl, RFC_SERVER_FINAL, err));
	scram_client_reset(&cl);
}

static void test_small_output_buffers_fail_cleanly(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	char out[BUF], small[20], err[256];
	CHECK(scram_secret_from_password("pw", 1, &secret));
	CHECK(!scram_client_first(&cl, "pw", NULL, small, 10));
	CHECK(cl.password == NULL);
	CHECK(!scram_server_first(&sv, &secret, "n,,n=,r=abc", 11, small, sizeof(small), err,
				  sizeof(err)));
	CHECK(sv.client_first_bare == NULL && sv.server_first == NULL);
	CHECK(scram_client_first(&cl, "pw", NULL, out, sizeof(out)));
	CHECK(server_first_of(&sv, &secret, out, out, err));
	CHECK(!scram_client_final(&cl, out, strlen(out), small, sizeof(small), err, sizeof(err)));
	scram_server_reset(&sv);
	scram_client_reset(&cl);
}

/*
 * What the pooler does: a client logs in with its password, pgpulse keeps
 * the ClientKey it recovered, and later logs into the server with that key.
 */
static void test_recovered_client_key_logs_in_again(void)
{
	struct scram_secret secret;
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	uint8_t client_key[SCRAM_KEY_LEN];
	char first[BUF];
	CHECK(scram_parse_secret(PG_SECRET_FOR_secret, &secret));
	CHECK(scram_client_first(&cl, "secret", NULL, first, sizeof(first)));
	CHECK(finish_exchange(&sv, &secret, &cl, first));
	CHECK(sv.have_client_key);
	memcpy(client_key, sv.client_key, SCRAM_KEY_LEN);
	scram_server_reset(&sv);
	scram_client_reset(&cl);

	CHECK(scram_client_first_keys(&cl, client_key, secret.server_key, first, sizeof(first)));
	CHECK(cl.password == NULL && cl.have_keys);
	CHECK(finish_exchange(&sv, &secret, &cl, first));
	scram_server_reset(&sv);
	scram_client_reset(&cl);

	/* keys mode does no Hi(), so a large iteration count costs nothing and is fine */
	struct scram_secret slow = secret;
	slow.iterations = SCRAM_MAX_ITERATIONS * 10;
	CHECK(scram_client_first_keys(&cl, client_key, secret.server_key, first, sizeof(first)));
	CHECK(finish_exchange(&sv, &slow, &cl, first));
	scram_server_reset(&sv);
	scram_client_reset(&cl);

	/* a wrong ServerKey: the server accepts the proof but the client rejects the server */
	uint8_t wrong_server_key[SCRAM_KEY_LEN];
	memcpy(wrong_server_key, secret.server_key, SCRAM_KEY_LEN);
	wrong_server_key[0] ^= 1;
	CHECK(scram_client_first_keys(&cl, client_key, wrong_server_key, first, sizeof(first)));
	CHECK(!finish_exchange(&sv, &secret, &cl, first));
	CHECK(sv.have_client_key);
	scram_server_reset(&sv);
	scram_client_reset(&cl);
}

static void test_postgresql_secret_format_is_parsed_strictly(void)
{
	static const char *const bad[] = {
		"",
		"SCRAM-SHA-256$",
		"SCRAM-SHA-256$4096",
		"SCRAM-SHA-1$4096:WPYJt4J1/q7sdMG/"
		"We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=",
		"SCRAM-SHA-256$0:WPYJt4J1/q7sdMG/"
		"We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=",
		"SCRAM-SHA-256$-1:WPYJt4J1/q7sdMG/"
		"We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=",
		"SCRAM-SHA-256$99999999999:WPYJt4J1/q7sdMG/"
		"We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=",
		"SCRAM-SHA-256$4096:$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=",
		"SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/"
		"We8pIA=$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=",
		"SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/"
		"We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=",
		"SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/"
		"We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXB:"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=",
		"SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/"
		"We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=x",
		"SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/"
		"We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=:",
		"SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/"
		"We8pIA==:S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=$"
		"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=",
		"md520eb1b22a92b5c573dc1eb4331fc49ee",
	};
	struct scram_secret s;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bool ok = scram_parse_secret(bad[i], &s);
		CHECK(!ok);
		if (ok)
			fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
	}
	CHECK(!scram_parse_secret(NULL, &s));
}

static void test_cleartext_password_is_checked_against_a_verifier(void)
{
	struct scram_secret secret;
	CHECK(scram_parse_secret(PG_SECRET_FOR_secret, &secret));
	CHECK(scram_password_matches(&secret, "secret"));
	CHECK(!scram_password_matches(&secret, "secret "));
	CHECK(!scram_password_matches(&secret, ""));
	CHECK(scram_parse_secret(PG_SECRET_FOR_UTF8, &secret));
	CHECK(scram_password_matches(&secret, PG_PASSWORD_UTF8));
	secret.iterations = SCRAM_MAX_ITERATIONS + 1;
	CHECK(!scram_password_matches(&secret, PG_PASSWORD_UTF8));
	CHECK(!scram_password_matches(NULL, "secret"));
}

static void test_iteration_count_for_new_secrets_is_bounded(void)
{
	struct scram_secret s;
	CHECK(!scram_secret_from_password("pw", 0, &s));
	CHECK(!scram_secret_from_password("pw", -5, &s));
	CHECK(!scram_secret_from_password("pw", SCRAM_MAX_ITERATIONS + 1, &s));
	CHECK(!scram_secret_from_password(NULL, 4096, &s));
}

static void test_unknown_user_gets_a_stable_mock_salt_and_fails(void)
{
	struct scram_secret a, b, c;
	CHECK(scram_secret_mock("nobody", &a));
	CHECK(scram_secret_mock("nobody", &b));
	CHECK(scram_secret_mock("somebody", &c));
	CHECK(a.salt_len == 16 && memcmp(a.salt, b.salt, 16) == 0);
	CHECK(memcmp(a.salt, c.salt, 16) != 0);
	CHECK(!password_logs_in(&a, ""));
	CHECK(!password_logs_in(&a, "nobody"));
}

/* a whole exchange with pgpulse as the client, its keys cache in use */
static bool cached_login(struct scram_key_cache *cache, const struct scram_secret *secret,
			 const char *password)
{
	struct scram_server sv = { 0 };
	struct scram_client cl = { 0 };
	char first[BUF];
	bool ok = scram_client_first(&cl, password, cache, first, sizeof(first)) &&
		  finish_exchange(&sv, secret, &cl, first);
	scram_server_reset(&sv);
	scram_client_reset(&cl);
	return ok;
}

static void test_server_logins_with_the_same_salt_derive_keys_once(void)
{
	struct scram_key_cache cache = { 0 };
	struct scram_secret secret;
	CHECK(scram_parse_secret(PG_SECRET_FOR_secret, &secret));
	unsigned long before = scram_test_hi_calls();
	for (int i = 0; i < 5; i++)
		CHECK(cached_login(&cache, &secret, "secret"));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 1);
	scram_key_cache_clear(&cache);
	CHECK(cached_login(&cache, &secret, "secret"));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 2);
}

static void test_cached_keys_give_the_same_proof_as_fresh_ones(void)
{
	struct scram_key_cache cache = { 0 };
	struct scram_client fresh = { 0 }, cached = { 0 };
	char first[BUF], a[BUF], b[BUF], err[256] = "";
	scram_test_set_client_user("user");
	scram_test_set_nonce(RFC_CLIENT_NONCE);
	/* fill the cache, then answer the RFC's server-first from it and without it */
	CHECK(scram_client_first(&cached, "pencil", &cache, first, sizeof(first)));
	CHECK(client_final_of(&cached, RFC_SERVER_FIRST, a, err));
	unsigned long before = scram_test_hi_calls();
	CHECK(scram_client_first(&cached, "pencil", &cache, first, sizeof(first)));
	CHECK(client_final_of(&cached, RFC_SERVER_FIRST, a, err));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 0);
	CHECK(client_verify_of(&cached, RFC_SERVER_FINAL, err));
	CHECK(scram_client_first(&fresh, "pencil", NULL, first, sizeof(first)));
	CHECK(client_final_of(&fresh, RFC_SERVER_FIRST, b, err));
	CHECK_STR_EQ(a, b);
	CHECK_STR_EQ(a, RFC_CLIENT_FINAL);
	scram_test_set_client_user(NULL);
	scram_test_set_nonce(NULL);
	scram_client_reset(&fresh);
	scram_client_reset(&cached);
}

static void test_changed_password_or_salt_is_not_served_from_the_cache(void)
{
	struct scram_key_cache cache = { 0 };
	struct scram_secret old_pw, new_pw, other_host;
	CHECK(scram_secret_from_password("old", 4096, &old_pw));
	CHECK(scram_secret_from_password("new", 4096, &new_pw));
	CHECK(scram_secret_from_password("old", 4096, &other_host)); /* another salt */
	CHECK(cached_login(&cache, &old_pw, "old"));
	unsigned long before = scram_test_hi_calls();
	/* the server now holds a new password's verifier: the old keys must not answer */
	CHECK(!cached_login(&cache, &new_pw, "old"));
	CHECK(cached_login(&cache, &new_pw, "new"));
	/* same password, another salt: derived, and not mistaken for the first */
	CHECK(cached_login(&cache, &other_host, "old"));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 3);
}

static void test_least_recently_used_keys_make_room(void)
{
	struct scram_key_cache cache = { 0 };
	struct scram_secret a, b, c;
	CHECK(scram_secret_from_password("pw", 4096, &a));
	CHECK(scram_secret_from_password("pw", 4096, &b));
	CHECK(scram_secret_from_password("pw", 4096, &c));
	CHECK(cached_login(&cache, &a, "pw"));
	CHECK(cached_login(&cache, &b, "pw"));
	CHECK(cached_login(&cache, &a, "pw")); /* a is now the more recent */
	unsigned long before = scram_test_hi_calls();
	CHECK(cached_login(&cache, &c, "pw")); /* replaces b */
	CHECK(cached_login(&cache, &a, "pw"));
	CHECK(cached_login(&cache, &c, "pw"));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 1);
	CHECK(cached_login(&cache, &b, "pw"));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 2);
}

static void test_server_asking_too_many_iterations_is_refused_without_computing(void)
{
	struct scram_key_cache cache = { 0 };
	struct scram_client cl = { 0 };
	char out[BUF], server_first[BUF], err[256] = "";
	CHECK(scram_client_first(&cl, "pw", &cache, out, sizeof(out)));
	snprintf(server_first, sizeof(server_first), "r=%sSRV,s=QSXCR+Q6sek8bf92,i=%d",
		 cl.client_nonce, SCRAM_MAX_ITERATIONS + 1);
	unsigned long before = scram_test_hi_calls();
	CHECK(!client_final_of(&cl, server_first, out, err));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 0);
	char want[128];
	snprintf(want, sizeof(want), "server asks for %d SCRAM iterations", SCRAM_MAX_ITERATIONS + 1);
	CHECK(strstr(err, want) != NULL);
	scram_client_reset(&cl);
}

static void test_mock_verifier_costs_no_key_derivation(void)
{
	struct scram_secret mock, real;
	unsigned long before = scram_test_hi_calls();
	for (int i = 0; i < 100; i++)
		CHECK(scram_secret_mock("nobody", &mock));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 0);
	/* on the wire it looks like a plaintext password's verifier */
	CHECK(scram_secret_from_password("pw", SCRAM_DEFAULT_ITERATIONS, &real));
	CHECK_INT_EQ(mock.iterations, real.iterations);
	CHECK_INT_EQ(mock.salt_len, real.salt_len);
}

static void test_verifier_for_a_password_is_derived_again_only_when_it_changes(void)
{
	struct scram_verifier_cache cache = { 0 };
	struct scram_secret a, b, c;
	unsigned long before = scram_test_hi_calls();
	CHECK(scram_verifier_for_password(&cache, "db_pw", SCRAM_DEFAULT_ITERATIONS, &a));
	CHECK(scram_verifier_for_password(&cache, "db_pw", SCRAM_DEFAULT_ITERATIONS, &b));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 1);
	CHECK(memcmp(a.salt, b.salt, 16) == 0 && memcmp(a.stored_key, b.stored_key, 32) == 0);
	CHECK(password_logs_in(&b, "db_pw"));
	CHECK(scram_verifier_for_password(&cache, "new_pw", SCRAM_DEFAULT_ITERATIONS, &c));
	CHECK(memcmp(a.salt, c.salt, 16) != 0);
	CHECK(password_logs_in(&c, "new_pw"));
	CHECK(!password_logs_in(&c, "db_pw"));
	CHECK(!scram_verifier_for_password(&cache, NULL, SCRAM_DEFAULT_ITERATIONS, &c));
}

int main(void)
{
	RUN(test_base64_matches_rfc4648_examples);
	RUN(test_base64_rejects_malformed_input);
	RUN(test_rfc7677_example_as_client);
	RUN(test_rfc7677_example_as_server);
	RUN(test_client_and_server_agree_on_a_plaintext_password);
	RUN(test_fresh_secrets_get_fresh_salts);
	RUN(test_postgresql_verifiers_accept_their_passwords);
	RUN(test_derived_verifier_equals_postgresqls_for_the_same_salt);
	RUN(test_passwords_are_saslprepped_as_postgresql_does);
	RUN(test_wrong_password_is_refused);
	RUN(test_server_allows_one_final_attempt);
	RUN(test_tampered_nonce_is_refused);
	RUN(test_wrong_server_signature_is_refused);
	RUN(test_server_error_is_reported_to_the_client);
	RUN(test_malformed_client_first_is_refused);
	RUN(test_channel_binding_request_is_refused);
	RUN(test_client_that_could_bind_must_echo_its_header);
	RUN(test_channel_binding_is_checked_as_postgresql_checks_it);
	RUN(test_truncated_client_final_is_refused);
	RUN(test_malformed_client_final_is_refused);
	RUN(test_malformed_server_first_is_refused);
	RUN(test_malformed_server_final_is_refused);
	RUN(test_steps_out_of_order_are_refused);
	RUN(test_small_output_buffers_fail_cleanly);
	RUN(test_recovered_client_key_logs_in_again);
	RUN(test_postgresql_secret_format_is_parsed_strictly);
	RUN(test_cleartext_password_is_checked_against_a_verifier);
	RUN(test_iteration_count_for_new_secrets_is_bounded);
	RUN(test_unknown_user_gets_a_stable_mock_salt_and_fails);
	RUN(test_server_logins_with_the_same_salt_derive_keys_once);
	RUN(test_cached_keys_give_the_same_proof_as_fresh_ones);
	RUN(test_changed_password_or_salt_is_not_served_from_the_cache);
	RUN(test_least_recently_used_keys_make_room);
	RUN(test_server_asking_too_many_iterations_is_refused_without_computing);
	RUN(test_mock_verifier_costs_no_key_derivation);
	RUN(test_verifier_for_a_password_is_derived_again_only_when_it_changes);
	return UNIT_REPORT("scram");
}
