/*
 * main: the command line, process setup (user switch, daemon, pidfile),
 * signals, reload and shutdown — and the worker those drive.
 *
 * Signals follow PgBouncer 1.25: SIGHUP reloads; SIGINT stops accepting,
 * drops the clients that wait for a server and exits once no server is
 * linked to a client; SIGTERM stops accepting and exits once every client
 * has left; either of them while a shutdown is already under way exits at
 * once, as SIGQUIT does; SIGUSR1 pauses, SIGUSR2 resumes.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "auth_query.h"
#include "hba.h"
#include "client.h"
#include "cancel.h"
#include "config.h"
#include "notify.h"
#include "control.h"
#include "dns.h"
#include "fingerprint.h"
#include "janitor.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "prepared.h"
#include "server.h"
#include "slowlog.h"
#include "stream.h"
#include "telemetry.h"
#include "tls.h"
#include "worker.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

struct worker *worker;

static struct worker g_worker;
static char *g_pidfile;
static char g_user_name[256]; /* the user to switch to, out of getpwnam's reused buffer */
static struct event *g_signal_events[8];
static int g_signal_count;

/* ---- the worker ---- */

static void reap_dead(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	client_free_dead();
	server_free_dead();
	pool_free_unused_databases(now_usec(), true);
}

void worker_schedule_reap(void)
{
	if (worker->reaper)
		event_active(worker->reaper, 0, 0);
}

static int linked_server_count(void)
{
	int n = 0;
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		n += list_count(&p->active_servers) + list_count(&p->used_servers);
	}
	return n;
}

void worker_check_shutdown(void)
{
	switch (worker->shutdown) {
	case SHUTDOWN_NONE:
		return;
	case SHUTDOWN_WAIT_SERVERS:
		if (linked_server_count() > 0)
			return;
		log_info("all servers released: shutting down");
		break;
	case SHUTDOWN_WAIT_CLIENTS:
		if (worker->client_count > 0)
			return;
		log_info("all clients left: shutting down");
		break;
	case SHUTDOWN_NOW:
		break;
	}
	event_base_loopbreak(worker->base);
}

void worker_request_shutdown(enum shutdown_mode mode)
{
	/* a second SIGINT or SIGTERM (either after the other): the operator will not wait */
	if (worker->shutdown != SHUTDOWN_NONE)
		mode = SHUTDOWN_NOW;
	if (worker->shutdown == SHUTDOWN_NOW)
		return;
	bool first = worker->shutdown == SHUTDOWN_NONE;
	worker->shutdown = mode;
	if (first)
		notify_stopping();
	if (mode == SHUTDOWN_WAIT_CLIENTS)
		listener_drain_and_close_all(); /* what the kernel queued is a client already */
	else
		listener_close_all();
	if (mode == SHUTDOWN_WAIT_SERVERS) {
		/*
		 * Like PAUSE, running transactions finish and nothing new starts;
		 * unlike it, a client that needs a server is told to go at once
		 * (pool_assign_server), so it can reconnect elsewhere.
		 */
		worker->paused_all = true;
		pool_drop_waiting_clients("57P01", "pgpulse is shutting down");
		log_info("shutdown requested: waiting for servers to be released (send SIGINT again to exit now)");
	} else if (mode == SHUTDOWN_WAIT_CLIENTS) {
		log_info("shutdown requested: waiting for clients to leave (send SIGTERM or SIGINT again to exit now)");
	} else {
		log_info("shutdown requested: exiting now");
	}
	worker_check_shutdown();
}

/*
 * Descriptors the configuration can use at once, PgBouncer's rule of thumb:
 * every client, the servers of every [databases] entry (its pool with the
 * overflow and reserve tiers, for one user, or max_db_connections when that
 * is lower), the metrics endpoint, and a margin for listeners, the log, DNS
 * and the event loop. A database used by several users needs more; the
 * warning below names max_client_conn, the term that usually dominates.
 */
static rlim_t fd_need(const struct cfg *cfg)
{
	rlim_t need = (rlim_t)cfg->max_client_conn + 64;
	if (cfg->metrics_port > 0)
		need += (rlim_t)cfg->metrics_max_connections;
	for (int i = 0; i < cfg->n_dbs; i++) {
		const struct cfg_db *db = &cfg->dbs[i];
		int size = (db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size) +
			   (db->overflow_pool_size >= 0 ? db->overflow_pool_size : cfg->overflow_pool_size) +
			   (db->reserve_pool_size >= 0 ? db->reserve_pool_size : cfg->reserve_pool_size);
		int cap = db->max_db_connections >= 0 ? db->max_db_connections : cfg->max_db_connections;
		need += (rlim_t)(cap > 0 && cap < size ? cap : size);
	}
	return need;
}

