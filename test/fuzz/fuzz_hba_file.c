/*
 * fuzz_hba_file: the auth_hba_file and auth_ident_file parsers (src/hba.c,
 * hba_load) and the lookups a login makes (hba_match, hba_ident_allows).
 *
 * Input: the file's bytes, loaded as the hba file and as the ident file at
 * once. Inputs with an @file that has a '/' in it are skipped: @/dev/stdin
 * would hang (a relative @name finds only the input itself, an include
 * loop the loader must stop). Asserts beyond "no crash": loading twice
 * gives the same answer, and a match names a line of the file.
 */
#include "hba.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_file.h"
#include "log.h"

static bool includes_a_path(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		if (data[i] != '@')
			continue;
		for (size_t j = i + 1; j < size && data[j] != ' ' && data[j] != '\t' && data[j] != '\n' && data[j] != ',';
		     j++)
			if (data[j] == '/')
				return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	char err[512], err2[512];

	if (!ready) {
		log_setup(0, true);
		ready = true;
	}
	if (includes_a_path(data, size))
		return 0;
	const char *path = fuzz_file_write("hba.conf", data, size);
	struct hba *h = hba_load(path, path, err, sizeof(err));
	struct hba *again = hba_load(path, path, err2, sizeof(err2));
	assert(!h == !again);
	if (!h) {
		assert(strcmp(err, err2) == 0);
		return 0;
	}
	struct sockaddr_in in4;
	struct sockaddr_in6 in6;
	memset(&in4, 0, sizeof(in4));
	memset(&in6, 0, sizeof(in6));
	in4.sin_family = AF_INET;
	inet_pton(AF_INET, "10.1.2.3", &in4.sin_addr);
	in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
	const struct sockaddr *addrs[] = { NULL, (const struct sockaddr *)&in4, (const struct sockaddr *)&in6 };
	static const char *const names[] = { "all", "app", "a", "" };
	for (int a = 0; a < 3; a++) {
		for (int tls = 0; tls < 2; tls++) {
			for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
				/* a physical replication login on every other name: only the keyword may match it */
				struct hba_client cl = { a == 0, tls == 1, addrs[a], names[n], names[(n + 1) % 4], n % 2 == 1 };
				struct hba_verdict v;
				if (hba_match(h, &cl, &v)) {
					assert(v.line >= 1 && strcmp(v.file, path) == 0);
					if (v.map)
						(void)hba_ident_allows(h, v.map, names[n], cl.user);
				}
			}
		}
	}
	hba_free(h);
	hba_free(again);
	return 0;
}
