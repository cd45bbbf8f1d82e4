/*
 * listener: the TCP and unix sockets pgpulse accepts clients on.
 *
 * listen_addr is a comma-separated list ("*" means every IPv4 and IPv6
 * address); unix_socket_dir adds .s.PGSQL.<port> there. Each socket is
 * opened with listen_backlog and accepts until the descriptor limit,
 * after which it pauses briefly rather than spinning.
 */
#ifndef PGPULSE_LISTENER_H
#define PGPULSE_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* open every configured socket; false (with a reason) when none could be */
bool listener_open_all(char *err, size_t errlen);

/* stop accepting (shutdown); the sockets are closed and the unix file removed */
void listener_close_all(void);

/* the same, after accepting every connection already queued (WAIT_FOR_CLIENTS) */
void listener_drain_and_close_all(void);

/*
 * make the unix socket files belong to the user pgpulse is about to switch
 * to (user = in the file), so that it can remove them at exit as it could
 * had it made them itself
 */
void listener_give_to(uid_t uid, gid_t gid);

/* stop or restart accepting new connections (SUSPEND), sockets stay open */
void listener_set_accepting(bool accepting);

/* after a RELOAD: the TCP listeners take the new tcp_defer_accept (sockopt.h) */
void listener_apply_config(void);

/* number of open listening sockets */
int listener_count(void);

#endif
