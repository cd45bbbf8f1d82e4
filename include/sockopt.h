/*
 * sockopt: the TCP settings PgBouncer puts on its sockets, with its
 * meanings — tcp_keepalive (and tcp_keepidle, tcp_keepintvl, tcp_keepcnt),
 * tcp_user_timeout, tcp_socket_buffer and TCP_NODELAY on every client and
 * server TCP connection, tcp_defer_accept on the TCP listeners.
 *
 * The settings are read when a socket is tuned: after a RELOAD, new
 * connections get the new values, connections already open keep theirs
 * (as in PgBouncer); listeners are tuned again on reload.
 */
#ifndef PGPULSE_SOCKOPT_H
#define PGPULSE_SOCKOPT_H

struct cfg;

/* a client or server TCP connection (not a unix socket) */
void sockopt_tune_connection(int fd, const struct cfg *cfg);

/* a TCP listening socket */
void sockopt_tune_listener(int fd, const struct cfg *cfg);

#endif
