/*
 * failures: what went wrong, counted where it happened (doc/telemetry.md
 * "Failures"). Errors are counted by SQLSTATE class, a fixed set of
 * PostgreSQL's classes plus "other", so that no client or server can grow
 * the label set of /metrics; login failures by a small fixed set of reasons.
 */
#ifndef PGPULSE_FAILURES_H
#define PGPULSE_FAILURES_H

#include <stdint.h>

/* PostgreSQL's SQLSTATE classes (its errcodes appendix), and the rest */
#define ERR_CLASS_COUNT 44
#define ERR_CLASS_OTHER (ERR_CLASS_COUNT - 1)

/* why a client's login failed, from the SQLSTATE it was sent */
enum login_failure {
	LF_PASSWORD,     /* 28P01 */
	LF_REJECTED,     /* 28000: no hba entry, hba reject, unknown role, certificate, ... */
	LF_NO_DATABASE,  /* 3D000 */
	LF_TOO_MANY,     /* 53300: max_client_conn, max_db/max_user_client_connections */
	LF_TIMEOUT,      /* client_login_timeout */
	LF_SERVER,       /* authenticated, but no server could be had for its first request (the caller knows) */
	LF_OTHER,
	LF_COUNT
};

/* a pool's failures (kept in struct pool_stats), or those of clients that had no pool yet */
struct failure_counts {
	uint64_t wait_timeouts;             /* clients failed by query_wait_timeout */
	uint64_t query_timeouts;            /* cancels sent for query_timeout */
	uint64_t client_idle_timeouts;      /* clients closed by client_idle_timeout */
	uint64_t idle_transaction_timeouts; /* ... by idle_transaction_timeout */
	uint64_t transaction_timeouts;      /* ... by transaction_timeout */
	uint64_t server_connect_failures;   /* connect attempts that failed before login began */
	uint64_t server_login_failures;     /* logins PostgreSQL refused */
	uint64_t server_errors[ERR_CLASS_COUNT]; /* ErrorResponse forwarded from PostgreSQL */
	uint64_t pooler_errors[ERR_CLASS_COUNT]; /* ERROR/FATAL pgpulse itself sent */
};

/* the class index of a SQLSTATE (its first two characters); ERR_CLASS_OTHER when unknown */
int failure_error_class(const char *sqlstate);
/* "22", ..., "other" */
const char *failure_error_class_name(int cls);

/* the reason for a login failure sent with this SQLSTATE, before the client entered a pool */
enum login_failure failure_login_reason(const char *sqlstate);
/* "wrong_password", ... */
const char *failure_login_reason_name(enum login_failure r);

#endif