/*
 * Raise the soft RLIMIT_NOFILE to what the configuration needs (never
 * lower it): a default soft limit of 1,024 would refuse logins long before
 * max_client_conn. Called at startup and after each RELOAD.
 */
static void raise_fd_limit(const struct cfg *cfg)
{
	struct rlimit lim;
	rlim_t need = fd_need(cfg);
	if (getrlimit(RLIMIT_NOFILE, &lim) < 0)
		return;
	rlim_t target = need;
	if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need) {
		log_warning("the file descriptor limit (hard %llu) is below the %llu that max_client_conn = %d and the "
			    "pools need: connections beyond it will fail; raise it (LimitNOFILE=, ulimit -Hn)",
			    (unsigned long long)lim.rlim_max, (unsigned long long)need, cfg->max_client_conn);
		target = lim.rlim_max;
	}
	if (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= target)
		return;
	rlim_t was = lim.rlim_cur;
	lim.rlim_cur = target;
	if (setrlimit(RLIMIT_NOFILE, &lim) < 0)
		log_warning("could not raise the file descriptor limit from %llu to %llu: %s", (unsigned long long)was,
			    (unsigned long long)target, strerror(errno));
	else
		log_info("raised the file descriptor limit from %llu to %llu (max_client_conn = %d)",
			 (unsigned long long)was, (unsigned long long)target, cfg->max_client_conn);
}

/* an error names the config line that set auth_file, and the auth_file's own reason */
static bool load_auth_file(const struct cfg *cfg, struct auth_file **out, char *err, size_t errlen)
{
	char why[1024];
	const char *file;
	int line;
	*out = NULL;
	if (!cfg->auth_file || !*cfg->auth_file)
		return true;
	*out = auth_file_load(cfg->auth_file, why, sizeof(why));
	if (*out)
		return true;
	if (cfg_param_origin(cfg, "auth_file", &file, &line))
		snprintf(err, errlen, "%s:%d: auth_file: %s", file, line, why);
	else
		snprintf(err, errlen, "auth_file: %s", why);
	return false;
}

/*
 * A cert line needs what auth_type = cert needs: client TLS, and a CA to
 * verify certificates with. Said at load, naming the line, rather than as
 * a refusal at every login that reaches it.
 */
static bool hba_cert_rules_can_work(const struct cfg *cfg, const struct hba *hba, char *err, size_t errlen)
{
	const char *file;
	int line;
	if (!hba_first_rule_with(hba, HBA_CERT, &file, &line))
		return true;
	bool tls_off = !cfg->client_tls_sslmode || !*cfg->client_tls_sslmode ||
		       strcmp(cfg->client_tls_sslmode, "disable") == 0;
	if (tls_off || !cfg->client_tls_ca_file || !*cfg->client_tls_ca_file) {
		snprintf(err, errlen, "%s:%d: cert needs client TLS (client_tls_sslmode) and client_tls_ca_file to "
			 "verify client certificates", file, line);
		return false;
	}
	return true;
}

/* auth_type = hba: the auth_hba_file's rules (and auth_ident_file's maps), else NULL */
bool worker_load_hba(const struct cfg *cfg, struct hba **out, char *err, size_t errlen)
{
	*out = NULL;
	if (cfg->auth_type != AUTH_HBA)
		return true;
	if (!cfg->auth_hba_file || !*cfg->auth_hba_file) {
		snprintf(err, errlen, "auth_type = hba needs auth_hba_file");
		return false;
	}
	*out = hba_load(cfg->auth_hba_file, cfg->auth_ident_file, err, errlen);
	if (*out && !hba_cert_rules_can_work(cfg, *out, err, errlen)) {
		hba_free(*out);
		*out = NULL;
	}
	return *out != NULL;
}

