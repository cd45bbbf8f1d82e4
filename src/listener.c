/*
 * listener: opens the listening sockets and hands accepted ones to client.
 *
 * Accepting stops for a moment when the process runs out of descriptors
 * (EMFILE/ENFILE): the pending connection stays in the backlog instead of
 * the loop spinning on a socket it cannot accept.
 *
 * Under socket activation (a systemd .socket unit) the service manager has
 * opened the listen sockets already and passes them; they replace the ones
 * listen_addr and unix_socket_dir would open.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "log.h"
#include "sockopt.h"
#include "util.h"
#include "worker.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define MAX_LISTENERS 16

struct listener {
	int fd;
	int port;
	bool is_unix;
	bool group_given; /* unix_socket_group chose the socket file's group */
	char unix_path[108];
	struct event *ev;
	struct event *retry;
};

static struct listener g_listeners[MAX_LISTENERS];
static int g_count;

static void on_accept(evutil_socket_t fd, short what, void *arg);

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	(void)fd;
	(void)what;
	event_add(l->ev, NULL);
}

/* accept up to max queued connections; returns the errno that stopped it (EAGAIN: none left), 0 at max */
static int accept_queued(struct listener *l, int max)
{
	for (int i = 0; i < max; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int cfd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return errno;
		}
		client_accept(cfd, (struct sockaddr *)&ss, len, l->port, l->is_unix);
	}
	return 0;
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	(void)fd;
	(void)what;
	int err = accept_queued(l, 64);
	if (err == EMFILE || err == ENFILE) {
		log_warning("accept: %s; pausing accepts for a second", strerror(err));
		event_del(l->ev);
		struct timeval tv = { 1, 0 };
		evtimer_add(l->retry, &tv);
	}
}

static bool add_listener(int fd, int port, bool is_unix, const char *path)
{
	if (g_count >= MAX_LISTENERS) {
		close(fd);
		return false;
	}
	struct listener *l = &g_listeners[g_count++];
	if (!is_unix)
		sockopt_tune_listener(fd, worker->cfg);
	l->fd = fd;
	l->port = port;
	l->is_unix = is_unix;
	l->group_given = false;
	str_copy(l->unix_path, path ? path : "", sizeof(l->unix_path));
	l->ev = event_new(worker->base, fd, EV_READ | EV_PERSIST, on_accept, l);
	l->retry = evtimer_new(worker->base, resume_accepting, l);
	event_add(l->ev, NULL);
	return true;
}

static int open_tcp(const struct addrinfo *ai, const struct cfg *cfg, char *err, size_t errlen)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int on = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (cfg->so_reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	char addr[64];
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, cfg->listen_backlog) < 0) {
		snprintf(err, errlen, "could not listen on %s: %s", addr_to_str(ai->ai_addr, addr, sizeof(addr)),
			 strerror(errno));
		close(fd);
		return -1;
	}
	log_info("listening on %s", addr_to_str(ai->ai_addr, addr, sizeof(addr)));
	return fd;
}

static bool open_tcp_listeners(const struct cfg *cfg, char *err, size_t errlen)
{
	char *list = xstrdup(cfg->listen_addr);
	char *save = NULL;
	bool ok = true;
	for (char *item = strtok_r(list, ",", &save); item && ok; item = strtok_r(NULL, ",", &save)) {
		while (*item == ' ')
			item++;
		char *end = item + strlen(item);
		while (end > item && end[-1] == ' ')
			*--end = '\0';
		if (!*item)
			continue;
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
		struct addrinfo *res = NULL;
		char port[16];
		snprintf(port, sizeof(port), "%d", cfg->listen_port);
		int rc = getaddrinfo(strcmp(item, "*") == 0 ? NULL : item, port, &hints, &res);
		if (rc != 0) {
			snprintf(err, errlen, "listen_addr \"%s\": %s", item, gai_strerror(rc));
			ok = false;
			break;
		}
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
			int fd = open_tcp(ai, cfg, err, errlen);
			if (fd < 0) {
				/* "*" may include an IPv6 address on a host without IPv6 */
				if (strcmp(item, "*") == 0 && ai->ai_family == AF_INET6)
					continue;
				ok = false;
				break;
			}
			add_listener(fd, cfg->listen_port, false, NULL);
		}
		freeaddrinfo(res);
	}
	free(list);
	return ok;
}

/*
 * unix_socket_group: the socket file's group, so that with unix_socket_mode
 * 0770 only that group's members may connect. Done before pgpulse drops to
 * `user` (a non-root process may only give a file to a group it is in); a
 * group that does not exist, or a chown refused, stops the start.
 */
static bool give_socket_to_group(const char *path, const char *group, char *err, size_t errlen)
{
	if (!group || !*group)
		return true;
	errno = 0;
	struct group *gr = getgrnam(group);
	if (!gr) {
		snprintf(err, errlen, "unix_socket_group: no group \"%s\"%s%s", group, errno ? ": " : "",
			 errno ? strerror(errno) : "");
		return false;
	}
	if (chown(path, (uid_t)-1, gr->gr_gid) < 0) {
		snprintf(err, errlen, "unix_socket_group: could not give %s to group \"%s\": %s", path, group,
			 strerror(errno));
		return false;
	}
	return true;
}

