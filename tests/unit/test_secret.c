/* test_secret.c - common/secret.c: one trailing newline trimmed, length
 * bounds, the loose-mode flag, clear errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "secret.h"

static char path[64];

static void put(const void *data, size_t len, mode_t mode)
{
	strcpy(path, "/tmp/rmp-secret-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	cr_assert_eq(chmod(path, mode), 0);
}

static void drop(void) { unlink(path); }

TestSuite(secret, .fini = drop);

Test(secret, trims_exactly_one_newline)
{
	char buf[RMP_AUTH_SECRET_MAX + 1], err[200];
	bool loose = true;

	put("0123456789abcdef \n\n", 19, 0600);
	cr_assert_eq(rmp_secret_read_file(path, buf, sizeof(buf), &loose, err, sizeof(err)), 0);
	cr_expect_str_eq(buf, "0123456789abcdef \n");
	cr_expect_not(loose);
	drop();
	put("0123456789abcdef\r\n", 18, 0600);
	cr_assert_eq(rmp_secret_read_file(path, buf, sizeof(buf), NULL, err, sizeof(err)), 0);
	cr_expect_str_eq(buf, "0123456789abcdef");
}

Test(secret, loose_mode_is_flagged_not_refused)
{
	char buf[RMP_AUTH_SECRET_MAX + 1], err[200];
	bool loose = false;

	put("0123456789abcdef", 16, 0644);
	cr_assert_eq(rmp_secret_read_file(path, buf, sizeof(buf), &loose, err, sizeof(err)), 0);
	cr_expect(loose);
	cr_expect_str_eq(buf, "0123456789abcdef");
}

Test(secret, length_bounds)
{
	char buf[RMP_AUTH_SECRET_MAX + 1], err[200];
	static char big[RMP_AUTH_SECRET_MAX + 2];

	put("short\n", 6, 0600);
	cr_expect_eq(rmp_secret_read_file(path, buf, sizeof(buf), NULL, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "shorter than"), "%s", err);
	drop();
	memset(big, 'x', sizeof(big));
	put(big, RMP_AUTH_SECRET_MAX, 0600);
	cr_expect_eq(rmp_secret_read_file(path, buf, sizeof(buf), NULL, err, sizeof(err)), 0);
	cr_expect_eq(strlen(buf), RMP_AUTH_SECRET_MAX);
	drop();
	put(big, RMP_AUTH_SECRET_MAX + 1, 0600);
	cr_expect_eq(rmp_secret_read_file(path, buf, sizeof(buf), NULL, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "longer than"), "%s", err);
	cr_expect_str_eq(buf, "", "a refused secret leaves nothing in the buffer");
}

Test(secret, missing_file_and_nul)
{
	char buf[RMP_AUTH_SECRET_MAX + 1], err[200];
	char *dup = (char *)1;

	cr_expect_eq(rmp_secret_read_file("/nonexistent/rmp-secret", buf, sizeof(buf), NULL, err,
					  sizeof(err)),
		     -ENOENT);
	cr_expect(strstr(err, "/nonexistent/rmp-secret"), "%s", err);
	put("0123456789\0abcdef", 17, 0600);
	cr_expect_eq(rmp_secret_read_file_dup(path, &dup, NULL, err, sizeof(err)), -EINVAL);
	cr_expect_null(dup);
	cr_expect(strstr(err, "NUL"), "%s", err);
}

Test(secret, dup_roundtrip)
{
	char *s = NULL, err[200];

	put("a-secret-of-20-bytes\n", 21, 0600);
	cr_assert_eq(rmp_secret_read_file_dup(path, &s, NULL, err, sizeof(err)), 0);
	cr_expect_str_eq(s, "a-secret-of-20-bytes");
	rmp_secret_free(s);
}
