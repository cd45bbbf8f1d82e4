/*
 * config/params: the one table of main-section parameters and everything
 * that walks it: the defaults, typed values (durations, sizes, integers,
 * octal modes, keywords) parsed and formatted, SET, SHOW CONFIG and the
 * RELOAD diff. Reading the file is config/load.c's.
 *
 * `params[]` below is the only place a main-section parameter is described:
 * name, type, default (as text, parsed by the same code that parses the
 * file), unit, whether RELOAD/SET may change it, a check, and where it lives
 * in struct cfg. Defaults, the file parser, SET, SHOW CONFIG and the reload
 * diff all walk that table, so adding a parameter is one table row plus the
 * struct field. The other parts of config reach a row only through the
 * opaque `struct param` of config_internal.h.
 */
#include "config_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "log.h"
#include "scram.h"

#define USEC_PER_MSEC INT64_C(1000)
#define USEC_PER_SEC INT64_C(1000000)

/* ------------------------------------------------------------------------
 * The parameter table's vocabulary
 * ------------------------------------------------------------------------ */

enum param_type {
	PT_INT,      /* int, decimal */
	PT_BOOL,     /* bool: 0/1, on/off, true/false, yes/no */
	PT_STRING,   /* char *: the rest of the line, as written */
	PT_KEYWORD,  /* char *: one word of a fixed list, stored in its canonical spelling */
	PT_ENUM,     /* int: one word of a fixed list, stored as the word's number */
	PT_DURATION, /* int64_t usec: a bare number is in the row's unit, or say 250ms, 2min... */
	PT_SIZE,     /* int64_t bytes: a bare number is bytes, or say 8kB, 1MB, 1GB */
	PT_OCTAL,    /* int: a file mode such as 0777 */
};

/* what a bare number means, and the unit SHOW CONFIG prints */
enum param_unit { UNIT_NONE, UNIT_SECONDS, UNIT_MILLISECONDS, UNIT_BYTES };

/* a parsed value on its way into struct cfg: numbers in num, text in str (not owned) */
struct param_value {
	int64_t num;
	const char *str;
};

typedef bool (*param_check_fn)(const struct param_value *v, char *why, size_t whylen);

struct param {
	const char *name;
	enum param_type type;
	const char *default_text;
	enum param_unit unit;
	bool reloadable;
	bool in_effect;           /* false: accepted so PgBouncer files load, but nothing reads it yet */
	param_check_fn check;     /* NULL: any value the type accepts */
	size_t offset;            /* into struct cfg */
	const struct word *words; /* PT_ENUM and PT_KEYWORD only */
};

/*
 * offsetof(struct cfg, field), refusing to compile unless the field has the C
 * type the row claims: a row that stored an int64_t into an int would
 * otherwise corrupt its neighbour silently.
 */
#define AT(field, ctype) \
	(offsetof(struct cfg, field) + 0 * sizeof(_Generic(((struct cfg *)0)->field, ctype: 1)))

#define RELOAD true   /* RELOAD and SET may change it */
#define RESTART false /* takes effect only when pgpulse starts */
#define LIVE true     /* pgpulse does what the parameter says */
#define NOT_YET false /* accepted, not in effect: a file that sets it gets a warning naming it */

/* a word of PgBouncer's that pgpulse knows and refuses: its row's check says why */
#define WORD_REFUSED -1

const struct word pool_mode_words[] = {
	{ "session", POOL_SESSION },
	{ "transaction", POOL_TRANSACTION },
	{ "statement", POOL_STATEMENT },
	{ NULL, 0 },
};

static const struct word auth_type_words[] = {
	{ "trust", AUTH_TRUST },  { "any", AUTH_ANY },   { "plain", AUTH_PLAIN },
	{ "md5", AUTH_MD5 },      { "scram-sha-256", AUTH_SCRAM },
	{ "cert", AUTH_CERT },    { "hba", AUTH_HBA },   { "pam", WORD_REFUSED },
	{ "ldap", WORD_REFUSED }, { NULL, 0 },
};

static const struct word sslmode_words[] = {
	{ "disable", 0 }, { "allow", 1 },     { "prefer", 2 },      { "require", 3 },
	{ "verify-ca", 4 }, { "verify-full", 5 }, { NULL, 0 },
};

static const struct word slow_text_words[] = {
	{ "normalized", 0 }, { "full", 1 }, { NULL, 0 },
};

/* the facilities log.c knows; anything else would silently become "daemon" */
static const struct word syslog_facility_words[] = {
	{ "auth", 0 },   { "authpriv", 1 }, { "daemon", 2 }, { "user", 3 },
	{ "local0", 4 }, { "local1", 5 },   { "local2", 6 }, { "local3", 7 },
	{ "local4", 8 }, { "local5", 9 },   { "local6", 10 }, { "local7", 11 },
	{ NULL, 0 },
};

static const struct word bool_words[] = {
	{ "1", 1 },    { "on", 1 },     { "true", 1 }, { "yes", 1 },
	{ "0", 0 },    { "off", 0 },    { "false", 0 }, { "no", 0 },
	{ NULL, 0 },
};

/* ------------------------------------------------------------------------
 * Checks: one reason per rule, worded for the person editing the file
 * ------------------------------------------------------------------------ */

static bool check_range(const struct param_value *v, int64_t lo, int64_t hi, char *why, size_t whylen)
{
	if (v->num >= lo && v->num <= hi)
		return true;
	snprintf(why, whylen, "%" PRId64 " is out of range (%" PRId64 " .. %" PRId64 ")", v->num, lo, hi);
	return false;
}

static bool check_port(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 1, 65535, why, whylen);
}

static bool check_not_negative(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 0, INT_MAX, why, whylen);
}

/* a duration or a size where a negative number means nothing */
static bool check_not_negative_64(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 0, INT64_MAX, why, whylen);
}

static bool check_at_least_one(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 1, INT_MAX, why, whylen);
}

