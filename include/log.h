/*
 * log: leveled log lines to stderr, a file, or syslog.
 *
 * Lines have PgBouncer's shape, so one parser reads both logs:
 *
 *   2026-12-07 12:23:46.605 UTC [5808] LOG C-12: appdb/app@127.0.0.1:54582 login attempt: ...
 *
 * a timestamp with milliseconds and the time zone, the pid in brackets, the
 * level, then the message. A line about one connection comes from
 * log_conn(), which names it the way PgBouncer does, so one grep follows a
 * client through the log (doc/operations.md, "Log lines").
 */
#ifndef PGPULSE_LOG_H
#define PGPULSE_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARNING, LOG_LVL_INFO, LOG_LVL_DEBUG, LOG_LVL_NOISE };

/* verbosity: 0 = info and above, 1 = debug, 2 = noise; quiet: only errors to stderr */
void log_setup(int verbose, bool quiet);
/* change the verbosity alone (RELOAD, SET verbose): -q stays as given */
void log_set_verbose(int verbose);

/*
 * (Re)open the log file, set syslog use; stderr stays on unless quiet or
 * daemon. False (the reason logged) when logfile cannot be opened: the file
 * in use before, if any, stays in use.
 */
bool log_open(const char *logfile, bool use_syslog, const char *ident, const char *facility);
/* the path being written to, "" when none */
const char *log_file_in_use(void);
void log_close(void);

/* after daemonizing: stop writing to stderr */
void log_detach_stderr(void);

bool log_enabled(enum log_level lvl);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A line about one connection: "<kind>-<id>: <db>/<user>@<addr> <message>",
 * kind 'C' (client) or 'S' (server), addr "host:port" as the caller keeps
 * it. A database or user not known yet reads "(nodb)" / "(nouser)", as in
 * PgBouncer. Does nothing when lvl is not logged.
 */
void log_conn(enum log_level lvl, char kind, uint64_t id, const char *db, const char *user, const char *addr,
	      const char *fmt, ...) __attribute__((format(printf, 7, 8)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_noise(...) do { if (log_enabled(LOG_LVL_NOISE)) log_msg(LOG_LVL_NOISE, __VA_ARGS__); } while (0)

#endif