static bool open_unix_listener(const struct cfg *cfg, char *err, size_t errlen)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int n = snprintf(un.sun_path, sizeof(un.sun_path), "%s/.s.PGSQL.%d", cfg->unix_socket_dir, cfg->listen_port);
	if (n < 0 || (size_t)n >= sizeof(un.sun_path)) {
		snprintf(err, errlen, "unix_socket_dir is too long");
		return false;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return false;
	}
	/* a stale socket file from a crashed run would make bind fail */
	struct stat st;
	if (stat(un.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		int probe = socket(AF_UNIX, SOCK_STREAM, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&un, sizeof(un)) < 0)
			unlink(un.sun_path);
		if (probe >= 0)
			close(probe);
	}
	if (bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0 || listen(fd, cfg->listen_backlog) < 0) {
		snprintf(err, errlen, "could not listen on %s: %s", un.sun_path, strerror(errno));
		close(fd);
		return false;
	}
	chmod(un.sun_path, (mode_t)cfg->unix_socket_mode);
	if (!give_socket_to_group(un.sun_path, cfg->unix_socket_group, err, errlen)) {
		close(fd);
		unlink(un.sun_path);
		return false;
	}
	log_info("listening on %s", un.sun_path);
	if (add_listener(fd, cfg->listen_port, true, un.sun_path))
		g_listeners[g_count - 1].group_given = cfg->unix_socket_group && *cfg->unix_socket_group;
	return true;
}

#ifdef HAVE_SYSTEMD
/* the port a passed socket serves: its own for TCP, the .s.PGSQL.NNNN suffix of a unix one */
static int passed_socket_port(const struct sockaddr_storage *ss, const struct cfg *cfg)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	const char *dot = strrchr(((const struct sockaddr_un *)ss)->sun_path, '.');
	int port = dot ? atoi(dot + 1) : 0;
	return port > 0 ? port : cfg->listen_port;
}
#endif

/*
 * The listen sockets systemd passed (sd_listen_fds): how many were adopted,
 * 0 when none were passed (or pgpulse was built without libsystemd), -1 on
 * a descriptor that is not a listening stream socket. A passed unix socket
 * is never unlinked: systemd owns its file.
 */
static int adopt_passed_sockets(const struct cfg *cfg, char *err, size_t errlen)
{
#ifdef HAVE_SYSTEMD
	int n = sd_listen_fds(1);
	if (n < 0) {
		snprintf(err, errlen, "socket activation: %s", strerror(-n));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0 ||
		    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
			snprintf(err, errlen, "socket activation: descriptor %d is not a listening stream socket", fd);
			return -1;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		bool is_unix = ss.ss_family == AF_UNIX;
		char where[128];
		if (is_unix)
			snprintf(where, sizeof(where), "%s", ((struct sockaddr_un *)&ss)->sun_path);
		else
			addr_to_str(&ss, where, sizeof(where));
		add_listener(fd, passed_socket_port(&ss, cfg), is_unix, NULL);
		log_info("listening on %s (passed by the service manager)", where);
	}
	return n;
#else
	(void)cfg;
	(void)err;
	(void)errlen;
	return 0;
#endif
}

bool listener_open_all(char *err, size_t errlen)
{
	const struct cfg *cfg = worker->cfg;
	int passed = adopt_passed_sockets(cfg, err, errlen);
	if (passed < 0) {
		listener_close_all();
		return false;
	}
	if (passed > 0)
		return true; /* socket activation: listen_addr and unix_socket_dir do not apply */
	if (cfg->listen_addr && *cfg->listen_addr && !open_tcp_listeners(cfg, err, errlen)) {
		listener_close_all();
		return false;
	}
	if (cfg->unix_socket_dir && *cfg->unix_socket_dir && !open_unix_listener(cfg, err, errlen)) {
		listener_close_all();
		return false;
	}
	if (g_count == 0) {
		snprintf(err, errlen, "nothing to listen on: set listen_addr or unix_socket_dir");
		return false;
	}
	return true;
}

/*
 * Accept what the kernel has queued, then close: a connection that finished
 * its handshake before the shutdown is served, not reset. With several
 * instances on one port (so_reuseport) only a handshake finishing between
 * the last accept and the close can still be lost; Linux's
 * net.ipv4.tcp_migrate_req = 1 hands even those to the other instance.
 */
void listener_drain_and_close_all(void)
{
	for (int i = 0; i < g_count; i++)
		accept_queued(&g_listeners[i], 4096);
	listener_close_all();
}

void listener_close_all(void)
{
	for (int i = 0; i < g_count; i++) {
		struct listener *l = &g_listeners[i];
		event_free(l->ev);
		event_free(l->retry);
		close(l->fd);
		if (l->is_unix && l->unix_path[0])
			unlink(l->unix_path);
	}
	g_count = 0;
}

void listener_give_to(uid_t uid, gid_t gid)
{
	for (int i = 0; i < g_count; i++) {
		struct listener *l = &g_listeners[i];
		gid_t group = l->group_given ? (gid_t)-1 : gid; /* unix_socket_group's stays */
		if (l->is_unix && l->unix_path[0] && chown(l->unix_path, uid, group) < 0)
			log_warning("could not hand %s to uid %d: %s; it may be left behind at exit", l->unix_path,
				    (int)uid, strerror(errno));
	}
}

void listener_set_accepting(bool accepting)
{
	for (int i = 0; i < g_count; i++) {
		if (accepting)
			event_add(g_listeners[i].ev, NULL);
		else
			event_del(g_listeners[i].ev);
	}
}

void listener_apply_config(void)
{
	for (int i = 0; i < g_count; i++)
		if (!g_listeners[i].is_unix && g_listeners[i].fd >= 0)
			sockopt_tune_listener(g_listeners[i].fd, worker->cfg);
}

int listener_count(void)
{
	return g_count;
}