static void warn_about_restart_only_changes(const struct cfg *old, const struct cfg *fresh)
{
	for (int i = 0; i < cfg_param_count(); i++) {
		struct cfg_param_info a, b;
		char av[512];
		if (!cfg_param_get(old, i, &a))
			continue;
		str_copy(av, a.value ? a.value : "", sizeof(av));
		if (!cfg_param_get(fresh, i, &b) || a.reloadable)
			continue;
		if (strcmp(av, b.value ? b.value : "") != 0)
			log_warning("%s changed in the config file; it takes effect after a restart", a.name);
	}
}

static bool reload_refused(struct cfg *fresh, struct auth_file *auth, const char *err)
{
	log_error("reload failed, keeping the running configuration: %s", err);
	if (auth)
		auth_file_free(auth);
	if (fresh)
		cfg_free(fresh);
	notify_ready();
	return false;
}

/*
 * Everything the new file asks for is built and checked first (the
 * auth_file read, the TLS certificates loaded); only then does it replace
 * what runs, so a broken file or certificate changes nothing.
 */
bool worker_reload(char *err, size_t errlen)
{
	char path[4096];
	/* a copy: the old configuration, which owns the string, is freed below */
	str_copy(path, worker->cfg->conffile, sizeof(path));
	notify_reloading();
	struct cfg *fresh = cfg_load(path, err, errlen);
	if (!fresh)
		return reload_refused(NULL, NULL, err);
	struct auth_file *auth;
	if (!load_auth_file(fresh, &auth, err, errlen))
		return reload_refused(fresh, NULL, err);
	struct hba *hba;
	if (!worker_load_hba(fresh, &hba, err, errlen))
		return reload_refused(fresh, auth, err);
	struct tls_config *tls = tls_config_build(fresh, err, errlen);
	if (!tls) {
		hba_free(hba);
		return reload_refused(fresh, auth, err);
	}
	tls_config_install(tls);
	warn_about_restart_only_changes(worker->cfg, fresh);
	cfg_free(worker->cfg);
	worker->cfg = fresh;
	auth_file_keep_verifiers(auth, worker->auth);
	if (worker->auth)
		auth_file_free(worker->auth);
	worker->auth = auth;
	auth_query_clear_cache(); /* auth_user, auth_query or a password may have changed */
	hba_free(worker->hba);
	worker->hba = hba;
	worker_apply_config();
	raise_fd_limit(worker->cfg);
	log_info("configuration reloaded from %s", path);
	notify_ready();
	return true;
}

void worker_apply_config(void)
{
	const struct cfg *cfg = worker->cfg;
	log_set_verbose(cfg->verbose);
	if (!log_open(cfg->logfile, cfg->syslog, cfg->syslog_ident, cfg->syslog_facility)) {
		/* the old file stays in use (log_open said so): SHOW CONFIG tells the truth, the next RELOAD retries */
		char err[256];
		cfg_set(worker->cfg, "logfile", log_file_in_use(), err, sizeof(err));
	}
	if (cfg->telemetry && !telemetry_enabled) {
		struct list *pos;
		list_for_each(pos, &worker->pools)
			telemetry_restart_clock(container_of(pos, struct pool, node)->tm, now_usec());
	}
	telemetry_enabled = cfg->telemetry;
	dns_set_ttls(worker->dns, cfg->dns_max_ttl, cfg->dns_nxdomain_ttl);
	dns_set_zone_check_period(worker->dns, cfg->dns_zone_check_period);
	listener_apply_config();
	pool_apply_config();
}

/* ---- signals ---- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	char err[512];
	switch (sig) {
	case SIGHUP:
		log_info("got SIGHUP: reloading");
		worker_reload(err, sizeof(err));
		break;
	case SIGINT:
		log_info("got SIGINT: safe shutdown");
		worker_request_shutdown(SHUTDOWN_WAIT_SERVERS);
		break;
	case SIGTERM:
		log_info("got SIGTERM");
		worker_request_shutdown(SHUTDOWN_WAIT_CLIENTS);
		break;
	case SIGQUIT:
		log_info("got SIGQUIT: immediate shutdown");
		worker_request_shutdown(SHUTDOWN_NOW);
		break;
	case SIGUSR1:
		log_info("got SIGUSR1: pausing every database");
		control_pause(NULL, NULL);
		break;
	case SIGUSR2:
		log_info("got SIGUSR2: resuming");
		control_resume(NULL);
		break;
	default:
		break;
	}
}

static void install_signals(void)
{
	static const int sigs[] = { SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2 };
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct event *ev = evsignal_new(worker->base, sigs[i], on_signal, NULL);
		event_add(ev, NULL);
		g_signal_events[g_signal_count++] = ev;
	}
}

/* ---- process setup ---- */

