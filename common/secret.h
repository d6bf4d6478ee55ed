/* secret.h - the one reader of secret files (--secret-file,
 * RMPOOL_SECRET_FILE), for the coordinator, the donor and agent, the CLI
 * and the demo.
 *
 * One behaviour everywhere:
 *   - the whole file is the secret, less ONE trailing newline ("\n" or
 *     "\r\n"): an editor's final newline is not part of it, but a secret
 *     may itself end in other whitespace;
 *   - its length is bounded: RMP_AUTH_SECRET_MIN..RMP_AUTH_SECRET_MAX
 *     bytes (auth.h), so a file that is too long is refused rather than
 *     cut (a cut secret would fail later with a misleading auth error);
 *   - a file that group or others may read is accepted, but *loose is set
 *     so the caller warns (the library itself never prints);
 *   - every buffer that held the secret is wiped (sodium_memzero) before
 *     it is released, on success and on failure alike.
 */
#ifndef RMP_SECRET_H
#define RMP_SECRET_H

#include <stdbool.h>
#include <stddef.h>

/* Reads the secret in path into buf (cap bytes, NUL-terminated; cap must
 * be at least RMP_AUTH_SECRET_MAX + 1). 0, or a negative errno with one
 * line in err: -ENOENT/-EACCES/... (cannot open or read), -EINVAL (too
 * short, too long, or a NUL byte inside). *loose (may be NULL) is set when
 * the file's mode lets group or others read it. */
int rmp_secret_read_file(const char *path, char *buf, size_t cap, bool *loose, char *err,
			 size_t errlen);

/* The same into a new heap buffer (*out; release with rmp_secret_free). */
int rmp_secret_read_file_dup(const char *path, char **out, bool *loose, char *err,
			     size_t errlen);

/* Wipes and frees a secret from rmp_secret_read_file_dup (NULL is fine). */
void rmp_secret_free(char *s);

#endif /* RMP_SECRET_H */
