/*
 * admin/console: the admin console's front door — a query from psql
 * connected to the pseudo database "pgpulse" (or "pgbouncer") becomes one
 * command (admin_parse), and one table says, per command, which function
 * answers it and whether a stats_users member may run it.
 *
 * The answer to a query (rows, CommandComplete or ErrorResponse, then
 * ReadyForQuery) is appended to the client's output buffer; the caller
 * sends it.
 */
#include "admin.h"
#include "admin_internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "log.h"

bool admin_is_admin_db(const char *dbname)
{
	return dbname && (strcmp(dbname, "pgpulse") == 0 || strcmp(dbname, "pgbouncer") == 0);
}

/* ------------------------------------------------------------------------
 * Dispatch
 */

struct show_entry {
	const char *subject;
	admin_fn fn;
	bool takes_arg; /* a third word: SHOW LATENCY 5m */
};

static const struct show_entry show_table[] = {
	{ "latency", admin_show_latency, true },
	{ "efficiency", admin_show_efficiency, true },
	{ "health", admin_show_health, false },
	{ "failures", admin_show_failures, false },
	{ "logins", admin_show_logins, false },
	{ "hosts", admin_show_hosts, false },
	{ "queries", admin_show_queries, true },
	{ "repeats", admin_show_repeats, true },
	{ "slow", admin_show_slow, false },
	{ "help", admin_show_help, false },
	{ "version", admin_show_version, false },
	{ "config", admin_show_config, false },
	{ "databases", admin_show_databases, false },
	{ "pools", admin_show_pools, false },
	{ "clients", admin_show_clients, false },
	{ "servers", admin_show_servers, false },
	{ "users", admin_show_users, false },
	{ "stats", admin_show_stats, false },
	{ "stats_totals", admin_show_stats_totals, false },
	{ "stats_averages", admin_show_stats_averages, false },
	{ "totals", admin_show_totals, false },
	{ "lists", admin_show_lists, false },
	{ "mem", admin_show_mem, false },
	{ "state", admin_show_state, false },
	{ "peers", admin_show_peers, false },
	{ "peer_pools", admin_show_peer_pools, false },
	{ "dns_hosts", admin_show_dns_hosts, false },
	{ "dns_zones", admin_show_dns_zones, false },
	{ "prepared_statements", admin_show_prepared_statements, false },
	{ "fds", admin_show_fds, false },
	{ "sockets", admin_show_sockets, false },
	{ "active_sockets", admin_show_active_sockets, false },
};

enum arg_rule { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED };

struct command_entry {
	const char *verb;
	admin_fn fn;
	enum arg_rule arg;
};

/* everything but SHOW and SET; all need admin_users */
static const struct command_entry command_table[] = {
	{ "reload", admin_cmd_reload, ARG_NONE },
	{ "shutdown", admin_cmd_shutdown, ARG_OPTIONAL },
	{ "pause", admin_cmd_pause, ARG_OPTIONAL },
	{ "resume", admin_cmd_resume, ARG_OPTIONAL },
	{ "suspend", admin_cmd_suspend, ARG_NONE },
	{ "disable", admin_cmd_disable, ARG_REQUIRED },
	{ "enable", admin_cmd_enable, ARG_REQUIRED },
	{ "reconnect", admin_cmd_reconnect, ARG_OPTIONAL },
	{ "kill", admin_cmd_kill, ARG_OPTIONAL },
	{ "kill_client", admin_cmd_kill_client, ARG_REQUIRED },
	{ "wait_close", admin_cmd_wait_close, ARG_OPTIONAL },
};

static void upper_copy(char *dst, size_t size, const char *src)
{
	size_t k;
	for (k = 0; src[k] && k + 1 < size; k++)
		dst[k] = (char)toupper((unsigned char)src[k]);
	dst[k] = '\0';
}

static void syntax_error(struct client *c, const char *sql)
{
	/* PgBouncer's wording, so that people's searches find the answer */
	admin_error(c, SQLSTATE_SYNTAX, "invalid command '%.200s', use SHOW HELP;", sql);
}

static void run_show(struct client *c, const struct admin_cmd *cmd, const char *sql)
{
	if (!cmd->has_arg) {
		syntax_error(c, sql);
		return;
	}
	for (size_t i = 0; i < sizeof(show_table) / sizeof(show_table[0]); i++) {
		if (strcasecmp(cmd->arg, show_table[i].subject) == 0) {
			if (show_table[i].fn == admin_cmd_not_yet) {
				char name[64];
				upper_copy(name, sizeof(name), show_table[i].subject);
				admin_error(c, SQLSTATE_NOT_YET, "SHOW %s is not supported yet",
					    name);
				return;
			}
			if (cmd->has_arg2 && !show_table[i].takes_arg) {
				syntax_error(c, sql);
				return;
			}
			show_table[i].fn(c, cmd->has_arg2 ? cmd->arg2 : "");
			return;
		}
	}
	int fake = admin_fake_param_index(cmd->arg);
	if (fake >= 0) {
		admin_show_fake_param(c, fake);
		return;
	}
	syntax_error(c, sql);
}

static void run_command(struct client *c, const struct admin_cmd *cmd, const char *sql)
{
	if (cmd->has_arg2) {
		syntax_error(c, sql);
		return;
	}
	for (size_t i = 0; i < sizeof(command_table) / sizeof(command_table[0]); i++) {
		const struct command_entry *e = &command_table[i];
		if (strcasecmp(cmd->verb, e->verb) != 0)
			continue;
		if ((e->arg == ARG_NONE && cmd->has_arg) ||
		    (e->arg == ARG_REQUIRED && !cmd->has_arg)) {
			syntax_error(c, sql);
			return;
		}
		char name[64];
		upper_copy(name, sizeof(name), e->verb);
		if (!c->admin_may_change) {
			client_log(c, LOG_LVL_WARNING, "admin: %s refused: not in admin_users", name);
			admin_error(c, SQLSTATE_PRIVILEGE,
				    "admin access needed: %s is for admin_users", name);
			return;
		}
		if (e->fn == admin_cmd_not_yet) {
			admin_error(c, SQLSTATE_NOT_YET, "%s is not supported yet", name);
			return;
		}
		e->fn(c, cmd->has_arg ? cmd->arg : "");
		return;
	}
	syntax_error(c, sql);
}

void admin_handle_query(struct client *c, const char *sql)
{
	struct admin_cmd cmd;

	admin_parse(sql, &cmd);
	switch (cmd.kind) {
	case CMD_EMPTY: {
		struct pktbuf *out = stream_out(&c->st);
		proto_put_empty_query(out);
		proto_put_ready(out, 'I');
		return;
	}
	case CMD_BAD:
		syntax_error(c, sql);
		return;
	case CMD_SET:
		admin_cmd_set(c, &cmd);
		return;
	case CMD_WORDS:
		if (strcasecmp(cmd.verb, "show") == 0)
			run_show(c, &cmd, sql);
		else
			run_command(c, &cmd, sql);
		return;
	}
}
