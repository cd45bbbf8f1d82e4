/*
 * test_auth: the auth_file loader as an operator meets it (quoting, comments,
 * mistakes reported by file and line), secret kinds, MD5 hashing checked
 * against values computed outside pgpulse (md5sum), and the SCRAM verifiers
 * an entry keeps for scram-sha-256 logins.
 */
#include "auth.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scram.h"
#include "unit.h"

static char path[64];

/* write text to a fresh temporary file; path names it */
static void write_file(const char *text, size_t len)
{
	snprintf(path, sizeof(path), "/tmp/test_auth.XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len) {
		perror("test_auth: temporary file");
		exit(2);
	}
	close(fd);
}

static struct auth_file *load_text(const char *text, char *err, size_t errlen)
{
	write_file(text, strlen(text));
	struct auth_file *af = auth_file_load(path, err, errlen);
	unlink(path);
	return af;
}

/* the error a malformed file gives, with the temporary path replaced by "F" */
static const char *load_error_of(const char *text)
{
	static char err[256], shown[256];
	err[0] = '\0';
	struct auth_file *af = load_text(text, err, sizeof(err));
	if (af) {
		auth_file_free(af);
		return "(loaded)";
	}
	size_t plen = strlen(path);
	if (strncmp(err, path, plen) == 0)
		snprintf(shown, sizeof(shown), "F%s", err + plen);
	else
		snprintf(shown, sizeof(shown), "%s", err);
	return shown;
}

static void test_users_and_secrets_are_found(void)
{
	char err[256] = "";
	struct auth_file *af = load_text("\"alice\" \"s3cret\"\n"
					 "\"bob\"\t\"md520eb1b22a92b5c573dc1eb4331fc49ee\"\n"
					 "  \"carol\"   \"\"\n",
					 err, sizeof(err));
	CHECK(af != NULL);
	if (!af)
		return;
	CHECK_INT_EQ(af->count, 3);
	CHECK_STR_EQ(auth_file_lookup(af, "alice"), "s3cret");
	CHECK_STR_EQ(auth_file_lookup(af, "bob"), "md520eb1b22a92b5c573dc1eb4331fc49ee");
	CHECK_STR_EQ(auth_file_lookup(af, "carol"), "");
	CHECK(auth_file_lookup(af, "dave") == NULL);
	CHECK(auth_file_lookup(af, "") == NULL);
	CHECK(auth_file_lookup(af, "ALICE") == NULL);
	CHECK(auth_file_lookup(NULL, "alice") == NULL);
	auth_file_free(af);
}

static void test_doubled_quote_is_a_literal_quote(void)
{
	char err[256] = "";
	struct auth_file *af =
		load_text("\"we\"\"ird\" \"pa\"\"ss\"\"\"\n\"\"\"\" \"x\"\n", err, sizeof(err));
	CHECK(af != NULL);
	if (!af)
		return;
	CHECK_STR_EQ(auth_file_lookup(af, "we\"ird"), "pa\"ss\"");
	CHECK_STR_EQ(auth_file_lookup(af, "\""), "x");
	auth_file_free(af);
}

static void test_comments_blank_lines_and_crlf_are_skipped(void)
{
	char err[256] = "";
	struct auth_file *af =
		load_text("; a comment\r\n"
			  "# another \"quoted\" comment\n"
			  "\n"
			  "   \t\n"
			  "  ; indented comment\n"
			  "\"u1\" \"p1\"\r\n"
			  "\"u2\" \"p2\" trailing words are ignored, like PgBouncer\n"
			  "\"u3\" \"p3\"",
			  err, sizeof(err));
	CHECK(af != NULL);
	if (!af)
		return;
	CHECK_INT_EQ(af->count, 3);
	CHECK_STR_EQ(auth_file_lookup(af, "u1"), "p1");
	CHECK_STR_EQ(auth_file_lookup(af, "u2"), "p2");
	CHECK_STR_EQ(auth_file_lookup(af, "u3"), "p3");
	auth_file_free(af);
}

static void test_empty_file_has_no_users(void)
{
	char err[256] = "";
	struct auth_file *af = load_text("", err, sizeof(err));
	CHECK(af != NULL && af->count == 0);
	CHECK(auth_file_lookup(af, "x") == NULL);
	auth_file_free(af);
}

