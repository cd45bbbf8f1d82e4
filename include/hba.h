/*
 * hba: auth_type = hba — the auth_hba_file (pg_hba.conf syntax) and the
 * auth_ident_file (pg_ident.conf syntax), read into rule lists at startup
 * and on RELOAD, so a login costs a walk over the rules and no file access.
 *
 * The first rule whose connection type, database, user and address match
 * decides the method; no matching rule is a rejection. What PgBouncer does
 * not support (hostgssenc, host names, samerole, +group, ...) is refused at
 * load with file:line, never read as something else.
 */
#ifndef PGPULSE_HBA_H
#define PGPULSE_HBA_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum hba_method {
	HBA_TRUST = 0,
	HBA_REJECT,
	HBA_MD5,
	HBA_PASSWORD,
	HBA_SCRAM,
	HBA_CERT,
	HBA_PEER,
};

struct hba;

/* what a login offers to the rules */
struct hba_client {
	bool is_unix;
	bool tls;
	const struct sockaddr *addr; /* AF_INET or AF_INET6 when !is_unix */
	const char *dbname;
	const char *user;
	/*
	 * replication=true: as in PostgreSQL, only the database keyword
	 * replication matches it (not all, not a name); replication=database
	 * (logical) matches as an ordinary login to its database.
	 */
	bool physical_replication;
};

/* the rule that matched: its method, ident map (or NULL) and place */
struct hba_verdict {
	enum hba_method method;
	const char *map; /* owned by the struct hba */
	const char *file;
	int line;
};

/*
 * Read hba_path and, when ident_path is set and not empty, the ident maps.
 * NULL with "file:line: reason" in err on any line pgpulse cannot honour
 * exactly; the caller keeps its old rules then.
 */
struct hba *hba_load(const char *hba_path, const char *ident_path, char *err, size_t errlen);
void hba_free(struct hba *hba);

/* the first matching rule; false when none matches */
bool hba_match(const struct hba *hba, const struct hba_client *cl, struct hba_verdict *out);

/* the first rule with this method, if any (file and line for a load-time error) */
bool hba_first_rule_with(const struct hba *hba, enum hba_method method, const char **file, int *line);

/*
 * Whether ident map `map` lets the operating-system (or certificate) user
 * system_user log in as database user db_user.
 */
bool hba_ident_allows(const struct hba *hba, const char *map, const char *system_user, const char *db_user);

const char *hba_method_name(enum hba_method m);

/* the client's address as PostgreSQL's messages show it: "[local]" or the bare IP */
const char *hba_host_text(const struct hba_client *cl, char *buf, size_t len);

#endif
