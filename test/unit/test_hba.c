/*
 * test_hba: the auth_hba_file and auth_ident_file as an operator writes
 * them: rule matching (connection type, database and user lists, keywords,
 * quoting, @file, addresses with CIDR and masks), lines pgpulse refuses
 * with file:line, and ident maps with regular expressions.
 */
#include "hba.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

static char dir[64];

static void write_in_dir(const char *name, const char *text)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	if (!f || fputs(text, f) < 0) {
		perror("test_hba: temporary file");
		exit(2);
	}
	fclose(f);
}

static struct hba *load(const char *hba_text, const char *ident_text, char *err, size_t errlen)
{
	char hp[128], ip[128];
	write_in_dir("hba.conf", hba_text);
	snprintf(hp, sizeof(hp), "%s/hba.conf", dir);
	ip[0] = '\0';
	if (ident_text) {
		write_in_dir("ident.conf", ident_text);
		snprintf(ip, sizeof(ip), "%s/ident.conf", dir);
	}
	return hba_load(hp, ip, err, errlen);
}

/* the load error with the directory replaced by "D" */
static const char *error_of(const char *hba_text, const char *ident_text)
{
	static char err[512], shown[512];
	err[0] = '\0';
	struct hba *h = load(hba_text, ident_text, err, sizeof(err));
	if (h) {
		hba_free(h);
		return "(loaded)";
	}
	char *at = strstr(err, dir);
	shown[0] = '\0';
	const char *src = err;
	size_t dlen = strlen(dir);
	while (at) {
		strncat(shown, src, (size_t)(at - src));
		strcat(shown, "D");
		src = at + dlen;
		at = strstr(src, dir);
	}
	strcat(shown, src);
	return shown;
}

static struct sockaddr_storage addr_store;

static const struct sockaddr *ip(const char *text)
{
	memset(&addr_store, 0, sizeof(addr_store));
	struct sockaddr_in *in = (struct sockaddr_in *)&addr_store;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr_store;
	if (inet_pton(AF_INET, text, &in->sin_addr) == 1)
		in->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1)
		in6->sin6_family = AF_INET6;
	return (const struct sockaddr *)&addr_store;
}

/* "method@line" of the matching rule, or "none" */
static const char *verdict(const struct hba *h, bool is_unix, bool tls, const char *addr, const char *db,
			   const char *user)
{
	static char out[64];
	struct hba_client cl = { is_unix, tls, is_unix ? NULL : ip(addr), db, user, false };
	struct hba_verdict v;
	if (!hba_match(h, &cl, &v))
		return "none";
	snprintf(out, sizeof(out), "%s@%d%s%s", hba_method_name(v.method), v.line, v.map ? " map=" : "",
		 v.map ? v.map : "");
	return out;
}

static void test_first_matching_line_wins(void)
{
	char err[512] = "";
	struct hba *h = load("# comment\n"
			     "local   all      postgres           peer\n"
			     "local   appdb    all                md5\n"
			     "host    all      all   10.0.0.0/8   reject\n"
			     "hostssl all      all   0.0.0.0/0    scram-sha-256\n"
			     "hostnossl all    all   0.0.0.0/0    password   # trailing comment\n"
			     "host    all      all   ::1/128      trust\n",
			     NULL, err, sizeof(err));
	CHECK(h != NULL);
	if (!h) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_STR_EQ(verdict(h, true, false, NULL, "x", "postgres"), "peer@2");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "appdb", "app"), "md5@3");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "other", "app"), "none");
	CHECK_STR_EQ(verdict(h, false, true, "10.1.2.3", "appdb", "app"), "reject@4");
	CHECK_STR_EQ(verdict(h, false, true, "192.168.1.1", "appdb", "app"), "scram-sha-256@5");
	CHECK_STR_EQ(verdict(h, false, false, "192.168.1.1", "appdb", "app"), "password@6");
	CHECK_STR_EQ(verdict(h, false, false, "::1", "appdb", "app"), "trust@7");
	CHECK_STR_EQ(verdict(h, false, false, "::2", "appdb", "app"), "none");
	hba_free(h);
}

static void test_lists_keywords_and_quotes(void)
{
	char err[512] = "";
	struct hba *h = load("local sameuser all trust\n"
			     "local db1,\"db 2\",\"all\" alice, bob md5\n"
			     "local all \"sameuser\" password\n"
			     "local replication all reject\n",
			     NULL, err, sizeof(err));
	CHECK(h != NULL);
	if (!h)
		return;
	CHECK_STR_EQ(verdict(h, true, false, NULL, "carol", "carol"), "trust@1");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "db 2", "bob"), "md5@2");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "all", "alice"), "md5@2");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "db3", "alice"), "none");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "db1", "sameuser"), "password@3");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "db1", "carol"), "none");
	hba_free(h);
}

