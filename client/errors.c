/*
 * errors.c - what librmpool's error codes mean, and the detail of the
 * last failure.
 *
 * Codes are negative errno values or rmpool's own RMP_E* codes (above any
 * errno). rmp_strerror() uses glibc's strerrordesc_np(), which returns
 * static text and is thread-safe, unlike strerror().
 *
 * The detail (rmp_last_error) is kept per thread, like errno: a refused
 * request's text from the coordinator, or the local call that failed.
 * Thread-local storage keeps concurrent callers from overwriting each
 * other's text, at the price of the detail being visible only in the
 * thread that saw the failure.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

struct last_error {
	const rmp_client *c;
	char text[320];
};

static _Thread_local struct last_error last;

int rmp_client_fail(const rmp_client *c, int rc, const char *fmt, ...)
{
	va_list ap;

	last.c = c;
	va_start(ap, fmt);
	vsnprintf(last.text, sizeof(last.text), fmt, ap);
	va_end(ap);
	return rc;
}

void rmp_client_clear_error(const rmp_client *c)
{
	if (last.c == c)
		last.text[0] = '\0';
}

const char *rmp_last_error(const rmp_client *c)
{
	if (c && last.c != c)
		return "";
	return last.text;
}

const char *rmp_strerror(int rc)
{
	int e = rc < 0 ? -rc : rc;

	switch (e) {
	case 0:
		return "success";
	case RMP_EAUTH:
		return "authentication failed: the coordinator and this client do not hold the same secret";
	case RMP_ELEASE:
		return "the pool's lease expired: close it and attach again from a new connection";
	case RMP_EREMOTE:
		return "the coordinator refused the request";
	case RMP_ECORRUPT:
		return "the pool's allocator metadata fails its invariants";
	case RMP_ECACHED:
		return "the block lies in another process's small-block cache: only that process can free or check it";
	case RMP_EDONOR:
		return "a donor holding the range is out of service (lost or unreachable); rmp_last_error() names it";
	case RMP_EAWAY:
		return "the coordinator is away (restarting or unreachable); the library reconnects by itself: try again";
	case ENOSYS:
		return "not implemented yet (the RDMA data path comes in a later release)";
	case ENOTCONN:
		return "not connected to the coordinator (the connection was lost or dropped after a timeout)";
	case EPROTO:
		return "protocol error: the peer is not an rmpool coordinator of this version";
	default:
		break;
	}
	const char *s = e < 4096 ? strerrordesc_np(e) : NULL;
	return s ? s : "unknown error";
}