/* 0 turns N+1 detection off; one execution per transaction is never a repeat */
static bool check_repeat_threshold(const struct param_value *v, char *why, size_t whylen)
{
	if (v->num == 1) {
		snprintf(why, whylen, "%s", "1 would flag every statement: use 0 (off) or 2 and more");
		return false;
	}
	return check_range(v, 0, INT_MAX, why, whylen);
}

/* PgBouncer encodes peer_id into cancel keys in 14 bits */
/* a share in percent: 0 (check off) to 100 */
static bool check_percent(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 0, 100, why, whylen);
}

/* 0 (off) or a port */
static bool check_port_or_zero(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 0, 65535, why, whylen);
}

/*
 * Settings PostgreSQL reports but nobody can SET: following them would make
 * every later server assignment fail its set_config.
 */
static bool check_tracked_names(const struct param_value *v, char *why, size_t whylen)
{
	static const char *const read_only[] = { "server_version", "server_encoding", "integer_datetimes",
						 "is_superuser", "in_hot_standby" };
	for (size_t i = 0; i < sizeof(read_only) / sizeof(read_only[0]); i++) {
		if (cfg_list_contains_name(v->str, read_only[i])) {
			snprintf(why, whylen, "%s is read-only in PostgreSQL: it cannot be restored on a server",
				 read_only[i]);
			return false;
		}
	}
	return true;
}

/*
 * auth_dbname (global, and a [databases] entry's, load.c): a lookup runs on
 * a server, and the admin console has none; refused when the file loads,
 * as PgBouncer does, rather than at every login that needs a lookup.
 */
bool cfg_check_auth_dbname(const char *name, char *why, size_t whylen)
{
	if (name && (strcmp(name, "pgpulse") == 0 || strcmp(name, "pgbouncer") == 0)) {
		snprintf(why, whylen, "\"%s\" is the admin console, which cannot run auth_query", name);
		return false;
	}
	return true;
}

static bool check_auth_dbname(const struct param_value *v, char *why, size_t whylen)
{
	return cfg_check_auth_dbname(v->str, why, whylen);
}

/* the verifiers pgpulse derives must be ones its own SCRAM code will accept */
static bool check_scram_iterations(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 1, SCRAM_MAX_ITERATIONS, why, whylen);
}

/* each HTTP connection is a file descriptor the pooler cannot use */
static bool check_metrics_connections(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 1, 1000, why, whylen);
}

/*
 * histogram bounds in seconds: increasing, comma-separated; the first may be
 * 0, the bucket of exact zeros (a wait for a server that was free)
 */
static bool check_bucket_list(const struct param_value *v, char *why, size_t whylen)
{
	const char *p = v->str ? v->str : "";
	double prev = -1;
	int n = 0;
	while (*p) {
		char *end;
		double b = strtod(p, &end);
		if (end == p || !isfinite(b) || signbit(b) || b <= prev) {
			snprintf(why, whylen, "expected increasing numbers of seconds (the first may be 0), separated by commas");
			return false;
		}
		prev = b;
		n++;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
		while (*p == ' ')
			p++;
	}
	if (n == 0 || n > 64) {
		snprintf(why, whylen, "expected 1 to 64 bucket bounds");
		return false;
	}
	return true;
}

static bool check_peer_id(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 0, 16383, why, whylen);
}

/* one name server: an IPv4 address, or an IPv6 one in brackets, then an optional :port */
static bool nameserver_ok(const char *item, size_t len)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *end = item + len, *port = NULL;
	size_t alen;
	unsigned char bin[sizeof(struct in6_addr)];
	bool v6 = item[0] == '[';

	if (v6) {
		const char *close = memchr(item, ']', len);
		if (!close)
			return false;
		alen = (size_t)(close - item - 1);
		if (close + 1 < end && close[1] != ':')
			return false;
		port = close + 1 < end ? close + 2 : NULL;
		item++;
	} else {
		const char *colon = memchr(item, ':', len);
		alen = colon ? (size_t)(colon - item) : len;
		port = colon ? colon + 1 : NULL;
	}
	if (alen == 0 || alen >= sizeof(addr))
		return false;
	memcpy(addr, item, alen);
	addr[alen] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, bin) != 1)
		return false;
	if (port) {
		long n = 0;
		if (port >= end)
			return false;
		for (const char *d = port; d < end; d++) {
			if (!isdigit((unsigned char)*d) || (n = n * 10 + (*d - '0')) > 65535)
				return false;
		}
		if (n < 1)
			return false;
	}
	return true;
}

/* "" (resolv.conf's servers) or a comma-separated list of addr[:port] */
static bool check_nameservers(const struct param_value *v, char *why, size_t whylen)
{
	const char *p = v->str ? v->str : "";
	while (*p) {
		while (*p == ' ')
			p++;
		size_t len = strcspn(p, ", ");
		if (!nameserver_ok(p, len)) {
			snprintf(why, whylen, "\"%.*s\" is not an IP address with an optional port "
				 "(10.0.0.2, 10.0.0.2:5353, [2001:db8::1]:53)", (int)(len > 60 ? 60 : len), p);
			return false;
		}
		p += len;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
	}
	return true;
}

/* a buffer must hold at least a startup packet; past 1 GB it is a typo */
static bool check_pkt_buf(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 512, INT64_C(1) << 30, why, whylen);
}

/* the protocol's length word is a signed 32-bit integer */
static bool check_packet_size(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 1, INT32_MAX, why, whylen);
}

/* setsockopt(SO_SNDBUF/SO_RCVBUF) takes an int */
static bool check_socket_buffer(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 0, INT_MAX, why, whylen);
}

/* a zero period would make the stats timer spin */
static bool check_positive_duration(const struct param_value *v, char *why, size_t whylen)
{
	if (v->num > 0)
		return true;
	snprintf(why, whylen, "must be greater than 0");
	return false;
}

/* PgBouncer's pam and ldap: refused when the file is read, never at a client's login */
static bool check_auth_type(const struct param_value *v, char *why, size_t whylen)
{
	if (v->num != WORD_REFUSED)
		return true;
	snprintf(why, whylen, "\"%s\" is not supported: pgpulse has no PAM or LDAP authentication "
		 "(use scram-sha-256, md5, cert, hba or trust)", v->str);
	return false;
}