/* PostgreSQL's rule: replication=true matches only "replication"; replication=database is an ordinary login */
static void test_physical_replication_matches_only_the_replication_keyword(void)
{
	char err[512] = "";
	struct hba *h = load("local all all md5\n"
			     "local replication alice trust\n"
			     "local sameuser,replication bob password\n",
			     NULL, err, sizeof(err));
	CHECK(h != NULL);
	if (!h)
		return;
	struct hba_client cl = { true, false, NULL, "appdb", "alice", true };
	struct hba_verdict v;
	CHECK(hba_match(h, &cl, &v) && v.method == HBA_TRUST && v.line == 2);
	cl.user = "bob";
	cl.dbname = "bob"; /* sameuser does not match a physical connection either */
	CHECK(hba_match(h, &cl, &v) && v.method == HBA_PASSWORD && v.line == 3);
	cl.user = "carol";
	CHECK(!hba_match(h, &cl, &v));
	/* logical (replication=database) and ordinary logins never match the keyword */
	CHECK_STR_EQ(verdict(h, true, false, NULL, "replication", "alice"), "md5@1");
	hba_free(h);
}

static void test_addresses_with_masks(void)
{
	char err[512] = "";
	struct hba *h = load("host all all 192.168.0.0 255.255.0.0 md5\n"
			     "host all all 127.0.0.1/32 trust\n"
			     "host all all fe80::/10 password\n"
			     "host all all all reject\n",
			     NULL, err, sizeof(err));
	CHECK(h != NULL);
	if (!h)
		return;
	CHECK_STR_EQ(verdict(h, false, false, "192.168.44.5", "d", "u"), "md5@1");
	CHECK_STR_EQ(verdict(h, false, false, "192.169.0.1", "d", "u"), "reject@4");
	CHECK_STR_EQ(verdict(h, false, false, "127.0.0.1", "d", "u"), "trust@2");
	CHECK_STR_EQ(verdict(h, false, false, "::ffff:127.0.0.1", "d", "u"), "trust@2");
	CHECK_STR_EQ(verdict(h, false, false, "fe80::1", "d", "u"), "password@3");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "d", "u"), "none");
	hba_free(h);
}

static void test_at_file_includes_names(void)
{
	char err[512] = "";
	write_in_dir("users.txt", "# the team\nalice, bob\n\"carol x\" @more.txt\n");
	write_in_dir("more.txt", "dave\n");
	struct hba *h = load("local all @users.txt trust\n", NULL, err, sizeof(err));
	CHECK(h != NULL);
	if (!h) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_STR_EQ(verdict(h, true, false, NULL, "d", "bob"), "trust@1");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "d", "carol x"), "trust@1");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "d", "dave"), "trust@1");
	CHECK_STR_EQ(verdict(h, true, false, NULL, "d", "eve"), "none");
	hba_free(h);
	CHECK_STR_EQ(error_of("local all @missing.txt trust\n", NULL),
		     "D/hba.conf:1: in @missing.txt: D/missing.txt: could not open: No such file or directory");
}

static void test_line_continuation(void)
{
	char err[512] = "";
	struct hba *h = load("local all \\\n   alice trust\n", NULL, err, sizeof(err));
	CHECK(h != NULL);
	if (h)
		CHECK_STR_EQ(verdict(h, true, false, NULL, "d", "alice"), "trust@1");
	hba_free(h);
}

