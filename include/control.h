/*
 * control: live control of pools from the admin console and signals —
 * PAUSE, RESUME, SUSPEND, DISABLE, ENABLE, RECONNECT, KILL, KILL_CLIENT,
 * WAIT_CLOSE — with PgBouncer's semantics.
 *
 * Some commands answer only once their condition holds (PAUSE: no server
 * is serving a client; WAIT_CLOSE: the servers marked for closing are gone;
 * SUSPEND: every buffer is flushed). The admin client that asked waits with
 * its input paused; control_poll() answers it when the time comes.
 */
#ifndef PGPULSE_CONTROL_H
#define PGPULSE_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct pool_db;

enum control_wait { CW_NONE = 0, CW_PAUSE, CW_WAIT_CLOSE, CW_SUSPEND };

/*
 * Each takes db == NULL for "every database". The `admin` argument of the
 * waiting commands is the console client to answer (NULL from a signal).
 * They return true when the answer was given now, false when it waits.
 */
bool control_pause(struct client *admin, struct pool_db *db);
void control_resume(struct pool_db *db);
bool control_suspend(struct client *admin);
void control_set_disabled(struct pool_db *db, bool disabled);
void control_reconnect(struct pool_db *db);
void control_kill(struct pool_db *db);
bool control_kill_client(uint64_t id);
bool control_wait_close(struct client *admin, struct pool_db *db);

/* answer waiting admin clients whose condition now holds; called by the janitor */
void control_poll(void);

bool control_is_suspended(void);

#endif