static bool check_file_mode(const struct param_value *v, char *why, size_t whylen)
{
	return check_range(v, 0, 07777, why, whylen);
}

#ifdef __linux__
#define DEFAULT_TCP_DEFER_ACCEPT "1"
#else
#define DEFAULT_TCP_DEFER_ACCEPT "0"
#endif

/* ------------------------------------------------------------------------
 * THE table. Alphabetical, because SHOW CONFIG lists rows in table order and
 * PgBouncer lists them alphabetically.
 * ------------------------------------------------------------------------ */

#define S UNIT_SECONDS
#define MS UNIT_MILLISECONDS
#define B UNIT_BYTES
#define NONE UNIT_NONE

static const struct param params[] = {
	/* name                        type         default          unit  reload   effect   check                    field */
	{ "admin_users",               PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(admin_users, char *), NULL },
	{ "application_name_add_host", PT_BOOL,     "0",             NONE, RELOAD,  LIVE,    NULL,                    AT(application_name_add_host, bool), NULL },
	{ "auth_cache_lifetime",       PT_DURATION, "10",            S,    RELOAD,  LIVE,    NULL,                    AT(auth_cache_lifetime, int64_t), NULL },
	{ "auth_dbname",               PT_STRING,   "",              NONE, RELOAD,  LIVE,    check_auth_dbname,       AT(auth_dbname, char *), NULL },
	{ "auth_file",                 PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(auth_file, char *), NULL },
	{ "auth_hba_file",             PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(auth_hba_file, char *), NULL },
	{ "auth_ident_file",           PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(auth_ident_file, char *), NULL },
	{ "auth_query",                PT_STRING,   "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin",
	                                                             NONE, RELOAD,  LIVE,    NULL,                    AT(auth_query, char *), NULL },
	{ "auth_type",                 PT_ENUM,     "md5",           NONE, RELOAD,  LIVE,    check_auth_type,         AT(auth_type, int), auth_type_words },
	{ "auth_user",                 PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(auth_user, char *), NULL },
	{ "autodb_idle_timeout",       PT_DURATION, "3600",          S,    RELOAD,  LIVE,    NULL,                    AT(autodb_idle_timeout, int64_t), NULL },
	{ "cancel_wait_timeout",       PT_DURATION, "10",            S,    RELOAD,  LIVE,    NULL,                    AT(cancel_wait_timeout, int64_t), NULL },
	{ "client_idle_timeout",       PT_DURATION, "0",             S,    RELOAD,  LIVE,    NULL,                    AT(client_idle_timeout, int64_t), NULL },
	{ "client_login_timeout",      PT_DURATION, "60",            S,    RELOAD,  LIVE,    NULL,                    AT(client_login_timeout, int64_t), NULL },
	{ "client_tls13_ciphers",      PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(client_tls13_ciphers, char *), NULL },
	{ "client_tls_ca_file",        PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(client_tls_ca_file, char *), NULL },
	{ "client_tls_cert_file",      PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(client_tls_cert_file, char *), NULL },
	{ "client_tls_ciphers",        PT_STRING,   "default",       NONE, RELOAD,  LIVE,    NULL,                    AT(client_tls_ciphers, char *), NULL },
	{ "client_tls_dheparams",      PT_STRING,   "auto",          NONE, RELOAD,  LIVE,    NULL,                    AT(client_tls_dheparams, char *), NULL },
	{ "client_tls_ecdhcurve",      PT_STRING,   "auto",          NONE, RELOAD,  LIVE,    NULL,                    AT(client_tls_ecdhcurve, char *), NULL },
	{ "client_tls_key_file",       PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(client_tls_key_file, char *), NULL },
	{ "client_tls_protocols",      PT_STRING,   "secure",        NONE, RELOAD,  LIVE,    NULL,                    AT(client_tls_protocols, char *), NULL },
	{ "client_tls_sslmode",        PT_KEYWORD,  "disable",       NONE, RELOAD,  LIVE,    NULL,                    AT(client_tls_sslmode, char *), sslmode_words },
	{ "conffile",                  PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(conffile, char *), NULL },
	{ "default_pool_size",         PT_INT,      "20",            NONE, RELOAD,  LIVE,    check_not_negative,      AT(default_pool_size, int), NULL },
	{ "disable_pqexec",            PT_BOOL,     "0",             NONE, RESTART, LIVE,    NULL,                    AT(disable_pqexec, bool), NULL },
	{ "dns_max_ttl",               PT_DURATION, "15",            S,    RELOAD,  LIVE,    NULL,                    AT(dns_max_ttl, int64_t), NULL },
	{ "dns_nameservers",           PT_STRING,   "",              NONE, RESTART, LIVE,    check_nameservers,       AT(dns_nameservers, char *), NULL },
	{ "dns_nxdomain_ttl",          PT_DURATION, "15",            S,    RELOAD,  LIVE,    NULL,                    AT(dns_nxdomain_ttl, int64_t), NULL },
	{ "dns_zone_check_period",     PT_DURATION, "0",             S,    RELOAD,  LIVE,    NULL,                    AT(dns_zone_check_period, int64_t), NULL },
	{ "health_query_p95_critical", PT_DURATION, "2",             S,    RELOAD,  LIVE,    NULL,                    AT(health_query_p95_critical, int64_t), NULL },
	{ "health_query_p95_warning",  PT_DURATION, "0.5",           S,    RELOAD,  LIVE,    NULL,                    AT(health_query_p95_warning, int64_t), NULL },
	{ "health_utilization_critical", PT_INT,    "95",            NONE, RELOAD,  LIVE,    check_percent,           AT(health_utilization_critical, int), NULL },
	{ "health_utilization_warning", PT_INT,     "80",            NONE, RELOAD,  LIVE,    check_percent,           AT(health_utilization_warning, int), NULL },
	{ "health_wait_p95_critical",  PT_DURATION, "0.5",           S,    RELOAD,  LIVE,    NULL,                    AT(health_wait_p95_critical, int64_t), NULL },
	{ "health_wait_p95_warning",   PT_DURATION, "0.05",          S,    RELOAD,  LIVE,    NULL,                    AT(health_wait_p95_warning, int64_t), NULL },
	{ "idle_transaction_timeout",  PT_DURATION, "0",             S,    RELOAD,  LIVE,    NULL,                    AT(idle_transaction_timeout, int64_t), NULL },
	{ "ignore_startup_parameters", PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(ignore_startup_parameters, char *), NULL },
	{ "job_name",                  PT_STRING,   "pgpulse",       NONE, RESTART, LIVE,    NULL,                    AT(job_name, char *), NULL },
	{ "listen_addr",               PT_STRING,   "",              NONE, RESTART, LIVE,    NULL,                    AT(listen_addr, char *), NULL },
	{ "listen_backlog",            PT_INT,      "128",           NONE, RESTART, LIVE,    check_at_least_one,      AT(listen_backlog, int), NULL },
	{ "listen_port",               PT_INT,      "6432",          NONE, RESTART, LIVE,    check_port,              AT(listen_port, int), NULL },
	{ "log_connections",           PT_BOOL,     "1",             NONE, RELOAD,  LIVE,    NULL,                    AT(log_connections, bool), NULL },
	{ "log_disconnections",        PT_BOOL,     "1",             NONE, RELOAD,  LIVE,    NULL,                    AT(log_disconnections, bool), NULL },
	{ "log_pooler_errors",         PT_BOOL,     "1",             NONE, RELOAD,  LIVE,    NULL,                    AT(log_pooler_errors, bool), NULL },
	{ "log_stats",                 PT_BOOL,     "1",             NONE, RELOAD,  LIVE,    NULL,                    AT(log_stats, bool), NULL },
	{ "logfile",                   PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(logfile, char *), NULL },
	{ "max_client_conn",           PT_INT,      "100",           NONE, RELOAD,  LIVE,    check_at_least_one,      AT(max_client_conn, int), NULL },
	{ "max_db_client_connections", PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(max_db_client_connections, int), NULL },
	{ "max_db_connections",        PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(max_db_connections, int), NULL },
	{ "max_packet_size",           PT_SIZE,     "2147483647",    B,    RELOAD,  LIVE,    check_packet_size,       AT(max_packet_size, int64_t), NULL },
	{ "max_prepared_statements",   PT_INT,      "200",           NONE, RELOAD,  LIVE,    check_not_negative,      AT(max_prepared_statements, int), NULL },
	{ "max_query_fingerprints",    PT_INT,      "5000",          NONE, RELOAD,  LIVE,    check_not_negative,      AT(max_query_fingerprints, int), NULL },
	{ "max_user_client_connections", PT_INT,    "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(max_user_client_connections, int), NULL },
	{ "max_user_connections",      PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(max_user_connections, int), NULL },
	{ "metrics_addr",              PT_STRING,   "127.0.0.1",     NONE, RESTART, LIVE,    NULL,                    AT(metrics_addr, char *), NULL },
	{ "metrics_buckets",           PT_STRING,   "0,0.00005,0.0001,0.00025,0.0005,0.001,0.0025,0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30", NONE, RELOAD, LIVE, check_bucket_list, AT(metrics_buckets, char *), NULL },
	{ "metrics_max_connections",   PT_INT,      "16",            NONE, RESTART, LIVE,    check_metrics_connections, AT(metrics_max_connections, int), NULL },
	{ "metrics_port",              PT_INT,      "0",             NONE, RESTART, LIVE,    check_port_or_zero,      AT(metrics_port, int), NULL },
	{ "metrics_summaries",         PT_BOOL,     "0",             NONE, RELOAD,  LIVE,    NULL,                    AT(metrics_summaries, bool), NULL },
	{ "min_pool_size",             PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(min_pool_size, int), NULL },
	{ "overflow_idle_timeout",     PT_DURATION, "60",            S,    RELOAD,  LIVE,    NULL,                    AT(overflow_idle_timeout, int64_t), NULL },
	{ "overflow_pool_size",        PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(overflow_pool_size, int), NULL },
	{ "peer_id",                   PT_INT,      "0",             NONE, RESTART, LIVE,    check_peer_id,           AT(peer_id, int), NULL },
	{ "pidfile",                   PT_STRING,   "",              NONE, RESTART, LIVE,    NULL,                    AT(pidfile, char *), NULL },
	{ "pkt_buf",                   PT_SIZE,     "4096",          B,    RESTART, LIVE,    check_pkt_buf,           AT(pkt_buf, int64_t), NULL },
	{ "pool_mode",                 PT_ENUM,     "session",       NONE, RELOAD,  LIVE,    NULL,                    AT(pool_mode, int), pool_mode_words },
	{ "query_repeat_threshold",    PT_INT,      "10",            NONE, RELOAD,  LIVE,    check_repeat_threshold,  AT(query_repeat_threshold, int), NULL },
	{ "query_timeout",             PT_DURATION, "0",             S,    RELOAD,  LIVE,    NULL,                    AT(query_timeout, int64_t), NULL },
	{ "query_wait_notify",         PT_DURATION, "5",             S,    RELOAD,  LIVE,    NULL,                    AT(query_wait_notify, int64_t), NULL },
	{ "query_wait_timeout",        PT_DURATION, "120",           S,    RELOAD,  LIVE,    NULL,                    AT(query_wait_timeout, int64_t), NULL },
	{ "replica_check_period",      PT_DURATION, "5",             S,    RELOAD,  LIVE,    check_not_negative_64,   AT(replica_check_period, int64_t), NULL },
	{ "replica_max_lag",           PT_DURATION, "0",             S,    RELOAD,  LIVE,    check_not_negative_64,   AT(replica_max_lag, int64_t), NULL },
	{ "replica_max_lag_bytes",     PT_SIZE,     "0",             B,    RELOAD,  LIVE,    check_not_negative_64,   AT(replica_max_lag_bytes, int64_t), NULL },
	{ "reserve_pool_size",         PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(reserve_pool_size, int), NULL },
	{ "reserve_pool_timeout",      PT_DURATION, "5",             S,    RELOAD,  LIVE,    NULL,                    AT(reserve_pool_timeout, int64_t), NULL },
	{ "resolv_conf",               PT_STRING,   "",              NONE, RESTART, LIVE,    NULL,                    AT(resolv_conf, char *), NULL },
	{ "sbuf_loopcnt",              PT_INT,      "5",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(sbuf_loopcnt, int), NULL },
	{ "scram_iterations",          PT_INT,      "4096",          NONE, RELOAD,  LIVE,    check_scram_iterations,  AT(scram_iterations, int), NULL },
	{ "server_check_delay",        PT_DURATION, "30",            S,    RELOAD,  LIVE,    NULL,                    AT(server_check_delay, int64_t), NULL },
	{ "server_check_query",        PT_STRING,   "select 1",      NONE, RELOAD,  LIVE,    NULL,                    AT(server_check_query, char *), NULL },
	{ "server_connect_timeout",    PT_DURATION, "15",            S,    RELOAD,  LIVE,    NULL,                    AT(server_connect_timeout, int64_t), NULL },
	{ "server_fast_close",         PT_BOOL,     "0",             NONE, RELOAD,  LIVE,    NULL,                    AT(server_fast_close, bool), NULL },
	{ "server_idle_timeout",       PT_DURATION, "600",           S,    RELOAD,  LIVE,    NULL,                    AT(server_idle_timeout, int64_t), NULL },
	{ "server_lifetime",           PT_DURATION, "3600",          S,    RELOAD,  LIVE,    NULL,                    AT(server_lifetime, int64_t), NULL },
	{ "server_login_retry",        PT_DURATION, "15",            S,    RELOAD,  LIVE,    NULL,                    AT(server_login_retry, int64_t), NULL },
	{ "server_reset_query",        PT_STRING,   "DISCARD ALL",   NONE, RELOAD,  LIVE,    NULL,                    AT(server_reset_query, char *), NULL },
	{ "server_reset_query_always", PT_BOOL,     "0",             NONE, RELOAD,  LIVE,    NULL,                    AT(server_reset_query_always, bool), NULL },
	{ "server_round_robin",        PT_BOOL,     "0",             NONE, RELOAD,  LIVE,    NULL,                    AT(server_round_robin, bool), NULL },
	{ "server_tls13_ciphers",      PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(server_tls13_ciphers, char *), NULL },
	{ "server_tls_ca_file",        PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(server_tls_ca_file, char *), NULL },
	{ "server_tls_cert_file",      PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(server_tls_cert_file, char *), NULL },
	{ "server_tls_ciphers",        PT_STRING,   "default",       NONE, RELOAD,  LIVE,    NULL,                    AT(server_tls_ciphers, char *), NULL },
	{ "server_tls_key_file",       PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(server_tls_key_file, char *), NULL },
	{ "server_tls_protocols",      PT_STRING,   "secure",        NONE, RELOAD,  LIVE,    NULL,                    AT(server_tls_protocols, char *), NULL },
	{ "server_tls_sslmode",        PT_KEYWORD,  "prefer",        NONE, RELOAD,  LIVE,    NULL,                    AT(server_tls_sslmode, char *), sslmode_words },
	{ "service_name",              PT_STRING,   "pgpulse",       NONE, RESTART, LIVE,    NULL,                    AT(service_name, char *), NULL },
	{ "slow_query_log_size",       PT_INT,      "100",           NONE, RELOAD,  LIVE,    check_not_negative,      AT(slow_query_log_size, int), NULL },
	{ "slow_query_log_text",       PT_KEYWORD,  "normalized",    NONE, RELOAD,  LIVE,    NULL,                    AT(slow_query_log_text, char *), slow_text_words },
	{ "slow_query_threshold",      PT_DURATION, "0",             S,    RELOAD,  LIVE,    NULL,                    AT(slow_query_threshold, int64_t), NULL },
	{ "so_reuseport",              PT_BOOL,     "0",             NONE, RESTART, LIVE,    NULL,                    AT(so_reuseport, bool), NULL },
	{ "stats_period",              PT_DURATION, "60",            S,    RELOAD,  LIVE,    check_positive_duration, AT(stats_period, int64_t), NULL },
	{ "stats_users",               PT_STRING,   "",              NONE, RELOAD,  LIVE,    NULL,                    AT(stats_users, char *), NULL },
	{ "suspend_timeout",           PT_DURATION, "10",            S,    RELOAD,  LIVE,    NULL,                    AT(suspend_timeout, int64_t), NULL },
	{ "syslog",                    PT_BOOL,     "0",             NONE, RELOAD,  LIVE,    NULL,                    AT(syslog, bool), NULL },
	{ "syslog_facility",           PT_KEYWORD,  "daemon",        NONE, RELOAD,  LIVE,    NULL,                    AT(syslog_facility, char *), syslog_facility_words },
	{ "syslog_ident",              PT_STRING,   "pgpulse",       NONE, RELOAD,  LIVE,    NULL,                    AT(syslog_ident, char *), NULL },
	{ "tcp_defer_accept",          PT_INT,      DEFAULT_TCP_DEFER_ACCEPT, NONE, RELOAD, LIVE,    check_not_negative, AT(tcp_defer_accept, int), NULL },
	{ "tcp_keepalive",             PT_BOOL,     "1",             NONE, RELOAD,  LIVE,    NULL,                    AT(tcp_keepalive, bool), NULL },
	{ "tcp_keepcnt",               PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(tcp_keepcnt, int), NULL },
	{ "tcp_keepidle",              PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(tcp_keepidle, int), NULL },
	{ "tcp_keepintvl",             PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(tcp_keepintvl, int), NULL },
	{ "tcp_socket_buffer",         PT_SIZE,     "0",             B,    RELOAD,  LIVE,    check_socket_buffer,     AT(tcp_socket_buffer, int64_t), NULL },
	{ "tcp_user_timeout",          PT_DURATION, "0",             MS,   RELOAD,  LIVE,    NULL,                    AT(tcp_user_timeout, int64_t), NULL },
	{ "telemetry",                 PT_BOOL,     "1",             NONE, RELOAD,  LIVE,    NULL,                    AT(telemetry, bool), NULL },
	{ "track_extra_parameters",    PT_STRING,   "IntervalStyle", NONE, RELOAD,  LIVE,    check_tracked_names,     AT(track_extra_parameters, char *), NULL },
	{ "transaction_timeout",       PT_DURATION, "0",             S,    RELOAD,  LIVE,    NULL,                    AT(transaction_timeout, int64_t), NULL },
	{ "unix_socket_dir",           PT_STRING,   "/tmp",          NONE, RESTART, LIVE,    NULL,                    AT(unix_socket_dir, char *), NULL },
	{ "unix_socket_group",         PT_STRING,   "",              NONE, RESTART, LIVE,    NULL,                    AT(unix_socket_group, char *), NULL },
	{ "unix_socket_mode",          PT_OCTAL,    "0777",          NONE, RESTART, LIVE,    check_file_mode,         AT(unix_socket_mode, int), NULL },
	{ "user",                      PT_STRING,   "",              NONE, RESTART, LIVE,    NULL,                    AT(user, char *), NULL },
	{ "verbose",                   PT_INT,      "0",             NONE, RELOAD,  LIVE,    check_not_negative,      AT(verbose, int), NULL },
};

#undef S
#undef MS
#undef B
#undef NONE

#define N_PARAMS ((int)(sizeof(params) / sizeof(params[0])))

/* ------------------------------------------------------------------------
 * Small text helpers
 * ------------------------------------------------------------------------ */

char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	*end = '\0';
	return s;
}

