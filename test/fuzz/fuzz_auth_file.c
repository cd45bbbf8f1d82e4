/*
 * fuzz_auth_file: the auth_file parser (src/auth.c, auth_file_load) and the
 * secrets it hands out (auth_secret_kind, scram_parse_secret, MD5).
 *
 * Input: the file's bytes. Asserts beyond "no crash":
 *   - the entries are sorted by user with no user twice (the later line
 *     wins), and looking each user up finds that entry's secret;
 *   - a SCRAM secret that parses has 1..INT_MAX iterations and a salt of
 *     1..64 bytes; an MD5 one yields a 35-character response.
 */
#include "auth.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_file.h"
#include "log.h"
#include "scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	char err[512];

	if (!ready) {
		log_setup(0, true); /* duplicate-user warnings would drown the fuzzer's output */
		ready = true;
	}
	const char *path = fuzz_file_write("userlist.txt", data, size);
	struct auth_file *af = auth_file_load(path, err, sizeof(err));
	if (!af)
		return 0;
	for (int i = 0; i < af->count; i++) {
		const struct auth_entry *e = &af->entries[i];
		assert(e->user[0] != '\0');
		if (i > 0)
			assert(strcmp(af->entries[i - 1].user, e->user) < 0);
		assert(auth_file_lookup(af, e->user) == e->secret);

		struct scram_secret s;
		char md5[36];
		static const uint8_t salt[4] = { 1, 2, 3, 4 };
		switch (auth_secret_kind(e->secret)) {
		case SECRET_SCRAM:
			if (scram_parse_secret(e->secret, &s))
				assert(s.iterations >= 1 && s.salt_len >= 1 && s.salt_len <= 64);
			break;
		case SECRET_MD5:
			auth_md5_response(e->secret, salt, md5);
			assert(strlen(md5) == 35 && strncmp(md5, "md5", 3) == 0);
			break;
		case SECRET_PLAIN:
			auth_md5_secret(e->secret, e->user, md5);
			assert(strlen(md5) == 35);
			break;
		}
	}
	auth_file_free(af);
	return 0;
}