static void usage(FILE *f)
{
	fprintf(f, "pgpulse %s: a PostgreSQL connection pooler that measures what it carries\n\n"
		   "Usage: pgpulse [OPTION]... config.ini\n"
		   "  -d, --daemon    run in the background (needs logfile or syslog)\n"
		   "  -v, --verbose   more logging (repeat for more)\n"
		   "  -q, --quiet     log only errors to stderr\n"
		   "  -u, --user=USER switch to USER first (as root: this or user = in the file)\n"
		   "  -V, --version   print the version and exit\n"
		   "  -h, --help      print this help and exit\n",
		PACKAGE_VERSION);
}

/*
 * Become `pw`: supplementary groups first, then the group, then the user,
 * since after setuid() the other two are no longer allowed. `how` names
 * what asked for it (-u or the config line) in the error.
 */
static bool switch_user(const struct passwd *pw, const char *how)
{
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_error("%s: could not switch to user \"%s\": %s", how, pw->pw_name, strerror(errno));
		return false;
	}
	/* setuid() from root drops the saved id too; make sure no way back is left */
	if (pw->pw_uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
		log_error("%s: switched to user \"%s\" but could still become root again", how, pw->pw_name);
		return false;
	}
	return true;
}

/* the password-file entry of `name`, copied (its name into g_user_name), or false with the error logged */
static bool find_user(const char *name, const char *how, struct passwd *out)
{
	errno = 0;
	struct passwd *pw = getpwnam(name);
	if (!pw) {
		if (errno)
			log_error("%s: cannot look up user \"%s\": %s", how, name, strerror(errno));
		else
			log_error("%s: user \"%s\" does not exist", how, name);
		return false;
	}
	if (strlen(pw->pw_name) >= sizeof(g_user_name)) {
		log_error("%s: user name \"%s\" is too long", how, name);
		return false;
	}
	*out = *pw;
	/* getpwnam's buffer is reused by the next lookup (initgroups does one) */
	str_copy(g_user_name, pw->pw_name, sizeof(g_user_name));
	out->pw_name = g_user_name;
	return true;
}

/*
 * user = NAME in the config: resolved before anything is opened, so a user
 * that does not exist, or a switch that cannot happen (pgpulse started as
 * someone else than root or NAME), stops startup before it binds a port.
 * *late is true when the switch must still be made, after the listeners,
 * the log file and the pidfile are open.
 */
static bool plan_config_user(const struct cfg *cfg, struct passwd *pw, char *how, size_t howlen, bool *late)
{
	const char *file;
	int line;
	*late = false;
	if (!cfg->user[0])
		return true;
	if (cfg_param_origin(cfg, "user", &file, &line))
		snprintf(how, howlen, "%s:%d: user", file, line);
	else
		snprintf(how, howlen, "user");
	if (!find_user(cfg->user, how, pw))
		return false;
	if (geteuid() == 0) {
		*late = pw->pw_uid != 0;
		return true;
	}
	if (geteuid() != pw->pw_uid) {
		struct passwd *me = getpwuid(geteuid());
		log_error("%s: cannot switch to user \"%s\": pgpulse runs as \"%s\" (uid %d), not as root",
			  how, cfg->user, me ? me->pw_name : "?", (int)geteuid());
		return false;
	}
	return true;
}

static bool check_pidfile_free(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return true;
	long pid = 0;
	int n = fscanf(f, "%ld", &pid);
	fclose(f);
	if (n == 1 && pid > 0 && kill((pid_t)pid, 0) == 0) {
		fprintf(stderr, "pgpulse: pidfile %s names a running process (%ld)\n", path, pid);
		return false;
	}
	unlink(path); /* stale */
	return true;
}

static bool write_pidfile(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) < 0) {
		log_error("could not write pidfile %s: %s", path, strerror(errno));
		return false;
	}
	g_pidfile = strdup(path);
	return true;
}

static bool daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid > 0)
		_exit(0);
	setsid();
	pid = fork();
	if (pid < 0)
		return false;
	if (pid > 0)
		_exit(0);
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	log_detach_stderr();
	return true;
}

/* ---- teardown: every object freed, so leak checkers see a clean exit ---- */