const struct word *word_by_name(const struct word *words, const char *name)
{
	for (; words->name; words++)
		if (strcasecmp(words->name, name) == 0)
			return words;
	return NULL;
}

static const char *word_by_value(const struct word *words, int value)
{
	for (; words->name; words++)
		if (words->value == value)
			return words->name;
	return NULL;
}

/* "invalid value "x" (expected a, b or c)"; refused words are not offered */
void explain_words(const struct word *words, const char *text, char *why, size_t whylen)
{
	size_t used = (size_t)snprintf(why, whylen, "invalid value \"%s\" (expected ", text);
	int n = 0, shown = 0;

	for (const struct word *w = words; w->name; w++)
		n += w->value != WORD_REFUSED;
	for (const struct word *w = words; w->name && used < whylen; w++) {
		if (w->value == WORD_REFUSED)
			continue;
		const char *sep = shown == 0 ? "" : shown < n - 1 ? ", " : " or ";
		used += (size_t)snprintf(why + used, whylen - used, "%s%s", sep, w->name);
		shown++;
	}
	if (used < whylen)
		snprintf(why + used, whylen - used, ")");
}

/* ------------------------------------------------------------------------
 * Value parsers. They accept surrounding blanks and nothing else: a typo
 * must fail loudly rather than parse as a prefix.
 * ------------------------------------------------------------------------ */

