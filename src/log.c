/*
 * log: leveled log lines to stderr, a file, or syslog.
 *
 * Lines are formatted once into a stack buffer and written with one write()
 * per destination, so concurrent writers never interleave inside a line.
 *
 * The config names the logfile, so what is logged while it is read (its
 * warnings) comes before there is a file to write to. Those early lines are
 * kept and written to the logfile and syslog when they are first opened: with
 * -q, stderr shows no warning, and the file must not lose it either.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int g_verbose;
static bool g_quiet;
static bool g_stderr = true;
static int g_file_fd = -1;
static char g_file_path[4096]; /* the file g_file_fd writes to */
static bool g_syslog;

/* early lines: [level byte][line, newline included]..., until the first log_open */
static char g_early[8192];
static size_t g_early_len;
static bool g_early_dropped;
static bool g_opened;

static const char *const level_names[] = { "ERROR", "WARNING", "LOG", "DEBUG", "NOISE" };
static const int level_syslog[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_DEBUG };

void log_setup(int verbose, bool quiet)
{
	g_verbose = verbose;
	g_quiet = quiet;
}

void log_set_verbose(int verbose)
{
	g_verbose = verbose;
}

static int facility_by_name(const char *name)
{
	static const struct { const char *name; int value; } facilities[] = {
		{ "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV }, { "daemon", LOG_DAEMON },
		{ "user", LOG_USER }, { "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
		{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },
		{ "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};
	for (size_t i = 0; name && i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcmp(facilities[i].name, name) == 0)
			return facilities[i].value;
	return LOG_DAEMON;
}

static void keep_early_line(enum log_level lvl, const char *line, size_t len)
{
	if (g_early_len + 1 + len > sizeof(g_early)) {
		g_early_dropped = true;
		return;
	}
	g_early[g_early_len++] = (char)lvl;
	memcpy(g_early + g_early_len, line, len);
	g_early_len += len;
}

static void write_all(int fd, const char *buf, size_t len);

static void replay_early_lines(void)
{
	size_t pos = 0;
	while (pos < g_early_len) {
		enum log_level lvl = (enum log_level)g_early[pos++];
		const char *line = g_early + pos;
		const char *nl = memchr(line, '\n', g_early_len - pos);
		size_t len = nl ? (size_t)(nl - line) + 1 : g_early_len - pos;
		if (g_file_fd >= 0)
			write_all(g_file_fd, line, len);
		if (g_syslog)
			syslog(level_syslog[lvl], "%.*s", (int)(len - 1), line);
		pos += len;
	}
	if (g_early_dropped)
		log_warning("more lines were logged before the logfile was opened than were kept");
	g_early_len = 0;
}

/*
 * The new file is opened before the old one is closed: a RELOAD that names a
 * file pgpulse cannot open keeps logging to the file it has (a running service
 * does not go blind on reload), and reopening the same path after logrotate
 * moved it never leaves a gap.
 */
bool log_open(const char *logfile, bool use_syslog, const char *ident, const char *facility)
{
	bool ok = true;
	if (logfile && *logfile) {
		int fd = open(logfile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0) {
			int e = errno;
			if (g_file_fd >= 0)
				log_error("cannot open logfile \"%s\": %s; still logging to \"%s\"", logfile,
					  strerror(e), g_file_path);
			else
				log_error("cannot open logfile \"%s\": %s", logfile, strerror(e));
			ok = false;
		} else {
			if (g_file_fd >= 0)
				close(g_file_fd);
			g_file_fd = fd;
			snprintf(g_file_path, sizeof(g_file_path), "%s", logfile);
		}
	} else if (g_file_fd >= 0) {
		close(g_file_fd);
		g_file_fd = -1;
		g_file_path[0] = '\0';
	}
	if (g_syslog)
		closelog();
	g_syslog = use_syslog;
	if (g_syslog)
		openlog(ident && *ident ? ident : "pgpulse", LOG_PID, facility_by_name(facility));
	if (!g_opened) {
		g_opened = true;
		replay_early_lines();
	}
	return ok;
}

const char *log_file_in_use(void)
{
	return g_file_fd >= 0 ? g_file_path : "";
}

void log_close(void)
{
	if (g_file_fd >= 0)
		close(g_file_fd);
	g_file_fd = -1;
	g_file_path[0] = '\0';
	if (g_syslog)
		closelog();
	g_syslog = false;
}

void log_detach_stderr(void)
{
	g_stderr = false;
}

bool log_enabled(enum log_level lvl)
{
	if (lvl <= LOG_LVL_INFO)
		return true;
	return (int)lvl - (int)LOG_LVL_INFO <= g_verbose;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

/*
 * A message carries names a stranger chose (a user, a database, an
 * application_name): a newline in one would start a line of its own that a
 * log reader takes for pgpulse's. Control characters are written escaped
 * (\n, \r, \xNN), so one message is always exactly one line.
 */
static void escape_controls(const char *msg, char *out, size_t size)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)msg; *p && o + 5 < size; p++) {
		if (*p >= 0x20 && *p != 0x7f) {
			out[o++] = (char)*p;
		} else if (*p == '\t') {
			out[o++] = ' ';
		} else if (*p == '\n' || *p == '\r') {
			out[o++] = '\\';
			out[o++] = *p == '\n' ? 'n' : 'r';
		} else {
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", *p);
		}
	}
	out[o] = '\0';
}

/* one formatted message to every destination, behind PgBouncer's prefix */
static void log_write(enum log_level lvl, const char *raw)
{
	char line[2200];
	char msg[2100];
	escape_controls(raw, msg, sizeof(msg));
	struct timeval tv;
	struct tm tm;
	char ts[64], zone[16];
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%Z", &tm);
	int n = snprintf(line, sizeof(line), "%s.%03d %s [%d] %s %s\n", ts, (int)(tv.tv_usec / 1000), zone,
			 (int)getpid(), level_names[lvl], msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) { /* cut, but still one line */
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}

	if (g_stderr && (!g_quiet || lvl == LOG_LVL_ERROR))
		write_all(STDERR_FILENO, line, (size_t)n);
	if (g_file_fd >= 0)
		write_all(g_file_fd, line, (size_t)n);
	if (g_syslog)
		syslog(level_syslog[lvl], "%s %s", level_names[lvl], msg);
	if (!g_opened)
		keep_early_line(lvl, line, (size_t)n);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	int saved_errno = errno;

	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_write(lvl, msg);
	errno = saved_errno;
}

void log_conn(enum log_level lvl, char kind, uint64_t id, const char *db, const char *user, const char *addr,
	      const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	int saved_errno = errno;

	if (!log_enabled(lvl))
		return;
	int n = snprintf(msg, sizeof(msg), "%c-%llu: %s/%s@%s ", kind, (unsigned long long)id,
			 db && *db ? db : "(nodb)", user && *user ? user : "(nouser)", addr);
	if (n < 0)
		n = 0;
	if ((size_t)n < sizeof(msg)) {
		va_start(ap, fmt);
		vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	log_write(lvl, msg);
	errno = saved_errno;
}
