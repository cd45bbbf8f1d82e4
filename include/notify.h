/*
 * notify: tells the service manager what pgpulse is doing, by systemd's
 * notification protocol (sd_notify): READY=1 once it listens, RELOADING=1
 * and READY=1 around a reload, STOPPING=1 when a shutdown begins, and a
 * STATUS= line with the pool figures, refreshed every few seconds.
 *
 * Outside a Type=notify service (no NOTIFY_SOCKET in the environment), or
 * when built without libsystemd, every call does nothing.
 */
#ifndef PGPULSE_NOTIFY_H
#define PGPULSE_NOTIFY_H

#include <stdint.h>

/* listening: start-up is over */
void notify_ready(void);

/* a reload begins (READY=1 follows when it is over, whether it worked or not) */
void notify_reloading(void);

/* a shutdown begins */
void notify_stopping(void);

/* refresh the STATUS= line, at most once every NOTIFY_STATUS_EVERY_USEC */
void notify_status_tick(int64_t now);

#define NOTIFY_STATUS_EVERY_USEC (5 * 1000000LL)

#endif
