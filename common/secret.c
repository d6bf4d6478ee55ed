/* secret.c - read a secret file (interface and behaviour: secret.h).
 *
 * The file is read with one open(2) and read(2) until EOF into a buffer
 * one byte larger than the longest secret plus "\r\n", so "too long" is
 * told from "exactly the maximum" without reading unbounded input.
 */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"

/* The longest secret, its "\r\n", and one byte more to see it is longer. */
#define SECRET_READ_MAX (RMP_AUTH_SECRET_MAX + 3)

static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;

	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*len = n;
	return 0;
}

int rmp_secret_read_file(const char *path, char *buf, size_t cap, bool *loose, char *err,
			 size_t errlen)
{
	char tmp[SECRET_READ_MAX];
	size_t len = 0;
	int rc;

	if (loose)
		*loose = false;
	if (!path || !*path || !buf || cap < RMP_AUTH_SECRET_MAX + 1) {
		snprintf(err, errlen, "secret file: bad arguments");
		return -EINVAL;
	}
	buf[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "secret file \"%s\": cannot open: %s", path, strerror(-rc));
		return rc;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && loose)
		*loose = (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
	rc = read_all(fd, tmp, sizeof(tmp), &len);
	close(fd);
	if (rc) {
		snprintf(err, errlen, "secret file \"%s\": cannot read: %s", path, strerror(-rc));
		goto out_wipe;
	}
	if (len && tmp[len - 1] == '\n') {
		len--;
		if (len && tmp[len - 1] == '\r')
			len--;
	}
	rc = -EINVAL;
	if (memchr(tmp, '\0', len))
		snprintf(err, errlen, "secret file \"%s\": holds a NUL byte", path);
	else if (len < RMP_AUTH_SECRET_MIN)
		snprintf(err, errlen, "secret file \"%s\": %zu bytes, shorter than %u", path, len,
			 RMP_AUTH_SECRET_MIN);
	else if (len > RMP_AUTH_SECRET_MAX)
		snprintf(err, errlen, "secret file \"%s\": longer than %u bytes", path,
			 RMP_AUTH_SECRET_MAX);
	else {
		memcpy(buf, tmp, len);
		buf[len] = '\0';
		rc = 0;
	}
out_wipe:
	sodium_memzero(tmp, sizeof(tmp));
	return rc;
}

int rmp_secret_read_file_dup(const char *path, char **out, bool *loose, char *err,
			     size_t errlen)
{
	char *s = malloc(RMP_AUTH_SECRET_MAX + 1);

	*out = NULL;
	if (!s) {
		snprintf(err, errlen, "secret file: out of memory");
		return -ENOMEM;
	}
	int rc = rmp_secret_read_file(path, s, RMP_AUTH_SECRET_MAX + 1, loose, err, errlen);
	if (rc) {
		rmp_secret_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void rmp_secret_free(char *s)
{
	if (!s)
		return;
	sodium_memzero(s, RMP_AUTH_SECRET_MAX + 1);
	free(s);
}
