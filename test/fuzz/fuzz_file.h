/*
 * fuzz_file.h: for harnesses whose parser wants a path, not bytes.
 *
 * fuzz_file_write puts the input into <private dir>/<name> and returns the
 * path. The directory is made once per process with mkdtemp and holds
 * nothing else, so a relative "%include x" in a fuzzed ini file can only
 * find the file itself (an include loop, which the loader must catch). It
 * goes under $PGPULSE_FUZZ_TMPDIR (run.sh sets it), else /dev/shm, else
 * /tmp, and is removed at exit when libFuzzer exits through exit().
 */
#ifndef PGPULSE_FUZZ_FILE_H
#define PGPULSE_FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char fuzz_file_dir[64], fuzz_file_path[128];

static void fuzz_file_cleanup(void)
{
	unlink(fuzz_file_path);
	rmdir(fuzz_file_dir);
}

static const char *fuzz_file_write(const char *name, const uint8_t *data, size_t size)
{
	if (!fuzz_file_dir[0]) {
		/* tmpfs when there is one: a disk file system costs most of each run */
		const char *tmp = getenv("PGPULSE_FUZZ_TMPDIR");
		if (!tmp || !*tmp)
			tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(fuzz_file_dir, sizeof(fuzz_file_dir), "%s/pgpulse-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(fuzz_file_dir))
			abort();
		atexit(fuzz_file_cleanup);
	}
	snprintf(fuzz_file_path, sizeof(fuzz_file_path), "%s/%s", fuzz_file_dir, name);
	FILE *f = fopen(fuzz_file_path, "w");
	if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
		abort();
	return fuzz_file_path;
}

#endif