struct unit_word {
	const char *name;
	int64_t factor;
};

static const struct unit_word duration_units[] = {
	{ "us", 1 },
	{ "ms", USEC_PER_MSEC },
	{ "s", USEC_PER_SEC },
	{ "min", 60 * USEC_PER_SEC },
	{ "h", 3600 * USEC_PER_SEC },
	{ "d", 86400 * USEC_PER_SEC },
	{ NULL, 0 },
};

/* powers of 1024, as PostgreSQL reads kB/MB/GB */
static const struct unit_word size_units[] = {
	{ "B", 1 },
	{ "kB", INT64_C(1) << 10 },
	{ "MB", INT64_C(1) << 20 },
	{ "GB", INT64_C(1) << 30 },
	{ NULL, 0 },
};

/*
 * "12", "1.5", "250ms", "8 kB": a plain decimal number (no sign, exponent or
 * hex) and an optional unit word, scaled into the smallest unit. A bare
 * number is in `bare_factor` units. Fractions are rounded to the nearest
 * smallest unit.
 */
static bool parse_scaled(const char *text, const struct unit_word *units, int64_t bare_factor,
			 int64_t *out)
{
	const char *p = text;
	uint64_t whole = 0, frac_num = 0, frac_den = 1;
	int digits = 0;
	int64_t factor = bare_factor;

	while (isspace((unsigned char)*p))
		p++;
	for (; isdigit((unsigned char)*p); p++, digits++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return false;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		for (p++; isdigit((unsigned char)*p); p++, digits++) {
			/* digits past the 18th cannot matter at microsecond/byte precision */
			if (frac_den < UINT64_C(1000000000000000000)) {
				frac_num = frac_num * 10 + (uint64_t)(*p - '0');
				frac_den *= 10;
			}
		}
	}
	if (digits == 0)
		return false;

	while (isspace((unsigned char)*p))
		p++;
	size_t unit_len = 0;
	while (p[unit_len] && !isspace((unsigned char)p[unit_len]))
		unit_len++;
	if (unit_len > 0) {
		const struct unit_word *u;
		for (u = units; u->name; u++)
			if (strlen(u->name) == unit_len && strncasecmp(u->name, p, unit_len) == 0)
				break;
		if (!u->name)
			return false;
		factor = u->factor;
	}
	for (p += unit_len; isspace((unsigned char)*p); p++)
		;
	if (*p)
		return false;

	if (whole > (uint64_t)(INT64_MAX / factor) - 1)
		return false;
	/* round half up by hand: llround would pull in libm for one call */
	*out = (int64_t)whole * factor +
	       (int64_t)((double)frac_num / (double)frac_den * (double)factor + 0.5);
	return true;
}

