/*
 * janitor: the once-a-second sweep — login timeouts, waits past
 * query_wait_timeout, servers past their idle time or lifetime, servers
 * stuck connecting, and pools that need connections opened.
 */
#ifndef PGPULSE_JANITOR_H
#define PGPULSE_JANITOR_H

void janitor_start(void);
void janitor_stop(void);

#endif
