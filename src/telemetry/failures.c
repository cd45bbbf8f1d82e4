/*
 * failures: the fixed vocabularies failures are counted under. A SQLSTATE's
 * class is looked up in PostgreSQL's list of classes; the lookup runs only
 * for errors, which are rare next to the packets around them.
 */
#include "failures.h"

#include <string.h>

static const char classes[ERR_CLASS_COUNT - 1][3] = {
	"00", "01", "02", "03", "08", "09", "0A", "0B", "0F", "0L", "0P", "0Z", "20", "21", "22",
	"23", "24", "25", "26", "27", "28", "2B", "2D", "2F", "34", "38", "39", "3B", "3D", "3F",
	"40", "42", "44", "53", "54", "55", "57", "58", "72", "F0", "HV", "P0", "XX",
};

int failure_error_class(const char *sqlstate)
{
	if (!sqlstate || strlen(sqlstate) != 5)
		return ERR_CLASS_OTHER;
	for (int i = 0; i < ERR_CLASS_COUNT - 1; i++) {
		if (sqlstate[0] == classes[i][0] && sqlstate[1] == classes[i][1])
			return i;
	}
	return ERR_CLASS_OTHER;
}

const char *failure_error_class_name(int cls)
{
	return cls >= 0 && cls < ERR_CLASS_OTHER ? classes[cls] : "other";
}

enum login_failure failure_login_reason(const char *sqlstate)
{
	if (!sqlstate)
		return LF_OTHER;
	if (strcmp(sqlstate, "28P01") == 0)
		return LF_PASSWORD;
	if (strcmp(sqlstate, "28000") == 0)
		return LF_REJECTED;
	if (strcmp(sqlstate, "3D000") == 0)
		return LF_NO_DATABASE;
	if (strcmp(sqlstate, "53300") == 0)
		return LF_TOO_MANY;
	return LF_OTHER;
}

const char *failure_login_reason_name(enum login_failure r)
{
	static const char *const names[LF_COUNT] = {
		[LF_PASSWORD] = "wrong_password",       [LF_REJECTED] = "rejected",
		[LF_NO_DATABASE] = "no_database",       [LF_TOO_MANY] = "too_many_clients",
		[LF_TIMEOUT] = "timeout",               [LF_SERVER] = "server_unavailable",
		[LF_OTHER] = "other",
	};
	return r >= 0 && r < LF_COUNT ? names[r] : "other";
}
