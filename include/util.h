/*
 * util: the few helpers every module needs — an intrusive doubly linked
 * list, the monotonic clock, and small string helpers.
 *
 * Lists are intrusive so that moving a connection between the lists of its
 * pool (the way its state is recorded) never allocates.
 */
#ifndef PGPULSE_UTIL_H
#define PGPULSE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct list {
	struct list *next, *prev;
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void list_init(struct list *l)
{
	l->next = l->prev = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

/* is the node on some list (nodes are initialized to point to themselves) */
static inline bool list_linked(const struct list *n)
{
	return n->next != n;
}

static inline void list_append(struct list *head, struct list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void list_remove(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

static inline struct list *list_first(const struct list *head)
{
	return list_empty(head) ? NULL : head->next;
}

#define list_for_each_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

#define list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

static inline int list_count(const struct list *head)
{
	int n = 0;
	const struct list *p;
	for (p = head->next; p != head; p = p->next)
		n++;
	return n;
}

/* microseconds on CLOCK_MONOTONIC */
static inline int64_t now_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* wall clock seconds, for timestamps shown to people */
static inline int64_t wall_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* strlcpy-like: always NUL-terminates, returns strlen(src) */
size_t str_copy(char *dst, const char *src, size_t size);

/* fill buf with cryptographically random bytes */
void random_bytes(void *buf, size_t len);

/* a duration as people write it in the config: "0.25", "1.5", "3600" (seconds) */
const char *usec_to_seconds_text(int64_t usec, char *buf, size_t len);

/*
 * How many bytes of s, at most max, to print so as not to end inside a
 * UTF-8 character (a half character makes a whole result set unreadable
 * to a client that decodes it): a cut, or a text stored already cut,
 * loses its incomplete last character.
 */
size_t utf8_prefix_len(const char *s, size_t max);

/* format a socket address as "ip:port" or "unix:path" */
const char *addr_to_str(const void *sockaddr, char *buf, size_t len);

#endif
