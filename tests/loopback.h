/*
 * loopback.h - a TCP socket on 127.0.0.1 at a port the kernel picks, for
 * the tests that play a coordinator (a fake thread's listener) or need a
 * port nothing listens on (bind, learn the port, close).
 *
 *   loopback_socket(backlog, &port)  bound; listening when backlog >= 0
 *
 * Returns the socket or a negative errno and leaves the assert to the
 * caller, in its own vocabulary (cr_assert in Criterion tests, REQUIRE
 * from check.h elsewhere). Header-only, like check.h.
 */
#ifndef RMP_TESTS_LOOPBACK_H
#define RMP_TESTS_LOOPBACK_H

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((unused)) static int loopback_socket(int backlog, uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || (backlog >= 0 && listen(fd, backlog)) ||
	    getsockname(fd, (struct sockaddr *)&a, &al)) {
		int err = errno;
		close(fd);
		return -err;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

#endif /* RMP_TESTS_LOOPBACK_H */