static void test_later_line_wins_for_a_repeated_user(void)
{
	char err[256] = "";
	struct auth_file *af =
		load_text("\"u\" \"first\"\n\"v\" \"only\"\n\"u\" \"second\"\n\"u\" \"third\"\n",
			  err, sizeof(err));
	CHECK(af != NULL);
	if (!af)
		return;
	CHECK_INT_EQ(af->count, 2);
	CHECK_STR_EQ(auth_file_lookup(af, "u"), "third");
	CHECK_STR_EQ(auth_file_lookup(af, "v"), "only");
	auth_file_free(af);
}

static void test_many_users_in_any_order_are_all_found(void)
{
	size_t cap = 64 * 1000, len = 0;
	char *text = malloc(cap), err[256] = "";
	for (int i = 999; i >= 0; i--)
		len += (size_t)snprintf(text + len, cap - len, "\"user%d\" \"pw%d\"\n",
					(i * 7919) % 1000, i);
	struct auth_file *af = load_text(text, err, sizeof(err));
	free(text);
	CHECK(af != NULL);
	if (!af)
		return;
	CHECK_INT_EQ(af->count, 1000);
	int found = 0;
	for (int i = 0; i < 1000; i++) {
		char user[32], want[32];
		snprintf(user, sizeof(user), "user%d", (i * 7919) % 1000);
		snprintf(want, sizeof(want), "pw%d", i);
		const char *got = auth_file_lookup(af, user);
		found += got && strcmp(got, want) == 0;
	}
	CHECK_INT_EQ(found, 1000);
	auth_file_free(af);
}

static void test_malformed_lines_are_reported_with_file_and_line(void)
{
	CHECK_STR_EQ(load_error_of("\"a\" \"b\"\n\"c\" \"d\n"), "F:2: unterminated quoted field");
	CHECK_STR_EQ(load_error_of("\"a\" \"b\"\n; ok\n\nuser \"pw\"\n"),
		     "F:4: expected a quoted user name");
	CHECK_STR_EQ(load_error_of("\"a\"\n"), "F:1: expected a quoted secret after the user name");
	CHECK_STR_EQ(load_error_of("\"a\" b\n"),
		     "F:1: expected a quoted secret after the user name");
	CHECK_STR_EQ(load_error_of("\"a\"\"b\"\n"),
		     "F:1: expected a quoted secret after the user name");
	CHECK_STR_EQ(load_error_of("\"\" \"pw\"\n"), "F:1: empty user name");
	CHECK_STR_EQ(load_error_of("\"unterminated\n\"x\" \"y\"\n"),
		     "F:1: unterminated quoted field");
	/* a quoted value never spans lines */
	CHECK_STR_EQ(load_error_of("\"a\" \"b\n\"\n"), "F:1: unterminated quoted field");
}

static void test_nul_byte_in_a_field_is_refused(void)
{
	static const char text[] = "\"a\" \"b\"\n\"u\" \"p\0w\"\n";
	char err[256] = "";
	write_file(text, sizeof(text) - 1);
	struct auth_file *af = auth_file_load(path, err, sizeof(err));
	unlink(path);
	CHECK(af == NULL);
	CHECK(strstr(err, ":2: ") != NULL);
	auth_file_free(af);
}

static void test_missing_file_is_reported(void)
{
	char err[256] = "";
	CHECK(auth_file_load("/nonexistent/userlist.txt", err, sizeof(err)) == NULL);
	CHECK_STR_EQ(err, "/nonexistent/userlist.txt: No such file or directory");
}

static void test_secret_kind_is_read_off_its_shape(void)
{
	CHECK(auth_secret_kind("md520eb1b22a92b5c573dc1eb4331fc49ee") == SECRET_MD5);
	CHECK(auth_secret_kind("md520EB1B22A92B5C573DC1EB4331FC49EE") == SECRET_PLAIN);
	CHECK(auth_secret_kind("md520eb1b22a92b5c573dc1eb4331fc49e") == SECRET_PLAIN);
	CHECK(auth_secret_kind("md520eb1b22a92b5c573dc1eb4331fc49eee") == SECRET_PLAIN);
	CHECK(auth_secret_kind("md5zzeb1b22a92b5c573dc1eb4331fc49ee") == SECRET_PLAIN);
	CHECK(auth_secret_kind("SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/"
			       "We8pIA==$S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZ"
			       "MoXBCLY=:kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc=") ==
	      SECRET_SCRAM);
	CHECK(auth_secret_kind("SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/We8pIA==$broken") ==
	      SECRET_PLAIN);
	CHECK(auth_secret_kind("SCRAM-SHA-256$") == SECRET_PLAIN);
	CHECK(auth_secret_kind("hunter2") == SECRET_PLAIN);
	CHECK(auth_secret_kind("") == SECRET_PLAIN);
}