bool cfg_parse_duration(const char *text, int64_t *usec)
{
	return text && parse_scaled(text, duration_units, USEC_PER_SEC, usec);
}

bool cfg_parse_size(const char *text, int64_t *bytes)
{
	return text && parse_scaled(text, size_units, 1, bytes);
}

bool parse_int(const char *text, int64_t *out, char *why, size_t whylen)
{
	const char *p = text;
	char *end;
	long long v;

	while (isspace((unsigned char)*p))
		p++;
	if (!isdigit((unsigned char)*p) && !((*p == '-' || *p == '+') && isdigit((unsigned char)p[1])))
		goto bad;
	errno = 0;
	v = strtoll(p, &end, 10);
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		goto bad;
	if (errno == ERANGE || v < INT_MIN || v > INT_MAX) {
		snprintf(why, whylen, "integer \"%s\" is out of range", text);
		return false;
	}
	*out = v;
	return true;
bad:
	snprintf(why, whylen, "invalid integer \"%s\"", text);
	return false;
}

static bool parse_octal(const char *text, int64_t *out, char *why, size_t whylen)
{
	const char *p = text;
	int64_t v = 0;
	int digits = 0;

	while (isspace((unsigned char)*p))
		p++;
	for (; *p >= '0' && *p <= '7' && v <= 07777; p++, digits++)
		v = v * 8 + (*p - '0');
	while (isspace((unsigned char)*p))
		p++;
	if (digits == 0 || *p) {
		snprintf(why, whylen, "invalid file mode \"%s\" (use an octal number such as 0770)", text);
		return false;
	}
	*out = v;
	return true;
}