static void close_everything(void)
{
	struct list *pos, *tmp, *cp, *ctmp;
	list_for_each_safe(pos, tmp, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		struct list *client_lists[] = { &p->active_clients, &p->waiting_clients };
		for (int i = 0; i < 2; i++)
			list_for_each_safe(cp, ctmp, client_lists[i])
				client_close(container_of(cp, struct client, node), "pgpulse is shutting down");
		struct list *server_lists[] = { &p->active_servers, &p->idle_servers, &p->used_servers, &p->new_servers,
						&p->canceling_servers };
		for (int i = 0; i < 5; i++)
			list_for_each_safe(cp, ctmp, server_lists[i])
				server_close(container_of(cp, struct server, node), "pgpulse is shutting down");
	}
	list_for_each_safe(cp, ctmp, &worker->login_clients)
		client_close(container_of(cp, struct client, node), "pgpulse is shutting down");
	cancel_free_all();
	client_free_dead();
	server_free_dead();
}

static void free_everything(void)
{
	struct list *pos, *tmp;
	auth_query_shutdown(); /* before the pools its lookups name */
	list_for_each_safe(pos, tmp, &worker->pools)
		pool_free(container_of(pos, struct pool, node));
	list_for_each_safe(pos, tmp, &worker->databases)
		pool_db_free(container_of(pos, struct pool_db, node));
	list_for_each_safe(pos, tmp, &worker->users)
	{
		struct pool_user *u = container_of(pos, struct pool_user, node);
		list_remove(&u->node);
		free(u->name);
		free(u->looked_up_secret);
		free(u);
	}
	dns_free(worker->dns);
	fp_table_free();
	prepared_shutdown();
	slowlog_free();
	for (int i = 0; i < g_signal_count; i++)
		event_free(g_signal_events[i]);
	janitor_stop();
	event_free(worker->reaper);
	if (worker->auth)
		auth_file_free(worker->auth);
	hba_free(worker->hba);
	cfg_free(worker->cfg);
	tls_config_release();
	stream_loop_free(&worker->streams);
	event_base_free(worker->base);
	log_close();
}

