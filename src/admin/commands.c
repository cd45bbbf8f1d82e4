/*
 * admin/commands: the console's control verbs — RELOAD, SHUTDOWN, PAUSE,
 * RESUME, SUSPEND, DISABLE, ENABLE, RECONNECT, KILL, KILL_CLIENT,
 * WAIT_CLOSE — and SET of a setting.
 *
 * A verb logs who asked for it, then hands the work to the module that owns
 * it (control, worker); a verb that must wait (PAUSE, WAIT_CLOSE) writes no
 * answer now: control answers the console client when the wait ends.
 */
#include "admin_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "control.h"
#include "hba.h"
#include "log.h"
#include "pool.h"
#include "tls.h"
#include "worker.h"

/* ------------------------------------------------------------------------
 * Control commands
 */

static void log_admin_action(const struct client *c, const char *what)
{
	client_log(c, LOG_LVL_INFO, "admin: %s", what);
}

void admin_cmd_reload(struct client *c, const char *arg)
{
	char err[512] = "";

	(void)arg;
	log_admin_action(c, "RELOAD");
	if (!worker_reload(err, sizeof(err))) {
		admin_error(c, "F0000", "RELOAD failed: %s", err[0] ? err : "see the log");
		return;
	}
	command_done(stream_out(&c->st), "RELOAD");
}

void admin_cmd_shutdown(struct client *c, const char *arg)
{
	enum shutdown_mode mode = SHUTDOWN_NOW;

	if (arg[0] && strcasecmp(arg, "wait_for_servers") == 0) {
		mode = SHUTDOWN_WAIT_SERVERS;
	} else if (arg[0] && strcasecmp(arg, "wait_for_clients") == 0) {
		mode = SHUTDOWN_WAIT_CLIENTS;
	} else if (arg[0]) {
		admin_error(c, SQLSTATE_SYNTAX,
			    "invalid SHUTDOWN mode '%s': use WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS",
			    arg);
		return;
	}
	log_admin_action(c, arg[0] ? "SHUTDOWN (waiting)" : "SHUTDOWN");
	/* the answer is queued first: the caller sends it before the loop can stop */
	command_done(stream_out(&c->st), "SHUTDOWN");
	worker_request_shutdown(mode);
}

/* the database a control command names; NULL with no argument (every database) */
static bool control_target(struct client *c, const char *arg, struct pool_db **db)
{
	*db = NULL;
	if (!arg[0])
		return true;
	*db = pool_lookup_db(arg);
	if (!*db) {
		admin_error(c, "3D000", "database \"%s\" does not exist", arg);
		return false;
	}
	return true;
}

static void log_control(struct client *c, const char *verb, const char *arg)
{
	char what[320];
	snprintf(what, sizeof(what), "%s%s%s", verb, arg[0] ? " " : "", arg);
	log_admin_action(c, what);
}

void admin_cmd_pause(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "PAUSE", arg);
	/* answered now, or by control_poll once no server serves a client */
	if (control_pause(c, db))
		command_done(stream_out(&c->st), "PAUSE");
}

void admin_cmd_resume(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "RESUME", arg);
	control_resume(db);
	command_done(stream_out(&c->st), "RESUME");
}

void admin_cmd_suspend(struct client *c, const char *arg)
{
	log_control(c, "SUSPEND", arg);
	if (control_suspend(c))
		command_done(stream_out(&c->st), "SUSPEND");
}

void admin_cmd_disable(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "DISABLE", arg);
	control_set_disabled(db, true);
	command_done(stream_out(&c->st), "DISABLE");
}

void admin_cmd_enable(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "ENABLE", arg);
	control_set_disabled(db, false);
	command_done(stream_out(&c->st), "ENABLE");
}

void admin_cmd_reconnect(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "RECONNECT", arg);
	control_reconnect(db);
	command_done(stream_out(&c->st), "RECONNECT");
}

void admin_cmd_kill(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "KILL", arg);
	control_kill(db);
	command_done(stream_out(&c->st), "KILL");
}

void admin_cmd_kill_client(struct client *c, const char *arg)
{
	char *end = NULL;
	unsigned long long id = strtoull(arg, &end, 10);
	if (!end || *end || end == arg) {
		admin_error(c, SQLSTATE_SYNTAX, "KILL_CLIENT takes a client id (the id column of SHOW CLIENTS)");
		return;
	}
	if (id == c->id) {
		admin_error(c, "22023", "KILL_CLIENT: that is this connection");
		return;
	}
	log_control(c, "KILL_CLIENT", arg);
	if (!control_kill_client(id)) {
		admin_error(c, "22023", "no client with id %llu", id);
		return;
	}
	command_done(stream_out(&c->st), "KILL_CLIENT");
}

