/*
 * janitor: the once-a-second sweep — login timeouts, waits past
 * query_wait_timeout, servers past their idle time or lifetime, servers
 * stuck connecting, pools that need connections opened, and the log_stats
 * line once a stats_period has passed (stats_log.h).
 */
#ifndef PGPULSE_JANITOR_H
#define PGPULSE_JANITOR_H

void janitor_start(void);
void janitor_stop(void);

#endif
