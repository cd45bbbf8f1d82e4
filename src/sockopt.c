/*
 * sockopt: PgBouncer's TCP settings on pgpulse's sockets.
 *
 * A 0 in tcp_keepidle, tcp_keepintvl, tcp_keepcnt, tcp_user_timeout or
 * tcp_socket_buffer means "the system's default": the option is left
 * alone, so the kernel's sysctls apply. The keepalive timings only matter
 * with tcp_keepalive on, and are only set then, as PgBouncer does.
 *
 * A setsockopt the system refuses is said once per option (a warning
 * naming the setting), not once per connection.
 */
#include "sockopt.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "log.h"

enum tuned_option { OPT_KEEPALIVE, OPT_KEEPIDLE, OPT_KEEPINTVL, OPT_KEEPCNT, OPT_USER_TIMEOUT, OPT_SNDBUF,
		    OPT_RCVBUF, OPT_DEFER_ACCEPT, OPT_COUNT };

static bool warned[OPT_COUNT];

static void set_int_option(int fd, int level, int name, int value, enum tuned_option which, const char *setting)
{
	if (setsockopt(fd, level, name, &value, sizeof(value)) == 0 || warned[which])
		return;
	warned[which] = true;
	log_warning("%s = %d could not be applied to a socket: %s", setting, value, strerror(errno));
}

static void tune_keepalive(int fd, const struct cfg *cfg)
{
	set_int_option(fd, SOL_SOCKET, SO_KEEPALIVE, cfg->tcp_keepalive ? 1 : 0, OPT_KEEPALIVE, "tcp_keepalive");
	if (!cfg->tcp_keepalive)
		return;
#ifdef TCP_KEEPIDLE
	if (cfg->tcp_keepidle > 0)
		set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, cfg->tcp_keepidle, OPT_KEEPIDLE, "tcp_keepidle");
#endif
#ifdef TCP_KEEPINTVL
	if (cfg->tcp_keepintvl > 0)
		set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, cfg->tcp_keepintvl, OPT_KEEPINTVL, "tcp_keepintvl");
#endif
#ifdef TCP_KEEPCNT
	if (cfg->tcp_keepcnt > 0)
		set_int_option(fd, IPPROTO_TCP, TCP_KEEPCNT, cfg->tcp_keepcnt, OPT_KEEPCNT, "tcp_keepcnt");
#endif
}

void sockopt_tune_connection(int fd, const struct cfg *cfg)
{
	int on = 1;
	/* every write is a packet of its own: the protocol is request/response */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	tune_keepalive(fd, cfg);
#ifdef TCP_USER_TIMEOUT
	if (cfg->tcp_user_timeout > 0) {
		int64_t ms = cfg->tcp_user_timeout / 1000;
		set_int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, ms > INT32_MAX ? INT32_MAX : (int)(ms ? ms : 1),
			       OPT_USER_TIMEOUT, "tcp_user_timeout");
	}
#endif
	if (cfg->tcp_socket_buffer > 0) {
		int size = (int)cfg->tcp_socket_buffer; /* the check keeps it within an int */
		set_int_option(fd, SOL_SOCKET, SO_SNDBUF, size, OPT_SNDBUF, "tcp_socket_buffer");
		set_int_option(fd, SOL_SOCKET, SO_RCVBUF, size, OPT_RCVBUF, "tcp_socket_buffer");
	}
}

/*
 * TCP_DEFER_ACCEPT: the kernel hands a connection over only once the
 * client has sent something (its startup packet), so a connection that
 * never speaks costs no accept() and no client. The value is PgBouncer's:
 * seconds to wait for that first data; 0 turns it off.
 */
void sockopt_tune_listener(int fd, const struct cfg *cfg)
{
#ifdef TCP_DEFER_ACCEPT
	set_int_option(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, cfg->tcp_defer_accept, OPT_DEFER_ACCEPT, "tcp_defer_accept");
#else
	(void)fd;
	(void)cfg;
#endif
}