static void test_malformed_and_unsupported_lines_name_file_and_line(void)
{
	CHECK_STR_EQ(error_of("local all all trust\nlocal all\n", NULL),
		     "D/hba.conf:2: end-of-line before role specification");
	CHECK_STR_EQ(error_of("hostx all all all trust\n", NULL), "D/hba.conf:1: invalid connection type \"hostx\"");
	CHECK_STR_EQ(error_of("hostgssenc all all all trust\n", NULL),
		     "D/hba.conf:1: connection type \"hostgssenc\" is not supported (pgpulse has no GSSAPI encryption)");
	CHECK_STR_EQ(error_of("host all all db.example.com trust\n", NULL),
		     "D/hba.conf:1: host name \"db.example.com\" is not supported: write an IP address with a mask or CIDR length");
	CHECK_STR_EQ(error_of("host all all 10.0.0.0/33 trust\n", NULL),
		     "D/hba.conf:1: invalid CIDR mask in address \"10.0.0.0/33\"");
	CHECK_STR_EQ(error_of("host all all 10.0.0.0 trust\n", NULL), "D/hba.conf:1: invalid IP mask \"trust\"");
	CHECK_STR_EQ(error_of("host all all 10.0.0.0\n", NULL), "D/hba.conf:1: end-of-line before netmask specification");
	CHECK_STR_EQ(error_of("local samerole all trust\n", NULL),
		     "D/hba.conf:1: database keyword \"samerole\" is not supported (pgpulse knows no role membership)");
	CHECK_STR_EQ(error_of("local all +admins trust\n", NULL),
		     "D/hba.conf:1: group membership \"+admins\" is not supported (pgpulse knows no roles)");
	CHECK_STR_EQ(error_of("local all all ident\n", NULL),
		     "D/hba.conf:1: authentication method \"ident\" is not supported by pgpulse");
	CHECK_STR_EQ(error_of("local all all md6\n", NULL), "D/hba.conf:1: invalid authentication method \"md6\"");
	CHECK_STR_EQ(error_of("host all all all peer\n", NULL),
		     "D/hba.conf:1: peer authentication is only supported on local sockets");
	CHECK_STR_EQ(error_of("host all all all cert\n", NULL),
		     "D/hba.conf:1: cert authentication is only supported on hostssl connections");
	CHECK_STR_EQ(error_of("local all all trust foo\n", NULL),
		     "D/hba.conf:1: authentication option not in name=value format: foo");
	CHECK_STR_EQ(error_of("local all all md5 map=x\n", NULL),
		     "D/hba.conf:1: option map is only valid for methods peer and cert");
	CHECK_STR_EQ(error_of("local \"unterminated all trust\n", NULL), "D/hba.conf:1: unterminated quoted string");
	CHECK_STR_EQ(error_of("local a,,b all trust\n", NULL), "D/hba.conf:1: empty item in a comma-separated list");
	CHECK_STR_EQ(error_of("local all all peer map=m\n", NULL),
		     "D/hba.conf:1: ident map \"m\" is named but auth_ident_file is not set");
	CHECK_STR_EQ(error_of("local all all peer map=m\n", "other a b\n"),
		     "D/hba.conf:1: ident map \"m\" is not defined in D/ident.conf");
	CHECK_STR_EQ(error_of("local all all trust\n", "m a\n"), "D/ident.conf:1: missing entry at end of line");
	CHECK_STR_EQ(error_of("local all all trust\n", "m /a( b\n"),
		     "D/ident.conf:1: invalid regular expression \"a(\": Unmatched ( or \\(");
	CHECK_STR_EQ(error_of("local all all trust\n", "m /((a{100}){100}){100} b\n"),
		     "D/ident.conf:1: regular expression \"((a{100}){100}){100}\" is too costly to compile: "
		     "at most 256 characters and 16 quantifiers, bounds at most {16}");
	CHECK_STR_EQ(error_of("local all all trust\n", "m /a+++++++++++++++++ b\n"),
		     "D/ident.conf:1: regular expression \"a+++++++++++++++++\" is too costly to compile: "
		     "at most 256 characters and 16 quantifiers, bounds at most {16}");
	CHECK_STR_EQ(error_of("local all all trust\n", "m /^a{16}(b{3})$ b\n"), "(loaded)");
	CHECK_STR_EQ(error_of("local all all trust\n", "m alice \\1x\n"),
		     "D/ident.conf:1: \"\\1x\" uses \\1 but \"alice\" has no parenthesized subexpression");
}

static void test_ident_maps_literal_and_regex(void)
{
	char err[512] = "";
	struct hba *h = load("local all all peer map=m\n",
			     "# map  system       database\n"
			     "m      alice        app\n"
			     "m      /^(.*)@example\\.com$  \\1\n"
			     "m      /^ops-       all\n"
			     "m      \"bob smith\"  bob\n",
			     err, sizeof(err));
	CHECK(h != NULL);
	if (!h) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK(hba_ident_allows(h, "m", "alice", "app"));
	CHECK(!hba_ident_allows(h, "m", "alice", "alice"));
	CHECK(hba_ident_allows(h, "m", "carol@example.com", "carol"));
	CHECK(!hba_ident_allows(h, "m", "carol@example.com", "dave"));
	CHECK(!hba_ident_allows(h, "m", "carol@example.org", "carol"));
	CHECK(hba_ident_allows(h, "m", "ops-1", "anyone"));
	CHECK(hba_ident_allows(h, "m", "bob smith", "bob"));
	CHECK(!hba_ident_allows(h, "other", "alice", "app"));
	hba_free(h);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_hba.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("test_hba: mkdtemp");
		return 2;
	}
	RUN(test_first_matching_line_wins);
	RUN(test_lists_keywords_and_quotes);
	RUN(test_physical_replication_matches_only_the_replication_keyword);
	RUN(test_addresses_with_masks);
	RUN(test_at_file_includes_names);
	RUN(test_line_continuation);
	RUN(test_malformed_and_unsupported_lines_name_file_and_line);
	RUN(test_ident_maps_literal_and_regex);
	static const char *const files[] = { "hba.conf", "ident.conf", "users.txt", "more.txt" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char p[128];
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
	return UNIT_REPORT("hba");
}