static void test_md5_secret_matches_postgresql(void)
{
	char out[36];
	/* echo -n secretuser | md5sum */
	auth_md5_secret("secret", "user", out);
	CHECK_STR_EQ(out, "md520eb1b22a92b5c573dc1eb4331fc49ee");
	CHECK(auth_secret_kind(out) == SECRET_MD5);
}

static void test_md5_response_uses_the_salt(void)
{
	static const uint8_t salt[4] = { 1, 2, 3, 4 };
	static const uint8_t other_salt[4] = { 1, 2, 3, 5 };
	char out[36], other[36];
	/* md5sum of "20eb1b22a92b5c573dc1eb4331fc49ee" followed by bytes 01 02 03 04 */
	auth_md5_response("md520eb1b22a92b5c573dc1eb4331fc49ee", salt, out);
	CHECK_STR_EQ(out, "md5fccef98e4f1cf6cbe96b743fad4e8bd0");
	auth_md5_response("md520eb1b22a92b5c573dc1eb4331fc49ee", other_salt, other);
	CHECK(strcmp(out, other) != 0);
	/* a secret that is not an MD5 hash gives no response that could match */
	auth_md5_response("secret", salt, out);
	CHECK_STR_EQ(out, "");
}

static void test_secure_equal_compares_whole_strings(void)
{
	CHECK(auth_secure_equal("md5abc", "md5abc"));
	CHECK(auth_secure_equal("", ""));
	CHECK(!auth_secure_equal("md5abc", "md5abd"));
	CHECK(!auth_secure_equal("md5abc", "md5ab"));
	CHECK(!auth_secure_equal("md5ab", "md5abc"));
	CHECK(!auth_secure_equal("", "x"));
	CHECK(!auth_secure_equal(NULL, "x"));
	CHECK(!auth_secure_equal("x", NULL));
}

#define SCRAM_OF_secret                                          \
	"SCRAM-SHA-256$4096:WPYJt4J1/q7sdMG/We8pIA==$"          \
	"S9zEOVjC3fSBv4R4PwtAn2GZS19vkuBSlZcZMoXBCLY=:"         \
	"kRYJccqU8n4Nuplhdfa3RlEbqkAJy1r56IkTXhCbFmc="

static bool same_verifier(const struct scram_secret *a, const struct scram_secret *b)
{
	return a->iterations == b->iterations && a->salt_len == b->salt_len &&
	       memcmp(a->salt, b->salt, (size_t)a->salt_len) == 0 &&
	       memcmp(a->stored_key, b->stored_key, SCRAM_KEY_LEN) == 0 &&
	       memcmp(a->server_key, b->server_key, SCRAM_KEY_LEN) == 0;
}

static void test_plaintext_password_verifier_is_derived_once_and_kept(void)
{
	char err[256] = "";
	struct auth_file *af = load_text("\"alice\" \"pw\"\n", err, sizeof(err));
	struct scram_secret first, again;
	CHECK(af != NULL);
	unsigned long before = scram_test_hi_calls();
	CHECK(auth_file_scram_verifier(af, "alice", SCRAM_DEFAULT_ITERATIONS, &first));
	for (int i = 0; i < 10; i++)
		CHECK(auth_file_scram_verifier(af, "alice", SCRAM_DEFAULT_ITERATIONS, &again));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 1);
	/* every client is shown the same salt */
	CHECK(same_verifier(&first, &again));
	CHECK_INT_EQ(first.iterations, SCRAM_DEFAULT_ITERATIONS);
	CHECK(scram_password_matches(&first, "pw"));
	CHECK(!scram_password_matches(&first, "other"));
	auth_file_free(af);
}

static void test_plaintext_verifier_follows_scram_iterations(void)
{
	char err[256] = "";
	struct auth_file *af = load_text("\"alice\" \"pw\"\n", err, sizeof(err));
	struct scram_secret v;
	CHECK(af != NULL);
	CHECK(auth_file_scram_verifier(af, "alice", 4096, &v));
	CHECK_INT_EQ(v.iterations, 4096);
	/* scram_iterations changed (RELOAD, SET): the next login's verifier uses it */
	unsigned long before = scram_test_hi_calls();
	CHECK(auth_file_scram_verifier(af, "alice", 10000, &v));
	CHECK_INT_EQ(v.iterations, 10000);
	CHECK(auth_file_scram_verifier(af, "alice", 10000, &v)); /* kept again */
	CHECK_INT_EQ(scram_test_hi_calls() - before, 1);
	CHECK(scram_password_matches(&v, "pw"));
	auth_file_free(af);
}

