/*
 * admin/result: how the console writes an answer — a header of columns,
 * rows of text values, a command tag — and how it refuses a command.
 *
 * A row is built value by value into the result's own space (no allocation)
 * and sent as one DataRow by row_end, which also checks that the row has as
 * many values as the header has columns: a view that forgets a value sends
 * NULL there rather than shifting every later column.
 */
#include "admin_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "log.h"

void result_begin(struct result *r, struct pktbuf *out, const struct column *cols, int ncols)
{
	const char *names[MAX_COLUMNS];
	uint32_t types[MAX_COLUMNS];

	memset(r, 0, sizeof(*r));
	r->out = out;
	r->cols = cols;
	r->ncols = ncols < MAX_COLUMNS ? ncols : MAX_COLUMNS;
	for (int i = 0; i < r->ncols; i++) {
		names[i] = cols[i].name;
		types[i] = cols[i].type;
	}
	proto_put_row_description(out, r->ncols, names, types);
}

static void row_value(struct result *r, const char *v)
{
	if (r->nvals < r->ncols)
		r->vals[r->nvals] = v;
	r->nvals++;
}

/* a value formatted into the row's own space (valid until row_end) */
void row_printf(struct result *r, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(r->space) - r->used;
	char *dst = r->space + r->used;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(dst, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room) {
		/* cannot happen with the short values we format; say so rather than truncate */
		row_value(r, "?");
		return;
	}
	r->used += (size_t)n + 1;
	row_value(r, dst);
}

void row_text(struct result *r, const char *v)
{
	row_value(r, v ? v : "");
}

/* SQL NULL when v is NULL */
void row_text_or_null(struct result *r, const char *v)
{
	row_value(r, v);
}

void row_int(struct result *r, long long v)
{
	row_printf(r, "%lld", v);
}

void row_uint(struct result *r, unsigned long long v)
{
	row_printf(r, "%llu", v);
}

/* a wall-clock time in usec, the way PgBouncer prints it: "2024-07-03 12:00:00 UTC" */
void row_time(struct result *r, int64_t wall)
{
	char buf[64];
	time_t t = (time_t)(wall / 1000000);
	struct tm tm;

	if (wall <= 0 || !localtime_r(&t, &tm) ||
	    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %Z", &tm) == 0) {
		row_value(r, NULL);
		return;
	}
	row_printf(r, "%s", buf);
}

void row_ptr(struct result *r, const void *p)
{
	if (p)
		row_printf(r, "%p", p);
	else
		row_text(r, "");
}

void row_end(struct result *r)
{
	if (r->nvals != r->ncols) {
		/* a programming error in this file: keep the protocol valid, and say where */
		log_error("admin: a row of %d values for %d columns (first column \"%s\")",
			  r->nvals, r->ncols, r->ncols ? r->cols[0].name : "");
		for (int i = r->nvals; i < r->ncols; i++)
			r->vals[i] = NULL;
	}
	proto_put_data_row(r->out, r->ncols, r->vals);
	r->nvals = 0;
	r->used = 0;
	r->rows++;
}

void command_done(struct pktbuf *out, const char *tag)
{
	proto_put_command_complete(out, tag);
	proto_put_ready(out, 'I');
}

void result_end(struct result *r)
{
	command_done(r->out, "SHOW");
}

/* ------------------------------------------------------------------------
 * Errors: the one way the console answers a command with an ERROR.
 */

void admin_error(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	struct pktbuf *out = stream_out(&c->st);

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	client_log(c, LOG_LVL_DEBUG, "admin: %s", msg);
	proto_put_error(out, "ERROR", sqlstate, msg);
	proto_put_ready(out, 'I');
}
