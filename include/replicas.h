/*
 * replicas: the janitor's work for replicas and failover — role-change
 * sweeps, the periodic role and lag probe of each host, and the pools'
 * making room when their hosts lag (src/replicas.c).
 */
#ifndef PGPULSE_REPLICAS_H
#define PGPULSE_REPLICAS_H

#include <stdint.h>

struct pool;

/*
 * Once per janitor tick: the lag limits in force are applied, each host's
 * latency windows move on, a role change closes the servers it no longer
 * suits (idle ones now, linked ones on release), and each host due a
 * probe (replica_check_period) gets one on an idle server.
 */
void replicas_tick(int64_t now);

/*
 * Once per pool per tick (pool_janitor): with clients waiting, idle
 * servers on lagging hosts go but each host's last; prefer-standby's idle
 * servers on a primary go once a standby suits again.
 */
void replicas_pool_janitor(struct pool *p);

#endif