static void test_scram_secret_entry_needs_no_derivation(void)
{
	char err[256] = "";
	struct auth_file *af = load_text("\"bob\" \"" SCRAM_OF_secret "\"\n", err, sizeof(err));
	struct scram_secret got, parsed;
	CHECK(af != NULL);
	unsigned long before = scram_test_hi_calls();
	CHECK(auth_file_scram_verifier(af, "bob", SCRAM_DEFAULT_ITERATIONS, &got));
	CHECK(auth_file_scram_verifier(af, "bob", SCRAM_DEFAULT_ITERATIONS, &got));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 0);
	CHECK(scram_parse_secret(SCRAM_OF_secret, &parsed));
	CHECK(same_verifier(&got, &parsed));
	auth_file_free(af);
}

static void test_md5_secret_or_unknown_user_has_no_verifier(void)
{
	char err[256] = "";
	struct auth_file *af =
		load_text("\"carol\" \"md520eb1b22a92b5c573dc1eb4331fc49ee\"\n", err, sizeof(err));
	struct scram_secret v;
	CHECK(af != NULL);
	CHECK(!auth_file_scram_verifier(af, "carol", SCRAM_DEFAULT_ITERATIONS, &v));
	CHECK(!auth_file_scram_verifier(af, "nobody", SCRAM_DEFAULT_ITERATIONS, &v));
	CHECK(!auth_file_scram_verifier(NULL, "carol", SCRAM_DEFAULT_ITERATIONS, &v));
	auth_file_free(af);
}

static void test_reload_keeps_verifiers_of_unchanged_passwords_only(void)
{
	char err[256] = "";
	struct auth_file *old = load_text("\"alice\" \"pw\"\n\"bob\" \"old_pw\"\n"
					  "\"dave\" \"never_used\"\n",
					  err, sizeof(err));
	struct auth_file *fresh = load_text("\"alice\" \"pw\"\n\"bob\" \"new_pw\"\n"
					    "\"dave\" \"never_used\"\n\"erin\" \"pw\"\n",
					    err, sizeof(err));
	struct scram_secret alice, bob, v;
	CHECK(old != NULL && fresh != NULL);
	CHECK(auth_file_scram_verifier(old, "alice", SCRAM_DEFAULT_ITERATIONS, &alice));
	CHECK(auth_file_scram_verifier(old, "bob", SCRAM_DEFAULT_ITERATIONS, &bob));
	auth_file_keep_verifiers(fresh, old);
	auth_file_free(old);

	unsigned long before = scram_test_hi_calls();
	CHECK(auth_file_scram_verifier(fresh, "alice", SCRAM_DEFAULT_ITERATIONS, &v));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 0);
	CHECK(same_verifier(&v, &alice));

	/* bob's password changed: a new verifier that knows only the new password */
	CHECK(auth_file_scram_verifier(fresh, "bob", SCRAM_DEFAULT_ITERATIONS, &v));
	CHECK_INT_EQ(scram_test_hi_calls() - before, 1);
	CHECK(!same_verifier(&v, &bob));
	CHECK(scram_password_matches(&v, "new_pw"));
	CHECK(!scram_password_matches(&v, "old_pw"));
	auth_file_free(fresh);
	auth_file_keep_verifiers(NULL, NULL);
}

int main(void)
{
	RUN(test_users_and_secrets_are_found);
	RUN(test_doubled_quote_is_a_literal_quote);
	RUN(test_comments_blank_lines_and_crlf_are_skipped);
	RUN(test_empty_file_has_no_users);
	RUN(test_later_line_wins_for_a_repeated_user);
	RUN(test_many_users_in_any_order_are_all_found);
	RUN(test_malformed_lines_are_reported_with_file_and_line);
	RUN(test_nul_byte_in_a_field_is_refused);
	RUN(test_missing_file_is_reported);
	RUN(test_secret_kind_is_read_off_its_shape);
	RUN(test_md5_secret_matches_postgresql);
	RUN(test_md5_response_uses_the_salt);
	RUN(test_secure_equal_compares_whole_strings);
	RUN(test_plaintext_password_verifier_is_derived_once_and_kept);
	RUN(test_plaintext_verifier_follows_scram_iterations);
	RUN(test_scram_secret_entry_needs_no_derivation);
	RUN(test_md5_secret_or_unknown_user_has_no_verifier);
	RUN(test_reload_keeps_verifiers_of_unchanged_passwords_only);
	return UNIT_REPORT("auth");
}