static const char *unit_word_list(const struct unit_word *units, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (const struct unit_word *u = units; u->name && used < len; u++) {
		const char *sep = u == units ? "" : u[1].name ? ", " : " or ";
		used += (size_t)snprintf(buf + used, len - used, "%s%s", sep, u->name);
	}
	return buf;
}

/* text -> param_value for row p; on failure a reason in why */
static bool param_parse(const struct param *p, const char *text, struct param_value *v,
			char *why, size_t whylen)
{
	const struct word *w;
	char units[64];

	v->num = 0;
	v->str = NULL;
	switch (p->type) {
	case PT_INT:
		return parse_int(text, &v->num, why, whylen);
	case PT_OCTAL:
		return parse_octal(text, &v->num, why, whylen);
	case PT_BOOL: {
		char word[16];
		snprintf(word, sizeof(word), "%s", text);
		w = strlen(text) < sizeof(word) ? word_by_name(bool_words, trim(word)) : NULL;
		if (!w) {
			snprintf(why, whylen, "invalid boolean \"%s\" (use on/off, yes/no, true/false or 1/0)", text);
			return false;
		}
		v->num = w->value;
		return true;
	}
	case PT_ENUM:
	case PT_KEYWORD:
		w = word_by_name(p->words, text);
		if (!w) {
			explain_words(p->words, text, why, whylen);
			return false;
		}
		v->num = w->value;
		v->str = w->name; /* the canonical spelling, for PT_KEYWORD */
		return true;
	case PT_DURATION: {
		int64_t bare = p->unit == UNIT_MILLISECONDS ? USEC_PER_MSEC : USEC_PER_SEC;
		if (parse_scaled(text, duration_units, bare, &v->num))
			return true;
		snprintf(why, whylen, "invalid duration \"%s\" (use a number of %s, or a number with %s)", text,
			 bare == USEC_PER_SEC ? "seconds" : "milliseconds",
			 unit_word_list(duration_units, units, sizeof(units)));
		return false;
	}
	case PT_SIZE:
		if (parse_scaled(text, size_units, 1, &v->num))
			return true;
		snprintf(why, whylen, "invalid size \"%s\" (use a number of bytes, or a number with %s)", text,
			 unit_word_list(size_units + 1, units, sizeof(units)));
		return false;
	case PT_STRING:
		v->str = text;
		return true;
	}
	snprintf(why, whylen, "internal error: unknown parameter type");
	return false;
}

/* ------------------------------------------------------------------------
 * Moving values in and out of struct cfg by the table's offsets
 * ------------------------------------------------------------------------ */

static void *field_of(const struct cfg *c, const struct param *p)
{
	return (char *)c + p->offset;
}

static struct param_value param_read(const struct cfg *c, const struct param *p)
{
	struct param_value v = { 0, NULL };
	void *f = field_of(c, p);

	switch (p->type) {
	case PT_INT:
	case PT_ENUM:
	case PT_OCTAL:
		v.num = *(int *)f;
		if (p->type == PT_ENUM)
			v.str = word_by_value(p->words, (int)v.num);
		break;
	case PT_BOOL:
		v.num = *(bool *)f;
		break;
	case PT_DURATION:
	case PT_SIZE:
		v.num = *(int64_t *)f;
		break;
	case PT_STRING:
	case PT_KEYWORD:
		v.str = *(char **)f ? *(char **)f : "";
		break;
	}
	return v;
}

static bool param_store(struct cfg *c, const struct param *p, const struct param_value *v)
{
	void *f = field_of(c, p);

	switch (p->type) {
	case PT_INT:
	case PT_ENUM:
	case PT_OCTAL:
		*(int *)f = (int)v->num;
		return true;
	case PT_BOOL:
		*(bool *)f = v->num != 0;
		return true;
	case PT_DURATION:
	case PT_SIZE:
		*(int64_t *)f = v->num;
		return true;
	case PT_STRING:
	case PT_KEYWORD: {
		char *copy = strdup(v->str);
		if (!copy)
			return false;
		free(*(char **)f);
		*(char **)f = copy;
		return true;
	}
	}
	return false;
}

/* parse, check and store one value; c is untouched on failure */
bool param_assign(struct cfg *c, const struct param *p, const char *text, char *why, size_t whylen)
{
	struct param_value v;

	if (!param_parse(p, text, &v, why, whylen))
		return false;
	if (p->check && !p->check(&v, why, whylen))
		return false;
	if (!param_store(c, p, &v)) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	return true;
}

/* usec as plain seconds (or milliseconds), the way SHOW CONFIG prints time */
static void format_duration(int64_t usec, int64_t per_unit, char *buf, size_t len)
{
	int64_t whole = usec / per_unit, frac = usec % per_unit;
	int width = per_unit == USEC_PER_SEC ? 6 : 3;

	if (frac == 0) {
		snprintf(buf, len, "%" PRId64, whole);
		return;
	}
	snprintf(buf, len, "%" PRId64 ".%0*" PRId64, whole, width, frac);
	char *end = buf + strlen(buf);
	while (end[-1] == '0')
		*--end = '\0';
}