void admin_cmd_wait_close(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "WAIT_CLOSE", arg);
	if (control_wait_close(c, db))
		command_done(stream_out(&c->st), "WAIT_CLOSE");
}

/* a PgBouncer command pgpulse does not have yet (the dispatcher names it in the error) */
void admin_cmd_not_yet(struct client *c, const char *arg)
{
	(void)arg;
	admin_error(c, SQLSTATE_NOT_YET, "not supported yet");
}

/* the index of a parameter in the table, or -1 */
static int param_index(const char *name)
{
	for (int i = 0; i < cfg_param_count(); i++) {
		struct cfg_param_info info;
		if (cfg_param_get(NULL, i, &info) && strcmp(info.name, name) == 0)
			return i;
	}
	return -1;
}

static bool affects_tls(const char *key)
{
	return strncmp(key, "client_tls", 10) == 0 || strncmp(key, "server_tls", 10) == 0 ||
	       strcmp(key, "auth_type") == 0;
}

/* the hba rules are read from their files, and checked, by what these change (as RELOAD does) */
static bool affects_hba(const char *key)
{
	return strcmp(key, "auth_type") == 0 || strcmp(key, "auth_hba_file") == 0 ||
	       strcmp(key, "auth_ident_file") == 0 || strcmp(key, "client_tls_sslmode") == 0 ||
	       strcmp(key, "client_tls_ca_file") == 0;
}

/* the TLS contexts from the configuration as it now is; false (nothing changed) if unusable */
static bool rebuild_tls(char *err, size_t errlen)
{
	struct tls_config *tc = tls_config_build(worker->cfg, err, errlen);
	if (!tc)
		return false;
	tls_config_install(tc);
	return true;
}

/* no silent skip on the console either: the same words as the warning a file gets */
static void warn_set_not_in_effect(struct client *c, const char *key)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "%s is accepted but not in effect in this release: pgpulse ignores it", key);
	client_log(c, LOG_LVL_WARNING, "SET %s", msg);
	proto_put_warning(stream_out(&c->st), "01000", msg);
}

void admin_cmd_set(struct client *c, const struct admin_cmd *cmd)
{
	char key[sizeof(cmd->key)];
	char err[512] = "";
	char what[sizeof(cmd->key) + sizeof(cmd->value) + 16];

	if (admin_fake_param_index(cmd->key) >= 0) {
		/* even stats users, as in PgBouncer: drivers send these on connect */
		struct pktbuf *out = stream_out(&c->st);
		proto_put_notice(out, "00000", "SET ignored");
		command_done(out, "SET");
		return;
	}
	if (!c->admin_may_change) {
		admin_error(c, SQLSTATE_PRIVILEGE, "admin access needed: SET is for admin_users");
		return;
	}
	str_copy(key, cmd->key, sizeof(key));
	if (!cmd->key_quoted)
		for (char *k = key; *k; k++)
			*k = (char)tolower((unsigned char)*k);

	int idx = param_index(key);
	if (idx < 0) {
		admin_error(c, "42704", "unrecognized configuration parameter \"%s\"", key);
		return;
	}
	struct cfg_param_info info;
	char old[1024];
	str_copy(old, cfg_param_get(worker->cfg, idx, &info) && info.value ? info.value : "", sizeof(old));
	if (!cfg_set(worker->cfg, key, cmd->value, err, sizeof(err))) {
		bool restart = cfg_param_get(NULL, idx, &info) && !info.reloadable;
		admin_error(c, restart ? "55P02" : "22023", "%s", err[0] ? err : "SET failed");
		return;
	}
	/*
	 * The new rules are built before anything is installed: a file that
	 * does not load leaves the rules in force, not an empty set that would
	 * refuse every login (the console's own included).
	 */
	struct hba *hba = NULL;
	if ((affects_hba(key) && !worker_load_hba(worker->cfg, &hba, err, sizeof(err))) ||
	    (affects_tls(key) && !rebuild_tls(err, sizeof(err)))) {
		char ignored[256];
		hba_free(hba);
		cfg_set(worker->cfg, key, old, ignored, sizeof(ignored));
		admin_error(c, "22023", "%s", err);
		return;
	}
	if (affects_hba(key)) {
		hba_free(worker->hba);
		worker->hba = hba;
	}
	snprintf(what, sizeof(what), "SET %s = %s", key, cmd->value);
	log_admin_action(c, what);
	worker_apply_config(); /* pool modes, sizes and logging follow at once */
	if (cfg_param_get(NULL, idx, &info) && !info.in_effect)
		warn_set_not_in_effect(c, key);
	command_done(stream_out(&c->st), "SET");
}
