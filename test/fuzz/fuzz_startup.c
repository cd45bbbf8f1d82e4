/*
 * fuzz_startup: the body of a client's startup packet, the first bytes a
 * stranger sends (src/proto.c, proto_startup_next; client.c's
 * read_startup_params walks it the same way).
 *
 * Input: the packet body after its 4-byte length (version, then pairs).
 * Asserts beyond "no crash":
 *   - every name and value lies inside the body and ends at a NUL inside it;
 *   - names are never empty; pairs come in order, each right after the last;
 *   - a walk that ends cleanly has read only bytes of the body, and a bad
 *     layout is reported exactly when a string lacks its NUL or the
 *     version does not fit (checked against a plain re-scan of the bytes).
 * ErrorResponse field lookup (proto_error_field) gets the same bytes: it
 * must return NULL or a string inside them.
 */
#include "proto.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

/* the layout rules restated without pkt_reader: is it bad, and how many pairs */
static bool reference_walk(const uint8_t *p, size_t len, int *pairs)
{
	size_t at = 4;
	*pairs = 0;
	if (len < 4)
		return true;
	while (at < len) {
		const uint8_t *nul = memchr(p + at, 0, len - at);
		if (!nul)
			return true;
		if (nul == p + at)
			return false; /* the empty name ends the list */
		at = (size_t)(nul - p) + 1;
		nul = at < len ? memchr(p + at, 0, len - at) : NULL;
		if (!nul)
			return true;
		at = (size_t)(nul - p) + 1;
		(*pairs)++;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_startup ps;
	const char *name, *value;
	const char *body = (const char *)data, *end = body + size;
	const char *next = body + 4; /* where the next pair must start */
	int pairs = 0, want_pairs;

	proto_startup_init(&ps, data, size);
	while (proto_startup_next(&ps, &name, &value)) {
		assert(name == next && name < end && *name != '\0');
		size_t nlen = strnlen(name, (size_t)(end - name));
		assert(name + nlen < end);
		assert(value == name + nlen + 1);
		size_t vlen = strnlen(value, (size_t)(end - value));
		assert(value + vlen < end);
		next = value + vlen + 1;
		pairs++;
	}
	bool want_bad = reference_walk(data, size, &want_pairs);
	assert(ps.r.bad == want_bad);
	if (!want_bad)
		assert(pairs == want_pairs);
	if (size >= 4)
		assert(ps.version == proto_read_u32(data));

	for (const char *codes = "CMSV"; *codes; codes++) {
		const char *f = proto_error_field(data, size, *codes);
		if (f) {
			assert(f > body && f < end);
			assert(memchr(f, 0, (size_t)(end - f)) != NULL);
		}
	}
	return 0;
}