static const char *param_format(const struct param *p, const struct param_value *v, char *buf, size_t len)
{
	switch (p->type) {
	case PT_INT:
	case PT_SIZE:
	case PT_BOOL: /* 0/1 like PgBouncer, so exporters reading SHOW CONFIG still parse it */
		snprintf(buf, len, "%" PRId64, v->num);
		return buf;
	case PT_OCTAL:
		snprintf(buf, len, "0%03" PRIo64, (uint64_t)v->num);
		return buf;
	case PT_DURATION:
		format_duration(v->num, p->unit == UNIT_MILLISECONDS ? USEC_PER_MSEC : USEC_PER_SEC, buf, len);
		return buf;
	case PT_ENUM:
		return v->str ? v->str : "unknown";
	case PT_STRING:
	case PT_KEYWORD:
		return v->str ? v->str : "";
	}
	return "";
}

static const char *param_format_current(const struct cfg *c, const struct param *p, char *buf, size_t len)
{
	struct param_value v = param_read(c, p);
	return param_format(p, &v, buf, len);
}

static const char *param_format_default(const struct param *p, char *buf, size_t len)
{
	struct param_value v;
	char why[8];

	if (!param_parse(p, p->default_text, &v, why, sizeof(why)))
		return p->default_text;
	return param_format(p, &v, buf, len);
}

const struct param *param_find(const char *name)
{
	for (int i = 0; i < N_PARAMS; i++)
		if (strcasecmp(params[i].name, name) == 0)
			return &params[i];
	return NULL;
}

const char *param_name(const struct param *p)
{
	return p->name;
}

int param_index(const struct param *p)
{
	return (int)(p - params);
}

void param_free_strings(struct cfg *c)
{
	for (int i = 0; i < N_PARAMS; i++)
		if (params[i].type == PT_STRING || params[i].type == PT_KEYWORD)
			free(*(char **)field_of(c, &params[i]));
}

/* ------------------------------------------------------------------------
 * Public face
 * ------------------------------------------------------------------------ */

struct cfg *cfg_new_default(void)
{
	struct cfg *c = calloc(1, sizeof(*c));
	char why[256];

	if (!c)
		return NULL;
	if (!(c->origins = calloc(N_PARAMS, sizeof(*c->origins)))) {
		free(c);
		return NULL;
	}
	for (int i = 0; i < N_PARAMS; i++) {
		if (!param_assign(c, &params[i], params[i].default_text, why, sizeof(why))) {
			/* only a broken table row or no memory gets here */
			log_error("config: default of %s: %s", params[i].name, why);
			cfg_free(c);
			return NULL;
		}
	}
	return c;
}

/*
 * No silent skip: each parameter the file sets (to any value, the default
 * included) that pgpulse accepts without acting on it is named, once, at
 * the line that set it last. cfg_load runs at startup and at every RELOAD.
 */
void warn_not_in_effect(const struct cfg *c)
{
	for (int i = 0; i < N_PARAMS; i++) {
		const struct cfg_origin *o = &c->origins[i];
		if (!params[i].in_effect && o->file)
			log_warning("%s:%d: %s is accepted but not in effect in this release: pgpulse ignores it",
				    o->file, o->line, params[i].name);
	}
}

static bool set_failed(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool set_failed(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return false;
}

bool cfg_set(struct cfg *c, const char *name, const char *value, char *err, size_t errlen)
{
	const struct param *p = name ? param_find(name) : NULL;
	char why[512];

	if (!p)
		return set_failed(err, errlen, "unknown parameter \"%s\"", name ? name : "");
	if (!p->reloadable)
		return set_failed(err, errlen, "%s: cannot be changed while running; it needs a restart", p->name);
	if (!c || !value)
		return set_failed(err, errlen, "%s: no value given", p->name);
	if (!param_assign(c, p, value, why, sizeof(why)))
		return set_failed(err, errlen, "%s: %s", p->name, why);
	c->origins[p - params] = (struct cfg_origin){ NULL, 0 };
	return true;
}

bool cfg_param_origin(const struct cfg *c, const char *name, const char **file, int *line)
{
	const struct param *p = name ? param_find(name) : NULL;

	if (!c || !p || !c->origins[p - params].file)
		return false;
	*file = c->origins[p - params].file;
	*line = c->origins[p - params].line;
	return true;
}

int cfg_param_count(void)
{
	return N_PARAMS;
}

bool cfg_param_get(const struct cfg *c, int i, struct cfg_param_info *out)
{
	/* per thread, so each worker's SHOW CONFIG keeps its own values */
	static _Thread_local char value_buf[64], default_buf[64];
	const struct param *p;

	if (i < 0 || i >= N_PARAMS || !out)
		return false;
	p = &params[i];
	out->name = p->name;
	out->default_value = param_format_default(p, default_buf, sizeof(default_buf));
	out->value = c ? param_format_current(c, p, value_buf, sizeof(value_buf)) : out->default_value;
	out->reloadable = p->reloadable;
	out->in_effect = p->in_effect;
	return true;
}

int cfg_diff(const struct cfg *old, const struct cfg *next,
	     void (*changed)(const char *name, const char *old_value, const char *new_value,
			     bool reloadable, void *arg),
	     void *arg)
{
	char old_buf[64], new_buf[64];
	int n = 0;

	if (!old || !next)
		return 0;
	for (int i = 0; i < N_PARAMS; i++) {
		const char *a = param_format_current(old, &params[i], old_buf, sizeof(old_buf));
		const char *b = param_format_current(next, &params[i], new_buf, sizeof(new_buf));
		if (strcmp(a, b) == 0)
			continue;
		n++;
		if (changed)
			changed(params[i].name, a, b, params[i].reloadable, arg);
	}
	return n;
}

const char *cfg_pool_mode_name(int mode)
{
	const char *name = word_by_value(pool_mode_words, mode);
	return name ? name : "unknown";
}

const char *cfg_auth_type_name(int type)
{
	const char *name = word_by_value(auth_type_words, type);
	return name ? name : "unknown";
}
