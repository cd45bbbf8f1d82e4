/*
 * fuzz_config: the ini parser (src/config/, cfg_load): sections, the
 * parameter table's value parsers, [databases] connection strings and host
 * lists, [users], %include.
 *
 * Input: the file's bytes, written to a private directory (fuzz_file.h).
 * Inputs with a '%' line that names a path with '/' are skipped: an
 * %include of /dev/stdin or a FIFO would hang the run, and absolute paths
 * only test the file system.
 * Asserts beyond "no crash":
 *   - loading the same file twice gives the same configuration (cfg_diff
 *     finds nothing);
 *   - SHOW CONFIG and SET agree: every reloadable parameter accepts the
 *     value SHOW CONFIG prints for it, and prints the same value after;
 *   - every [databases] entry is found by its own name.
 */
#include "config.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "log.h"

/* does a line that starts with '%' (after blanks) contain a '/'? */
static bool includes_a_path(const uint8_t *p, size_t n)
{
	bool line_start = true, directive = false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			line_start = true;
			directive = false;
		} else if (line_start && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r')) {
			continue;
		} else {
			if (line_start && p[i] == '%')
				directive = true;
			line_start = false;
			if (directive && p[i] == '/')
				return true;
		}
	}
	return false;
}

static void no_change(const char *name, const char *old_value, const char *new_value, bool reloadable,
		      void *arg)
{
	(void)reloadable, (void)arg;
	fprintf(stderr, "loading the same file again changed %s: '%s' -> '%s'\n", name, old_value, new_value);
	abort();
}

static void show_then_set(struct cfg *c)
{
	char err[512];
	struct cfg_param_info info;
	for (int i = 0; i < cfg_param_count(); i++) {
		assert(cfg_param_get(c, i, &info));
		if (!info.reloadable)
			continue;
		char *shown = strdup(info.value);
		if (!cfg_set(c, info.name, shown, err, sizeof(err))) {
			fprintf(stderr, "SET %s = '%s' refused: %s\n", info.name, shown, err);
			abort();
		}
		assert(cfg_param_get(c, i, &info));
		assert(strcmp(info.value, shown) == 0);
		free(shown);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	char err[512];

	if (!ready) {
		log_setup(0, true); /* unknown-parameter warnings would drown the fuzzer's output */
		ready = true;
	}
	if (includes_a_path(data, size))
		return -1;
	const char *path = fuzz_file_write("pgpulse.ini", data, size);
	struct cfg *c = cfg_load(path, err, sizeof(err));
	if (!c)
		return 0;
	struct cfg *again = cfg_load(path, err, sizeof(err));
	assert(again);
	assert(cfg_diff(c, again, no_change, NULL) == 0);
	for (int i = 0; i < c->n_dbs; i++) {
		const struct cfg_db *db = cfg_find_db(c, c->dbs[i].name);
		assert(db && strcmp(db->name, c->dbs[i].name) == 0);
	}
	show_then_set(c);
	cfg_free(again);
	cfg_free(c);
	return 0;
}