static void worker_init(struct cfg *cfg, struct auth_file *auth)
{
	worker = &g_worker;
	memset(worker, 0, sizeof(*worker));
	worker->cfg = cfg;
	worker->auth = auth;
	list_init(&worker->databases);
	list_init(&worker->users);
	list_init(&worker->pools);
	list_init(&worker->hosts);
	list_init(&worker->login_clients);
	list_init(&worker->dead_clients);
	list_init(&worker->dead_servers);
	list_init(&worker->cancels);
	stream_loop_init(&worker->streams, NULL); /* the event base comes after a fork */
	worker->started_at = wall_usec();
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "daemon", no_argument, NULL, 'd' }, { "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },  { "user", required_argument, NULL, 'u' },
		{ "version", no_argument, NULL, 'V' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool daemon_mode = false, quiet = false;
	int verbose = 0;
	const char *run_as = NULL;
	int opt;
	while ((opt = getopt_long(argc, argv, "dvqu:Vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd': daemon_mode = true; break;
		case 'v': verbose++; break;
		case 'q': quiet = true; break;
		case 'u': run_as = optarg; break;
		case 'V': printf("pgpulse %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	const char *conffile = argv[optind];
	log_setup(verbose, quiet);

	struct passwd pw;
	if (run_as && !(find_user(run_as, "-u", &pw) && switch_user(&pw, "-u")))
		return 1;

	char err[1024];
	struct cfg *cfg = cfg_load(conffile, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "pgpulse: %s\n", err);
		return 1;
	}
	char user_how[4200];
	bool switch_late;
	if (!plan_config_user(cfg, &pw, user_how, sizeof(user_how), &switch_late)) {
		cfg_free(cfg);
		return 1;
	}
	if (geteuid() == 0 && !switch_late) {
		log_error("refusing to run as root; set user = USER in the config file, or use -u USER, to switch to an "
			  "unprivileged user");
		cfg_free(cfg);
		return 1;
	}
	if (cfg->verbose > verbose)
		log_setup(cfg->verbose, quiet);
	struct auth_file *auth;
	if (!load_auth_file(cfg, &auth, err, sizeof(err))) {
		fprintf(stderr, "pgpulse: %s\n", err);
		cfg_free(cfg);
		return 1;
	}
	struct hba *hba;
	if (!worker_load_hba(cfg, &hba, err, sizeof(err))) {
		fprintf(stderr, "pgpulse: %s\n", err);
		if (auth)
			auth_file_free(auth);
		cfg_free(cfg);
		return 1;
	}
	if (daemon_mode && (!cfg->logfile || !*cfg->logfile) && !cfg->syslog) {
		fprintf(stderr, "pgpulse: -d needs logfile or syslog, or nothing would be logged\n");
		cfg_free(cfg);
		return 1;
	}
	if (cfg->pidfile && *cfg->pidfile && !check_pidfile_free(cfg->pidfile)) {
		cfg_free(cfg);
		return 1;
	}
	struct tls_config *tls = tls_config_build(cfg, err, sizeof(err));
	if (!tls) {
		fprintf(stderr, "pgpulse: %s\n", err);
		if (auth)
			auth_file_free(auth);
		hba_free(hba);
		cfg_free(cfg);
		return 1;
	}
	tls_config_install(tls);
	/* before daemonizing, so the operator sees why on the terminal; PgBouncer refuses too */
	if (!log_open(cfg->logfile, cfg->syslog, cfg->syslog_ident, cfg->syslog_facility)) {
		log_close();
		tls_config_release();
		if (auth)
			auth_file_free(auth);
		hba_free(hba);
		cfg_free(cfg);
		return 1;
	}
	raise_fd_limit(cfg);

	worker_init(cfg, auth);
	worker->hba = hba;
	stream_set_buffer_size(&worker->streams, (uint32_t)cfg->pkt_buf);
	telemetry_enabled = cfg->telemetry;

	if (daemon_mode && !daemonize()) {
		log_error("could not daemonize: %s", strerror(errno));
		return 1;
	}
	/* the event base is made after fork: epoll descriptors do not survive it well */
	worker->base = event_base_new();
	if (!worker->base) {
		log_error("could not create the event loop");
		return 1;
	}
	worker->streams.base = worker->base;
	worker->reaper = event_new(worker->base, -1, 0, reap_dead, NULL);
	worker->dns = dns_new(worker->base, cfg->resolv_conf, cfg->dns_nameservers, server_host_moved, err, sizeof(err));
	if (!worker->dns) {
		log_error("%s", err);
		return 1;
	}
	dns_set_ttls(worker->dns, cfg->dns_max_ttl, cfg->dns_nxdomain_ttl);
	dns_set_zone_check_period(worker->dns, cfg->dns_zone_check_period);
	fp_table_init(now_usec());
	pool_apply_config();
	if (!listener_open_all(err, sizeof(err))) {
		log_error("%s", err);
		free_everything();
		return 1;
	}
	if (cfg->pidfile && *cfg->pidfile && !write_pidfile(cfg->pidfile)) {
		listener_close_all();
		free_everything();
		return 1;
	}
	if (!metrics_start(err, sizeof(err))) {
		log_error("%s", err);
		listener_close_all();
		free_everything();
		return 1;
	}
	/*
	 * The switch comes after everything that may need root (a port below
	 * 1024, a pidfile in /run); what a RELOAD opens again — the config file,
	 * the auth_file, certificates, the log file — must be readable (the log
	 * writable) by the user too.
	 */
	if (switch_late) {
		listener_give_to(pw.pw_uid, pw.pw_gid);
		if (g_pidfile && chown(g_pidfile, pw.pw_uid, pw.pw_gid) < 0)
			log_warning("could not hand the pidfile %s to user \"%s\": %s", g_pidfile, pw.pw_name,
				    strerror(errno));
		if (switch_user(&pw, user_how)) {
			log_info("switched to user \"%s\" (uid %d, gid %d)", pw.pw_name, (int)pw.pw_uid, (int)pw.pw_gid);
		} else {
			metrics_stop();
			listener_close_all();
			if (g_pidfile) {
				unlink(g_pidfile);
				free(g_pidfile);
				g_pidfile = NULL;
			}
			free_everything();
			return 1;
		}
	}
	install_signals();
	janitor_start();
	log_info("pgpulse %s started, pid %d", PACKAGE_VERSION, (int)getpid());
	notify_ready();

	event_base_dispatch(worker->base);

	metrics_stop();
	listener_close_all();
	close_everything();
	log_info("pgpulse stopped");
	if (g_pidfile) {
		unlink(g_pidfile);
		free(g_pidfile);
	}
	free_everything();
	return 0;
}
